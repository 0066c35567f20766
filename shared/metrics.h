// Metrics: the fixed layout of the shared memory segment the supervisor
// creates (one region per live worker process), the worker's writer, the
// supervisor's aggregation with the totals of workers gone, and the
// Prometheus text rendering of /metrics.
//
// Every counter is a plain uint64 written by one process only, with relaxed
// atomic stores; the supervisor reads them with relaxed loads. Label values
// come only from rule names, upstream names and a fixed list of status
// codes, so the number of series is bounded by the tables below.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace strangler::metrics {

// Names longer than kNameBytes - 1 bytes are cut (at a UTF-8 boundary).
constexpr size_t kNameBytes = 64;
// Distinct (route, upstream) pairs and upstreams one worker can name; the
// last entry of each table is the overflow series, labelled kOverflowName.
constexpr size_t kMaxRouteSeries = 1024;
constexpr size_t kMaxUpstreamSeries = 256;
// The same bound for the totals of retired workers, whose names accumulate
// over ruleset versions.
constexpr size_t kMaxRetiredRouteSeries = 4096;
constexpr size_t kMaxRetiredUpstreamSeries = 1024;
constexpr const char* kOverflowName = "(other)";
// What a caller keeping a series id holds before it has looked the id up.
constexpr size_t kUnknownSeries = static_cast<size_t>(-1);

// Upper bounds (seconds) of every latency histogram; one more slot is +Inf.
constexpr std::array<double, 17> kLatencyBounds = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
constexpr size_t kLatencySlots = kLatencyBounds.size() + 1;

// Status codes counted by exact value; any other lands in the last slot.
constexpr std::array<int, 23> kStatusCodes = {200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 405, 408,
                                              410, 413, 414, 429, 431, 499, 500, 502, 503, 504, 505};
constexpr size_t kStatusSlots = kStatusCodes.size() + 1;

// Upstream failures, by the access log's reason token without "upstream_".
constexpr std::array<const char*, 6> kUpstreamErrorKinds = {"connect_refused", "connect_timeout", "reset",
                                                            "response_timeout", "bad_response", "refused"};

// States of a worker's rate limiter: Redis in use, or unreachable and failing open or closed.
constexpr std::array<const char*, 3> kRateLimiterStates = {"ok", "open", "closed"};

// Why an HTTP/2 connection was closed as abusive (GOAWAY ENHANCE_YOUR_CALM):
// too many streams cancelled, a header block too long, too many control frames.
constexpr std::array<const char*, 3> kH2AbuseKinds = {"rapid_reset", "header_flood", "control_flood"};

enum class Protocol { http1 = 0, h2 = 1 };
constexpr std::array<const char*, 2> kProtocolNames = {"http1", "h2"};

// Per-slot observation counts (not cumulative) and the sum in microseconds.
struct Histogram {
  uint64_t slots[kLatencySlots];
  uint64_t sum_us;
};

struct RouteSeries {
  char route[kNameBytes];
  char upstream[kNameBytes];
  uint64_t codes[kStatusSlots];
  Histogram duration;
};

struct UpstreamSeries {
  char name[kNameBytes];
  uint64_t errors[kUpstreamErrorKinds.size()];
  Histogram connect;   // connect() to an established TCP connection
  Histogram response;  // request sent to response headers parsed
  uint64_t idle;       // gauge: idle keep-alive connections in the pool
};

// One worker process's counters. Gauges are dropped when the worker goes;
// counters are folded into the supervisor's retired totals.
struct Region {
  uint64_t layout;  // kLayoutId, set by the supervisor when it hands the region out
  uint64_t inflight_requests;
  uint64_t connections[kProtocolNames.size()];
  uint64_t connections_accepted;
  uint64_t rate_limited;
  uint64_t rate_limiter_state;  // gauge: 1 + index in kRateLimiterStates; 0 before the limiter starts
  uint64_t drain_closed_connections;
  uint64_t drain_handed_over_connections;
  uint64_t drain_cut_connections;
  uint64_t drain_cut_requests;
  uint64_t h2_abuse_closed[kH2AbuseKinds.size()];
  // Entries below these counts are named; a count is stored (release) only
  // after the entry's names are written, so a reader never sees a half name.
  uint64_t route_count;
  uint64_t upstream_count;
  RouteSeries routes[kMaxRouteSeries];
  UpstreamSeries upstreams[kMaxUpstreamSeries];
};

// Ties a segment to this binary's layout: a worker started from another
// build refuses a region it would misread.
constexpr uint64_t kLayoutId = (uint64_t{0x53544d01} << 32) | sizeof(Region);

// The slot of a histogram for `seconds`: the first bound not below it.
size_t latencySlot(double seconds);
// The slot of a status code in RouteSeries::codes.
size_t statusSlot(int status);

// A worker's view of its region. Until attach() succeeds it counts into
// private memory, so a worker without a region still serves.
class MetricsWriter {
 public:
  MetricsWriter();
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  // Maps region `index` of the segment `fd` (which it then closes).
  bool attach(int fd, int index, std::string& error);
  bool attached() const { return mapping_ != nullptr; }

  void exchangeStarted();
  // An exchange ended: counts it by route, upstream and status, observes its
  // duration, and counts an upstream failure when `error` is an
  // "upstream_..." reason token. Status 0 (the client left before any
  // response) counts as 499.
  void exchangeFinished(std::string_view route, std::string_view upstream, int status, double duration_ms,
                        std::string_view error);
  // The same for the series `route_series` (from routeSeriesId), without a lookup by name.
  void exchangeFinished(size_t route_series, std::string_view upstream, int status, double duration_ms,
                        std::string_view error);

  void upstreamConnected(std::string_view upstream, double seconds);
  void upstreamResponded(std::string_view upstream, double seconds);
  void upstreamConnected(size_t upstream_series, double seconds);
  void upstreamResponded(size_t upstream_series, double seconds);
  void setUpstreamIdle(std::string_view upstream, uint64_t idle);

  void connectionAccepted();
  // The open client connections speaking `protocol` (a gauge the worker sets).
  void setConnections(Protocol protocol, uint64_t open);
  // A connection ended during a drain; one handed over to the new worker ends too.
  void drainClosedConnection();
  void drainHandedOver();
  void drainCut(uint64_t connections, uint64_t requests);
  // A request refused with 429 by the global rate limit.
  void rateLimited();
  // An HTTP/2 connection closed for abuse; `kind` indexes kH2AbuseKinds.
  void h2AbuseClosed(size_t kind);
  // `state` indexes kRateLimiterStates.
  void setRateLimiterState(size_t state);

  // Names an upstream before its first use, so that its gauge shows from the start.
  void declareUpstream(std::string_view upstream) { upstreamSeriesId(upstream); }

  // The series of a route and upstream, or of an upstream, named on first
  // use: callers that count into one often keep its id rather than look
  // the names up each time. Ids taken before attach() are not valid after.
  size_t routeSeriesId(std::string_view route, std::string_view upstream);
  size_t upstreamSeriesId(std::string_view upstream);

  uint64_t inflight() const;
  const Region& region() const { return *region_; }

 private:
  Region* region_;
  std::unique_ptr<Region> private_region_;
  void* mapping_ = nullptr;
  size_t mapping_length_ = 0;
  std::unordered_map<std::string, size_t> route_index_;
  std::unordered_map<std::string, size_t> upstream_index_;
  std::string key_;  // reused to look names up without allocating
};

struct HistogramTotals {
  std::array<uint64_t, kLatencySlots> slots{};
  uint64_t sum_us = 0;

  void add(const Histogram& histogram);
  uint64_t count() const;
};

struct RouteTotals {
  std::array<uint64_t, kStatusSlots> codes{};
  HistogramTotals duration;
};

struct UpstreamTotals {
  std::array<uint64_t, kUpstreamErrorKinds.size()> errors{};
  HistogramTotals connect;
  HistogramTotals response;
  uint64_t idle = 0;
  bool live = false;  // some live worker knows this upstream (so its gauge is shown)
};

// Counters summed over regions, keyed by label values.
struct MetricsTotals {
  std::map<std::pair<std::string, std::string>, RouteTotals> routes;
  std::map<std::string, UpstreamTotals> upstreams;
  uint64_t inflight_requests = 0;
  std::array<uint64_t, kProtocolNames.size()> connections{};
  uint64_t connections_accepted = 0;
  uint64_t rate_limited = 0;
  std::array<uint64_t, kRateLimiterStates.size()> rate_limiter_states{};  // live workers in each state
  uint64_t drain_closed_connections = 0;
  uint64_t drain_handed_over_connections = 0;
  uint64_t drain_cut_connections = 0;
  uint64_t drain_cut_requests = 0;
  std::array<uint64_t, kH2AbuseKinds.size()> h2_abuse_closed{};

  // Adds a live worker's counters and gauges.
  void addLive(const Region& region);
  // Adds a finished worker's counters only, within the retired bounds.
  void fold(const Region& region);

 private:
  void add(const Region& region, bool live);
};

// What only the supervisor knows.
struct SupervisorStats {
  uint64_t rules_version = 0;
  uint64_t reloads_ok = 0;
  uint64_t reloads_failed = 0;
  uint64_t worker_restarts = 0;
  uint64_t workers = 0;  // live worker processes, draining ones included
  uint64_t rollouts_complete = 0;
  uint64_t rollouts_abandoned = 0;
  uint64_t failed_version = 0;  // the version last given up, 0 once the active one is served
  uint64_t last_rollout_us = 0;
  // Per slot: unasked worker exits in a row, and the wait before its next start.
  std::vector<uint64_t> slot_failures;
  std::vector<uint64_t> slot_backoff_us;
};

// The Prometheus text exposition (format 0.0.4) of everything.
std::string renderPrometheus(const MetricsTotals& totals, const SupervisorStats& stats);

// The supervisor's segment: a memfd of `regions` page-aligned regions that
// workers map by descriptor, and the pool of which are in use.
class MetricsSegment {
 public:
  MetricsSegment() = default;
  ~MetricsSegment();
  MetricsSegment(const MetricsSegment&) = delete;
  MetricsSegment& operator=(const MetricsSegment&) = delete;

  bool create(size_t regions, std::string& error);
  int fd() const { return fd_; }

  // A cleared region for a new worker, or -1 when every region is taken.
  int acquire();
  // The worker of `index` is gone: its counters move into `retired` and the
  // region is cleared and freed.
  void release(int index, MetricsTotals& retired);
  // Adds every region in use to `totals`.
  void addLive(MetricsTotals& totals) const;

  size_t regionCount() const { return in_use_.size(); }

 private:
  Region& region(size_t index) const;
  void clear(size_t index);

  int fd_ = -1;
  char* base_ = nullptr;
  size_t stride_ = 0;
  std::vector<bool> in_use_;
};

// The page-rounded distance between regions in a segment.
size_t regionStride();

}  // namespace strangler::metrics
