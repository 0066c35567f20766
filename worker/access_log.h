// The access log: one JSON line per request, each written with one write()
// so that lines of several workers sharing a pipe or file never interleave.
#pragma once

#include <cstdint>
#include <string>

#include "shared/config.h"

namespace strangler {

// Everything one access line says about an exchange.
struct AccessRecord {
  std::string request_id;
  std::string method;
  std::string path;
  std::string protocol;  // "HTTP/1.1", "HTTP/1.0"
  int status = 0;
  uint64_t bytes_in = 0;   // request body bytes received from the client
  uint64_t bytes_out = 0;  // response body bytes sent to the client
  double duration_ms = 0;
  std::string route;
  std::string upstream;
  std::string endpoint;
  uint64_t rules_version = 0;
  std::string client;
  std::string error;        // stable reason token, e.g. "no_route", "upstream_connect_refused"
  std::string terminated_by;  // "client", "upstream" or "proxy"; empty for a normal end
};

class AccessLog {
 public:
  // Opens the target of `config`; false with `error` when the file cannot be opened.
  bool open(const Config& config, int worker_slot, std::string& error);
  ~AccessLog();

  bool enabled() const { return fd_ >= 0; }
  void write(const AccessRecord& record);

 private:
  std::string render(const AccessRecord& record, size_t path_limit) const;

  int fd_ = -1;
  bool owns_fd_ = false;
  int worker_slot_ = 0;
};

}  // namespace strangler
