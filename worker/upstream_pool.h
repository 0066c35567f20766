// Keep-alive pools of HTTP/1.1 connections and the HTTP/2 sessions of h2c
// endpoints, one per upstream endpoint, and the choice of endpoint (round robin).
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "shared/metrics.h"
#include "shared/rules.h"
#include "worker/deferred_delete.h"
#include "worker/loop_clock.h"
#include "worker/upstream_connection.h"
#include "worker/upstream_h2_session.h"
#include "worker/upstream_stream.h"

namespace strangler {

struct EndpointState {
  std::string upstream_name;
  Endpoint endpoint;
  std::string endpoint_text;  // endpoint.text(), made once for the access log
  sockaddr_storage address = {};
  socklen_t address_length = 0;
  bool resolved = false;
  int64_t connect_timeout_ms = 1000;
  int64_t timeout_ms = 30000;
  size_t metrics_series = metrics::kUnknownSeries;  // the upstream's, once looked up
  // Parked connections, the most recently used last. A vector: releasing
  // one costs no allocation, and it holds at most 256.
  std::vector<UpstreamConnection*> idle;
  // Set for an h2c endpoint, whose exchanges are streams on its sessions.
  std::unique_ptr<UpstreamH2Endpoint> h2;

  // Passive health: an endpoint that refused is skipped until this time.
  std::chrono::steady_clock::time_point skip_until;
  int consecutive_failures = 0;
};

class UpstreamPool {
 public:
  UpstreamPool(event_base* base, DeferredDeleteQueue& graveyard, metrics::MetricsWriter& metrics);
  ~UpstreamPool();

  // Resolves every endpoint of every upstream; errors name the endpoint.
  bool configure(const Ruleset& ruleset, std::string& error);

  // A stream to one endpoint of `upstream`. HTTP/1: an idle connection
  // when there is one, a new one otherwise (`fresh` forces a new one).
  // h2c: a stream on a session with room (`fresh`: on a new session, unless
  // the endpoint has as many as allowed). Null when the upstream has no
  // usable endpoint.
  UpstreamStream* acquire(const std::string& upstream, bool fresh);

  // After a complete exchange: parks a reusable connection, closes the rest;
  // an HTTP/2 stream just ends.
  void release(UpstreamStream* stream, bool reusable);
  // Closes a connection or resets a stream (deleted once the current callback returns).
  void discard(UpstreamStream* stream);

  // A connect to `endpoint` failed: skip it for a while (1 s doubling to 30 s).
  void markFailed(EndpointState& endpoint);
  size_t endpointCount(const std::string& upstream) const;

  size_t idleCount() const;
  size_t idleCount(const std::string& upstream) const;

  // Where connections report their connect and response latencies.
  metrics::MetricsWriter& metrics() { return metrics_; }
  // The metrics series of the endpoint's upstream, looked up once.
  size_t metricsSeries(EndpointState& endpoint);

 private:
  struct UpstreamState {
    std::vector<std::unique_ptr<EndpointState>> endpoints;
    size_t next = 0;
  };

  EndpointState& pickEndpoint(UpstreamState& state);
  void discardConnection(UpstreamConnection* connection);

  event_base* base_;
  LoopClock& clock_;
  DeferredDeleteQueue& graveyard_;
  metrics::MetricsWriter& metrics_;
  std::map<std::string, UpstreamState> upstreams_;
  std::map<UpstreamConnection*, std::unique_ptr<UpstreamConnection>> connections_;
};

}  // namespace strangler
