// Upstreams with "protocol": "h2c": HTTP/1 and HTTP/2 clients alike reach
// them over a few shared HTTP/2 sessions; heads are mapped, bodies and
// trailers pass, and upstream failures end as they do for HTTP/1.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <thread>

#include "tests/integration/harness.h"

using namespace harness;

namespace {

// An HTTP/2 echo upstream of tests/support/h2_echo.py.
class H2Echo : public ListeningPeer {
 public:
  explicit H2Echo(const std::string& name)
      : ListeningPeer({kPython, supportScript("h2_echo.py"), "--name", name}) {}

  // How many TCP connections it has accepted before this question, which
  // comes on a connection of its own.
  int connections() const {
    Client client;
    return client.requestHttp2("GET", url() + "/__h2/stats").json()["connections"].asInt() - 1;
  }
};

// The HTTP/2 upstream starts first: the rules name its URL.
struct H2Stack {
  explicit H2Stack(const std::string& extra_upstreams = "", const std::string& extra_routes = "")
      : h2a("h2a"),
        echo_stack({"monolith"}, rules(h2a, extra_upstreams, extra_routes)),
        proxy(echo_stack.proxy) {}

  static std::string rules(const H2Echo& h2a, const std::string& extra_upstreams,
                           const std::string& extra_routes) {
    return R"({"upstreams": {"h2a": {"endpoints": [")" + h2a.url() +
           R"("], "protocol": "h2c", "timeout_ms": 3000}, "monolith": "{monolith}")" +
           replaceAll(extra_upstreams, "H2A_URL", h2a.url()) + R"(}, "routes": [)" + extra_routes +
           R"({"name": "h2", "priority": 10, "match": {"path": {"prefix": "/h2/"}}, "upstream": "h2a"},
        {"name": "h2-internal", "priority": 10, "match": {"path": {"prefix": "/__h2/"}}, "upstream": "h2a"},
        {"name": "monolith", "priority": -100, "match": {}, "upstream": "monolith"}]})";
  }

  H2Echo h2a;
  EchoStack echo_stack;
  Proxy& proxy;
};

bool hasName(const std::vector<std::string>& lines, const std::string& name) {
  return std::any_of(lines.begin(), lines.end(),
                     [&](const std::string& line) { return line.rfind(name + ": ", 0) == 0; });
}

// A loopback listener whose accept queue is full and never drained: a
// connect to it neither succeeds nor fails (the SYN is dropped) until the
// connector gives up.
class FullListener {
 public:
  FullListener() : listener_(listenOnLoopback(0, port_)) {
    sockaddr_in address = {};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port_));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int& filler : fillers_) {
      filler = socket(AF_INET, SOCK_STREAM, 0);
      fcntl(filler, F_SETFL, O_NONBLOCK);
      connect(filler, reinterpret_cast<sockaddr*>(&address), sizeof address);
    }
    sleepMs(100);
  }
  ~FullListener() {
    for (int filler : fillers_) close(filler);
    close(listener_);
  }
  int port() const { return port_; }

 private:
  int port_ = 0;  // before listener_, which sets it
  int listener_;
  int fillers_[2] = {-1, -1};
};

}  // namespace

TEST_CASE("an HTTP/1 client reaches an h2c upstream: head mapped, TE: trailers kept, body exact") {
  H2Stack stack;
  Client client;
  Response response = client.request("POST", stack.proxy.url("/h2/orders?id=7"),
                                     {{"X-Extra", "yes"}, {"TE", "trailers"}, {"Connection", "TE"},
                                      {"Content-Type", "text/plain"}},
                                     std::string("hello h2 upstream"));
  REQUIRE(response.status == 200);
  CHECK(response.header("x-echo-upstream") == "h2a");
  Json::Value echo = response.json();
  CHECK(echo["upstream"] == "h2a");
  CHECK(echo["method"] == "POST");
  CHECK(echo["scheme"] == "http");
  CHECK(echo["authority"] == "127.0.0.1:" + std::to_string(stack.proxy.port()));
  CHECK(echo["path"] == "/h2/orders?id=7");
  CHECK(echo["body"] == "hello h2 upstream");
  CHECK(echo["body_bytes"] == 17);
  std::vector<std::string> headers = pairLines(echo["headers"]);
  CHECK(contains(headers, "x-extra: yes"));
  CHECK(contains(headers, "content-type: text/plain"));
  CHECK(contains(headers, "te: trailers"));
  CHECK(contains(headers, "content-length: 17"));
  CHECK(contains(headers, "x-forwarded-for: 127.0.0.1"));
  for (const char* name : {"host", "connection", "transfer-encoding", "keep-alive", "upgrade"}) {
    CHECK_MESSAGE(!hasName(headers, name), name);
  }

  // The same request to an HTTP/1 upstream loses TE, a hop-by-hop field there.
  Response plain = client.request("POST", stack.proxy.url("/plain"), {{"TE", "trailers"}, {"Connection", "TE"}},
                                  std::string("x"));
  REQUIRE(plain.status == 200);
  std::vector<std::string> plain_headers = receivedHeaders(plain.json());
  CHECK(!hasName(plain_headers, "TE"));
  CHECK(!hasName(plain_headers, "te"));

  std::vector<Json::Value> lines = stack.proxy.accessLog();
  REQUIRE(lines.size() == 2);
  CHECK(lines[0]["upstream"] == "h2a");
  CHECK(lines[0]["endpoint"] == stack.h2a.url().substr(7));
  CHECK(lines[0]["bytes_in"] == 17);
  CHECK(lines[0]["termination"] == "ok");
}

TEST_CASE("h2c upstream trailers reach an HTTP/1.1 client as chunked trailers; request trailers go up") {
  H2Stack stack;
  std::string raw = rawExchange(stack.proxy.port(),
                                "GET /h2/t HTTP/1.1\r\nHost: shop.test\r\nx-echo-trailers: yes\r\n"
                                "Connection: close\r\n\r\n");
  CHECK(raw.find("Transfer-Encoding: chunked\r\n") != std::string::npos);
  const std::string tail = "\r\n0\r\nx-upstream-trailer: h2a\r\nx-body-fnv1a64: cbf29ce484222325\r\n\r\n";
  REQUIRE(raw.size() > tail.size());
  CHECK(raw.substr(raw.size() - tail.size()) == tail);
  std::vector<RawResponse> responses = parseResponses(raw);
  REQUIRE(responses.size() == 1);
  CHECK(parseJson(responses[0].body)["authority"] == "shop.test");

  // A chunked upload's trailers become a trailing HEADERS frame.
  std::string upload = rawExchange(stack.proxy.port(),
                                   "POST /h2/up HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n"
                                   "Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n");
  std::vector<RawResponse> uploaded = parseResponses(upload);
  REQUIRE(uploaded.size() == 1);
  Json::Value echo = parseJson(uploaded[0].body);
  CHECK(echo["body"] == "hello world");
  CHECK(pairLines(echo["trailers"]) == std::vector<std::string>{"x-sum: 42"});
  CHECK(!hasName(pairLines(echo["headers"]), "content-length"));
}

TEST_CASE("an HTTP/2 client reaches an h2c upstream, trailers included") {
  H2Stack stack;
  Client client;
  Response response = client.requestHttp2("GET", stack.proxy.url("/h2/via-h2"), {{"X-Extra", "2"}});
  REQUIRE(response.status == 200);
  Json::Value echo = response.json();
  CHECK(echo["upstream"] == "h2a");
  CHECK(echo["method"] == "GET");
  CHECK(echo["path"] == "/h2/via-h2");
  CHECK(contains(pairLines(echo["headers"]), "x-extra: 2"));

  std::string output =
      runCommand("nghttp -v -H 'x-echo-trailers: yes' " + stack.proxy.url("/h2/trailers") + " 2>&1");
  size_t data = output.find("recv DATA frame");
  size_t trailer = output.find(") x-upstream-trailer: h2a\n");
  REQUIRE(data != std::string::npos);
  REQUIRE(trailer != std::string::npos);
  CHECK(trailer > data);
  CHECK(output.find(") x-body-fnv1a64: cbf29ce484222325\n") != std::string::npos);
}

TEST_CASE("concurrent streams from HTTP/1 and HTTP/2 clients share one upstream connection") {
  H2Stack stack;
  std::string output = runCommand("h2load -n 400 -c 4 -m 25 " + stack.proxy.url("/h2/load") + " 2>&1");
  CHECK(output.find("400 succeeded, 0 failed, 0 errored") != std::string::npos);

  std::vector<std::thread> clients;
  std::vector<Json::Value> echoes(6);
  for (size_t i = 0; i < echoes.size(); i++) {
    clients.emplace_back([&, i] {
      Client client;
      echoes[i] = client.get(stack.proxy.url("/h2/parallel/" + std::to_string(i))).json();
    });
  }
  for (std::thread& client : clients) client.join();
  for (size_t i = 0; i < echoes.size(); i++) {
    CHECK(echoes[i]["path"] == "/h2/parallel/" + std::to_string(i));
    CHECK(echoes[i]["connection"] == 1);
  }
  CHECK(stack.h2a.connections() == 1);

  Client admin;
  Response metrics = admin.get(stack.proxy.adminUrl("/metrics"));
  CHECK(metrics.body.find("strangler_upstream_connect_duration_seconds_count{upstream=\"h2a\"} 1\n") !=
        std::string::npos);
  CHECK(metrics.body.find("strangler_upstream_response_duration_seconds_count{upstream=\"h2a\"} 406\n") !=
        std::string::npos);
}

TEST_CASE("an upstream GOAWAY: a refused request goes again on a new session while its body is still to come") {
  H2Stack stack;
  Client client;
  Response response = client.get(stack.proxy.url("/__h2/refuse-once/a"));
  REQUIRE(response.status == 200);
  Json::Value echo = response.json();
  CHECK(echo["path"] == "/__h2/refuse-once/a");
  CHECK(echo["connection"] == 2);
  CHECK(stack.h2a.connections() == 2);

  // A body that has already arrived cannot be sent again: the client gets 502.
  Response posted = client.request("POST", stack.proxy.url("/__h2/refuse-once/b"), {}, std::string("payload"));
  CHECK(posted.status == 502);

  std::vector<Json::Value> lines = stack.proxy.accessLog();
  REQUIRE(lines.size() == 2);
  CHECK(lines[0]["status"] == 200);
  CHECK_FALSE(lines[0].isMember("error"));
  CHECK(lines[1]["status"] == 502);
  CHECK(lines[1]["error"] == "upstream_refused");
  CHECK(lines[1]["termination"] == "upstream_headers");
  Client admin;
  CHECK(admin.get(stack.proxy.adminUrl("/metrics")).body.find(
            "strangler_upstream_errors_total{upstream=\"h2a\",kind=\"refused\"} 1\n") != std::string::npos);
}

TEST_CASE("h2c upstream failures: reset, protocol error, timeout and refused connect, with their tokens") {
  int closed_port = freePort();
  H2Stack stack(R"(, "down": {"endpoints": ["http://127.0.0.1:)" + std::to_string(closed_port) +
                    R"("], "protocol": "h2c"})",
                R"({"name": "down", "priority": 10, "match": {"path": {"prefix": "/down/"}}, "upstream": "down"},)");
  Client client;
  Response reset = client.get(stack.proxy.url("/__h2/reset"));
  CHECK(reset.status == 502);
  CHECK(reset.json()["error"] == "upstream 'h2a' refused or reset the connection");
  Response garbage = client.get(stack.proxy.url("/__h2/garbage"));
  CHECK(garbage.status == 502);
  Response slow = client.get(stack.proxy.url("/__h2/delay/6000"));
  CHECK(slow.status == 504);
  Response down = client.get(stack.proxy.url("/down/x"));
  CHECK(down.status == 502);
  // The session survives a stream reset and a timed-out stream, but not garbage.
  Response after = client.get(stack.proxy.url("/h2/after"));
  CHECK(after.status == 200);

  std::vector<Json::Value> lines = stack.proxy.accessLog();
  REQUIRE(lines.size() == 5);
  CHECK(lines[0]["error"] == "upstream_reset");
  CHECK(lines[0]["termination"] == "upstream_headers");
  CHECK(lines[1]["error"] == "upstream_bad_response");
  CHECK(lines[1]["termination"] == "upstream_headers");
  CHECK(lines[2]["error"] == "upstream_response_timeout");
  CHECK(lines[2]["status"] == 504);
  CHECK(lines[3]["error"] == "upstream_connect_refused");
  CHECK(lines[3]["termination"] == "upstream_connect");
  CHECK(lines[4]["termination"] == "ok");

  Client admin;
  std::string metrics = admin.get(stack.proxy.adminUrl("/metrics")).body;
  CHECK(metrics.find("strangler_upstream_errors_total{upstream=\"h2a\",kind=\"reset\"} 1\n") != std::string::npos);
  CHECK(metrics.find("strangler_upstream_errors_total{upstream=\"h2a\",kind=\"bad_response\"} 1\n") !=
        std::string::npos);
  CHECK(metrics.find("strangler_upstream_errors_total{upstream=\"down\",kind=\"connect_refused\"} 1\n") !=
        std::string::npos);
  CHECK(stack.proxy.processLogHas("upstream endpoint failed: skipping it"));
}

TEST_CASE("an upstream that does not speak HTTP/2 behind an h2c route is a 502 bad response") {
  RedisServer redis;
  EchoUpstream http1("http1-only");
  ProxyOptions options;
  options.rules_json = R"({"upstreams": {"wrong": {"endpoints": [")" + http1.url() +
                       R"("], "protocol": "h2c"}}, "routes": [{"name": "wrong", "match": {}, "upstream": "wrong"}]})";
  Proxy proxy(&redis, options);
  Client client;
  Response response = client.get(proxy.url("/x"));
  CHECK(response.status == 502);
  std::vector<Json::Value> lines = proxy.accessLog();
  REQUIRE(lines.size() == 1);
  CHECK(lines[0]["error"] == "upstream_bad_response");
}

TEST_CASE("large bodies to and from an h2c upstream are exact, and the worker's memory stays bounded") {
  H2Stack stack;
  Client client;
  std::string body;
  for (int i = 0; i < 1000000; i++) body += static_cast<char>('a' + (i * 7) % 26);
  Response upload = client.request("POST", stack.proxy.url("/h2/upload"), {}, body);
  REQUIRE(upload.status == 200);
  CHECK(upload.json()["body_bytes"].asUInt64() == body.size());
  CHECK(upload.json()["body_fnv1a64"] == fnvHex(fnv1a64(body)));

  const size_t size = 32u << 20;
  Response download = client.get(stack.proxy.url("/__h2/bytes/" + std::to_string(size)));
  REQUIRE(download.status == 200);
  REQUIRE(download.body.size() == size);
  bool pattern_ok = true;
  for (size_t i = 0; i < size && pattern_ok; i++) pattern_ok = download.body[i] == static_cast<char>('a' + i % 26);
  CHECK(pattern_ok);
  std::vector<pid_t> workers = stack.proxy.workerPids();
  REQUIRE(workers.size() == 1);
  long peak = peakRssKb(workers[0]);
  MESSAGE("worker peak RSS after 32 MiB from an h2c upstream: " << peak << " kB");
  if (!kSanitized) CHECK(peak < 48 * 1024);
}

TEST_CASE("passive health: a refused h2c endpoint is skipped and its requests go to the other one") {
  int closed_port = freePort();
  H2Stack stack(R"(, "pair": {"endpoints": ["http://127.0.0.1:)" + std::to_string(closed_port) +
                    R"(", "H2A_URL"], "protocol": "h2c"})",
                R"({"name": "pair", "priority": 10, "match": {"path": {"prefix": "/pair/"}}, "upstream": "pair"},)");
  Client client;
  for (int i = 0; i < 4; i++) {
    Response response = client.get(stack.proxy.url("/pair/" + std::to_string(i)));
    REQUIRE(response.status == 200);
    CHECK(response.json()["upstream"] == "h2a");
  }
  std::vector<Json::Value> lines = stack.proxy.accessLog();
  REQUIRE(lines.size() == 4);
  for (const Json::Value& line : lines) {
    CHECK(line["endpoint"] == stack.h2a.url().substr(7));
    CHECK(line["termination"] == "ok");
  }
  CHECK(stack.proxy.processLogHas("upstream endpoint failed: skipping it"));
  CHECK(stack.h2a.connections() == 1);
}

TEST_CASE("a slow HTTP/1 client holds back its h2c stream: the worker buffers a window, not the body") {
  H2Stack stack;
  const size_t size = 24u << 20;
  // 24 MiB at 6 MiB/s: without backpressure the worker would hold most of it.
  std::string output = runCommand("curl -s --limit-rate 6M -o /dev/null -w '%{http_code} %{size_download}' " +
                           stack.proxy.url("/__h2/bytes/" + std::to_string(size)));
  CHECK(output == "200 " + std::to_string(size));
  std::vector<pid_t> workers = stack.proxy.workerPids();
  REQUIRE(workers.size() == 1);
  long peak = peakRssKb(workers[0]);
  MESSAGE("worker peak RSS after 24 MiB to a client reading 6 MiB/s: " << peak << " kB");
  if (!kSanitized) CHECK(peak < 16 * 1024);

  // The session is still good for the next request.
  Client client;
  CHECK(client.get(stack.proxy.url("/h2/next")).json()["connection"] == 1);
}

TEST_CASE("HTTP/2 on both sides: request trailers go up and response trailers come down as HEADERS") {
  H2Stack stack;
  std::string output =
      runSupportClient("h2_client.py", "--port " + std::to_string(stack.proxy.port()) +
                                           " --path /h2/both --body 'sum me' --header x-echo-trailers=yes"
                                           " --trailer x-checksum=abc --trailer x-count=2");
  Json::Value result = parseJson(output);
  CHECK(result["status"] == 200);
  Json::Value echo = parseJson(result["body"].asString());
  CHECK(echo["upstream"] == "h2a");
  CHECK(echo["body"] == "sum me");
  CHECK(pairLines(echo["trailers"]) == std::vector<std::string>{"x-checksum: abc", "x-count: 2"});
  CHECK(pairLines(result["trailers"]) ==
        std::vector<std::string>{"x-upstream-trailer: h2a", "x-body-fnv1a64: " + fnvHex(fnv1a64("sum me"))});
}

TEST_CASE("an h2c endpoint that does not complete the connect times out: 504 upstream_connect_timeout") {
  FullListener full;
  H2Stack stack(R"(, "stuck": {"endpoints": ["http://127.0.0.1:)" + std::to_string(full.port()) +
                    R"("], "protocol": "h2c", "connect_timeout_ms": 300})",
                R"({"name": "stuck", "priority": 10, "match": {"path": {"prefix": "/stuck/"}}, "upstream": "stuck"},)");
  Client client;
  Response response = client.get(stack.proxy.url("/stuck/x"));
  CHECK(response.status == 504);
  CHECK(response.json()["error"] == "upstream 'stuck' timed out");
  std::vector<Json::Value> lines = stack.proxy.accessLog();
  REQUIRE(lines.size() == 1);
  CHECK(lines[0]["error"] == "upstream_connect_timeout");
  CHECK(lines[0]["termination"] == "upstream_connect");
  // libevent counts the 300 ms from the time it cached when the read that
  // carried the request began, a little before the exchange's own start.
  CHECK(lines[0]["duration_ms"].asDouble() >= 250);
  CHECK(lines[0]["duration_ms"].asDouble() < 3000 * kTimeScale);
}
