// JSON-RPC routing end to end: which upstream got which calls, byte for
// byte, and exactly what the client got back, for single calls, whole and
// split batches, failing parts, notifications, limits and bodies that are
// not JSON-RPC.
#include <doctest/doctest.h>

#include <curl/curl.h>
#include <strings.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "tests/integration/harness.h"

using namespace harness;

namespace {

// tests/support/jsonrpc_upstream.py: answers each call with a result naming
// itself, the method and the params (batches in reverse order), and tells
// what it received.
class RpcUpstream : public ListeningPeer {
 public:
  explicit RpcUpstream(const std::string& name)
      : ListeningPeer(
            {kPython, supportScript("jsonrpc_upstream.py"), "--name", name, "--listen", "127.0.0.1:0"}) {}

  // Every request it received, in order.
  Json::Value received() const {
    Client client;
    return client.get(url() + "/__received").json();
  }
  std::vector<std::string> bodies() const {
    std::vector<std::string> bodies;
    for (const Json::Value& request : received()) bodies.push_back(request["body"].asString());
    return bodies;
  }
};

const char* const kRules = R"({
  "upstreams": {
    "monolith": "{monolith}",
    "inspected": "{inspected}",
    "accounts": "{accounts}",
    "orders": {"endpoints": ["{orders}"], "timeout_ms": 500},
    "legacy": "{legacy}",
    "down": {"endpoints": ["http://127.0.0.1:{dead_port}"], "connect_timeout_ms": 500}
  },
  "routes": [
    {"name": "accounts-rpc", "priority": 10,
     "match": {"path": "/rpc", "jsonrpc": {"method": {"prefix": "account."}}}, "upstream": "accounts"},
    {"name": "eu-orders", "priority": 10,
     "match": {"path": "/rpc", "jsonrpc": {"method": {"prefix": "orders."}, "params": {"/region": "eu"}}},
     "upstream": "orders"},
    {"name": "billing", "priority": 10,
     "match": {"path": "/rpc", "jsonrpc": {"method": {"prefix": "billing."}}}, "upstream": "down"},
    {"name": "echo-inspected", "priority": 10,
     "match": {"path": "/echo", "jsonrpc": {"method": "echo.me"}}, "upstream": "inspected"},
    {"name": "legacy-rpc", "priority": 0, "match": {"path": "/rpc"}, "upstream": "legacy"},
    {"name": "monolith", "priority": -100, "match": {}, "upstream": "monolith"}
  ]
})";

struct RpcStack {
  explicit RpcStack(Env env = {})
      : accounts("accounts"),
        orders("orders"),
        legacy("legacy"),
        echo_stack({"monolith", "inspected"}, rules(), proxyOptions(1, std::move(env))),
        proxy(echo_stack.proxy) {}

  std::string rules() const {
    std::string rules = replaceAll(kRules, "{accounts}", accounts.url());
    rules = replaceAll(rules, "{orders}", orders.url());
    rules = replaceAll(rules, "{legacy}", legacy.url());
    return replaceAll(rules, "{dead_port}", std::to_string(freePort()));
  }

  Response post(const std::string& path, const std::string& body, const Headers& headers = {}) {
    Client client;
    Headers with_type = headers;
    with_type.emplace_back("Content-Type", "application/json");
    return client.request("POST", proxy.url(path), with_type, body);
  }

  // The access log's lines, once the last one is out.
  std::vector<Json::Value> accessLog(size_t expected) {
    return proxy.awaitAccessLog(expected, 2000 * kTimeScale);
  }

  // The JSON-RPC upstreams start first: the rules name their URLs.
  RpcUpstream accounts;
  RpcUpstream orders;
  RpcUpstream legacy;
  EchoStack echo_stack;
  Proxy& proxy;
};

// What jsonrpc_upstream.py answers to one call.
std::string resultOf(const std::string& upstream, const std::string& method, const std::string& params,
                     const std::string& id) {
  return R"({"jsonrpc":"2.0","result":{"upstream":")" + upstream + R"(","method":")" + method +
         R"(","params":)" + params + R"(},"id":)" + id + "}";
}

std::string errorOf(int code, const std::string& message, const std::string& id) {
  return R"({"jsonrpc":"2.0","error":{"code":)" + std::to_string(code) + R"(,"message":")" + message +
         R"("},"id":)" + id + "}";
}

bool hasHeaderNamed(const std::vector<std::string>& lines, const std::string& name) {
  for (const std::string& line : lines) {
    if (strncasecmp(line.c_str(), (name + ":").c_str(), name.size() + 1) == 0) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("a single call goes by its method, and its answer comes back unchanged") {
  RpcStack stack;
  std::string call = R"({"jsonrpc": "2.0", "method": "account.get", "params": {"id": 7}, "id": 1})";
  Response response = stack.post("/rpc", call);
  CHECK(response.status == 200);
  CHECK(response.body == resultOf("accounts", "account.get", R"({"id":7})", "1"));
  CHECK(stack.accounts.bodies() == std::vector<std::string>{call});

  std::string other = R"({"jsonrpc": "2.0", "method": "orders.create", "params": {"region": "us"}, "id": 2})";
  CHECK(stack.post("/rpc", other).body == resultOf("legacy", "orders.create", R"({"region":"us"})", "2"));
  std::string eu = R"({"jsonrpc": "2.0", "method": "orders.create", "params": {"region": "eu"}, "id": 3})";
  CHECK(stack.post("/rpc", eu).body == resultOf("orders", "orders.create", R"({"region":"eu"})", "3"));

  std::vector<Json::Value> lines = stack.accessLog(3);
  REQUIRE(lines.size() == 3);
  CHECK(lines[0]["route"] == "accounts-rpc");
  CHECK(lines[0]["upstream"] == "accounts");
  CHECK(lines[0]["jsonrpc_method"] == "account.get");
  CHECK(lines[1]["route"] == "legacy-rpc");
  CHECK(lines[2]["route"] == "eu-orders");
}

TEST_CASE("a batch whose calls all pick one route is forwarded whole") {
  RpcStack stack;
  std::string batch = "[{\"jsonrpc\":\"2.0\",\"method\":\"account.a\",\"id\":1},\n"
                      " {\"jsonrpc\":\"2.0\",\"method\":\"account.b\",\"params\":[2],\"id\":2}]";
  Response response = stack.post("/rpc", batch);
  CHECK(response.status == 200);
  // The upstream's own array, in its own (reversed) order: nothing was merged.
  CHECK(response.body == "[" + resultOf("accounts", "account.b", "[2]", "2") + "," +
                             resultOf("accounts", "account.a", "null", "1") + "]");
  CHECK(stack.accounts.bodies() == std::vector<std::string>{batch});
  CHECK(stack.legacy.bodies().empty());

  std::vector<Json::Value> lines = stack.accessLog(1);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0]["route"] == "accounts-rpc");
  CHECK(lines[0]["jsonrpc_method"] == "account.a,account.b");
}

TEST_CASE("a batch split across routes: each upstream gets its calls, the client one merged array") {
  RpcStack stack;
  const std::string calls[] = {
      R"({"jsonrpc": "2.0", "method": "account.get", "params": {"id": 7}, "id": 1})",
      R"({"jsonrpc": "2.0", "method": "orders.create", "params": {"region": "eu"}, "id": 2})",
      R"({"jsonrpc": "2.0", "method": "account.touch", "params": [1]})",
      R"({"jsonrpc": "2.0", "method": "other.x", "id": "x"})",
      R"(5)",
      R"({"jsonrpc": "2.0", "method": "orders.create", "params": {"region": "us"}, "id": 3})",
      R"({"jsonrpc": "2.0", "method": "billing.pay", "id": 4})",
  };
  std::string batch = "[";
  for (const std::string& call : calls) batch += (batch.size() > 1 ? ",\n  " : "") + call;
  batch += "]";

  Response response = stack.post("/rpc", batch, {{"X-Client", "test"}});
  CHECK(response.status == 200);
  CHECK(response.header("Content-Type") == "application/json");
  CHECK(response.body == "[" + resultOf("accounts", "account.get", R"({"id":7})", "1") + "," +
                             resultOf("orders", "orders.create", R"({"region":"eu"})", "2") + "," +
                             resultOf("legacy", "other.x", "null", "\"x\"") + "," +
                             errorOf(-32600, "Invalid Request", "null") + "," +
                             resultOf("legacy", "orders.create", R"({"region":"us"})", "3") + "," +
                             errorOf(-32603, "upstream 'down' failed: upstream_connect_refused", "4") + "]");

  // Each part holds the calls of its route, byte for byte, in their order.
  CHECK(stack.accounts.bodies() == std::vector<std::string>{"[" + calls[0] + "," + calls[2] + "]"});
  CHECK(stack.orders.bodies() == std::vector<std::string>{"[" + calls[1] + "]"});
  CHECK(stack.legacy.bodies() == std::vector<std::string>{"[" + calls[3] + "," + calls[5] + "]"});

  // A part is a POST with a length of its own and the client's other headers.
  Json::Value part = stack.accounts.received()[0];
  CHECK(part["method"] == "POST");
  CHECK(part["target"] == "/rpc");
  std::vector<std::string> headers = receivedHeaders(part);
  CHECK(contains(headers, "Content-Length: " + std::to_string(3 + calls[0].size() + calls[2].size())));
  CHECK(contains(headers, "Content-Type: application/json"));
  CHECK(contains(headers, "X-Client: test"));
  CHECK(contains(headers, "X-Forwarded-For: 127.0.0.1"));
  CHECK_FALSE(hasHeaderNamed(headers, "Transfer-Encoding"));

  std::vector<Json::Value> lines = stack.accessLog(1);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0]["status"] == 200);
  CHECK(lines[0]["route"] == "accounts-rpc,eu-orders,legacy-rpc,billing");
  CHECK(lines[0]["upstream"] == "accounts,orders,legacy,down");
  CHECK(lines[0]["jsonrpc_method"] == "account.get,orders.create,account.touch,other.x,orders.create,+1");
  CHECK(lines[0]["error"] == "upstream_connect_refused");
  CHECK(lines[0]["bytes_out"].asUInt64() == response.body.size());
}

TEST_CASE("a part that times out or answers garbage gets errors for exactly its ids") {
  RpcStack stack;
  std::string batch = R"([{"jsonrpc":"2.0","method":"orders.create","params":{"region":"eu","sleep_ms":1500},"id":10},)"
                      R"({"jsonrpc":"2.0","method":"account.get","params":{"garbage":true},"id":11},)"
                      R"({"jsonrpc":"2.0","method":"account.note","params":{"n":1}},)"
                      R"({"jsonrpc":"2.0","method":"other","id":12}])";
  Response response = stack.post("/rpc", batch);
  CHECK(response.status == 200);
  CHECK(response.body == "[" + errorOf(-32603, "upstream 'orders' failed: upstream_response_timeout", "10") + "," +
                             errorOf(-32603, "upstream 'accounts' failed: upstream_not_jsonrpc", "11") + "," +
                             resultOf("legacy", "other", "null", "12") + "]");

  std::vector<Json::Value> lines = stack.accessLog(1);
  REQUIRE(lines.size() == 1);
  // The garbage arrives at once, the timeout half a second later: the first failure is named.
  CHECK(lines[0]["error"] == "upstream_not_jsonrpc");
}

TEST_CASE("notifications only: 204, and every upstream still gets its calls") {
  RpcStack stack;
  std::string batch = R"([{"jsonrpc":"2.0","method":"account.seen"},{"jsonrpc":"2.0","method":"other.seen","params":[1]}])";
  Response response = stack.post("/rpc", batch);
  CHECK(response.status == 204);
  CHECK(response.body == "");
  CHECK(stack.accounts.bodies() == std::vector<std::string>{R"([{"jsonrpc":"2.0","method":"account.seen"}])"});
  CHECK(stack.legacy.bodies() ==
        std::vector<std::string>{R"([{"jsonrpc":"2.0","method":"other.seen","params":[1]}])"});
}

TEST_CASE("too long and empty batches are answered by the proxy and forwarded nowhere") {
  RpcStack stack(std::map<std::string, std::string>{{"STRANGLER_JSONRPC_MAX_BATCH", "3"}});
  std::string batch = "[";
  for (int i = 0; i < 4; i++) {
    batch += std::string(i ? "," : "") + R"({"jsonrpc":"2.0","method":"account.a","id":)" + std::to_string(i) + "}";
  }
  batch += "]";
  Response refused = stack.post("/rpc", batch);
  CHECK(refused.status == 200);
  CHECK(refused.body == errorOf(-32600,
                                "Invalid Request: a batch of 4 calls is over the limit of 3 "
                                "(STRANGLER_JSONRPC_MAX_BATCH)",
                                "null"));

  Response empty = stack.post("/rpc", "[]");
  CHECK(empty.status == 200);
  CHECK(empty.body == errorOf(-32600, "Invalid Request: an empty batch", "null"));

  CHECK(stack.accounts.bodies().empty());
  CHECK(stack.legacy.bodies().empty());
  std::vector<Json::Value> lines = stack.accessLog(2);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0]["error"] == "jsonrpc_batch_too_long");
  CHECK(lines[0]["route"] == "");
  CHECK(lines[1]["error"] == "jsonrpc_empty_batch");
}

TEST_CASE("bodies that are not JSON-RPC go on unchanged to the routes below") {
  RpcStack stack;
  const std::string bodies[] = {
      "{not json",
      R"({"jsonrpc": "1.0", "method": "account.get", "id": 1})",
      R"({"jsonrpc": "2.0", "method": "account.get", "method": "account.other", "id": 1})",
      R"([1, 2])",
  };
  for (const std::string& body : bodies) stack.post("/rpc", body);
  std::vector<std::string> expected(std::begin(bodies), std::end(bodies));
  CHECK(stack.legacy.bodies() == expected);
  CHECK(stack.accounts.bodies().empty());
}

TEST_CASE("an inspected body is forwarded byte for byte, with its own framing") {
  RpcStack stack;
  std::string call = "  {\"jsonrpc\" : \"2.0\",\n \"method\":\"echo.me\", \"params\": {\"text\": \"h\\u00e9llo \xc3\xa9 "
                     "\\\"quoted\\\"\"}, \"id\": 1}\n";
  Response response = stack.post("/echo", call);
  REQUIRE(response.status == 200);
  Json::Value echo = response.json();
  CHECK(echo["upstream"] == "inspected");
  CHECK(echo["body"] == call);
  CHECK(echo["body_fnv1a64"] == fnvHex(fnv1a64(call)));
  CHECK(contains(receivedHeaders(echo), "Content-Length: " + std::to_string(call.size())));

  // A chunked body is re-chunked (the echo upstream does not show trailers).
  std::string chunked = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                        "11\r\n{\"jsonrpc\":\"2.0\",\r\n"
                        "1a\r\n\"method\":\"echo.me\",\"id\":2}\r\n"
                        "0\r\nX-Check: 1\r\n\r\n";
  std::vector<RawResponse> raw = parseResponses(rawExchange(stack.proxy.port(), chunked));
  REQUIRE(raw.size() == 1);
  Json::Value chunk_echo = parseJson(raw[0].body);
  CHECK(chunk_echo["upstream"] == "inspected");
  CHECK(chunk_echo["body"] == "{\"jsonrpc\":\"2.0\",\"method\":\"echo.me\",\"id\":2}");
  std::vector<std::string> headers = receivedHeaders(chunk_echo);
  CHECK(contains(headers, "Transfer-Encoding: chunked"));

  // The trailer section goes on too.
  std::string rpc_chunked = "POST /rpc HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                            "11\r\n{\"jsonrpc\":\"2.0\",\r\n"
                            "1e\r\n\"method\":\"account.get\",\"id\":3}\r\n"
                            "0\r\nX-Check: 1\r\n\r\n";
  raw = parseResponses(rawExchange(stack.proxy.port(), rpc_chunked));
  REQUIRE(raw.size() == 1);
  CHECK(raw[0].body == resultOf("accounts", "account.get", "null", "3"));
  Json::Value received = stack.accounts.received();
  REQUIRE(received.size() == 1);
  CHECK(received[0]["body"] == "{\"jsonrpc\":\"2.0\",\"method\":\"account.get\",\"id\":3}");
  CHECK(contains(receivedHeaders(received[0]), "Transfer-Encoding: chunked"));
  REQUIRE(received[0]["trailers"].size() == 1);
  CHECK(received[0]["trailers"][0] == "X-Check: 1");

  // Another method on the same path falls through to the monolith, just as unchanged.
  std::string other = R"({"jsonrpc":"2.0","method":"echo.other","id":3})";
  Json::Value fallen = stack.post("/echo", other).json();
  CHECK(fallen["upstream"] == "monolith");
  CHECK(fallen["body"] == other);
}

TEST_CASE("a client that expects 100 Continue gets it from the proxy while the body is inspected") {
  RpcStack stack;
  std::string body = R"({"jsonrpc":"2.0","method":"echo.me","id":4})";
  std::string request = "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nConnection: close\r\n"
                        "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  std::string raw = rawExchange(stack.proxy.port(), request);
  CHECK(raw.rfind("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", 0) == 0);
  std::vector<RawResponse> responses = parseResponses(raw);
  REQUIRE(responses.size() == 2);
  Json::Value echo = parseJson(responses[1].body);
  CHECK(echo["upstream"] == "inspected");
  CHECK(echo["body"] == body);
  // The upstream is not asked to say Continue for a body that is already on its way.
  CHECK_FALSE(hasHeaderNamed(receivedHeaders(echo), "Expect"));
}

TEST_CASE("a body over STRANGLER_JSONRPC_MAX_BODY is not inspected and goes on unchanged") {
  RpcStack stack(std::map<std::string, std::string>{{"STRANGLER_JSONRPC_MAX_BODY", "1KiB"}});
  std::string call = R"({"jsonrpc":"2.0","method":"echo.me","params":{"pad":")" + std::string(3000, 'p') +
                     R"("},"id":5})";

  // With a Content-Length over the limit, it is not even read first.
  Json::Value by_length = stack.post("/echo", call).json();
  CHECK(by_length["upstream"] == "monolith");
  CHECK(by_length["body"] == call);
  CHECK(contains(receivedHeaders(by_length), "Content-Length: " + std::to_string(call.size())));

  // Chunked, it is read up to the limit, then what was read goes on ahead of the rest.
  std::string chunked = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
  for (size_t at = 0; at < call.size(); at += 700) {
    std::string piece = call.substr(at, 700);
    char size[16];
    snprintf(size, sizeof size, "%zx", piece.size());
    chunked += std::string(size) + "\r\n" + piece + "\r\n";
  }
  chunked += "0\r\n\r\n";
  std::vector<RawResponse> raw = parseResponses(rawExchange(stack.proxy.port(), chunked));
  REQUIRE(raw.size() == 1);
  Json::Value by_chunks = parseJson(raw[0].body);
  CHECK(by_chunks["upstream"] == "monolith");
  CHECK(by_chunks["body"] == call);
  CHECK(by_chunks["body_fnv1a64"] == fnvHex(fnv1a64(call)));

  // A small body on the same proxy is still inspected.
  std::string small = R"({"jsonrpc":"2.0","method":"echo.me","id":6})";
  CHECK(stack.post("/echo", small).json()["upstream"] == "inspected");

  std::vector<Json::Value> lines = stack.accessLog(3);
  REQUIRE(lines.size() == 3);
  CHECK_FALSE(lines[0].isMember("jsonrpc_method"));
  CHECK_FALSE(lines[1].isMember("jsonrpc_method"));
  CHECK(lines[2]["jsonrpc_method"] == "echo.me");
}

TEST_CASE("requests that need no inspection stream as before") {
  RpcStack stack;
  // No jsonrpc route can match this path: the body is not read before routing.
  std::string big(300000, 'x');
  Json::Value echo = stack.post("/upload", big).json();
  CHECK(echo["upstream"] == "monolith");
  CHECK(echo["body_bytes"].asUInt64() == big.size());
  CHECK(echo["body_fnv1a64"] == fnvHex(fnv1a64(big)));

  // A GET on /rpc has no body to inspect: it goes to the route for the path (whose upstream
  // knows only POST).
  Client client;
  Response get = client.get(stack.proxy.url("/rpc"));
  CHECK(get.status == 404);
  CHECK(get.body == R"({"error":"not found"})");
}

TEST_CASE("over HTTP/2 too: an inspected call goes by its method, a split batch comes back merged") {
  RpcStack stack;
  Client client;
  std::string call = R"({"jsonrpc":"2.0","method":"account.get","id":"h2"})";
  Response single = client.requestHttp2("POST", stack.proxy.url("/rpc"), {{"Content-Type", "application/json"}}, call);
  CHECK(client.httpVersion() == CURL_HTTP_VERSION_2_0);
  CHECK(single.status == 200);
  CHECK(single.body == resultOf("accounts", "account.get", "null", "\"h2\""));

  std::string batch = R"([{"jsonrpc":"2.0","method":"account.a","id":1},{"jsonrpc":"2.0","method":"other.b","id":2}])";
  Client other;
  Response merged = other.requestHttp2("POST", stack.proxy.url("/rpc"), {{"Content-Type", "application/json"}}, batch);
  CHECK(other.httpVersion() == CURL_HTTP_VERSION_2_0);
  CHECK(merged.status == 200);
  CHECK(merged.body == "[" + resultOf("accounts", "account.a", "null", "1") + "," +
                           resultOf("legacy", "other.b", "null", "2") + "]");
  CHECK(stack.accounts.bodies() ==
        std::vector<std::string>{call, R"([{"jsonrpc":"2.0","method":"account.a","id":1}])"});
  CHECK(stack.legacy.bodies() == std::vector<std::string>{R"([{"jsonrpc":"2.0","method":"other.b","id":2}])"});
}
