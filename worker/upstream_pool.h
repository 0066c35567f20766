// Keep-alive pools of HTTP/1.1 connections, one per upstream endpoint, and
// the choice of endpoint (round robin).
#pragma once

#include <sys/socket.h>

#include <chrono>

#include <list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "shared/metrics.h"
#include "shared/rules.h"
#include "worker/deferred_delete.h"
#include "worker/upstream_connection.h"

namespace strangler {

struct EndpointState {
  std::string upstream_name;
  Endpoint endpoint;
  sockaddr_storage address = {};
  socklen_t address_length = 0;
  bool resolved = false;
  int64_t connect_timeout_ms = 1000;
  int64_t timeout_ms = 30000;
  std::list<UpstreamConnection*> idle;

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

  // A connection to one endpoint of `upstream`: an idle one when there is
  // one, a new one otherwise (`fresh` forces a new one). Null when the
  // upstream has no usable endpoint.
  UpstreamConnection* acquire(const std::string& upstream, bool fresh);

  // After a complete exchange: parks a reusable connection, closes the rest.
  void release(UpstreamConnection* connection, bool reusable);
  // Closes a connection (deleted once the current callback returns).
  void discard(UpstreamConnection* connection);

  // A connect to `endpoint` failed: skip it for a while (1 s doubling to 30 s).
  void markFailed(EndpointState& endpoint);
  size_t endpointCount(const std::string& upstream) const;

  size_t idleCount() const;
  size_t idleCount(const std::string& upstream) const;

  // Where connections report their connect and response latencies.
  metrics::MetricsWriter& metrics() { return metrics_; }

 private:
  struct UpstreamState {
    std::vector<std::unique_ptr<EndpointState>> endpoints;
    size_t next = 0;
  };

  EndpointState& pickEndpoint(UpstreamState& state);

  event_base* base_;
  DeferredDeleteQueue& graveyard_;
  metrics::MetricsWriter& metrics_;
  std::map<std::string, UpstreamState> upstreams_;
  std::map<UpstreamConnection*, std::unique_ptr<UpstreamConnection>> connections_;
};

}  // namespace strangler
