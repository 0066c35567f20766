// A worker process: one libevent loop serving the listening sockets of its
// slot with one immutable ruleset version, until the supervisor tells it to
// drain (or goes away).
#pragma once

#include <event2/event.h>
#include <event2/listener.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "shared/config.h"
#include "shared/metrics.h"
#include "shared/router.h"
#include "worker/access_log.h"
#include "worker/deferred_delete.h"
#include "worker/downstream.h"
#include "worker/http1_socket.h"
#include "worker/loop_clock.h"
#include "worker/upstream_pool.h"

namespace strangler {

class ClientConnection;
class RateLimiter;
class DownstreamConnection;

struct WorkerOptions {
  int slot = 0;
  uint64_t rules_version = 0;
  std::vector<int> listen_fds;
  int control_fd = -1;
  int metrics_fd = -1;      // the supervisor's metrics segment, or -1
  int metrics_region = -1;  // this worker's region in it
};

class Worker {
 public:
  Worker(Config config, WorkerOptions options);
  ~Worker();

  // Runs until drained; returns the process exit code.
  int run();

  event_base* base() { return base_; }
  // The time of the loop's current pass: what per-request timestamps read.
  LoopClock& clock() { return *clock_; }
  const Config& config() const { return config_; }
  std::shared_ptr<const Router> router() const { return router_; }
  UpstreamPool& pools() { return *pools_; }
  AccessLog& accessLog() { return access_log_; }
  metrics::MetricsWriter& metrics() { return metrics_; }
  // The metrics series of `route`, one of `router`'s, under its own name
  // and its upstream (or no upstream: the proxy answered). Looked up by
  // name once per route of this worker's router, then remembered.
  size_t routeSeries(const Router& router, const Route& route, bool with_upstream);
  // An empty head to describe the next upstream request in. One per worker:
  // a head is written out before the next is made, and its vector and
  // strings keep their room from one request to the next.
  UpstreamHeadView& upstreamHead() {
    upstream_head_.clear();
    return upstream_head_;
  }
  DeferredDeleteQueue& graveyard() { return *graveyard_; }
  RateLimiter& rateLimiter() { return *rate_limiter_; }
  // Writes the next request id (24 hex digits; 26 after 2^56 requests) into
  // `out`, which has room for kRequestIdSize bytes; returns its length.
  size_t nextRequestId(char* out);

  void connectionClosed(DownstreamConnection* connection);

  // During a rollout: passes an idle HTTP/1 connection's socket and unparsed
  // bytes to the slot's new worker. False when not handing over (stopping).
  bool handOver(int fd, const std::string& unparsed);
  bool handingOver() const { return handing_over_; }

  // The HTTP/1 connection turned out to be HTTP/2 (a connection preface, or
  // an h2c upgrade already answered with 101): its socket moves to an
  // HTTP/2 session. `upgrade` is the upgrading request (answered on stream
  // 1), `settings` its decoded HTTP2-Settings.
  void switchToHttp2(ClientConnection* from, Http1Socket& socket, const ClientInfo& client,
                     const RequestHead* upgrade, const std::string& settings, const std::string& upgrade_body);

 private:
  bool loadRules(std::string& error);
  bool startListening(std::string& error);
  void attachMetrics();
  void declareMetricSeries();
  void sampleGauges();
  void updateConnectionGauges();
  void accept(evutil_socket_t fd, sockaddr* peer, int peer_length);
  void handleControl();
  void beginDrain(const char* why, bool hand_over);
  void adoptConnection(int fd, const std::string& unparsed);
  void endDrain();

  static void onAccept(evconnlistener*, evutil_socket_t fd, sockaddr* peer, int length, void* self);
  static void onAcceptError(evconnlistener* listener, void* self);
  static void onControl(evutil_socket_t, short, void* self);
  static void onDrainTimeout(evutil_socket_t, short, void* self);
  static void onHousekeeping(evutil_socket_t, short, void* self);
  static void onSignal(evutil_socket_t signal_number, short, void* self);

  Config config_;
  WorkerOptions options_;
  event_base* base_ = nullptr;
  LoopClock* clock_ = nullptr;  // base_'s
  std::unique_ptr<SocketContext> sockets_;  // of the HTTP/1 connections, both sides
  std::unique_ptr<DeferredDeleteQueue> graveyard_;
  std::unique_ptr<UpstreamPool> pools_;
  std::shared_ptr<const Router> router_;
  AccessLog access_log_;
  metrics::MetricsWriter metrics_;
  // By route position: the series without and with its upstream, or metrics::kUnknownSeries.
  std::vector<std::array<size_t, 2>> route_series_;
  UpstreamHeadView upstream_head_;
  std::unique_ptr<RateLimiter> rate_limiter_;
  std::vector<evconnlistener*> listeners_;
  std::map<DownstreamConnection*, std::unique_ptr<DownstreamConnection>> connections_;
  event* control_event_ = nullptr;
  event* drain_timer_ = nullptr;
  event* term_event_ = nullptr;
  event* housekeeping_timer_ = nullptr;
  std::string control_input_;
  bool draining_ = false;
  size_t h2_connections_ = 0;  // of connections_, for the connection gauges
  bool accepting_paused_ = false;
  bool handing_over_ = false;
  bool cutting_ = false;
  uint64_t handed_out_ = 0;
  uint64_t handed_in_ = 0;
  uint32_t id_seed_ = 0;
  uint64_t id_counter_ = 0;
};

// Entry point of `strangler worker ...` (started by the supervisor only).
int runWorker(int argc, char** argv);

}  // namespace strangler
