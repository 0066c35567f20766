// Metrics: shared memory layout, the worker's writer, aggregation, rendering.
#include "shared/metrics.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace strangler::metrics {
namespace {

static_assert(sizeof(Region) % alignof(uint64_t) == 0, "regions hold naturally aligned counters");

uint64_t load(const uint64_t& value) {
  return __atomic_load_n(&value, __ATOMIC_RELAXED);
}
void store(uint64_t& target, uint64_t value) {
  __atomic_store_n(&target, value, __ATOMIC_RELAXED);
}

// Only the owning process writes a counter, so a load and a store suffice:
// no locked read-modify-write on the request path.
void bump(uint64_t& counter, uint64_t by = 1) {
  store(counter, load(counter) + by);
}
void drop(uint64_t& gauge) {
  uint64_t value = load(gauge);
  if (value > 0) store(gauge, value - 1);
}

void observe(Histogram& histogram, double seconds) {
  if (!(seconds >= 0)) seconds = 0;
  bump(histogram.slots[latencySlot(seconds)]);
  bump(histogram.sum_us, static_cast<uint64_t>(std::llround(seconds * 1e6)));
}

// Copies `name` cut to fit, never in the middle of a UTF-8 sequence, since
// Prometheus label values must be valid UTF-8.
void copyName(char (&target)[kNameBytes], std::string_view name) {
  size_t length = std::min(name.size(), kNameBytes - 1);
  if (length < name.size()) {
    while (length > 0 && (static_cast<unsigned char>(name[length]) & 0xC0) == 0x80) length--;
  }
  // An empty view may have no data at all (a route without an upstream).
  if (length > 0) memcpy(target, name.data(), length);
  target[length] = '\0';
}

std::string nameOf(const char (&name)[kNameBytes]) {
  return std::string(name, strnlen(name, kNameBytes));
}

uint64_t publishedCount(const uint64_t& count, size_t limit) {
  return std::min<uint64_t>(__atomic_load_n(&count, __ATOMIC_ACQUIRE), limit);
}

void publishCount(uint64_t& count, uint64_t value) {
  __atomic_store_n(&count, value, __ATOMIC_RELEASE);
}

// Picks the next free entry of a table, or its last (overflow) entry when
// full; `fresh` when the entry still has to be named.
size_t claimEntry(uint64_t used, size_t capacity, bool& fresh) {
  fresh = used < capacity;
  return used < capacity - 1 ? used : capacity - 1;
}

}  // namespace

size_t latencySlot(double seconds) {
  for (size_t i = 0; i < kLatencyBounds.size(); i++) {
    if (seconds <= kLatencyBounds[i]) return i;
  }
  return kLatencyBounds.size();
}

size_t statusSlot(int status) {
  for (size_t i = 0; i < kStatusCodes.size(); i++) {
    if (kStatusCodes[i] == status) return i;
  }
  return kStatusCodes.size();
}

size_t regionStride() {
  long page = sysconf(_SC_PAGESIZE);
  size_t page_size = page > 0 ? static_cast<size_t>(page) : 4096;
  return (sizeof(Region) + page_size - 1) / page_size * page_size;
}

MetricsWriter::MetricsWriter() : private_region_(std::make_unique<Region>()) {
  region_ = private_region_.get();
  region_->layout = kLayoutId;
}

MetricsWriter::~MetricsWriter() {
  if (mapping_) munmap(mapping_, mapping_length_);
}

bool MetricsWriter::attach(int fd, int index, std::string& error) {
  size_t stride = regionStride();
  off_t offset = static_cast<off_t>(stride) * index;
  struct stat info = {};
  if (index < 0 || fstat(fd, &info) != 0 || info.st_size < offset + static_cast<off_t>(stride)) {
    error = "metrics region " + std::to_string(index) + " is not in the segment passed";
    close(fd);
    return false;
  }
  void* mapping = mmap(nullptr, stride, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
  int mmap_errno = errno;
  close(fd);
  if (mapping == MAP_FAILED) {
    error = std::string("mmap of the metrics segment failed: ") + strerror(mmap_errno);
    return false;
  }
  auto* region = static_cast<Region*>(mapping);
  if (region->layout != kLayoutId) {
    munmap(mapping, stride);
    error = "the metrics segment has another layout (a supervisor from another build?)";
    return false;
  }
  mapping_ = mapping;
  mapping_length_ = stride;
  region_ = region;
  private_region_.reset();
  route_index_.clear();
  upstream_index_.clear();
  return true;
}

size_t MetricsWriter::routeSeriesId(std::string_view route, std::string_view upstream) {
  key_.assign(route);
  key_.push_back('\0');
  key_.append(upstream);
  auto found = route_index_.find(key_);
  if (found != route_index_.end()) return found->second;

  bool fresh = false;
  size_t index = claimEntry(region_->route_count, kMaxRouteSeries, fresh);
  RouteSeries& series = region_->routes[index];
  if (fresh) {
    bool overflow = index == kMaxRouteSeries - 1;
    copyName(series.route, overflow ? kOverflowName : route);
    copyName(series.upstream, overflow ? kOverflowName : upstream);
    publishCount(region_->route_count, index + 1);
  }
  route_index_.emplace(key_, index);
  return index;
}

size_t MetricsWriter::upstreamSeriesId(std::string_view upstream) {
  key_.assign(upstream);
  auto found = upstream_index_.find(key_);
  if (found != upstream_index_.end()) return found->second;

  bool fresh = false;
  size_t index = claimEntry(region_->upstream_count, kMaxUpstreamSeries, fresh);
  UpstreamSeries& series = region_->upstreams[index];
  if (fresh) {
    copyName(series.name, index == kMaxUpstreamSeries - 1 ? kOverflowName : upstream);
    publishCount(region_->upstream_count, index + 1);
  }
  upstream_index_.emplace(key_, index);
  return index;
}

void MetricsWriter::exchangeStarted() {
  bump(region_->inflight_requests);
}

void MetricsWriter::exchangeFinished(std::string_view route, std::string_view upstream, int status,
                                     double duration_ms, std::string_view error) {
  exchangeFinished(routeSeriesId(route, upstream), upstream, status, duration_ms, error);
}

void MetricsWriter::exchangeFinished(size_t route_series, std::string_view upstream, int status,
                                     double duration_ms, std::string_view error) {
  drop(region_->inflight_requests);
  RouteSeries& series = region_->routes[route_series];
  bump(series.codes[statusSlot(status == 0 ? 499 : status)]);
  observe(series.duration, duration_ms / 1000.0);

  constexpr std::string_view prefix = "upstream_";
  if (upstream.empty() || error.substr(0, prefix.size()) != prefix) return;
  std::string_view kind = error.substr(prefix.size());
  for (size_t i = 0; i < kUpstreamErrorKinds.size(); i++) {
    if (kind == kUpstreamErrorKinds[i]) bump(region_->upstreams[upstreamSeriesId(upstream)].errors[i]);
  }
}

void MetricsWriter::upstreamConnected(std::string_view upstream, double seconds) {
  upstreamConnected(upstreamSeriesId(upstream), seconds);
}

void MetricsWriter::upstreamResponded(std::string_view upstream, double seconds) {
  upstreamResponded(upstreamSeriesId(upstream), seconds);
}

void MetricsWriter::upstreamConnected(size_t upstream_series, double seconds) {
  observe(region_->upstreams[upstream_series].connect, seconds);
}

void MetricsWriter::upstreamResponded(size_t upstream_series, double seconds) {
  observe(region_->upstreams[upstream_series].response, seconds);
}

void MetricsWriter::setUpstreamIdle(std::string_view upstream, uint64_t idle) {
  store(region_->upstreams[upstreamSeriesId(upstream)].idle, idle);
}

void MetricsWriter::connectionAccepted() { bump(region_->connections_accepted); }

void MetricsWriter::setConnections(Protocol protocol, uint64_t open) {
  store(region_->connections[static_cast<size_t>(protocol)], open);
}

void MetricsWriter::drainClosedConnection() { bump(region_->drain_closed_connections); }

void MetricsWriter::drainHandedOver() { bump(region_->drain_handed_over_connections); }

void MetricsWriter::drainCut(uint64_t connections, uint64_t requests) {
  bump(region_->drain_cut_connections, connections);
  bump(region_->drain_cut_requests, requests);
}

void MetricsWriter::rateLimited() {
  bump(region_->rate_limited);
}

void MetricsWriter::h2AbuseClosed(size_t kind) {
  if (kind < kH2AbuseKinds.size()) bump(region_->h2_abuse_closed[kind]);
}

void MetricsWriter::setRateLimiterState(size_t state) {
  store(region_->rate_limiter_state, state + 1);
}

uint64_t MetricsWriter::inflight() const {
  return load(region_->inflight_requests);
}

void HistogramTotals::add(const Histogram& histogram) {
  for (size_t i = 0; i < kLatencySlots; i++) slots[i] += load(histogram.slots[i]);
  sum_us += load(histogram.sum_us);
}

uint64_t HistogramTotals::count() const {
  uint64_t total = 0;
  for (uint64_t slot : slots) total += slot;
  return total;
}

void MetricsTotals::addLive(const Region& region) {
  add(region, true);
}
void MetricsTotals::fold(const Region& region) {
  add(region, false);
}

void MetricsTotals::add(const Region& region, bool live) {
  uint64_t route_count = publishedCount(region.route_count, kMaxRouteSeries);
  for (size_t i = 0; i < route_count; i++) {
    const RouteSeries& series = region.routes[i];
    std::pair<std::string, std::string> key(nameOf(series.route), nameOf(series.upstream));
    if (!live && routes.size() >= kMaxRetiredRouteSeries && !routes.count(key))
      key = {kOverflowName, kOverflowName};
    RouteTotals& totals = routes[key];
    for (size_t code = 0; code < kStatusSlots; code++) totals.codes[code] += load(series.codes[code]);
    totals.duration.add(series.duration);
  }

  uint64_t upstream_count = publishedCount(region.upstream_count, kMaxUpstreamSeries);
  for (size_t i = 0; i < upstream_count; i++) {
    const UpstreamSeries& series = region.upstreams[i];
    std::string name = nameOf(series.name);
    if (!live && upstreams.size() >= kMaxRetiredUpstreamSeries && !upstreams.count(name))
      name = kOverflowName;
    UpstreamTotals& totals = upstreams[name];
    for (size_t kind = 0; kind < kUpstreamErrorKinds.size(); kind++)
      totals.errors[kind] += load(series.errors[kind]);
    totals.connect.add(series.connect);
    totals.response.add(series.response);
    if (live) {
      totals.idle += load(series.idle);
      totals.live = true;
    }
  }

  for (size_t p = 0; p < kProtocolNames.size(); p++) {
    if (live) connections[p] += load(region.connections[p]);
  }
  connections_accepted += load(region.connections_accepted);
  if (live) inflight_requests += load(region.inflight_requests);
  rate_limited += load(region.rate_limited);
  uint64_t limiter_state = load(region.rate_limiter_state);
  if (live && limiter_state >= 1 && limiter_state <= kRateLimiterStates.size()) {
    rate_limiter_states[limiter_state - 1]++;
  }
  drain_closed_connections += load(region.drain_closed_connections);
  drain_handed_over_connections += load(region.drain_handed_over_connections);
  drain_cut_connections += load(region.drain_cut_connections);
  drain_cut_requests += load(region.drain_cut_requests);
  for (size_t k = 0; k < kH2AbuseKinds.size(); k++) h2_abuse_closed[k] += load(region.h2_abuse_closed[k]);
}

namespace {

// Builds the exposition text: families with HELP and TYPE, then samples.
class Exposition {
 public:
  void family(const char* name, const char* type, const char* help) {
    text_ += "# HELP ";
    text_ += name;
    text_ += ' ';
    text_ += help;
    text_ += "\n# TYPE ";
    text_ += name;
    text_ += ' ';
    text_ += type;
    text_ += '\n';
  }

  void sample(const std::string& name, const std::string& labels, uint64_t value) {
    line(name, labels);
    text_ += std::to_string(value);
    text_ += '\n';
  }

  void sampleSeconds(const std::string& name, const std::string& labels, uint64_t microseconds) {
    char number[32];
    snprintf(number, sizeof number, "%.6f", static_cast<double>(microseconds) / 1e6);
    line(name, labels);
    text_ += number;
    text_ += '\n';
  }

  void histogram(const std::string& name, const std::string& labels, const HistogramTotals& totals) {
    uint64_t cumulative = 0;
    std::string prefix = labels.empty() ? "" : labels + ",";
    for (size_t i = 0; i < kLatencySlots; i++) {
      cumulative += totals.slots[i];
      char bound[32] = "+Inf";
      if (i < kLatencyBounds.size()) snprintf(bound, sizeof bound, "%g", kLatencyBounds[i]);
      sample(name + "_bucket", prefix + "le=\"" + bound + "\"", cumulative);
    }
    sampleSeconds(name + "_sum", labels, totals.sum_us);
    sample(name + "_count", labels, cumulative);
  }

  std::string take() { return std::move(text_); }

 private:
  void line(const std::string& name, const std::string& labels) {
    text_ += name;
    if (!labels.empty()) {
      text_ += '{';
      text_ += labels;
      text_ += '}';
    }
    text_ += ' ';
  }

  std::string text_;
};

// `name="value"` with the value escaped as the text format requires.
std::string label(const char* name, std::string_view value) {
  std::string text = name;
  text += "=\"";
  for (char c : value) {
    if (c == '\\')
      text += "\\\\";
    else if (c == '"')
      text += "\\\"";
    else if (c == '\n')
      text += "\\n";
    else
      text += c;
  }
  text += '"';
  return text;
}

std::string routeLabels(const std::pair<std::string, std::string>& key) {
  return label("route", key.first) + "," + label("upstream", key.second);
}

std::string codeName(size_t slot) {
  return slot < kStatusCodes.size() ? std::to_string(kStatusCodes[slot]) : "other";
}

void renderRequests(Exposition& out, const MetricsTotals& totals) {
  out.family(
      "strangler_requests_total", "counter",
      "Requests answered, by route, upstream and status code (499: the client left before any response).");
  for (const auto& [key, route] : totals.routes) {
    for (size_t slot = 0; slot < kStatusSlots; slot++) {
      if (route.codes[slot] == 0) continue;
      out.sample("strangler_requests_total", routeLabels(key) + "," + label("code", codeName(slot)),
                 route.codes[slot]);
    }
  }
  out.family("strangler_request_duration_seconds", "histogram",
             "Time from a parsed request head to the end of its exchange.");
  for (const auto& [key, route] : totals.routes) {
    if (route.duration.count() > 0)
      out.histogram("strangler_request_duration_seconds", routeLabels(key), route.duration);
  }
  out.family("strangler_inflight_requests", "gauge", "Requests being served now.");
  out.sample("strangler_inflight_requests", "", totals.inflight_requests);
}

void renderConnections(Exposition& out, const MetricsTotals& totals) {
  out.family("strangler_connections", "gauge", "Open client connections, by protocol.");
  for (size_t p = 0; p < kProtocolNames.size(); p++) {
    out.sample("strangler_connections", label("protocol", kProtocolNames[p]), totals.connections[p]);
  }
  out.family("strangler_connections_accepted_total", "counter", "Client connections accepted.");
  out.sample("strangler_connections_accepted_total", "", totals.connections_accepted);
}

void renderUpstreams(Exposition& out, const MetricsTotals& totals) {
  out.family("strangler_upstream_errors_total", "counter",
             "Exchanges ended by an upstream failure, by upstream and kind.");
  for (const auto& [name, upstream] : totals.upstreams) {
    for (size_t kind = 0; kind < kUpstreamErrorKinds.size(); kind++) {
      if (upstream.errors[kind] == 0) continue;
      out.sample("strangler_upstream_errors_total",
                 label("upstream", name) + "," + label("kind", kUpstreamErrorKinds[kind]),
                 upstream.errors[kind]);
    }
  }
  out.family("strangler_upstream_connect_duration_seconds", "histogram",
             "Time to establish a TCP connection to an upstream endpoint.");
  for (const auto& [name, upstream] : totals.upstreams) {
    if (upstream.connect.count() > 0) {
      out.histogram("strangler_upstream_connect_duration_seconds", label("upstream", name), upstream.connect);
    }
  }
  out.family("strangler_upstream_response_duration_seconds", "histogram",
             "Time from sending a request upstream to its parsed response headers.");
  for (const auto& [name, upstream] : totals.upstreams) {
    if (upstream.response.count() > 0) {
      out.histogram("strangler_upstream_response_duration_seconds", label("upstream", name),
                    upstream.response);
    }
  }
  out.family("strangler_upstream_idle_connections", "gauge",
             "Idle keep-alive connections pooled, by upstream (sampled every second).");
  for (const auto& [name, upstream] : totals.upstreams) {
    if (upstream.live)
      out.sample("strangler_upstream_idle_connections", label("upstream", name), upstream.idle);
  }
}

void renderWorkerCounters(Exposition& out, const MetricsTotals& totals) {
  out.family("strangler_rate_limited_total", "counter",
             "Requests refused with 429 by the global rate limit.");
  out.sample("strangler_rate_limited_total", "", totals.rate_limited);
  out.family("strangler_rate_limiter_state", "gauge",
             "Live workers by the state of their rate limiter: ok (leasing from Redis), open or "
             "closed (Redis unreachable, failing open or closed).");
  for (size_t s = 0; s < kRateLimiterStates.size(); s++) {
    out.sample("strangler_rate_limiter_state", label("state", kRateLimiterStates[s]),
               totals.rate_limiter_states[s]);
  }
  out.family("strangler_drain_closed_connections_total", "counter",
             "Client connections that ended while their worker was draining (handed over ones included).");
  out.sample("strangler_drain_closed_connections_total", "", totals.drain_closed_connections);
  out.family("strangler_drain_handed_over_connections_total", "counter",
             "Idle client connections a draining worker passed on to its slot's new worker.");
  out.sample("strangler_drain_handed_over_connections_total", "", totals.drain_handed_over_connections);
  out.family("strangler_drain_cut_connections_total", "counter",
             "Client connections still open when a drain timed out, and so cut.");
  out.sample("strangler_drain_cut_connections_total", "", totals.drain_cut_connections);
  out.family("strangler_drain_cut_requests_total", "counter",
             "Requests still in flight when a drain timed out, and so cut.");
  out.sample("strangler_drain_cut_requests_total", "", totals.drain_cut_requests);
  out.family("strangler_h2_abusive_connections_total", "counter",
             "HTTP/2 connections closed with GOAWAY ENHANCE_YOUR_CALM, by reason: rapid_reset (too many "
             "streams cancelled), header_flood (a header block too long), control_flood (too many "
             "PING, SETTINGS, PRIORITY or empty DATA frames).");
  for (size_t k = 0; k < kH2AbuseKinds.size(); k++) {
    out.sample("strangler_h2_abusive_connections_total", label("reason", kH2AbuseKinds[k]), totals.h2_abuse_closed[k]);
  }
}

void renderSupervisor(Exposition& out, const SupervisorStats& stats) {
  out.family("strangler_rules_version", "gauge",
             "The ruleset version served (during a rollout, the old one until the new generation is ready).");
  out.sample("strangler_rules_version", "", stats.rules_version);
  out.family("strangler_rules_version_failed", "gauge",
             "The active version its new workers could not load, so never switched to; 0 when none.");
  out.sample("strangler_rules_version_failed", "", stats.failed_version);
  out.family("strangler_rollouts_total", "counter",
             "Rollouts by result: complete (old workers told to drain) or abandoned (the new version failed "
             "to load; the old workers stay).");
  out.sample("strangler_rollouts_total", label("result", "complete"), stats.rollouts_complete);
  out.sample("strangler_rollouts_total", label("result", "abandoned"), stats.rollouts_abandoned);
  out.family("strangler_last_rollout_duration_seconds", "gauge",
             "From the SIGHUP or the change seen in Redis to the last old worker told to drain.");
  out.sampleSeconds("strangler_last_rollout_duration_seconds", "", stats.last_rollout_us);
  out.family("strangler_reloads_total", "counter",
             "Reloads (SIGHUP, or a new active version seen in Redis), by result.");
  out.sample("strangler_reloads_total", label("result", "ok"), stats.reloads_ok);
  out.sample("strangler_reloads_total", label("result", "failed"), stats.reloads_failed);
  out.family("strangler_worker_restarts_total", "counter", "Workers replaced after exiting unasked.");
  out.sample("strangler_worker_restarts_total", "", stats.worker_restarts);
  out.family("strangler_workers", "gauge", "Live worker processes, draining ones included.");
  out.sample("strangler_workers", "", stats.workers);
  out.family("strangler_worker_consecutive_failures", "gauge",
             "Per slot: its workers' unasked exits in a row (a crash loop); 0 once one stays up.");
  for (size_t slot = 0; slot < stats.slot_failures.size(); slot++) {
    out.sample("strangler_worker_consecutive_failures", label("slot", std::to_string(slot)),
               stats.slot_failures[slot]);
  }
  out.family("strangler_worker_restart_backoff_seconds", "gauge",
             "Per slot: time left before its dead worker is started again; 0 when none is waiting.");
  for (size_t slot = 0; slot < stats.slot_backoff_us.size(); slot++) {
    out.sampleSeconds("strangler_worker_restart_backoff_seconds", label("slot", std::to_string(slot)),
                      stats.slot_backoff_us[slot]);
  }
}

}  // namespace

std::string renderPrometheus(const MetricsTotals& totals, const SupervisorStats& stats) {
  Exposition out;
  renderRequests(out, totals);
  renderConnections(out, totals);
  renderUpstreams(out, totals);
  renderWorkerCounters(out, totals);
  renderSupervisor(out, stats);
  return out.take();
}

MetricsSegment::~MetricsSegment() {
  if (base_) munmap(base_, stride_ * in_use_.size());
  if (fd_ >= 0) close(fd_);
}

bool MetricsSegment::create(size_t regions, std::string& error) {
  stride_ = regionStride();
  fd_ = memfd_create("strangler-metrics", MFD_CLOEXEC);
  if (fd_ < 0) {
    error = std::string("memfd_create for metrics failed: ") + strerror(errno);
    return false;
  }
  // Pages are allocated on first touch, so unused regions cost no memory.
  size_t length = stride_ * regions;
  if (ftruncate(fd_, static_cast<off_t>(length)) != 0) {
    error = std::string("sizing the metrics segment failed: ") + strerror(errno);
    return false;
  }
  void* mapping = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (mapping == MAP_FAILED) {
    error = std::string("mmap of the metrics segment failed: ") + strerror(errno);
    return false;
  }
  base_ = static_cast<char*>(mapping);
  in_use_.assign(regions, false);
  return true;
}

Region& MetricsSegment::region(size_t index) const {
  return *reinterpret_cast<Region*>(base_ + stride_ * index);
}

int MetricsSegment::acquire() {
  for (size_t i = 0; i < in_use_.size(); i++) {
    if (in_use_[i]) continue;
    in_use_[i] = true;
    region(i).layout = kLayoutId;
    return static_cast<int>(i);
  }
  return -1;
}

void MetricsSegment::release(int index, MetricsTotals& retired) {
  if (index < 0 || static_cast<size_t>(index) >= in_use_.size() || !in_use_[static_cast<size_t>(index)])
    return;
  retired.fold(region(static_cast<size_t>(index)));
  clear(static_cast<size_t>(index));
  in_use_[static_cast<size_t>(index)] = false;
}

void MetricsSegment::clear(size_t index) {
  // Punching a hole gives the pages back and reads as zeros from then on.
  off_t offset = static_cast<off_t>(stride_ * index);
  if (fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, static_cast<off_t>(stride_)) != 0) {
    memset(&region(index), 0, sizeof(Region));
  }
}

void MetricsSegment::addLive(MetricsTotals& totals) const {
  for (size_t i = 0; i < in_use_.size(); i++) {
    if (in_use_[i]) totals.addLive(region(i));
  }
}

}  // namespace strangler::metrics
