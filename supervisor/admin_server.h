// The supervisor's admin HTTP server: liveness and readiness probes and the
// active ruleset, on STRANGLER_ADMIN_LISTEN (loopback by default).
#pragma once

#include <event2/event.h>
#include <event2/http.h>

#include <functional>
#include <string>

#include "shared/config.h"

namespace strangler {

struct AdminState {
  // Empty when ready; otherwise why not (starting, rolling slot N, stopping).
  std::function<std::string()> not_ready_reason;
  // While ready: something the operator should know (a version that failed to load), or empty.
  std::function<std::string()> ready_note;
  std::function<std::string()> rules_json;  // {"version": N, "rules": {...}}
  std::function<std::string()> metrics_text;
};

class AdminServer {
 public:
  AdminServer(event_base* base, AdminState state);
  ~AdminServer();

  bool listen(const ListenAddress& address, std::string& error);

 private:
  static void onRequest(evhttp_request* request, void* self);
  void handle(evhttp_request* request);

  evhttp* http_;
  AdminState state_;
};

}  // namespace strangler
