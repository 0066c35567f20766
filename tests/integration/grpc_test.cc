// gRPC through the proxy with real peers (Debian's python3-grpcio): unary,
// server-streaming and bidirectional calls to h2c upstreams, routed by path
// and header, with messages, status and trailing metadata end to end.
#include <doctest/doctest.h>

#include <cstdio>
#include <set>
#include <sstream>

#include "tests/integration/harness.h"

using namespace harness;

namespace {

// A gRPC server of tests/support/grpc_upstream.py.
class GrpcUpstream : public ListeningPeer {
 public:
  explicit GrpcUpstream(const std::string& name, int max_streams = 0)
      : ListeningPeer(arguments(name, max_streams)) {}

 private:
  static std::vector<std::string> arguments(const std::string& name, int max_streams) {
    std::vector<std::string> argv = {kPython, supportScript("grpc_upstream.py"), "--name", name};
    if (max_streams > 0) argv.insert(argv.end(), {"--max-streams", std::to_string(max_streams)});
    return argv;
  }
};

const char* const kRules = R"({
      "upstreams": {
        "alpha": {"endpoints": ["ALPHA"], "protocol": "h2c"},
        "beta": {"endpoints": ["BETA"], "protocol": "h2c"},
        "monolith": "{monolith}"},
      "routes": [
        {"name": "echo-beta", "priority": 10,
         "match": {"path": {"prefix": "/strangler.test.Echo/"}, "headers": {"x-tenant": "beta"}},
         "upstream": "beta"},
        {"name": "echo", "priority": 5, "match": {"path": {"prefix": "/strangler.test.Echo/"}},
         "upstream": "alpha"},
        {"name": "monolith", "priority": -100, "match": {}, "upstream": "monolith"}]})";

// The gRPC upstreams start first: the rules name their URLs.
struct GrpcStack {
  explicit GrpcStack(int beta_max_streams = 0)
      : alpha("alpha"),
        beta("beta", beta_max_streams),
        echo_stack({"monolith"}, replaceAll(replaceAll(kRules, "ALPHA", alpha.url()), "BETA", beta.url())),
        proxy(echo_stack.proxy) {}

  GrpcUpstream alpha;
  GrpcUpstream beta;
  EchoStack echo_stack;
  Proxy& proxy;
};

// Runs tests/support/grpc_client.py against the proxy; one result per call.
std::vector<Json::Value> callGrpc(const Proxy& proxy, const std::string& method, const std::string& kind,
                                  const std::vector<std::string>& messages, const Headers& metadata = {},
                                  int calls = 1) {
  std::string arguments = "--target 127.0.0.1:" + std::to_string(proxy.port()) + " --method " + method +
                          " --kind " + kind + " --calls " + std::to_string(calls);
  for (const std::string& message : messages) arguments += " --message '" + message + "'";
  for (const auto& [key, value] : metadata) arguments += " --metadata '" + key + "=" + value + "'";

  std::vector<Json::Value> results;
  std::istringstream lines(runSupportClient("grpc_client.py", arguments));
  std::string line;
  while (std::getline(lines, line)) results.push_back(parseJson(line));
  return results;
}

std::vector<std::string> strings(const Json::Value& array) {
  std::vector<std::string> values;
  for (const Json::Value& item : array) values.push_back(item.asString());
  return values;
}

std::string peerOf(const Json::Value& result) {
  for (const Json::Value& pair : result["trailing_metadata"]) {
    if (pair[0].asString() == "x-peer") return pair[1].asString();
  }
  return "";
}

}  // namespace

TEST_CASE("gRPC unary calls pass through, routed by path and by header, with status and trailing metadata") {
  GrpcStack stack;

  std::vector<Json::Value> plain = callGrpc(stack.proxy, "/strangler.test.Echo/Unary", "unary", {"hello"});
  REQUIRE(plain.size() == 1);
  CHECK(plain[0]["code"] == "OK");
  CHECK(strings(plain[0]["messages"]) == std::vector<std::string>{"alpha:hello"});
  std::vector<std::string> initial = pairLines(plain[0]["initial_metadata"]);
  REQUIRE(initial.size() == 2);
  CHECK(initial[0] == "x-upstream: alpha");
  CHECK(initial[1].rfind("x-request-id: ", 0) == 0);
  std::vector<std::string> trailing = pairLines(plain[0]["trailing_metadata"]);
  REQUIRE(trailing.size() == 3);
  CHECK(trailing[0] == "x-upstream-trailer: alpha");
  CHECK(trailing[1].rfind("x-peer: ipv4:127.0.0.1:", 0) == 0);
  CHECK(trailing[2] == "x-tenant-seen: ");

  std::vector<Json::Value> tenant =
      callGrpc(stack.proxy, "/strangler.test.Echo/Unary", "unary", {"hello"}, {{"x-tenant", "beta"}});
  REQUIRE(tenant.size() == 1);
  CHECK(tenant[0]["code"] == "OK");
  CHECK(strings(tenant[0]["messages"]) == std::vector<std::string>{"beta:hello"});
  CHECK(pairLines(tenant[0]["trailing_metadata"])[0] == "x-upstream-trailer: beta");
  CHECK(pairLines(tenant[0]["trailing_metadata"])[2] == "x-tenant-seen: beta");

  // A status other than OK travels in the trailers, with its message and metadata.
  std::vector<Json::Value> failed =
      callGrpc(stack.proxy, "/strangler.test.Echo/Unary", "unary", {"status:5:no such order"});
  REQUIRE(failed.size() == 1);
  CHECK(failed[0]["code"] == "NOT_FOUND");
  CHECK(failed[0]["details"] == "no such order");
  CHECK(pairLines(failed[0]["trailing_metadata"])[0] == "x-upstream-trailer: alpha");

  std::vector<Json::Value> lines = stack.proxy.accessLog();
  REQUIRE(lines.size() == 3);
  CHECK(lines[0]["route"] == "echo");
  CHECK(lines[0]["upstream"] == "alpha");
  CHECK(lines[0]["path"] == "/strangler.test.Echo/Unary");
  CHECK(lines[0]["protocol"] == "HTTP/2");
  CHECK(lines[0]["status"] == 200);
  CHECK(lines[0]["termination"] == "ok");
  CHECK(lines[0]["request_id"].asString() == initial[1].substr(14));
  CHECK(lines[1]["route"] == "echo-beta");
  CHECK(lines[1]["upstream"] == "beta");
  // gRPC errors are HTTP 200 answers whose trailers carry the status.
  CHECK(lines[2]["status"] == 200);
  CHECK(lines[2]["termination"] == "ok");
}

TEST_CASE("gRPC server-streaming and bidirectional calls pass through with their trailers") {
  GrpcStack stack;

  std::vector<Json::Value> streamed = callGrpc(stack.proxy, "/strangler.test.Echo/Stream", "stream", {"4:tick:50"});
  REQUIRE(streamed.size() == 1);
  CHECK(streamed[0]["code"] == "OK");
  CHECK(strings(streamed[0]["messages"]) ==
        std::vector<std::string>{"alpha:0:tick", "alpha:1:tick", "alpha:2:tick", "alpha:3:tick"});
  CHECK(pairLines(streamed[0]["initial_metadata"])[0] == "x-upstream: alpha");
  CHECK(pairLines(streamed[0]["trailing_metadata"])[0] == "x-upstream-trailer: alpha");

  std::vector<Json::Value> routed =
      callGrpc(stack.proxy, "/strangler.test.Echo/Stream", "stream", {"2:tock"}, {{"x-tenant", "beta"}});
  REQUIRE(routed.size() == 1);
  CHECK(strings(routed[0]["messages"]) == std::vector<std::string>{"beta:0:tock", "beta:1:tock"});
  CHECK(pairLines(routed[0]["trailing_metadata"])[0] == "x-upstream-trailer: beta");

  std::vector<Json::Value> chat = callGrpc(stack.proxy, "/strangler.test.Echo/Chat", "chat", {"one", "two", "three"});
  REQUIRE(chat.size() == 1);
  CHECK(chat[0]["code"] == "OK");
  CHECK(strings(chat[0]["messages"]) == std::vector<std::string>{"alpha:one", "alpha:two", "alpha:three"});
  CHECK(pairLines(chat[0]["trailing_metadata"])[0] == "x-upstream-trailer: alpha");

  std::vector<Json::Value> lines = stack.proxy.accessLog();
  REQUIRE(lines.size() == 3);
  CHECK(lines[0]["route"] == "echo");
  CHECK(lines[1]["route"] == "echo-beta");
  CHECK(lines[2]["path"] == "/strangler.test.Echo/Chat");
  for (const Json::Value& line : lines) CHECK(line["termination"] == "ok");
}

TEST_CASE("concurrent gRPC calls share one upstream connection; past its stream limit more open, then calls wait") {
  GrpcStack stack(2);

  // alpha sets no stream limit: eight streaming calls at once, one connection.
  std::vector<Json::Value> shared = callGrpc(stack.proxy, "/strangler.test.Echo/Stream", "stream", {"3:s:150"}, {}, 8);
  REQUIRE(shared.size() == 8);
  std::set<std::string> peers;
  for (const Json::Value& result : shared) {
    CHECK(result["code"] == "OK");
    CHECK(strings(result["messages"]) == std::vector<std::string>{"alpha:0:s", "alpha:1:s", "alpha:2:s"});
    peers.insert(peerOf(result));
  }
  CHECK(peers.size() == 1);

  // beta allows two streams per connection: ten calls at once fill four
  // connections (the most per endpoint) and two wait their turn.
  std::vector<Json::Value> limited =
      callGrpc(stack.proxy, "/strangler.test.Echo/Stream", "stream", {"2:l:400"}, {{"x-tenant", "beta"}}, 10);
  REQUIRE(limited.size() == 10);
  std::set<std::string> limited_peers;
  for (const Json::Value& result : limited) {
    CHECK(result["code"] == "OK");
    CHECK(strings(result["messages"]) == std::vector<std::string>{"beta:0:l", "beta:1:l"});
    limited_peers.insert(peerOf(result));
  }
  CHECK(limited_peers.size() == 4);

  Client client;
  Response metrics = client.get(stack.proxy.adminUrl("/metrics"));
  CHECK(metrics.body.find("strangler_upstream_connect_duration_seconds_count{upstream=\"alpha\"} 1\n") !=
        std::string::npos);
  CHECK(metrics.body.find("strangler_upstream_connect_duration_seconds_count{upstream=\"beta\"} 4\n") !=
        std::string::npos);
}

TEST_CASE("a gRPC upstream that is down: the client sees UNAVAILABLE, the access log the refused connect") {
  RedisServer redis;
  int closed_port = freePort();
  ProxyOptions options;
  options.rules_json = R"({"upstreams": {"down": {"endpoints": ["http://127.0.0.1:)" + std::to_string(closed_port) +
                       R"("], "protocol": "h2c"}}, "routes": [{"name": "down", "match": {}, "upstream": "down"}]})";
  Proxy proxy(&redis, options);

  std::vector<Json::Value> results = callGrpc(proxy, "/strangler.test.Echo/Unary", "unary", {"x"});
  REQUIRE(results.size() == 1);
  CHECK(results[0]["code"] == "UNAVAILABLE");
  std::vector<Json::Value> lines = proxy.accessLog();
  REQUIRE(lines.size() == 1);
  CHECK(lines[0]["status"] == 502);
  CHECK(lines[0]["error"] == "upstream_connect_refused");
  CHECK(lines[0]["termination"] == "upstream_connect");
}
