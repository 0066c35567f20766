// HTTP/2 over cleartext on the HTTP/1 port: prior knowledge and Upgrade: h2c,
// each stream routed and proxied like an HTTP/1 request.
#include <doctest/doctest.h>

#include <curl/curl.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <thread>

#include "tests/integration/harness.h"

using namespace harness;

namespace {

const char* const kRules =
    R"({"upstreams": {"monolith": "{monolith}", "new-service": "{new-service}"}, "routes": [
        {"name": "api", "priority": 10, "match": {"path": {"prefix": "/api/v2/"}}, "upstream": "new-service"},
        {"name": "canary", "priority": 10, "match": {"headers": {"x-backend": "new"}}, "upstream": "new-service"},
        {"name": "legacy", "priority": -100, "match": {}, "upstream": "monolith"}]})";

struct Http2Stack : EchoStack {
  explicit Http2Stack(Env env = {})
      : EchoStack({"monolith", "new-service"}, kRules, proxyOptions(1, std::move(env))) {}
};

}  // namespace

TEST_CASE("HTTP/2 by prior knowledge is routed like HTTP/1, with the head mapped for HTTP/1 upstreams") {
  Http2Stack stack;
  Client client;
  Response response = client.requestHttp2("GET", stack.proxy.url("/api/v2/orders?id=4"),
                                          {{"Cookie", "a=1"}, {"X-Extra", "yes"}});
  REQUIRE(response.status == 200);
  CHECK(client.httpVersion() == CURL_HTTP_VERSION_2_0);
  Json::Value echo = response.json();
  CHECK(echo["upstream"] == "new-service");
  CHECK(echo["method"] == "GET");
  CHECK(echo["target"] == "/api/v2/orders?id=4");
  CHECK(echo["version"] == "HTTP/1.1");
  std::vector<std::string> headers = receivedHeaders(echo);
  CHECK(headers[0] == "Host: 127.0.0.1:" + std::to_string(stack.proxy.port()));
  CHECK(contains(headers, "x-extra: yes"));
  CHECK(contains(headers, "cookie: a=1"));
  CHECK(response.header("x-echo-upstream") == "new-service");

  // Debian's libcurl 7.88 cannot reuse a prior-knowledge connection (curl
  // issue 10634, fixed after 7.88.1), so each request gets its own client.
  Client second;
  Response canary = second.requestHttp2("GET", stack.proxy.url("/page"), {{"X-Backend", "new"}});
  CHECK(canary.json()["upstream"] == "new-service");
  Client third;
  Response legacy = third.requestHttp2("GET", stack.proxy.url("/page"));
  CHECK(legacy.json()["upstream"] == "monolith");

  std::vector<Json::Value> lines = stack.proxy.accessLog();
  REQUIRE(lines.size() == 3);
  CHECK(lines[0]["protocol"] == "HTTP/2");
  CHECK(lines[0]["status"] == 200);
  CHECK_FALSE(lines[0].isMember("error"));
}

TEST_CASE("split cookies are rejoined for HTTP/1 upstreams") {
  Http2Stack stack;
  // nghttp sends each cookie crumb as its own field when given several -H lines.
  std::string output =
      runCommand("nghttp -H 'cookie: a=1' -H 'cookie: b=2' " + stack.proxy.url("/c") + " 2>&1");
  Json::Value echo = parseJson(output);
  CHECK(contains(receivedHeaders(echo), "cookie: a=1; b=2"));
}

TEST_CASE("Upgrade: h2c is answered with 101 and the request on stream 1") {
  Http2Stack stack;
  Client client;
  Response response = client.requestHttp2("GET", stack.proxy.url("/upgraded"), {}, std::nullopt, true);
  REQUIRE(response.status == 200);
  CHECK(client.httpVersion() == CURL_HTTP_VERSION_2_0);
  Json::Value echo = response.json();
  CHECK(echo["upstream"] == "monolith");
  CHECK(echo["target"] == "/upgraded");
  for (const std::string& line : receivedHeaders(echo)) {
    CHECK(line.find("Upgrade") == std::string::npos);
    CHECK(line.find("HTTP2-Settings") == std::string::npos);
  }
  // The connection goes on as HTTP/2.
  Response second = client.requestHttp2("GET", stack.proxy.url("/api/v2/after"), {}, std::nullopt, true);
  CHECK(second.json()["upstream"] == "new-service");
  CHECK(second.connects == 0);
}

TEST_CASE("request bodies stream over HTTP/2 and arrive byte for byte") {
  Http2Stack stack;
  Client client;
  std::string body;
  for (int i = 0; i < 3000000; i++) body += static_cast<char>('a' + (i * 13) % 26);
  Response response = client.requestHttp2("POST", stack.proxy.url("/upload"), {{"Content-Type", "text/plain"}}, body);
  REQUIRE(response.status == 200);
  Json::Value echo = response.json();
  CHECK(echo["body_bytes"].asUInt64() == body.size());
  CHECK(echo["body_fnv1a64"] == fnvHex(fnv1a64(body)));
}

TEST_CASE("a large download over HTTP/2 is exact and the worker's memory stays bounded") {
  Http2Stack stack(memoryTestEnv());
  std::vector<pid_t> workers = stack.proxy.workerPids();
  REQUIRE(workers.size() == 1);
  long start_kb = peakRssKb(workers[0]);
  Client client;
  const size_t size = 64u << 20;
  Response response = client.requestHttp2("GET", stack.proxy.url("/__echo/bytes/" + std::to_string(size)));
  REQUIRE(response.status == 200);
  REQUIRE(response.body.size() == size);
  bool pattern_ok = true;
  for (size_t i = 0; i < size && pattern_ok; i++) pattern_ok = response.body[i] == static_cast<char>('a' + i % 26);
  CHECK(pattern_ok);
  long peak_kb = peakRssKb(workers[0]);
  MESSAGE("worker peak RSS over 64 MiB by HTTP/2: " << start_kb << " -> " << peak_kb << " kB");
  // Buffering the download would add its 64 MiB.
  CHECK(peak_kb - start_kb < memoryGrowthBoundKb(16 * 1024));
}

TEST_CASE("many concurrent streams on few connections all succeed") {
  Http2Stack stack;
  std::string output = runCommand("h2load -n 2000 -c 4 -m 50 " + stack.proxy.url("/api/v2/load") + " 2>&1");
  CHECK(output.find("2000 succeeded, 0 failed, 0 errored") != std::string::npos);
  CHECK(output.find("status codes: 2000 2xx") != std::string::npos);
}

TEST_CASE("SIGTERM: streams in flight finish after GOAWAY") {
  Http2Stack stack;
  Response slow;
  std::thread in_flight([&] {
    Client client;
    slow = client.requestHttp2("GET", stack.proxy.url("/__echo/delay/700"));
  });
  sleepMs(250);
  stack.proxy.process().signal(SIGTERM);
  in_flight.join();
  CHECK(slow.status == 200);
  CHECK(slow.json()["upstream"] == "monolith");
  std::optional<int> status = stack.proxy.process().waitExit(10000);
  REQUIRE(status);
  CHECK(WEXITSTATUS(*status) == 0);
}

TEST_CASE("a broken preface is closed without an HTTP/1 answer") {
  Http2Stack stack;
  CHECK(rawExchange(stack.proxy.port(), "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", 800).empty());
}
