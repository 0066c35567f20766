// A JSON-RPC batch whose calls picked different routes: one part per route
// goes to that route's upstream, all at the same time, and the responses
// come back to the client merged into one array.
#pragma once

#include <event2/event.h>

#include <memory>
#include <string>
#include <vector>

#include "shared/jsonrpc.h"
#include "worker/upstream_connection.h"
#include "worker/upstream_stream.h"

namespace strangler {

class UpstreamPool;

// What a split needs from the exchange that owns it.
class JsonRpcSplitObserver {
 public:
  virtual ~JsonRpcSplitObserver() = default;

  // Sends the head of one part on `stream`: a POST for `route`, with a body
  // of `length` bytes.
  virtual void sendPartHead(const Route& route, UpstreamStream& stream, size_t length) = 0;

  // Every part has settled. `answer` is the merged array, or "" when no call
  // needs an answer (notifications only); `error` is the reason token of the
  // first part that failed, or "". Called once, never from within start().
  virtual void onSplitAnswered(const std::string& answer, const std::string& error) = 0;
};

class JsonRpcSplit {
 public:
  // `element_routes` holds the route of each element of `body` (a batch).
  // Elements that are not valid calls, calls without a route and calls whose
  // route answers by itself are answered with error objects here. A part's
  // response is read up to `max_response` bytes. `body` must outlive this.
  JsonRpcSplit(event_base* base, UpstreamPool& pools, JsonRpcSplitObserver& observer, const JsonRpcBody& body,
               const std::vector<const Route*>& element_routes, uint64_t max_response);
  ~JsonRpcSplit();
  JsonRpcSplit(const JsonRpcSplit&) = delete;
  JsonRpcSplit& operator=(const JsonRpcSplit&) = delete;

  // Sends every part.
  void start();
  // Drops the parts still in flight; the observer hears nothing more.
  void cancel();

  // The parts' routes and upstreams, comma separated, for the access log.
  std::string routeNames() const;
  std::string upstreamNames() const;

 private:
  class Part;

  static void onSettle(evutil_socket_t, short, void* self);
  // A part has an outcome: finish in a callback of this object's own.
  void partSettled();
  void settle();

  UpstreamPool& pools_;
  JsonRpcSplitObserver& observer_;
  const JsonRpcBody& body_;
  uint64_t max_response_;
  JsonRpcMerge merge_;
  std::vector<std::unique_ptr<Part>> parts_;
  event* settle_event_;
  std::string first_error_;
  bool answered_ = false;
  bool cancelled_ = false;
};

}  // namespace strangler
