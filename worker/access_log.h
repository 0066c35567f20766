// The access log: one JSON line per request. Lines are buffered and leave
// the process in writes of whole lines, each write at most PIPE_BUF bytes,
// so that lines of several workers sharing a pipe or file never interleave.
#pragma once

#include <event2/event.h>

#include <cstdint>
#include <string>

#include "shared/config.h"

namespace strangler {

// Everything one access line says about an exchange.
// Room for a request id the proxy makes (Worker::nextRequestId).
constexpr size_t kRequestIdSize = 32;

// Views point into the exchange that writes the record, which outlives the write.
struct AccessRecord {
  std::string_view request_id;
  std::string method;
  std::string_view path;
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
  std::string jsonrpc_method;  // the call's method, or a batch's first few and a count; written when set
  // Who ended the exchange and in which phase: "ok", or "<side>_<phase>" with
  // side client, upstream or proxy and phase connect, headers or body.
  std::string termination = "ok";
};

class AccessLog {
 public:
  // Opens the target of `config`; false with `error` when the file cannot be opened.
  bool open(const Config& config, int worker_slot, std::string& error);
  ~AccessLog();

  // From now on buffered lines are written once the current batch of events
  // on `base` is handled. `base` needs two priorities: the flush runs at the
  // higher one, before the responses of that batch go out.
  void attach(event_base* base);
  // Writes what is buffered and lets go of the base (call before freeing it).
  void detach();

  bool enabled() const { return fd_ >= 0; }
  // Buffers the line of `record`; unattached, writes it at once.
  void write(const AccessRecord& record);
  void flush();

 private:
  static void onFlush(evutil_socket_t, short, void* self);
  std::string render(const AccessRecord& record, size_t path_limit) const;

  int fd_ = -1;
  bool owns_fd_ = false;
  int worker_slot_ = 0;
  std::string buffer_;  // whole lines, never more than PIPE_BUF bytes
  event* flush_event_ = nullptr;
};

}  // namespace strangler
