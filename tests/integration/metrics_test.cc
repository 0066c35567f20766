// Observability end to end: exact /metrics counters across worker deaths,
// rollouts and drains, the text checked by promtool, the access log's
// termination tokens, and whole access lines under load from many workers.
#include <arpa/inet.h>
#include <curl/curl.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "tests/integration/harness.h"

using namespace harness;

namespace {

const char* const kRules = R"({
  "upstreams": {
    "monolith": "{monolith}",
    "new-service": {"endpoints": ["{new-service}"], "timeout_ms": 300},
    "dead": "http://127.0.0.1:{dead_port}",
    "broken": "http://127.0.0.1:{broken_port}"
  },
  "routes": [
    {"name": "api", "priority": 10, "match": {"path": {"prefix": "{api_prefix}"}}, "upstream": "new-service"},
    {"name": "new", "priority": 10, "match": {"path": {"prefix": "/new/"}}, "upstream": "new-service",
     "rewrite": {"strip_prefix": "/new"}},
    {"name": "dead-end", "priority": 10, "match": {"path": "/dead"}, "upstream": "dead"},
    {"name": "cut-body", "priority": 10, "match": {"path": "/cut-body"}, "upstream": "broken"},
    {"name": "retired", "priority": 10, "match": {"path": "/retired"},
     "respond": {"status": 410, "body": "gone"}},
    {"name": "legacy", "priority": -100, "match": {"path": {"prefix": "/legacy/"}}, "upstream": "monolith",
     "rewrite": {"strip_prefix": "/legacy"}}
  ]
})";

// An upstream that starts a response of 100000 bytes, sends 1000 of them and
// resets the connection: a failure in the middle of a body.
class BrokenUpstream {
 public:
  BrokenUpstream() {
    fd_ = listenOnLoopback(16, port_);
    thread_ = std::thread([this] { serve(); });
  }
  ~BrokenUpstream() {
    running_ = false;
    thread_.join();
    close(fd_);
  }
  int port() const { return port_; }

 private:
  void serve() {
    for (int served = 0; served < 100 && running_;) {
      pollfd wait = {fd_, POLLIN, 0};
      if (poll(&wait, 1, 50) <= 0) continue;
      int client = accept(fd_, nullptr, nullptr);
      if (client < 0) continue;
      served++;
      std::string head;
      char buffer[4096];
      pollfd readable = {client, POLLIN, 0};
      while (head.find("\r\n\r\n") == std::string::npos && poll(&readable, 1, 2000) > 0) {
        ssize_t count = recv(client, buffer, sizeof buffer, 0);
        if (count <= 0) break;
        head.append(buffer, static_cast<size_t>(count));
      }
      std::string response = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + std::string(1000, 'b');
      send(client, response.data(), response.size(), MSG_NOSIGNAL);
      sleepMs(50);
      linger reset = {1, 0};
      setsockopt(client, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
      close(client);
    }
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> running_{true};
  std::thread thread_;
};

struct Stack {
  explicit Stack(int workers = 1, Env env = {})
      : dead_port(freePort()),
        echo_stack({"monolith", "new-service"}, rulesTemplate("/api/v2/"),
                   proxyOptions(workers, std::move(env))),
        proxy(echo_stack.proxy) {}

  // The rules with `api_prefix` for the api route, ready for the proxy.
  std::string rules(const std::string& api_prefix) const {
    return echo_stack.rules(rulesTemplate(api_prefix));
  }

  std::string rulesTemplate(const std::string& api_prefix) const {
    std::string text = replaceAll(kRules, "{dead_port}", std::to_string(dead_port));
    text = replaceAll(text, "{broken_port}", std::to_string(broken.port()));
    return replaceAll(text, "{api_prefix}", api_prefix);
  }

  // The broken upstream and the dead port come first: the rules name them.
  BrokenUpstream broken;
  int dead_port;
  EchoStack echo_stack;
  Proxy& proxy;
};

// The sum of every sample of `name`, whatever its labels.
double total(const std::string& text, const std::string& name) {
  std::istringstream lines(text);
  std::string line;
  double sum = 0;
  while (std::getline(lines, line)) {
    if (line.compare(0, name.size() + 1, name + "{") == 0 ||
        line.compare(0, name.size() + 1, name + " ") == 0) {
      sum += std::stod(line.substr(line.rfind(' ') + 1));
    }
  }
  return sum;
}

std::string requests(const std::string& route, const std::string& upstream, int code) {
  return "strangler_requests_total{route=\"" + route + "\",upstream=\"" + upstream + "\",code=\"" +
         std::to_string(code) + "\"}";
}

// A connection that sends `request` and is then reset (SO_LINGER 0) after
// reading `read_bytes` or waiting `wait_ms`.
void resetAfter(int port, const std::string& request, size_t read_bytes, int wait_ms) {
  int fd = connectTo(port);
  send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  size_t received = 0;
  char buffer[16384];
  pollfd wait = {fd, POLLIN, 0};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  while (received < read_bytes && std::chrono::steady_clock::now() < deadline && poll(&wait, 1, 50) >= 0) {
    if (!(wait.revents & POLLIN)) continue;
    ssize_t count = recv(fd, buffer, sizeof buffer, 0);
    if (count <= 0) break;
    received += static_cast<size_t>(count);
  }
  linger reset = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  close(fd);
}

}  // namespace

TEST_CASE("requests_total is exact per route, and never goes backwards when a worker is killed") {
  Stack stack(2);
  for (int i = 0; i < 40; i++) {
    Client client;  // a new connection each time, spread over both workers
    REQUIRE(client.get(stack.proxy.url(i % 2 ? "/api/v2/x" : "/legacy/x")).status == 200);
  }
  std::string text = stack.proxy.metrics();
  CHECK(metric(text, requests("api", "new-service", 200)) == 20);
  CHECK(metric(text, requests("legacy", "monolith", 200)) == 20);
  CHECK(metric(text, "strangler_request_duration_seconds_count{route=\"api\",upstream=\"new-service\"}") ==
        20);
  CHECK(metric(text, "strangler_workers") == 2);

  // A scraper checks that no counter drops while a worker dies and is replaced.
  std::atomic<bool> scraping{true};
  std::atomic<int> drops{0};
  std::atomic<int> scrapes{0};
  std::thread scraper([&] {
    double last = 0;
    for (int i = 0; i < 500 && scraping; i++) {
      double now = total(stack.proxy.metrics(), "strangler_requests_total");
      if (now < last) drops++;
      last = now;
      scrapes++;
      sleepMs(5);
    }
  });
  std::vector<pid_t> workers = stack.proxy.workerPids();
  REQUIRE(workers.size() == 2);
  kill(workers[0], SIGKILL);
  REQUIRE(stack.proxy.waitForReplacement(workers[0], 2, 5000));
  sleepMs(100);
  scraping = false;
  scraper.join();
  CHECK(scrapes.load() > 5);
  CHECK(drops.load() == 0);

  text = stack.proxy.metrics();
  CHECK(metric(text, requests("api", "new-service", 200)) == 20);
  CHECK(metric(text, requests("legacy", "monolith", 200)) == 20);
  CHECK(metric(text, "strangler_worker_restarts_total") == 1);

  for (int i = 0; i < 30; i++) {
    Client client;
    REQUIRE(client.get(stack.proxy.url(i % 2 ? "/api/v2/x" : "/legacy/x")).status == 200);
  }
  text = stack.proxy.metrics();
  CHECK(metric(text, requests("api", "new-service", 200)) == 35);
  CHECK(metric(text, requests("legacy", "monolith", 200)) == 35);
  CHECK(metric(text, "strangler_request_duration_seconds_count{route=\"legacy\",upstream=\"monolith\"}") ==
        35);
  CHECK(metric(text, "strangler_inflight_requests") == 0);
}

TEST_CASE("rollouts keep the old generation's counts; reloads are counted by result") {
  Stack stack;
  int sent = 0;
  for (; sent < 10; sent++) {
    Client client;
    REQUIRE(client.get(stack.proxy.url("/api/v3/x")).status == 404);
  }
  writeFile(stack.proxy.rulesPath(), stack.rules("/api/v3/"));
  stack.proxy.process().signal(SIGHUP);
  auto switched = [&] {
    Client client;
    sent++;
    return client.get(stack.proxy.url("/api/v3/x")).status == 200;
  };
  REQUIRE(waitUntil(switched, 5000, "/api/v3/x to be routed", 10));
  REQUIRE(stack.proxy.waitForMetric("strangler_workers", 1));

  std::string text = stack.proxy.metrics();
  CHECK(total(text, "strangler_requests_total") == sent);
  CHECK(metric(text, requests("api", "new-service", 200)) == 1);
  CHECK(metric(text, requests("", "", 404)) == sent - 1);
  CHECK(metric(text, "strangler_rules_version") == 2);
  CHECK(metric(text, "strangler_reloads_total{result=\"ok\"}") == 1);
  CHECK(metric(text, "strangler_reloads_total{result=\"failed\"}") == 0);
  CHECK(metric(text, "strangler_worker_restarts_total") == 0);

  writeFile(stack.proxy.rulesPath(), "{\"routes\": [");
  stack.proxy.process().signal(SIGHUP);
  CHECK(stack.proxy.waitForMetric("strangler_reloads_total{result=\"failed\"}", 1));
  CHECK(metric(stack.proxy.metrics(), "strangler_rules_version") == 2);
}

TEST_CASE("the /metrics text passes promtool's check") {
  Stack stack;
  Client client;
  CHECK(client.get(stack.proxy.url("/legacy/a")).status == 200);
  CHECK(client.get(stack.proxy.url("/nowhere")).status == 404);
  CHECK(client.get(stack.proxy.url("/retired")).status == 410);
  CHECK(client.get(stack.proxy.url("/dead")).status == 502);
  CHECK(client.get(stack.proxy.url("/new/__echo/delay/1000")).status == 504);
  Response scraped = client.get(stack.proxy.adminUrl("/metrics"));
  CHECK(scraped.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8");
  std::string text = scraped.body;
  CHECK(metric(text, "strangler_upstream_errors_total{upstream=\"dead\",kind=\"connect_refused\"}") == 1);
  CHECK(metric(text, "strangler_upstream_errors_total{upstream=\"new-service\",kind=\"response_timeout\"}") ==
        1);
  CHECK(metric(text, requests("retired", "", 410)) == 1);
  CHECK(metric(text, "strangler_upstream_connect_duration_seconds_count{upstream=\"monolith\"}") == 1);
  CHECK(metric(text, "strangler_upstream_response_duration_seconds_count{upstream=\"monolith\"}") == 1);
  CHECK(metric(text, "strangler_rate_limited_total") == 0);

  if (access("/usr/bin/promtool", X_OK) != 0) {
    MESSAGE("SKIPPED the promtool check: /usr/bin/promtool is missing (apt-get install prometheus)");
    return;
  }
  std::string path = tempDir() + "/metrics.txt";
  std::ofstream(path) << text;
  std::string command = "/usr/bin/promtool check metrics < '" + path + "' 2>&1";
  int status = 0;
  std::string output = runCommand(command, &status);
  CHECK_MESSAGE(output.empty(), output);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("gauges: open connections, requests in flight, idle pooled connections") {
  Stack stack;
  Client keep_alive;
  for (int i = 0; i < 5; i++) REQUIRE(keep_alive.get(stack.proxy.url("/legacy/x")).status == 200);
  // Sequential requests share one upstream connection, parked after each.
  CHECK(stack.proxy.waitForMetric("strangler_upstream_idle_connections{upstream=\"monolith\"}", 1, 3000));
  CHECK(metric(stack.proxy.metrics(), "strangler_upstream_idle_connections{upstream=\"dead\"}") == 0);
  CHECK(metric(stack.proxy.metrics(), "strangler_connections{protocol=\"http1\"}") == 1);

  Response slow;
  std::thread in_flight([&] {
    Client client;
    slow = client.get(stack.proxy.url("/legacy/__echo/delay/1000"));
  });
  CHECK(stack.proxy.waitForMetric("strangler_inflight_requests", 1, 900));
  CHECK(metric(stack.proxy.metrics(), "strangler_connections{protocol=\"http1\"}") == 2);
  in_flight.join();
  CHECK(slow.status == 200);
  CHECK(stack.proxy.waitForMetric("strangler_inflight_requests", 0, 1000));
  CHECK(stack.proxy.waitForMetric("strangler_connections{protocol=\"http1\"}", 1, 1000));
  CHECK(metric(stack.proxy.metrics(), "strangler_connections_accepted_total") == 2);

  // An HTTP/2 connection moves from the http1 gauge to the h2 one.
  Client h2;
  REQUIRE(h2.requestHttp2("GET", stack.proxy.url("/legacy/x")).status == 200);
  REQUIRE(h2.httpVersion() == CURL_HTTP_VERSION_2_0);
  std::string text = stack.proxy.metrics();
  CHECK(metric(text, "strangler_connections{protocol=\"h2\"}") == 1);
  CHECK(metric(text, "strangler_connections{protocol=\"http1\"}") == 1);
  CHECK(metric(text, "strangler_connections_accepted_total") == 3);
  CHECK(metric(text, requests("legacy", "monolith", 200)) == 7);
}

TEST_CASE("a drain that times out counts what it closed and what it cut") {
  Stack stack(1, {{"STRANGLER_DRAIN_TIMEOUT", "500ms"}});
  // One idle keep-alive connection (handed over by the drain) and one slow request (cut by it).
  Client idle;
  REQUIRE(idle.get(stack.proxy.url("/legacy/x")).status == 200);
  Response slow;
  std::thread in_flight([&] {
    Client client;
    slow = client.get(stack.proxy.url("/legacy/__echo/delay/3000"));
  });
  bool started = stack.proxy.waitForMetric("strangler_inflight_requests", 1, 1000);
  CHECK(started);

  writeFile(stack.proxy.rulesPath(), stack.rules("/api/v3/"));
  stack.proxy.process().signal(SIGHUP);
  in_flight.join();
  CHECK(slow.status == 0);  // cut: no response
  REQUIRE(stack.proxy.waitForMetric("strangler_workers", 1));
  std::string text = stack.proxy.metrics();
  CHECK(metric(text, "strangler_drain_cut_connections_total") == 1);
  CHECK(metric(text, "strangler_drain_cut_requests_total") == 1);
  CHECK(metric(text, "strangler_drain_closed_connections_total") == 1);
  CHECK(metric(text, "strangler_drain_handed_over_connections_total") == 1);  // the idle one
  CHECK(metric(text, "strangler_inflight_requests") == 0);
  CHECK(metric(text, "strangler_worker_restarts_total") == 0);

  // The cut request still has its one access line, saying the proxy ended it.
  sleepMs(200);
  int cut_lines = 0;
  for (const Json::Value& line : stack.proxy.accessLog()) {
    if (line["path"] != "/legacy/__echo/delay/3000") continue;
    cut_lines++;
    CHECK(line["error"] == "drain_timeout");
    CHECK(line["termination"] == "proxy_headers");
    CHECK(line["rules_version"] == 1);
  }
  CHECK(cut_lines == 1);
}

TEST_CASE("every access line says who ended the exchange and in which phase") {
  Stack stack;
  Client client;
  CHECK(client.get(stack.proxy.url("/legacy/ok")).status == 200);
  CHECK(client.get(stack.proxy.url("/retired")).status == 410);
  CHECK(client.get(stack.proxy.url("/nowhere")).status == 404);
  CHECK(client.get(stack.proxy.url("/dead")).status == 502);
  CHECK(client.get(stack.proxy.url("/new/__echo/delay/1000")).status == 504);
  CHECK(client.get(stack.proxy.url("/legacy/__echo/close")).status == 502);
  Response cut = client.get(stack.proxy.url("/cut-body"));
  CHECK(cut.body.size() == 1000);
  CHECK(!cut.error.empty());
  rawExchange(stack.proxy.port(), "NOT-HTTP\r\n\r\n", 500);
  resetAfter(stack.proxy.port(), "GET /legacy/__echo/delay/1500 HTTP/1.1\r\nHost: t\r\n\r\n", 1, 300);
  resetAfter(stack.proxy.port(), "GET /legacy/__echo/bytes/200000000 HTTP/1.1\r\nHost: t\r\n\r\n", 65536,
             3000);

  std::vector<Json::Value> lines = stack.proxy.awaitAccessLog(10);
  REQUIRE(lines.size() == 10);
  std::vector<std::string> terminations;
  for (const Json::Value& line : lines) terminations.push_back(line["termination"].asString());
  CHECK(terminations[0] == "ok");                // proxied normally
  CHECK(terminations[1] == "ok");                // a respond route
  CHECK(terminations[2] == "proxy_headers");     // no_route
  CHECK(terminations[3] == "upstream_connect");  // refused
  CHECK(terminations[4] == "upstream_headers");  // timed out before the response head
  CHECK(terminations[5] == "upstream_headers");  // closed before the response head
  CHECK(terminations[6] == "upstream_body");     // reset in the middle of the body
  CHECK(terminations[7] == "proxy_headers");     // a malformed request, answered 400
  CHECK(terminations[8] == "client_headers");    // the client left while waiting
  CHECK(terminations[9] == "client_body");       // the client left in the middle of the body
  CHECK(lines[3]["error"] == "upstream_connect_refused");
  CHECK(lines[6]["error"] == "upstream_reset");
  CHECK(lines[7]["status"] == 400);
  CHECK(lines[8]["error"] == "client_aborted");
  CHECK(lines[9]["status"] == 200);

  // The same exchanges in the counters; a client gone before any response counts as 499.
  std::string text = stack.proxy.metrics();
  CHECK(metric(text, requests("legacy", "monolith", 499)) == 1);
  CHECK(metric(text, "strangler_upstream_errors_total{upstream=\"broken\",kind=\"reset\"}") == 1);
  CHECK(metric(text, "strangler_upstream_errors_total{upstream=\"monolith\",kind=\"reset\"}") == 1);
  CHECK(total(text, "strangler_requests_total") == 10);
}

TEST_CASE("a busy run of four workers: every access line whole, exactly one per request") {
  Stack stack(4);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 400;
  std::atomic<int> answered{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      Client keep_alive;
      for (int i = 0; i < kPerThread; i++) {
        // Half the threads reuse their connection; the others open one per request.
        Response response = t % 2 ? keep_alive.get(stack.proxy.url("/legacy/k?i=" + std::to_string(i)))
                                  : Client().get(stack.proxy.url("/api/v2/n?i=" + std::to_string(i)));
        if (response.status == 200) answered++;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  REQUIRE(answered.load() == kThreads * kPerThread);

  std::vector<Json::Value> lines;
  CHECK_NOTHROW(lines = stack.proxy.awaitAccessLog(kThreads * kPerThread));
  CHECK(lines.size() == static_cast<size_t>(kThreads * kPerThread));
  std::set<std::string> ids;
  std::set<int> workers;
  size_t ok = 0;
  for (const Json::Value& line : lines) {
    ids.insert(line["request_id"].asString());
    workers.insert(line["worker"].asInt());
    ok += line["termination"] == "ok" && line["status"] == 200;
  }
  CHECK(ids.size() == lines.size());
  CHECK(ok == lines.size());
  CHECK(workers.size() == 4);

  std::string text = stack.proxy.metrics();
  CHECK(metric(text, requests("legacy", "monolith", 200)) == kThreads / 2 * kPerThread);
  CHECK(metric(text, requests("api", "new-service", 200)) == kThreads / 2 * kPerThread);
}
