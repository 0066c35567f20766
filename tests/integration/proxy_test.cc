// HTTP/1 proxying end to end: which upstream got each request, exactly what
// it got, and exactly what the client got back.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <regex>
#include <set>

#include "tests/integration/harness.h"

using namespace harness;

namespace {

const char* const kRules = R"({
  "upstreams": {
    "monolith": "{monolith}",
    "new-service": {"endpoints": ["{new-service}"], "timeout_ms": 300},
    "dead": {"endpoints": ["http://127.0.0.1:{dead_port}"], "connect_timeout_ms": 500},
    "prefixed": "{new-service}/base"
  },
  "routes": [
    {"name": "api-v2", "priority": 10, "match": {"path": {"prefix": "/api/v2/"}}, "upstream": "new-service"},
    {"name": "canary", "priority": 10, "match": {"headers": {"x-backend": "new"}}, "upstream": "new-service"},
    {"name": "rewritten", "priority": 10, "match": {"path": {"prefix": "/old-api/"}, "methods": ["GET"]},
     "upstream": "new-service",
     "rewrite": {"strip_prefix": "/old-api", "add_prefix": "/v3", "set_headers": {"X-Migrated-By": "strangler"},
                 "remove_headers": ["x-legacy-session"]}},
    {"name": "new-echo", "priority": 10, "match": {"path": {"prefix": "/new/"}}, "upstream": "new-service",
     "rewrite": {"strip_prefix": "/new"}},
    {"name": "endpoint-prefix", "priority": 10, "match": {"path": {"prefix": "/pre/"}}, "upstream": "prefixed"},
    {"name": "retired", "priority": 10, "match": {"path": {"regex": "/reports/[0-9]+"}},
     "respond": {"status": 410, "body": "gone\n", "headers": {"Content-Type": "text/plain"}}},
    {"name": "dead-end", "priority": 10, "match": {"path": "/dead"}, "upstream": "dead"},
    {"name": "only-rpc-host", "priority": 10, "match": {"host": "rpc.example.test", "path": "/host-only"},
     "upstream": "new-service"},
    {"name": "legacy", "priority": -100, "match": {"path": {"prefix": "/"}, "methods": ["GET", "HEAD", "POST", "PUT", "DELETE"]},
     "upstream": "monolith"}
  ]
})";

// Two echo upstreams, Redis, and one proxy with the rules above.
struct Stack : EchoStack {
  explicit Stack(int workers = 1, Env env = {})
      : EchoStack({"monolith", "new-service"}, replaceAll(kRules, "{dead_port}", std::to_string(freePort())),
                  proxyOptions(workers, std::move(env))) {}
};

const std::regex kRequestId("[0-9a-f]{24}");

}  // namespace

TEST_CASE("requests reach the upstream their route names, with exactly the expected head") {
  Stack stack;
  Client client;
  int port = stack.proxy.port();
  std::string host = "127.0.0.1:" + std::to_string(port);

  Response legacy = client.get(stack.proxy.url("/legacy/page?x=1"));
  REQUIRE(legacy.status == 200);
  Json::Value echo = legacy.json();
  CHECK(echo["upstream"] == "monolith");
  CHECK(echo["method"] == "GET");
  CHECK(echo["target"] == "/legacy/page?x=1");
  CHECK(echo["version"] == "HTTP/1.1");
  std::vector<std::string> headers = receivedHeaders(echo);
  REQUIRE(headers.size() == 8);
  CHECK(headers[0] == "Host: " + host);
  CHECK(headers[1] == "Accept: */*");
  CHECK(headers[2] == "X-Forwarded-For: 127.0.0.1");
  CHECK(headers[3] == "X-Forwarded-Proto: http");
  CHECK(headers[4] == "X-Forwarded-Host: " + host);
  CHECK(headers[5] == "X-Real-IP: 127.0.0.1");
  CHECK(headers[6] == "Forwarded: for=127.0.0.1;proto=http");
  CHECK(headers[7].rfind("X-Request-Id: ", 0) == 0);
  std::string request_id = headers[7].substr(std::string("X-Request-Id: ").size());
  CHECK(std::regex_match(request_id, kRequestId));
  // The same id comes back to the client and is the access log's.
  CHECK(legacy.header("X-Request-Id") == request_id);
  CHECK(echo["body_bytes"] == 0);
  // The upstream's own response headers come back.
  CHECK(legacy.header("X-Echo-Upstream") == "monolith");

  Response api = client.get(stack.proxy.url("/api/v2/orders/7"));
  CHECK(api.json()["upstream"] == "new-service");
  CHECK(api.json()["target"] == "/api/v2/orders/7");

  Response canary = client.get(stack.proxy.url("/legacy/page"), {{"X-Backend", "new"}});
  CHECK(canary.json()["upstream"] == "new-service");
  Response not_canary = client.get(stack.proxy.url("/legacy/page"), {{"X-Backend", "old"}});
  CHECK(not_canary.json()["upstream"] == "monolith");
}

TEST_CASE("the forwarded path is the normalised one the route was chosen by") {
  Stack stack;
  // curl itself would remove the dot segments: raw bytes make the proxy see them.
  std::string raw = rawExchange(stack.proxy.port(),
                                "GET /api/v2/../../legacy/./x//y HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  std::vector<RawResponse> responses = parseResponses(raw);
  REQUIRE(responses.size() == 1);
  Json::Value echo = parseJson(responses[0].body);
  CHECK(echo["upstream"] == "monolith");
  CHECK(echo["target"] == "/legacy/x/y");

  std::string encoded = rawExchange(stack.proxy.port(),
                                    "GET /api/v2/%2e%2e/%7Euser HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  responses = parseResponses(encoded);
  REQUIRE(responses.size() == 1);
  CHECK(parseJson(responses[0].body)["target"] == "/api/~user");
}

TEST_CASE("an encoded slash is refused with 400 before routing") {
  Stack stack;
  std::string raw = rawExchange(stack.proxy.port(), "GET /api%2Fv2/x HTTP/1.1\r\nHost: t\r\n\r\n");
  std::vector<RawResponse> responses = parseResponses(raw);
  REQUIRE(responses.size() == 1);
  CHECK(responses[0].status == 400);
  CHECK(parseJson(responses[0].body)["error"] == "the path holds an encoded slash, backslash or NUL");
}

TEST_CASE("rewrites change only the forwarded request") {
  Stack stack;
  Client client;
  Response response = client.get(stack.proxy.url("/old-api/items?id=3"),
                                 {{"X-Legacy-Session", "abc"}, {"X-Migrated-By", "client"}, {"X-Keep", "1"}});
  REQUIRE(response.status == 200);
  Json::Value echo = response.json();
  CHECK(echo["upstream"] == "new-service");
  CHECK(echo["target"] == "/v3/items?id=3");
  std::vector<std::string> headers = receivedHeaders(echo);
  std::string all;
  for (const std::string& line : headers) all += line + "\n";
  CHECK(all.find("X-Legacy-Session") == std::string::npos);
  CHECK(all.find("X-Keep: 1\n") != std::string::npos);
  CHECK(all.find("X-Migrated-By: strangler\n") != std::string::npos);
  CHECK(all.find("X-Migrated-By: client") == std::string::npos);

  Response prefixed = client.get(stack.proxy.url("/pre/x"));
  CHECK(prefixed.json()["target"] == "/base/pre/x");
}

TEST_CASE("the forwarded head: the client's fields in order, then the route's, then the proxy's") {
  Stack stack;
  Client client;
  std::string host = "127.0.0.1:" + std::to_string(stack.proxy.port());
  Response response = client.get(stack.proxy.url("/old-api/items"), {{"X-First", "1"},
                                                                     {"Connection", "X-Private, Cookie"},
                                                                     {"X-Private", "secret"},
                                                                     {"X-Forwarded-For", "203.0.113.9"},
                                                                     {"X-Legacy-Session", "abc"},
                                                                     {"Forwarded", "for=203.0.113.9"},
                                                                     {"X-Migrated-By", "client"},
                                                                     {"Cookie", "c=1"},
                                                                     {"X-Request-Id", "client-chosen"},
                                                                     {"X-Last", "2"}});
  REQUIRE(response.status == 200);
  std::vector<std::string> expected = {
      "Host: " + host,
      "Accept: */*",
      "X-First: 1",
      "Cookie: c=1",
      "X-Request-Id: client-chosen",
      "X-Last: 2",
      "X-Migrated-By: strangler",
      "X-Forwarded-For: 203.0.113.9, 127.0.0.1",
      "X-Forwarded-Proto: http",
      "X-Forwarded-Host: " + host,
      "X-Real-IP: 127.0.0.1",
      "Forwarded: for=203.0.113.9, for=127.0.0.1",
  };
  CHECK(receivedHeaders(response.json()) == expected);
  CHECK(response.header("X-Request-Id") == "client-chosen");
}

TEST_CASE("respond routes, no route, and the error bodies the proxy writes") {
  Stack stack;
  Client client;
  Response gone = client.get(stack.proxy.url("/reports/12"));
  CHECK(gone.status == 410);
  CHECK(gone.body == "gone\n");
  CHECK(gone.header("Content-Type") == "text/plain");

  Response none = client.request("PATCH", stack.proxy.url("/anything"));
  CHECK(none.status == 404);
  Json::Value error = none.json();
  CHECK(error["error"] == "no route matches this request");
  CHECK(std::regex_match(error["request_id"].asString(), kRequestId));
  CHECK(none.header("Content-Type") == "application/json");

  Response wrong_host = client.get(stack.proxy.url("/host-only"));
  CHECK(wrong_host.json()["upstream"] == "monolith");
  Response right_host = client.get(stack.proxy.url("/host-only"), {{"Host", "RPC.example.test:8080"}});
  CHECK(right_host.json()["upstream"] == "new-service");
}

TEST_CASE("an upstream that refuses gives 502, one too slow gives 504") {
  Stack stack;
  Client client;
  Response refused = client.get(stack.proxy.url("/dead"));
  CHECK(refused.status == 502);
  CHECK(refused.json()["error"] == "upstream 'dead' refused or reset the connection");

  Response slow = client.get(stack.proxy.url("/new/__echo/delay/1500"));
  CHECK(slow.status == 504);
  CHECK(slow.json()["error"] == "upstream 'new-service' timed out");

  Response reset = client.get(stack.proxy.url("/new/__echo/close"));
  CHECK(reset.status == 502);

  // The access log names each failure with its reason token.
  std::vector<std::string> errors;
  for (const Json::Value& line : stack.proxy.accessLog()) errors.push_back(line["error"].asString());
  REQUIRE(errors.size() == 3);
  CHECK(errors[0] == "upstream_connect_refused");
  CHECK(errors[1] == "upstream_response_timeout");
  CHECK(errors[2] == "upstream_reset");
}

TEST_CASE("the response timeout counts each request's silence, not the pooled connection's age") {
  // new-service may stay silent for 300 ms. After the first request its
  // connection waits in the pool; each later request on it comes 200 ms
  // after the last and is answered 150 ms later: 350 ms after the connection
  // was last busy, but only 150 ms into its own wait.
  Stack stack;
  Client client;
  REQUIRE(client.get(stack.proxy.url("/new/warm")).status == 200);
  for (int i = 0; i < 4; i++) {
    sleepMs(200);
    Response answered = client.get(stack.proxy.url("/new/__echo/delay/150"));
    CHECK(answered.status == 200);
  }
  // One upstream connection served all of them.
  const std::string connects = "strangler_upstream_connect_duration_seconds_count{upstream=\"new-service\"}";
  CHECK(metric(stack.proxy.metrics(), connects) == 1);

  // A wait past the limit on the same pooled connection still ends in 504
  // (after one more try on a new connection, as for any failure of a reused
  // one before the response began).
  Response slow = client.get(stack.proxy.url("/new/__echo/delay/1000"));
  CHECK(slow.status == 504);
  CHECK(metric(stack.proxy.metrics(), connects) == 2);

  std::vector<std::string> errors;
  for (const Json::Value& line : stack.proxy.accessLog()) errors.push_back(line["error"].asString());
  REQUIRE(errors.size() == 6);
  CHECK(errors[4] == "");
  CHECK(errors[5] == "upstream_response_timeout");
}

TEST_CASE("request bodies arrive byte for byte, re-framed by the proxy") {
  Stack stack;
  Client client;
  std::string body;
  for (int i = 0; i < 300000; i++) body += static_cast<char>('A' + (i * 7) % 61);
  Response posted = client.request("POST", stack.proxy.url("/submit"), {{"Content-Type", "text/plain"}}, body);
  REQUIRE(posted.status == 200);
  Json::Value echo = posted.json();
  CHECK(echo["upstream"] == "monolith");
  CHECK(echo["body_bytes"].asUInt64() == body.size());
  CHECK(echo["body_fnv1a64"] == fnvHex(fnv1a64(body)));

  // A chunked upload is forwarded chunked (extensions dropped), trailers kept.
  std::string chunked =
      "POST /chunky HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
      "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 42\r\n\r\n";
  std::vector<RawResponse> responses = parseResponses(rawExchange(stack.proxy.port(), chunked));
  REQUIRE(responses.size() == 1);
  Json::Value chunk_echo = parseJson(responses[0].body);
  CHECK(chunk_echo["body"] == "hello world");
  std::vector<std::string> headers = receivedHeaders(chunk_echo);
  CHECK(std::find(headers.begin(), headers.end(), "Transfer-Encoding: chunked") != headers.end());
}

TEST_CASE("pipelined requests are answered in order on one connection") {
  Stack stack;
  std::string requests =
      "GET /one HTTP/1.1\r\nHost: t\r\n\r\n"
      "POST /api/v2/two HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
      "GET /reports/1 HTTP/1.1\r\nHost: t\r\n\r\n"
      "GET /three HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
  std::vector<RawResponse> responses = parseResponses(rawExchange(stack.proxy.port(), requests));
  REQUIRE(responses.size() == 4);
  CHECK(parseJson(responses[0].body)["target"] == "/one");
  CHECK(parseJson(responses[1].body)["target"] == "/api/v2/two");
  CHECK(parseJson(responses[1].body)["body"] == "abc");
  CHECK(parseJson(responses[1].body)["upstream"] == "new-service");
  CHECK(responses[2].status == 410);
  CHECK(parseJson(responses[3].body)["target"] == "/three");
  bool closes = false;
  for (const auto& [name, value] : responses[3].headers) closes |= name == "Connection" && value == "close";
  CHECK(closes);
}

TEST_CASE("keep-alive: a client's connection is reused across requests") {
  Stack stack;
  Client client;
  Response first = client.get(stack.proxy.url("/a"));
  Response second = client.get(stack.proxy.url("/api/v2/b"));
  Response third = client.get(stack.proxy.url("/reports/3"));
  CHECK(first.connects == 1);
  CHECK(second.connects == 0);
  CHECK(third.connects == 0);
  CHECK(second.json()["upstream"] == "new-service");
}

TEST_CASE("HTTP/1.0 clients get a length or a close, never chunks") {
  Stack stack;
  std::string raw = rawExchange(stack.proxy.port(), "GET /new/__echo/chunked/10 HTTP/1.0\r\n\r\n");
  CHECK(raw.find("Transfer-Encoding") == std::string::npos);
  CHECK(raw.find("Connection: close\r\n") != std::string::npos);
  CHECK(raw.substr(raw.size() - 10) == "abcdefghij");

  std::string kept = rawExchange(stack.proxy.port(), "GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 500);
  CHECK(kept.find("Connection: keep-alive\r\n") != std::string::npos);
  CHECK(kept.find("Content-Length: ") != std::string::npos);
}

TEST_CASE("HEAD and 204 responses have no body") {
  Stack stack;
  std::string raw = rawExchange(stack.proxy.port(),
                                "HEAD /x HTTP/1.1\r\nHost: t\r\n\r\n"
                                "GET /new/__echo/status/204 HTTP/1.1\r\nHost: t\r\n\r\n"
                                "GET /after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  // HEAD keeps the length the body would have had; nothing follows the head.
  size_t first_end = raw.find("\r\n\r\n");
  REQUIRE(first_end != std::string::npos);
  CHECK(raw.substr(0, 15) == "HTTP/1.1 200 OK");
  CHECK(raw.compare(first_end + 4, 12, "HTTP/1.1 204") == 0);
  size_t second_end = raw.find("\r\n\r\n", first_end + 4);
  CHECK(raw.compare(second_end + 4, 15, "HTTP/1.1 200 OK") == 0);
  CHECK(raw.find("\"target\":\"/after\"") != std::string::npos);
}

TEST_CASE("hop-by-hop headers are not forwarded, in either direction") {
  Stack stack;
  Client client;
  Response response = client.get(stack.proxy.url("/x"), {{"Connection", "keep-alive, X-Private"},
                                                         {"X-Private", "secret"},
                                                         {"Keep-Alive", "timeout=5"},
                                                         {"Proxy-Connection", "keep-alive"},
                                                         {"TE", "trailers"},
                                                         {"Upgrade", "websocket"}});
  std::string all;
  for (const std::string& line : receivedHeaders(response.json())) all += line + "\n";
  for (const char* name : {"Connection", "X-Private", "Keep-Alive", "Proxy-Connection", "TE:", "Upgrade"}) {
    CHECK_MESSAGE(all.find(name) == std::string::npos, name);
  }
}

TEST_CASE("ambiguous or malformed requests get 400 and nothing is forwarded") {
  Stack stack;
  const char* const cases[] = {
      "GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
      "GET /x HTTP/1.1\r\n\r\n",
      "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
      "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
      "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabc",
      "POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
      "GET /x HTTP/1.1\r\nHost : a\r\n\r\n",
      "GET /x HTTP/1.1\r\nHost: a\r\nBad\x01Name: v\r\n\r\n",
      "GET /x y HTTP/1.1\r\nHost: a\r\n\r\n",
      "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
  };
  for (const char* request : cases) {
    std::string raw = rawExchange(stack.proxy.port(), request, 1000);
    CHECK_MESSAGE(raw.rfind("HTTP/1.1 400 Bad Request\r\n", 0) == 0, request);
    CHECK_MESSAGE(raw.find("Connection: close\r\n") != std::string::npos, request);
    CHECK_MESSAGE(raw.find("\"upstream\"") == std::string::npos, request);
  }
}

TEST_CASE("version and size limits") {
  Stack stack(1, {{"STRANGLER_MAX_HEADER_SIZE", "4KiB"}, {"STRANGLER_MAX_BODY", "1KiB"}});
  std::string big_header = "GET /x HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(5000, 'v') + "\r\n\r\n";
  CHECK(rawExchange(stack.proxy.port(), big_header).rfind("HTTP/1.1 431 ", 0) == 0);
  std::string long_target = "GET /" + std::string(5000, 'p') + " HTTP/1.1\r\nHost: a\r\n\r\n";
  CHECK(rawExchange(stack.proxy.port(), long_target).rfind("HTTP/1.1 414 ", 0) == 0);
  std::string big_body = "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n" + std::string(2000, 'b');
  CHECK(rawExchange(stack.proxy.port(), big_body).rfind("HTTP/1.1 413 ", 0) == 0);
  std::string big_chunked =
      "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + std::string(2048, 'c') + "\r\n0\r\n\r\n";
  CHECK(rawExchange(stack.proxy.port(), big_chunked).rfind("HTTP/1.1 413 ", 0) == 0);
  CHECK(rawExchange(stack.proxy.port(), "GET /x HTTP/2.0\r\nHost: a\r\n\r\n").rfind("HTTP/1.1 505 ", 0) == 0);
}

TEST_CASE("forwarding headers: a trusted peer's chain is extended, anyone else's replaced") {
  {
    Stack trusted;
    Client client;
    Response response =
        client.get(trusted.proxy.url("/x"), {{"X-Forwarded-For", "203.0.113.9"}, {"X-Forwarded-Proto", "https"}});
    std::vector<std::string> headers = receivedHeaders(response.json());
    CHECK(std::find(headers.begin(), headers.end(), "X-Forwarded-For: 203.0.113.9, 127.0.0.1") != headers.end());
    CHECK(std::find(headers.begin(), headers.end(), "X-Forwarded-Proto: https") != headers.end());
  }
  {
    Stack untrusted(1, {{"STRANGLER_TRUSTED_PROXIES", ""}});
    Client client;
    Response response = client.get(untrusted.proxy.url("/x"), {{"X-Forwarded-For", "203.0.113.9"},
                                                               {"X-Forwarded-Proto", "https"},
                                                               {"X-Real-IP", "203.0.113.9"}});
    std::vector<std::string> headers = receivedHeaders(response.json());
    CHECK(std::find(headers.begin(), headers.end(), "X-Forwarded-For: 127.0.0.1") != headers.end());
    CHECK(std::find(headers.begin(), headers.end(), "X-Forwarded-Proto: http") != headers.end());
    CHECK(std::find(headers.begin(), headers.end(), "X-Real-IP: 127.0.0.1") != headers.end());
    CHECK(std::find(headers.begin(), headers.end(), "Forwarded: for=127.0.0.1;proto=http") != headers.end());
  }
}

TEST_CASE("the access log has one JSON line per request with the documented keys") {
  Stack stack(2);
  for (int i = 0; i < 40; i++) {
    Client client;
    client.get(stack.proxy.url(i % 2 ? "/api/v2/x" : "/legacy"), {{"User-Agent", "te\"st\\ \xff\xfe"}});
  }
  Client client;
  client.get(stack.proxy.url("/reports/5"));
  sleepMs(100);
  std::vector<Json::Value> lines = stack.proxy.accessLog();
  REQUIRE(lines.size() == 41);
  std::set<int> workers;
  for (const Json::Value& line : lines) {
    for (const char* key : {"ts", "request_id", "method", "path", "protocol", "status", "bytes_in", "bytes_out",
                            "duration_ms", "route", "upstream", "rules_version", "client", "worker"}) {
      CHECK_MESSAGE(line.isMember(key), key);
    }
    CHECK(std::regex_match(line["ts"].asString(), std::regex("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z")));
    CHECK(line["rules_version"] == 1);
    CHECK(line["client"] == "127.0.0.1");
    workers.insert(line["worker"].asInt());
  }
  CHECK(lines[0]["route"] == "legacy");
  CHECK(lines[0]["upstream"] == "monolith");
  CHECK(lines[1]["route"] == "api-v2");
  CHECK(lines[40]["status"] == 410);
  CHECK(lines[40]["route"] == "retired");
  CHECK(workers.size() == 2);
}

TEST_CASE("100 MiB up and down, byte for byte, in bounded worker memory") {
  Stack stack(1, memoryTestEnv());
  std::vector<pid_t> workers = stack.proxy.workerPids();
  REQUIRE(workers.size() == 1);
  long start_kb = peakRssKb(workers[0]);
  Client client;
  const size_t size = 100u << 20;
  std::string upload(size, '\0');
  uint64_t state = 0x9E3779B97F4A7C15ull;
  for (size_t i = 0; i < size; i += 8) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    memcpy(&upload[i], &state, 8);
  }
  Response uploaded = client.request("POST", stack.proxy.url("/upload"), {}, upload);
  REQUIRE(uploaded.status == 200);
  CHECK(uploaded.json()["body_bytes"].asUInt64() == size);
  CHECK(uploaded.json()["body_fnv1a64"] == fnvHex(fnv1a64(upload)));
  upload.clear();
  upload.shrink_to_fit();

  Response downloaded = client.get(stack.proxy.url("/new/__echo/bytes/" + std::to_string(size)));
  REQUIRE(downloaded.status == 200);
  REQUIRE(downloaded.body.size() == size);
  bool pattern_ok = true;
  for (size_t i = 0; i < size && pattern_ok; i++) pattern_ok = downloaded.body[i] == static_cast<char>('a' + i % 26);
  CHECK(pattern_ok);

  long peak_kb = peakRssKb(workers[0]);
  MESSAGE("worker peak RSS: " << start_kb << " -> " << peak_kb << " kB");
  CHECK(start_kb > 0);
  // Buffering either transfer would add its 100 MiB.
  CHECK(peak_kb - start_kb < memoryGrowthBoundKb(16 * 1024));
}
