// The global rate limit end to end: 429 with Retry-After, no limit, changes
// by the CLI and by a plain SET reaching every worker within a second, Redis
// going away and coming back (failing open, failing closed), JSON-RPC
// batches counted per call, and the admitted rate per second of two
// supervisors sharing one Redis.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "shared/rate_limit_store.h"
#include "tests/integration/harness.h"

using namespace harness;

namespace {

using Clock = std::chrono::steady_clock;

// /app/ goes to the echo upstream; /rpc with count.* calls is inspected as
// JSON-RPC; anything else has no route.
const char* const kRules = R"({
  "upstreams": {"echo": "{echo}"},
  "routes": [
    {"name": "app", "match": {"path": {"prefix": "/app/"}}, "upstream": "echo"},
    {"name": "rpc", "match": {"path": "/rpc", "jsonrpc": {"method": {"prefix": "count."}}}, "upstream": "echo"}
  ]
})";

// Runs `strangler limit ARGS...` against the Redis and prefix of `proxy`.
CommandResult limitCommand(const std::string& redis_url, const Proxy& proxy,
                           std::vector<std::string> arguments) {
  arguments.insert(arguments.begin(), "limit");
  return runStrangler(arguments,
                      {{"STRANGLER_REDIS_URL", redis_url}, {"STRANGLER_REDIS_PREFIX", proxy.prefix()}});
}

// Status codes of `count` requests, each on a new connection, so that they
// spread over the workers' sockets.
std::multiset<int> statusesOnFreshConnections(const Proxy& proxy, int count,
                                              const std::string& path = "/app/x") {
  std::multiset<int> statuses;
  for (int i = 0; i < count; i++) {
    std::string bytes =
        rawExchange(proxy.port(), "GET " + path + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    std::vector<RawResponse> responses = parseResponses(bytes);
    statuses.insert(responses.empty() ? 0 : responses[0].status);
  }
  return statuses;
}

// Milliseconds until every one of 8 fresh requests answers `status`, or -1 after `limit_ms`.
long msUntilAll(const Proxy& proxy, int status, int limit_ms) {
  auto start = Clock::now();
  while (Clock::now() - start < std::chrono::milliseconds(limit_ms)) {
    std::multiset<int> statuses = statusesOnFreshConnections(proxy, 8);
    if (statuses.count(status) == statuses.size()) {
      return static_cast<long>(
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count());
    }
    sleepMs(20);
  }
  return -1;
}

// Access lines with `status`, waiting up to 3 s for `expected` of them (lines are flushed each second).
std::vector<Json::Value> accessLinesWithStatus(const Proxy& proxy, int status, size_t expected) {
  std::vector<Json::Value> found;
  auto enough = [&] {
    found.clear();
    for (const Json::Value& line : proxy.accessLog()) {
      if (line["status"].asInt() == status) found.push_back(line);
    }
    return found.size() >= expected;
  };
  waitUntil(enough, 3000, std::to_string(expected) + " access lines with status " + std::to_string(status),
            100);
  return found;
}

// The Unix second of an access line's ts ("2026-12-04T14:46:33.123Z").
int64_t unixSecond(const std::string& ts) {
  tm parts = {};
  if (!strptime(ts.c_str(), "%Y-%m-%dT%H:%M:%S", &parts)) return 0;
  return static_cast<int64_t>(timegm(&parts));
}

const char* const kStateOk = "strangler_rate_limiter_state{state=\"ok\"}";
const char* const kStateOpen = "strangler_rate_limiter_state{state=\"open\"}";
const char* const kStateClosed = "strangler_rate_limiter_state{state=\"closed\"}";

}  // namespace

TEST_CASE("limit 0 refuses every routed request with 429, Retry-After and a reason; unrouted ones get 404") {
  EchoStack stack({"echo"}, kRules, proxyOptions(2, {{"STRANGLER_RATE_LIMIT_RPS", "0"}}));

  // The supervisor wrote its default, since Redis held no limit.
  CHECK(stack.redis.cli({"GET", stack.proxy.prefix() + "limit:rps"}) == "0");

  for (int i = 0; i < 20; i++) {
    Client client;
    Response response = client.get(stack.proxy.url("/app/x"));
    REQUIRE(response.status == 429);
    REQUIRE(response.header("Retry-After"));
    CHECK(response.header("Retry-After") == "1");
    CHECK(response.json()["error"].asString().find("rate limit") != std::string::npos);
    CHECK(!response.json()["request_id"].asString().empty());
  }
  CHECK(Client().get(stack.proxy.url("/nowhere")).status == 404);

  CHECK(metric(stack.proxy.metrics(), "strangler_rate_limited_total") == 20);
  std::vector<Json::Value> refused = accessLinesWithStatus(stack.proxy, 429, 20);
  REQUIRE(refused.size() == 20);
  for (const Json::Value& line : refused) {
    CHECK(line["error"] == "rate_limited");
    CHECK(line["route"] == "app");
    CHECK(line["upstream"] == "");
  }
  CHECK(accessLinesWithStatus(stack.proxy, 404, 1).size() == 1);
}

TEST_CASE("limit -1 (off) lets everything through and never refuses") {
  EchoStack stack({"echo"}, kRules, proxyOptions(2, {{"STRANGLER_RATE_LIMIT_RPS", "-1"}}));
  CHECK(stack.redis.cli({"GET", stack.proxy.prefix() + "limit:rps"}) == "off");

  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; t++) {
    threads.emplace_back([&] {
      Client client;
      for (int i = 0; i < 200; i++) ok += client.get(stack.proxy.url("/app/x")).status == 200;
    });
  }
  for (std::thread& thread : threads) thread.join();
  CHECK(ok == 600);
  CHECK(metric(stack.proxy.metrics(), "strangler_rate_limited_total") == 0);
  CHECK(limitCommand(stack.redis.url(), stack.proxy, {"get"}).out == "off\n");
}

TEST_CASE("strangler limit set reaches every worker within a second; so does a SET with redis-cli") {
  EchoStack stack({"echo"}, kRules, proxyOptions(2, {{"STRANGLER_RATE_LIMIT_RPS", "off"}}));
  REQUIRE(msUntilAll(stack.proxy, 200, 1000) >= 0);

  CommandResult set = limitCommand(stack.redis.url(), stack.proxy, {"set", "0"});
  CHECK(set.exit_code == 0);
  CHECK(set.out == "0\n");
  long ms = msUntilAll(stack.proxy, 429, 2000);
  MESSAGE("limit set 0 applied after " << ms << " ms");
  CHECK(ms >= 0);
  CHECK(ms < 1000);
  CHECK(limitCommand(stack.redis.url(), stack.proxy, {"get"}).out == "0\n");

  // Each worker logged that it applied the change.
  std::string log = stack.proxy.processLog();
  std::set<std::string> pids;
  std::istringstream lines(log);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find("\"rate limit changed\"") == std::string::npos ||
        line.find("\"to\":\"0\"") == std::string::npos)
      continue;
    pids.insert(parseJson(line)["pid"].asString());
  }
  CHECK(pids.size() == 2);

  CHECK(limitCommand(stack.redis.url(), stack.proxy, {"set", "off"}).exit_code == 0);
  ms = msUntilAll(stack.proxy, 200, 2000);
  MESSAGE("limit set off applied after " << ms << " ms");
  CHECK(ms >= 0);
  CHECK(ms < 1000);

  // No event: the periodic re-read, once a second, finds it.
  stack.redis.cli({"SET", stack.proxy.prefix() + "limit:rps", "0"});
  ms = msUntilAll(stack.proxy, 429, 3000);
  MESSAGE("a plain SET applied after " << ms << " ms");
  CHECK(ms >= 0);
  CHECK(ms < 1000 + 300);

  CommandResult bad = limitCommand(stack.redis.url(), stack.proxy, {"set", "fast"});
  CHECK(bad.exit_code == 2);
  CHECK(bad.err.find("got 'fast'") != std::string::npos);
}

TEST_CASE("a JSON-RPC batch counts once per call") {
  EchoStack stack({"echo"}, kRules, proxyOptions(1, {{"STRANGLER_RATE_LIMIT_RPS", "20"}}));
  std::string batch = "[";
  for (int i = 0; i < 8; i++) {
    batch +=
        std::string(i ? "," : "") + R"({"jsonrpc":"2.0","method":"count.x","id":)" + std::to_string(i) + "}";
  }
  batch += "]";

  // 8 calls a batch against 20 a second: at most 2 batches in any second.
  Client client;
  auto start = Clock::now();
  int sent = 0;
  while (Clock::now() - start < std::chrono::milliseconds(3200) && sent < 5000) {
    Response response =
        client.request("POST", stack.proxy.url("/rpc"), {{"Content-Type", "application/json"}}, batch);
    REQUIRE((response.status == 200 || response.status == 429));
    sent++;
    sleepMs(5);
  }
  std::map<int64_t, int> admitted;
  for (const Json::Value& line : accessLinesWithStatus(stack.proxy, 200, 1))
    admitted[unixSecond(line["ts"].asString())]++;
  REQUIRE(!admitted.empty());
  for (const auto& [second, batches] : admitted) {
    CAPTURE(second);
    CHECK(batches <= 2);
  }
  CHECK(admitted.size() >= 2);
}

// Microseconds of Redis' clock from a TIME reply.
int64_t redisMicros(strangler::RedisConnection& redis) {
  std::string error;
  strangler::RedisReply reply = redis.command({"TIME"}, error);
  REQUIRE(reply);
  REQUIRE(reply->elements == 2);
  return atoll(reply->element[0]->str) * 1000000 + atoll(reply->element[1]->str);
}

TEST_CASE("a lease's window, as a worker places it, lies inside the true second of Redis' clock") {
  RedisServer redis;
  std::string error;
  auto connection = strangler::RedisConnection::open(redis.url(), 1000, error);
  REQUIRE(connection);

  // A worker counts the end from when it sent the lease and the start from
  // when the answer came: the TIME before and after the script stand for those.
  for (int64_t ahead_ms : {0, 400, 900}) {
    for (int i = 0; i < 40; i++) {
      int64_t sent_us = redisMicros(*connection);
      strangler::RedisReply reply =
          connection->command(strangler::leaseCommand("", "window-test:", 1, ahead_ms, 1000000, "w"), error);
      int64_t received_us = redisMicros(*connection);
      REQUIRE(reply);
      strangler::LeaseGrant grant;
      REQUIRE(strangler::parseLeaseReply(*reply, grant));

      int64_t true_start_us = grant.window * 1000000;
      int64_t true_end_us = true_start_us + 1000000;
      CHECK(grant.granted == 1);
      CHECK(grant.window >= sent_us / 1000000);
      CHECK(received_us + grant.starts_in_ms * 1000 >= true_start_us);
      CHECK(sent_us + grant.ends_in_ms * 1000 <= true_end_us);
    }
  }
}

TEST_CASE("after the script cache is flushed, a lease answered NOSCRIPT sends the script and goes on") {
  EchoStack stack({"echo"}, kRules, proxyOptions(1, {{"STRANGLER_RATE_LIMIT_RPS", "100000"}}));
  CHECK(statusesOnFreshConnections(stack.proxy, 5).count(200) == 5);
  auto evalCalls = [&] {
    std::string stats = stack.redis.cli({"INFO", "commandstats"});
    size_t at = stats.find("cmdstat_eval:calls=");
    return at == std::string::npos ? 0L : atol(stats.c_str() + at + 19);
  };
  long before = evalCalls();

  CHECK(stack.redis.cli({"SCRIPT", "FLUSH"}) == "OK");
  Client client;
  int ok = 0;
  for (int i = 0; i < 300; i++) ok += client.get(stack.proxy.url("/app/x")).status == 200;
  CHECK(ok == 300);
  CHECK(evalCalls() > before);
  CHECK(metric(stack.proxy.metrics(), kStateOk) == 1);
  CHECK_FALSE(stack.proxy.processLogHas("Redis unreachable"));
}

TEST_CASE("with Redis gone the limiter fails open by default, says so once, and recovers by itself; so does "
          "the supervisor") {
  // The supervisor reads the active version every 50 ms: 20 failed reads a second.
  EchoStack stack({"echo"}, kRules, proxyOptions(2, {{"STRANGLER_RULES_CHECK_INTERVAL", "50ms"}}));
  CHECK(stack.proxy.waitForMetric(kStateOk, 2, 3000));

  stack.redis.stop();
  CHECK(stack.proxy.waitForMetric(kStateOpen, 2, 3000));
  std::multiset<int> statuses = statusesOnFreshConnections(stack.proxy, 20);
  CHECK(statuses.count(200) == 20);
  CHECK(stack.proxy.processLogHas("rate limiter: Redis unreachable, failing open"));
  sleepMs(1000);

  stack.redis.start();
  CHECK(stack.proxy.waitForMetric(kStateOk, 2, 10000));
  CHECK(stack.proxy.processLogHas("rate limiter: Redis reachable again"));
  statuses = statusesOnFreshConnections(stack.proxy, 20);
  CHECK(statuses.count(200) == 20);
  sleepMs(1500);

  // One line per worker for each change, not one per retry; one for the
  // supervisor's connection and one for its subscription. The supervisor's
  // lines are counted by their message: a worker's line may quote the same
  // words as its error, when it saw the connection close first.
  std::string log = stack.proxy.processLog();
  CHECK(occurrences(log, "failing open") == 2);
  CHECK(occurrences(log, R"("msg":"lost the Redis connection")") == 1);
  CHECK(occurrences(log, R"("msg":"reconnected to Redis")") == 1);
  CHECK(occurrences(log, "rules events: not subscribed") == 1);
  CHECK(occurrences(log, "rules events: subscribed again") == 1);
  size_t supervisor_warnings = 0;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    supervisor_warnings += line.find(R"("level":"warn")") != std::string::npos &&
                           line.find(R"("role":"supervisor")") != std::string::npos;
  }
  CHECK(supervisor_warnings == 2);
}

TEST_CASE("failing closed: with Redis gone requests get 503 with Retry-After, until Redis is back") {
  EchoStack stack({"echo"}, kRules, proxyOptions(2, {{"STRANGLER_RATE_LIMIT_FAILURE", "closed"}}));
  CHECK(statusesOnFreshConnections(stack.proxy, 10).count(200) == 10);

  stack.redis.stop();
  CHECK(stack.proxy.waitForMetric(kStateClosed, 2, 3000));
  // Tokens leased before are still good until their second ends.
  CHECK(msUntilAll(stack.proxy, 503, 2000) >= 0);
  Response response = Client().get(stack.proxy.url("/app/x"));
  CHECK(response.status == 503);
  REQUIRE(response.header("Retry-After"));
  CHECK(response.header("Retry-After") == "1");
  CHECK(statusesOnFreshConnections(stack.proxy, 10).count(503) == 10);
  CHECK(stack.proxy.processLogHas("rate limiter: Redis unreachable, failing closed"));
  std::vector<Json::Value> unavailable = accessLinesWithStatus(stack.proxy, 503, 19);
  REQUIRE(!unavailable.empty());
  CHECK(unavailable[0]["error"] == "rate_limiter_unavailable");
  // Not counted as over the limit: nobody exceeded it.
  CHECK(metric(stack.proxy.metrics(), "strangler_rate_limited_total") == 0);

  stack.redis.start();
  CHECK(stack.proxy.waitForMetric(kStateOk, 2, 10000));
  CHECK(statusesOnFreshConnections(stack.proxy, 10).count(200) == 10);
}

TEST_CASE("two supervisors on one Redis hold 500 requests a second between 0.80 and 1.02 of the limit") {
  constexpr int kLimit = 500;
  // One prefix for both: they share the limit and its windows.
  std::string prefix = "itrate" + std::to_string(getpid()) + ":";
  std::map<std::string, std::string> env = {{"STRANGLER_RATE_LIMIT_RPS", std::to_string(kLimit)},
                                            {"STRANGLER_REDIS_PREFIX", prefix},
                                            {"STRANGLER_LOG_LEVEL", "info"}};
  EchoStack stack({"echo"}, kRules, proxyOptions(2, env));
  Proxy& first = stack.proxy;
  ProxyOptions second_options = proxyOptions(2, env);
  second_options.rules_json = stack.rules(kRules);
  Proxy second(&stack.redis, second_options);

  // Four threads, two on each proxy, each with a new connection every 100
  // requests so that every worker gets some; bounded in time and count.
  std::atomic<int> offered{0};
  auto start_wall = std::chrono::system_clock::now();
  auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++) {
    const Proxy& proxy = t % 2 ? second : first;
    threads.emplace_back([&, t] {
      std::unique_ptr<Client> client;
      for (int i = 0; i < 40000 && Clock::now() - start < std::chrono::milliseconds(3600); i++) {
        if (i % 100 == 0) client = std::make_unique<Client>();
        client->get(proxy.url("/app/" + std::to_string(t)));
        offered++;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  auto end_wall = std::chrono::system_clock::now();

  int64_t first_full =
      std::chrono::duration_cast<std::chrono::seconds>(start_wall.time_since_epoch()).count() + 1;
  int64_t end_second = std::chrono::duration_cast<std::chrono::seconds>(end_wall.time_since_epoch()).count();
  sleepMs(1500);  // access lines are flushed within a second
  std::map<int64_t, std::map<int, int>> per_second;
  for (const Proxy* proxy : {&first, &second}) {
    for (const Json::Value& line : proxy->accessLog()) {
      per_second[unixSecond(line["ts"].asString())][line["status"].asInt()]++;
    }
  }

  MESSAGE("offered " << offered.load() << " requests in about 3.6 s");
  int full_seconds = 0;
  for (int64_t second = first_full; second < end_second; second++) {
    std::map<int, int>& statuses = per_second[second];
    MESSAGE("second " << second << ": " << statuses[200] << " admitted, " << statuses[429] << " refused");
    CAPTURE(second);
    CHECK(statuses[200] >= kLimit * 0.80);
    CHECK(statuses[200] <= kLimit * 1.02);
    CHECK(statuses[429] > 0);
    int others = 0;
    for (const auto& [status, count] : statuses) others += status == 200 || status == 429 ? 0 : count;
    CHECK(others == 0);
    full_seconds++;
  }
  CHECK(full_seconds >= 2);
}
