// Keep-alive pools of HTTP/1.1 connections and HTTP/2 sessions, per upstream endpoint.
#include "worker/upstream_pool.h"

#include <netdb.h>

#include <algorithm>
#include <cstring>

#include "shared/process_log.h"

namespace strangler {
namespace {

// Idle connections kept per endpoint; more are closed when released.
constexpr size_t kMaxIdlePerEndpoint = 256;

bool resolve(EndpointState& state, std::string& error) {
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  std::string port = std::to_string(state.endpoint.port);
  int status = getaddrinfo(state.endpoint.host.c_str(), port.c_str(), &hints, &found);
  if (status != 0 || !found) {
    error = "cannot resolve endpoint " + state.endpoint.text() + " of upstream '" + state.upstream_name +
            "': " + gai_strerror(status);
    return false;
  }
  memcpy(&state.address, found->ai_addr, found->ai_addrlen);
  state.address_length = found->ai_addrlen;
  state.resolved = true;
  freeaddrinfo(found);
  return true;
}

// Idle keep-alive connections, or HTTP/2 sessions without a stream.
size_t idleOf(const EndpointState& endpoint) {
  return endpoint.h2 ? endpoint.h2->idleSessions() : endpoint.idle.size();
}

}  // namespace

UpstreamPool::UpstreamPool(event_base* base, DeferredDeleteQueue& graveyard, metrics::MetricsWriter& metrics)
    : base_(base), clock_(LoopClock::of(base)), graveyard_(graveyard), metrics_(metrics) {}

UpstreamPool::~UpstreamPool() { connections_.clear(); }

bool UpstreamPool::configure(const Ruleset& ruleset, std::string& error) {
  for (const auto& [name, upstream] : ruleset.upstreams) {
    UpstreamState& state = upstreams_[name];
    for (const Endpoint& endpoint : upstream.endpoints) {
      auto endpoint_state = std::make_unique<EndpointState>();
      endpoint_state->upstream_name = name;
      endpoint_state->endpoint = endpoint;
      endpoint_state->endpoint_text = endpoint.text();
      endpoint_state->connect_timeout_ms = upstream.connect_timeout_ms;
      endpoint_state->timeout_ms = upstream.timeout_ms;
      if (!resolve(*endpoint_state, error)) return false;
      if (upstream.protocol == UpstreamProtocol::h2c) {
        endpoint_state->h2 = std::make_unique<UpstreamH2Endpoint>(base_, graveyard_, metrics_, *endpoint_state);
      }
      state.endpoints.push_back(std::move(endpoint_state));
    }
  }
  return true;
}

UpstreamStream* UpstreamPool::acquire(const std::string& upstream, bool fresh) {
  auto found = upstreams_.find(upstream);
  if (found == upstreams_.end() || found->second.endpoints.empty()) return nullptr;
  EndpointState& endpoint = pickEndpoint(found->second);
  if (endpoint.h2) return endpoint.h2->open(fresh);

  if (!fresh && !endpoint.idle.empty()) {
    // The most recently used connection is the least likely to have been closed.
    UpstreamConnection* connection = endpoint.idle.back();
    endpoint.idle.pop_back();
    return connection;
  }

  auto connection = std::make_unique<UpstreamConnection>(base_, *this, endpoint);
  UpstreamConnection* raw = connection.get();
  connections_[raw] = std::move(connection);
  if (!raw->connect()) {
    discardConnection(raw);
    return nullptr;
  }
  return raw;
}

EndpointState& UpstreamPool::pickEndpoint(UpstreamState& state) {
  // Round robin over the endpoints not being skipped; when all are, the
  // next in turn is tried anyway rather than refusing outright.
  auto now = clock_.now();
  size_t count = state.endpoints.size();
  for (size_t tried = 0; tried < count; tried++) {
    EndpointState& candidate = *state.endpoints[state.next++ % count];
    if (candidate.skip_until <= now) return candidate;
  }
  return *state.endpoints[state.next++ % count];
}

void UpstreamPool::markFailed(EndpointState& endpoint) {
  endpoint.consecutive_failures++;
  int64_t backoff_ms = 1000;
  for (int i = 1; i < endpoint.consecutive_failures && backoff_ms < 30000; i++) backoff_ms *= 2;
  if (backoff_ms > 30000) backoff_ms = 30000;
  endpoint.skip_until = std::chrono::steady_clock::now() + std::chrono::milliseconds(backoff_ms);
  plog::warn("upstream endpoint failed: skipping it",
             {{"upstream", endpoint.upstream_name}, {"endpoint", endpoint.endpoint.text()},
              {"consecutive_failures", endpoint.consecutive_failures}, {"skip_ms", static_cast<long>(backoff_ms)}});
}

size_t UpstreamPool::endpointCount(const std::string& upstream) const {
  auto found = upstreams_.find(upstream);
  return found == upstreams_.end() ? 0 : found->second.endpoints.size();
}

void UpstreamPool::release(UpstreamStream* stream, bool reusable) {
  EndpointState& endpoint = stream->endpoint();
  endpoint.consecutive_failures = 0;
  if (endpoint.h2) {
    endpoint.h2->release(static_cast<UpstreamH2Stream*>(stream));
    return;
  }
  auto* connection = static_cast<UpstreamConnection*>(stream);
  if (!reusable || endpoint.idle.size() >= kMaxIdlePerEndpoint) {
    discardConnection(connection);
    return;
  }
  connection->park();
  endpoint.idle.push_back(connection);
}

void UpstreamPool::discard(UpstreamStream* stream) {
  EndpointState& endpoint = stream->endpoint();
  if (endpoint.h2) endpoint.h2->release(static_cast<UpstreamH2Stream*>(stream));
  else discardConnection(static_cast<UpstreamConnection*>(stream));
}

void UpstreamPool::discardConnection(UpstreamConnection* connection) {
  auto found = connections_.find(connection);
  if (found == connections_.end()) return;
  std::vector<UpstreamConnection*>& idle = connection->endpoint().idle;
  idle.erase(std::remove(idle.begin(), idle.end(), connection), idle.end());
  connection->silence();
  graveyard_.add(std::move(found->second));
  connections_.erase(found);
}

size_t UpstreamPool::metricsSeries(EndpointState& endpoint) {
  if (endpoint.metrics_series == metrics::kUnknownSeries) {
    endpoint.metrics_series = metrics_.upstreamSeriesId(endpoint.upstream_name);
  }
  return endpoint.metrics_series;
}

size_t UpstreamPool::idleCount() const {
  size_t count = 0;
  for (const auto& [name, state] : upstreams_) {
    for (const auto& endpoint : state.endpoints) count += idleOf(*endpoint);
  }
  return count;
}

size_t UpstreamPool::idleCount(const std::string& upstream) const {
  auto found = upstreams_.find(upstream);
  if (found == upstreams_.end()) return 0;
  size_t count = 0;
  for (const auto& endpoint : found->second.endpoints) count += idleOf(*endpoint);
  return count;
}

}  // namespace strangler
