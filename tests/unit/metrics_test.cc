// Metrics: slots, the shared segment and its regions, folding of workers gone,
// bounded tables, and the exact Prometheus text.
#include "shared/metrics.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <sstream>

using namespace strangler::metrics;

namespace {

// The value of the one sample named exactly `series` (name and labels), or "absent".
std::string sample(const std::string& text, const std::string& series) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.compare(0, series.size() + 1, series + " ") == 0) return line.substr(series.size() + 1);
  }
  return "absent";
}

size_t countLines(const std::string& text, const std::string& prefix) {
  std::istringstream lines(text);
  std::string line;
  size_t count = 0;
  while (std::getline(lines, line)) count += line.compare(0, prefix.size(), prefix) == 0;
  return count;
}

std::string render(const MetricsTotals& totals) {
  return renderPrometheus(totals, SupervisorStats{});
}

// A segment, and a writer attached to one of its regions as a worker is.
struct AttachedWriter {
  explicit AttachedWriter(MetricsSegment& segment) : index(segment.acquire()) {
    std::string error;
    REQUIRE(index >= 0);
    REQUIRE(writer.attach(dup(segment.fd()), index, error));
  }
  int index;
  MetricsWriter writer;
};

}  // namespace

TEST_CASE("a latency falls in the first bucket whose bound is not below it") {
  CHECK(latencySlot(0) == 0);
  CHECK(latencySlot(0.0001) == 0);
  CHECK(latencySlot(0.00011) == 1);
  CHECK(latencySlot(1) == 12);
  CHECK(latencySlot(30) == 16);
  CHECK(latencySlot(30.5) == kLatencyBounds.size());
}

TEST_CASE("status codes of the fixed list have their own slot, the rest share one") {
  CHECK(statusSlot(200) == 0);
  CHECK(statusSlot(505) == kStatusCodes.size() - 1);
  CHECK(statusSlot(418) == kStatusCodes.size());
  CHECK(statusSlot(0) == kStatusCodes.size());
}

TEST_CASE("requests are counted by route, upstream and code, with their durations") {
  MetricsWriter writer;
  for (int i = 0; i < 3; i++) writer.exchangeStarted();
  writer.exchangeFinished("api", "svc", 200, 0.05, "");
  writer.exchangeFinished("api", "svc", 200, 2000, "");
  writer.exchangeFinished("api", "svc", 418, 7, "");
  writer.exchangeStarted();
  MetricsTotals totals;
  totals.addLive(writer.region());
  std::string text = render(totals);

  CHECK(sample(text, R"(strangler_requests_total{route="api",upstream="svc",code="200"})") == "2");
  CHECK(sample(text, R"(strangler_requests_total{route="api",upstream="svc",code="other"})") == "1");
  CHECK(sample(text, R"(strangler_requests_total{route="api",upstream="svc",code="404"})") == "absent");
  std::string labels = R"({route="api",upstream="svc",le=")";
  CHECK(sample(text, "strangler_request_duration_seconds_bucket" + labels + "0.0001\"}") == "1");
  CHECK(sample(text, "strangler_request_duration_seconds_bucket" + labels + "0.005\"}") == "1");
  CHECK(sample(text, "strangler_request_duration_seconds_bucket" + labels + "0.01\"}") == "2");
  CHECK(sample(text, "strangler_request_duration_seconds_bucket" + labels + "2.5\"}") == "3");
  CHECK(sample(text, "strangler_request_duration_seconds_bucket" + labels + "+Inf\"}") == "3");
  CHECK(sample(text, R"(strangler_request_duration_seconds_count{route="api",upstream="svc"})") == "3");
  CHECK(sample(text, R"(strangler_request_duration_seconds_sum{route="api",upstream="svc"})") == "2.007050");
  CHECK(sample(text, "strangler_inflight_requests") == "1");
}

TEST_CASE("a client that leaves before any response counts as 499; upstream failures by kind") {
  MetricsWriter writer;
  writer.exchangeFinished("r", "u", 0, 1, "client_aborted");
  writer.exchangeFinished("r", "u", 502, 1, "upstream_connect_refused");
  writer.exchangeFinished("r", "u", 504, 1, "upstream_response_timeout");
  writer.exchangeFinished("r", "u", 504, 1, "upstream_response_timeout");
  writer.exchangeFinished("", "", 404, 1, "no_route");
  MetricsTotals totals;
  totals.addLive(writer.region());
  std::string text = render(totals);

  CHECK(sample(text, R"(strangler_requests_total{route="r",upstream="u",code="499"})") == "1");
  CHECK(sample(text, R"(strangler_requests_total{route="",upstream="",code="404"})") == "1");
  CHECK(sample(text, R"(strangler_upstream_errors_total{upstream="u",kind="connect_refused"})") == "1");
  CHECK(sample(text, R"(strangler_upstream_errors_total{upstream="u",kind="response_timeout"})") == "2");
  CHECK(countLines(text, "strangler_upstream_errors_total{") == 2);
}

TEST_CASE("connections, drains and upstream gauges") {
  MetricsWriter writer;
  for (int i = 0; i < 3; i++) writer.connectionAccepted();
  writer.setConnections(Protocol::http1, 1);
  writer.setConnections(Protocol::h2, 2);
  writer.drainClosedConnection();
  writer.drainClosedConnection();
  writer.drainHandedOver();
  writer.drainCut(4, 2);
  writer.declareUpstream("quiet");
  writer.setUpstreamIdle("busy", 7);
  writer.upstreamConnected("busy", 0.0004);
  writer.upstreamResponded("busy", 0.2);
  MetricsTotals totals;
  totals.addLive(writer.region());
  std::string text = render(totals);

  CHECK(sample(text, R"(strangler_connections{protocol="http1"})") == "1");
  CHECK(sample(text, R"(strangler_connections{protocol="h2"})") == "2");
  CHECK(sample(text, "strangler_connections_accepted_total") == "3");
  CHECK(sample(text, "strangler_drain_closed_connections_total") == "2");
  CHECK(sample(text, "strangler_drain_handed_over_connections_total") == "1");
  CHECK(sample(text, "strangler_drain_cut_connections_total") == "4");
  CHECK(sample(text, "strangler_drain_cut_requests_total") == "2");
  CHECK(sample(text, R"(strangler_upstream_idle_connections{upstream="busy"})") == "7");
  CHECK(sample(text, R"(strangler_upstream_idle_connections{upstream="quiet"})") == "0");
  CHECK(sample(text, R"(strangler_upstream_connect_duration_seconds_bucket{upstream="busy",le="0.0005"})") ==
        "1");
  CHECK(sample(text, R"(strangler_upstream_connect_duration_seconds_bucket{upstream="busy",le="0.00025"})") ==
        "0");
  CHECK(sample(text, R"(strangler_upstream_response_duration_seconds_count{upstream="busy"})") == "1");
  CHECK(countLines(text, "strangler_upstream_connect_duration_seconds_count{") == 1);
}

TEST_CASE("every family has HELP and TYPE, even without samples") {
  std::string text = render(MetricsTotals{});
  for (const char* name :
       {"strangler_requests_total", "strangler_request_duration_seconds", "strangler_inflight_requests",
        "strangler_rules_version", "strangler_reloads_total", "strangler_rate_limited_total",
        "strangler_upstream_errors_total", "strangler_drain_cut_connections_total",
        "strangler_worker_restarts_total", "strangler_h2_abusive_connections_total"}) {
    CHECK_MESSAGE(countLines(text, std::string("# HELP ") + name + " ") == 1, name);
    CHECK_MESSAGE(countLines(text, std::string("# TYPE ") + name + " ") == 1, name);
  }
  CHECK(sample(text, R"(strangler_reloads_total{result="failed"})") == "0");
  CHECK(text.back() == '\n');
}

TEST_CASE("label values are escaped and long names cut at a UTF-8 boundary") {
  MetricsWriter writer;
  writer.exchangeFinished("a\"b\\c\nd", "u", 200, 1, "");
  std::string long_name(62, 'x');
  long_name += "\xc3\xa9tail";  // the two-byte letter would straddle the 63-byte cut
  writer.exchangeFinished(long_name, "u", 200, 1, "");
  MetricsTotals totals;
  totals.addLive(writer.region());
  std::string text = render(totals);

  CHECK(sample(text, R"(strangler_requests_total{route="a\"b\\c\nd",upstream="u",code="200"})") == "1");
  CHECK(sample(text, "strangler_requests_total{route=\"" + std::string(62, 'x') +
                         "\",upstream=\"u\",code=\"200\"}") == "1");
}

TEST_CASE("counting by series id gives the very text counting by name does") {
  MetricsWriter by_name;
  MetricsWriter by_id;
  by_name.declareUpstream("u");
  by_id.declareUpstream("u");
  size_t odd_route = by_id.routeSeriesId("a\"b\\c\nd", "u");
  // As the worker names a route the proxy answers itself: no upstream, an empty view without data.
  size_t answered = by_id.routeSeriesId("a\"b\\c\nd", std::string_view());
  size_t upstream = by_id.upstreamSeriesId("u");
  for (int i = 0; i < 3; i++) {
    by_name.exchangeFinished("a\"b\\c\nd", "u", 200, 3, "");
    by_id.exchangeFinished(odd_route, "u", 200, 3, "");
    by_name.upstreamResponded("u", 0.002);
    by_id.upstreamResponded(upstream, 0.002);
    by_name.upstreamConnected("u", 0.0003);
    by_id.upstreamConnected(upstream, 0.0003);
  }
  by_name.exchangeFinished("a\"b\\c\nd", "u", 502, 1, "upstream_reset");
  by_id.exchangeFinished(odd_route, "u", 502, 1, "upstream_reset");
  by_name.exchangeFinished("a\"b\\c\nd", "", 429, 1, "rate_limited");
  by_id.exchangeFinished(answered, "", 429, 1, "rate_limited");
  // Named but not counted into: no sample, as with a name never used.
  by_id.routeSeriesId("quiet", "u");

  MetricsTotals name_totals;
  name_totals.addLive(by_name.region());
  MetricsTotals id_totals;
  id_totals.addLive(by_id.region());
  std::string text = render(id_totals);
  CHECK(text == render(name_totals));
  CHECK(sample(text, R"(strangler_requests_total{route="a\"b\\c\nd",upstream="u",code="200"})") == "3");
  CHECK(sample(text, R"(strangler_upstream_errors_total{upstream="u",kind="reset"})") == "1");
  CHECK(text.find("quiet") == std::string::npos);
}

TEST_CASE("past the table's capacity, new names share the overflow series; no request is lost") {
  MetricsWriter writer;
  for (size_t i = 0; i < kMaxRouteSeries + 100; i++)
    writer.exchangeFinished("r" + std::to_string(i), "u", 200, 1, "");
  writer.exchangeFinished("r0", "u", 200, 1, "");
  MetricsTotals totals;
  totals.addLive(writer.region());
  CHECK(totals.routes.size() == kMaxRouteSeries);
  uint64_t total = 0;
  for (const auto& [key, route] : totals.routes) total += route.codes[statusSlot(200)];
  CHECK(total == kMaxRouteSeries + 101);
  CHECK(totals.routes[{"r0", "u"}].codes[statusSlot(200)] == 2);
  CHECK(totals.routes[{kOverflowName, kOverflowName}].codes[statusSlot(200)] == 101);
}

TEST_CASE("a worker's region lives in the segment; on release its counters fold into the retired totals") {
  MetricsSegment segment;
  std::string error;
  REQUIRE(segment.create(2, error));
  MetricsTotals retired;
  {
    AttachedWriter first(segment);
    AttachedWriter second(segment);
    CHECK(segment.acquire() == -1);  // the pool is fixed
    for (int i = 0; i < 5; i++) first.writer.exchangeFinished("r", "u", 200, 1, "");
    for (int i = 0; i < 3; i++) second.writer.exchangeFinished("r", "u", 200, 1, "");
    first.writer.setConnections(Protocol::http1, 1);
    second.writer.exchangeStarted();

    MetricsTotals live;
    segment.addLive(live);
    CHECK(live.routes[{"r", "u"}].codes[0] == 8);
    CHECK(live.connections[0] == 1);
    CHECK(live.inflight_requests == 1);

    // The first worker goes: totals are unchanged, its gauges are gone.
    segment.release(first.index, retired);
    MetricsTotals after = retired;
    segment.addLive(after);
    CHECK(after.routes[{"r", "u"}].codes[0] == 8);
    CHECK(after.connections[0] == 0);
    CHECK(after.inflight_requests == 1);
  }

  // The freed region comes back cleared to the next worker.
  AttachedWriter replacement(segment);
  CHECK(replacement.writer.region().route_count == 0);
  replacement.writer.exchangeFinished("r", "u", 200, 1, "");
  MetricsTotals totals = retired;
  segment.addLive(totals);
  CHECK(totals.routes[{"r", "u"}].codes[0] == 9);
}

TEST_CASE("a region of another layout is refused") {
  MetricsSegment segment;
  std::string error;
  REQUIRE(segment.create(1, error));
  int index = segment.acquire();
  MetricsWriter probe;
  REQUIRE(probe.attach(dup(segment.fd()), index, error));
  const_cast<Region&>(probe.region()).layout = 42;

  MetricsWriter writer;
  CHECK_FALSE(writer.attach(dup(segment.fd()), index, error));
  CHECK(error.find("another layout") != std::string::npos);
  CHECK_FALSE(writer.attach(dup(segment.fd()), 5, error));
  // The writer still counts, privately.
  writer.exchangeFinished("r", "u", 200, 1, "");
  CHECK(writer.region().routes[0].codes[0] == 1);
}
