// JSON-RPC routing: JSON Pointers, value equality, body classification,
// jsonrpc conditions, batch plans and the merged answer of a split batch.
#include <doctest/doctest.h>

#include "shared/jsonrpc.h"

using namespace strangler;

namespace {

Json::Value parsed(const std::string& text) {
  Json::Value value;
  REQUIRE(parseStrictJson(text, value));
  return value;
}

std::vector<std::string> tokensOf(const std::string& pointer) {
  std::optional<JsonPointer> parsed_pointer = JsonPointer::parse(pointer);
  REQUIRE(parsed_pointer);
  return parsed_pointer->tokens();
}

// The JSON text a pointer resolves to, or "<none>".
std::string resolved(const Json::Value& root, const std::string& pointer) {
  std::optional<JsonPointer> parsed_pointer = JsonPointer::parse(pointer);
  REQUIRE(parsed_pointer);
  const Json::Value* value = parsed_pointer->resolve(root);
  if (!value) return "<none>";
  Json::StreamWriterBuilder writer;
  writer["indentation"] = "";
  return Json::writeString(writer, *value);
}

Router compile(const std::string& text) {
  LoadResult result = loadRulesFromText(text, "rules.json");
  for (const std::string& error : result.errors) MESSAGE(error);
  REQUIRE(result.ruleset);
  return Router(std::shared_ptr<const Ruleset>(std::move(result.ruleset)), 1);
}

const char* const kRpcRules = R"({
  "upstreams": {"monolith": "http://127.0.0.1:9001", "accounts": "http://127.0.0.1:9002",
                "orders": "http://127.0.0.1:9003"},
  "routes": [
    {"name": "accounts-rpc", "priority": 10,
     "match": {"path": "/rpc", "jsonrpc": {"method": {"prefix": "account."}}}, "upstream": "accounts"},
    {"name": "eu-orders", "priority": 10,
     "match": {"path": "/rpc", "jsonrpc": {"method": "orders.create",
                                           "params": {"/customer/region": "eu", "/lines/0/sku": {"regex": "[A-Z]+-[0-9]+"}}}},
     "upstream": "orders"},
    {"name": "vip", "priority": 10,
     "match": {"path": "/rpc", "jsonrpc": {"params": {"/tier": {"equals": {"level": 3, "tags": ["a", "b"]}}}}},
     "upstream": "orders"},
    {"name": "positional", "priority": 10,
     "match": {"path": "/rpc", "jsonrpc": {"params": {"/0": {"regex": "0x[0-9a-f]+"}, "/1": {"equals": 2}}}},
     "upstream": "orders"},
    {"name": "escaped", "priority": 10,
     "match": {"path": "/rpc", "jsonrpc": {"params": {"/a~1b/~0c": "yes"}}}, "upstream": "orders"},
    {"name": "retired", "priority": 10,
     "match": {"path": "/rpc", "jsonrpc": {"method": "legacy.report"}}, "respond": {"status": 410}},
    {"name": "monolith", "priority": -100, "match": {}, "upstream": "monolith"}
  ]
})";

struct Request {
  std::string method = "POST";
  std::string path = "/rpc";
  HeaderList headers;

  RequestFacts facts() const {
    RequestFacts facts;
    facts.method = method;
    facts.path = path;
    facts.host = "h";
    facts.headers = &headers;
    return facts;
  }
};

// The route a single call takes, as the worker would choose it.
std::string routeOfCall(const Router& router, const std::string& body_text) {
  JsonRpcBody body(body_text);
  REQUIRE(body.kind() == JsonRpcBody::Kind::single);
  Request request;
  RequestFacts facts = request.facts();
  facts.call = &body.calls()[0];
  const Route* route = router.route(facts);
  return route ? route->name : "<none>";
}

JsonRpcPlan plan(const Router& router, const JsonRpcBody& body, size_t max_batch = 100) {
  Request request;
  RequestFacts facts = request.facts();
  HeadRoute head = router.routeHead(facts);
  return planJsonRpc(router, facts, head.route, body, max_batch);
}

std::vector<std::string> elementRoutes(const JsonRpcPlan& plan) {
  std::vector<std::string> names;
  for (const Route* route : plan.element_routes) names.push_back(route ? route->name : "<none>");
  return names;
}

}  // namespace

TEST_CASE("JSON Pointer: tokens and escapes (RFC 6901)") {
  CHECK(tokensOf("").empty());
  CHECK(tokensOf("/") == std::vector<std::string>{""});
  CHECK(tokensOf("/a~1b/~0c/0") == std::vector<std::string>{"a/b", "~c", "0"});
  // Escapes are read left to right: "~01" is "~1", not "/".
  CHECK(tokensOf("/~01") == std::vector<std::string>{"~1"});
  CHECK(tokensOf("//x/") == std::vector<std::string>{"", "x", ""});
  CHECK_FALSE(JsonPointer::parse("a"));
  CHECK_FALSE(JsonPointer::parse("/~2"));
  CHECK_FALSE(JsonPointer::parse("/x~"));
}

TEST_CASE("JSON Pointer: the examples of RFC 6901, and arrays") {
  Json::Value document = parsed(R"({"foo": ["bar", "baz"], "": 0, "a/b": 1, "c%d": 2, "e^f": 3, "g|h": 4,
                                    "i\\j": 5, "k\"l": 6, " ": 7, "m~n": 8})");
  CHECK(resolved(document, "/foo") == R"(["bar","baz"])");
  CHECK(resolved(document, "/foo/0") == R"("bar")");
  CHECK(resolved(document, "/") == "0");
  CHECK(resolved(document, "/a~1b") == "1");
  CHECK(resolved(document, "/c%d") == "2");
  CHECK(resolved(document, "/e^f") == "3");
  CHECK(resolved(document, "/g|h") == "4");
  CHECK(resolved(document, "/i\\j") == "5");
  CHECK(resolved(document, "/k\"l") == "6");
  CHECK(resolved(document, "/ ") == "7");
  CHECK(resolved(document, "/m~0n") == "8");

  CHECK(resolved(document, "/foo/1") == R"("baz")");
  CHECK(resolved(document, "/foo/2") == "<none>");
  CHECK(resolved(document, "/foo/01") == "<none>");
  CHECK(resolved(document, "/foo/-") == "<none>");
  CHECK(resolved(document, "/foo/x") == "<none>");
  CHECK(resolved(document, "/foo/0/deeper") == "<none>");
  CHECK(resolved(document, "/missing") == "<none>");
  CHECK(resolved(parsed("[[1, [2, 3]]]"), "/0/1/1") == "3");
}

TEST_CASE("JSON values compare by value") {
  CHECK(jsonEquals(parsed("1"), parsed("1.0")));
  CHECK(jsonEquals(parsed("1e2"), parsed("100")));
  CHECK(jsonEquals(parsed(R"({"a": 1, "b": [1, 2]})"), parsed(R"({"b": [1, 2.0], "a": 1})")));
  CHECK(jsonEquals(parsed("null"), parsed("null")));
  CHECK(jsonEquals(parsed(R"("x")"), parsed(R"("x")")));
  CHECK_FALSE(jsonEquals(parsed(R"("1")"), parsed("1")));
  CHECK_FALSE(jsonEquals(parsed("true"), parsed("1")));
  CHECK_FALSE(jsonEquals(parsed("-1"), parsed("18446744073709551615")));
  CHECK_FALSE(jsonEquals(parsed("9007199254740993"), parsed("9007199254740992.0")));
  CHECK_FALSE(jsonEquals(parsed("[1]"), parsed("[1, 2]")));
  CHECK_FALSE(jsonEquals(parsed(R"({"a": 1})"), parsed(R"({"a": 1, "b": 2})")));
  CHECK_FALSE(jsonEquals(parsed(R"({"a": 1})"), parsed(R"({"b": 1})")));
}

TEST_CASE("bodies: single calls, batches and what is not JSON-RPC") {
  JsonRpcBody single(R"( {"jsonrpc": "2.0", "method": "a.b", "params": [1], "id": "x"} )");
  REQUIRE(single.kind() == JsonRpcBody::Kind::single);
  const JsonRpcCall& call = single.calls()[0];
  CHECK(call.valid);
  CHECK(call.has_id);
  CHECK(call.method == "a.b");
  CHECK(single.raw(call) == R"({"jsonrpc": "2.0", "method": "a.b", "params": [1], "id": "x"})");
  CHECK(single.rawId(call) == R"("x")");

  CHECK(JsonRpcBody(R"({"jsonrpc": "2.0", "method": "n"})").calls()[0].notification());
  CHECK(JsonRpcBody(R"({"jsonrpc": "2.0", "method": "n", "id": null})").calls()[0].has_id);

  const char* const not_jsonrpc[] = {
      "", "not json", "{\"jsonrpc\": \"2.0\", \"method\": \"a\"", R"({"jsonrpc": "1.0", "method": "a", "id": 1})",
      R"({"method": "a", "id": 1})", R"({"jsonrpc": "2.0", "method": 7, "id": 1})",
      R"({"jsonrpc": "2.0", "method": "a", "params": 3, "id": 1})",
      R"({"jsonrpc": "2.0", "method": "a", "id": {"x": 1}})",
      // Duplicate keys could make the router and an upstream read different methods.
      R"({"jsonrpc": "2.0", "method": "a", "method": "b", "id": 1})",
      R"({"jsonrpc": "2.0", "method": "a", "id": 1} // comment)", R"({"jsonrpc": "2.0", "method": "a", "id": 1} {})",
      "\"a string\"", "42",
  };
  for (const char* text : not_jsonrpc) {
    CHECK_MESSAGE(JsonRpcBody(text).kind() == JsonRpcBody::Kind::not_jsonrpc, text);
  }

  JsonRpcBody batch(R"([{"jsonrpc": "2.0", "method": "a", "id": 1}, 5, {"jsonrpc": "2.0", "method": "n"},
                        {"jsonrpc": "1.0", "method": "b", "id": 1.50}])");
  REQUIRE(batch.kind() == JsonRpcBody::Kind::batch);
  REQUIRE(batch.calls().size() == 4);
  CHECK(batch.calls()[0].valid);
  CHECK_FALSE(batch.calls()[1].valid);
  CHECK(batch.raw(batch.calls()[1]) == "5");
  CHECK(batch.calls()[2].notification());
  CHECK_FALSE(batch.calls()[3].valid);
  // An invalid element's usable id is kept for its error, as the client wrote it.
  CHECK(batch.rawId(batch.calls()[3]) == "1.50");
  CHECK(batch.rawId(batch.calls()[1]) == "null");

  CHECK(JsonRpcBody("[]").kind() == JsonRpcBody::Kind::batch);
  CHECK(JsonRpcBody("[]").calls().empty());
}

TEST_CASE("deep nesting is refused, never thrown") {
  CHECK(JsonRpcBody(std::string(100000, '[')).kind() == JsonRpcBody::Kind::not_jsonrpc);
  std::string deep = R"({"jsonrpc":"2.0","method":"a","id":1,"params":)" + std::string(300, '[') +
                     std::string(300, ']') + "}";
  CHECK(JsonRpcBody(deep).kind() == JsonRpcBody::Kind::not_jsonrpc);
  std::string fine = R"({"jsonrpc":"2.0","method":"a","id":1,"params":)" + std::string(200, '[') +
                     std::string(200, ']') + "}";
  CHECK(JsonRpcBody(fine).kind() == JsonRpcBody::Kind::single);
  // Brackets inside strings are text.
  CHECK(JsonRpcBody(R"({"jsonrpc":"2.0","method":")" + std::string(5000, '[') + R"(\"]","id":1})").kind() ==
        JsonRpcBody::Kind::single);

  JsonRpcBody body(R"([{"jsonrpc":"2.0","method":"a","id":1}])");
  JsonRpcMerge merge(body);
  CHECK(merge.takeResponse("u", {0}, std::string(5000, '[')) == "upstream_not_jsonrpc");
}

TEST_CASE("jsonrpc conditions: method, params by pointer, string matchers and equals") {
  Router router = compile(kRpcRules);
  CHECK(routeOfCall(router, R"({"jsonrpc": "2.0", "method": "account.get", "id": 1})") == "accounts-rpc");
  CHECK(routeOfCall(router, R"({"jsonrpc": "2.0", "method": "accounts", "id": 1})") == "monolith");

  std::string order = R"({"jsonrpc": "2.0", "method": "orders.create", "id": 2,
                          "params": {"customer": {"region": "REGION"}, "lines": [{"sku": "SKU"}]}})";
  auto withOrder = [&](const std::string& region, const std::string& sku) {
    std::string text = order;
    text.replace(text.find("REGION"), 6, region);
    text.replace(text.find("SKU"), 3, sku);
    return routeOfCall(router, text);
  };
  CHECK(withOrder("eu", "AB-12") == "eu-orders");
  CHECK(withOrder("us", "AB-12") == "monolith");
  CHECK(withOrder("eu", "ab-12") == "monolith");
  CHECK(withOrder("eu", "AB-12x") == "monolith");
  CHECK(routeOfCall(router, R"({"jsonrpc": "2.0", "method": "orders.create", "id": 2,
                                "params": {"customer": {"region": ["eu"]}, "lines": [{"sku": "AB-1"}]}})") ==
        "monolith");

  CHECK(routeOfCall(router, R"({"jsonrpc": "2.0", "method": "m", "params": {"tier": {"tags": ["a", "b"], "level": 3.0}}})") ==
        "vip");
  CHECK(routeOfCall(router, R"({"jsonrpc": "2.0", "method": "m", "params": {"tier": {"tags": ["b", "a"], "level": 3}}})") ==
        "monolith");
  CHECK(routeOfCall(router, R"({"jsonrpc": "2.0", "method": "m", "params": ["0xbeef", 2], "id": 3})") == "positional");
  CHECK(routeOfCall(router, R"({"jsonrpc": "2.0", "method": "m", "params": ["0xbeef", "2"], "id": 3})") == "monolith");
  CHECK(routeOfCall(router, R"({"jsonrpc": "2.0", "method": "m", "params": {"a/b": {"~c": "yes"}}, "id": 4})") ==
        "escaped");
  CHECK(routeOfCall(router, R"({"jsonrpc": "2.0", "method": "legacy.report", "id": 5})") == "retired");
}

TEST_CASE("a failed jsonrpc condition is named") {
  Router router = compile(kRpcRules);
  const Route& eu_orders = router.ruleset().routes[1];
  REQUIRE(eu_orders.name == "eu-orders");
  Request request;
  RequestFacts facts = request.facts();
  CHECK(router.firstFailedCondition(eu_orders, facts) == "jsonrpc");

  JsonRpcBody wrong_method(R"({"jsonrpc": "2.0", "method": "orders.cancel", "id": 1})");
  facts.call = &wrong_method.calls()[0];
  CHECK(router.firstFailedCondition(eu_orders, facts) == "jsonrpc.method");

  JsonRpcBody wrong_region(R"({"jsonrpc": "2.0", "method": "orders.create", "id": 1,
                               "params": {"customer": {"region": "us"}, "lines": [{"sku": "A-1"}]}})");
  facts.call = &wrong_region.calls()[0];
  CHECK(router.firstFailedCondition(eu_orders, facts) == "jsonrpc.params/customer/region");

  request.path = "/other";
  RequestFacts elsewhere = request.facts();
  elsewhere.call = &wrong_region.calls()[0];
  CHECK(router.firstFailedCondition(eu_orders, elsewhere) == "path");
}

TEST_CASE("the body is needed only when a jsonrpc route could still match") {
  Router router = compile(R"({
    "upstreams": {"m": "http://127.0.0.1:1", "n": "http://127.0.0.1:2"},
    "routes": [
      {"name": "health", "priority": 20, "match": {"path": "/rpc", "methods": ["GET"]}, "upstream": "n"},
      {"name": "rpc", "priority": 10, "match": {"path": "/rpc", "methods": ["POST"], "jsonrpc": {"method": "a"}},
       "upstream": "n"},
      {"name": "late-rpc", "priority": -200, "match": {"jsonrpc": {"method": "b"}}, "upstream": "n"},
      {"name": "rest", "priority": -100, "match": {}, "upstream": "m"}
    ]})");
  Request request;
  HeadRoute post = router.routeHead(request.facts());
  CHECK(post.needs_body);
  REQUIRE(post.route);
  CHECK(post.route->name == "rest");

  request.method = "GET";
  HeadRoute get = router.routeHead(request.facts());
  CHECK_FALSE(get.needs_body);
  CHECK(get.route->name == "health");

  // Below the first route that matches without the body, a jsonrpc route can never be chosen.
  request.method = "POST";
  request.path = "/elsewhere";
  HeadRoute elsewhere = router.routeHead(request.facts());
  CHECK_FALSE(elsewhere.needs_body);
  CHECK(elsewhere.route->name == "rest");
}

TEST_CASE("batch plans: whole, split, invalid elements, limits") {
  Router router = compile(kRpcRules);

  JsonRpcBody same(R"([{"jsonrpc": "2.0", "method": "account.a", "id": 1},
                       {"jsonrpc": "2.0", "method": "account.b"}])");
  JsonRpcPlan whole = plan(router, same);
  CHECK(whole.action == JsonRpcPlan::Action::whole);
  CHECK(whole.route->name == "accounts-rpc");
  CHECK(whole.methods == "account.a,account.b");

  JsonRpcBody mixed(R"([{"jsonrpc": "2.0", "method": "account.a", "id": 1}, {"jsonrpc": "2.0", "method": "x", "id": 2},
                        7, {"jsonrpc": "2.0", "method": "legacy.report", "id": 3}])");
  JsonRpcPlan split = plan(router, mixed);
  CHECK(split.action == JsonRpcPlan::Action::split);
  CHECK(split.route == nullptr);
  CHECK(elementRoutes(split) == std::vector<std::string>{"accounts-rpc", "monolith", "monolith", "retired"});
  CHECK(split.methods == "account.a,x,legacy.report");

  // Only invalid elements: like any body that is not JSON-RPC, it goes on unchanged.
  JsonRpcPlan invalid = plan(router, JsonRpcBody("[1, 2]"));
  CHECK(invalid.action == JsonRpcPlan::Action::whole);
  CHECK(invalid.route->name == "monolith");
  CHECK(invalid.methods == "");

  JsonRpcPlan not_json = plan(router, JsonRpcBody("{oops"));
  CHECK(not_json.action == JsonRpcPlan::Action::whole);
  CHECK(not_json.route->name == "monolith");

  JsonRpcPlan empty = plan(router, JsonRpcBody("[]"));
  CHECK(empty.action == JsonRpcPlan::Action::answer);
  CHECK(empty.answer ==
        R"({"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid Request: an empty batch"},"id":null})");

  std::string long_batch = "[";
  for (int i = 0; i < 8; i++) long_batch += std::string(i ? "," : "") + R"({"jsonrpc":"2.0","method":"m)" +
                                            std::to_string(i) + R"(","id":)" + std::to_string(i) + "}";
  long_batch += "]";
  JsonRpcBody too_long(long_batch);
  JsonRpcPlan refused = plan(router, too_long, 7);
  CHECK(refused.action == JsonRpcPlan::Action::answer);
  CHECK(refused.answer == R"x({"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid Request: a batch of 8 )x"
                          R"x(calls is over the limit of 7 (STRANGLER_JSONRPC_MAX_BATCH)"},"id":null})x");
  CHECK(refused.methods == "m0,m1,m2,m3,m4,+3");
  CHECK(plan(router, too_long, 8).action == JsonRpcPlan::Action::whole);
}

TEST_CASE("merge: responses matched by id in any order, errors for exactly the failed ids") {
  JsonRpcBody body(R"([{"jsonrpc":"2.0","method":"a","id":1},
                       {"jsonrpc":"2.0","method":"b","id":"two"},
                       {"jsonrpc":"2.0","method":"note"},
                       {"jsonrpc":"2.0","method":"c","id":3},
                       {"bad":true,"id":9},
                       {"jsonrpc":"2.0","method":"d","id":4.0}])");
  REQUIRE(body.calls().size() == 6);
  CHECK(jsonRpcPartBody(body, {0, 2, 5}) ==
        R"([{"jsonrpc":"2.0","method":"a","id":1},{"jsonrpc":"2.0","method":"note"},{"jsonrpc":"2.0","method":"d","id":4.0}])");

  JsonRpcMerge merge(body);
  merge.answerError(4, kJsonRpcInvalidRequest, "Invalid Request");
  merge.answerError(2, kJsonRpcInvalidRequest, "never shown: a notification has no answer");
  CHECK(merge.takeResponse("accounts", {0, 2, 5},
                           R"([ {"jsonrpc":"2.0","result":"D","id":4}, {"jsonrpc":"2.0","result": "A" ,"id":1},
                                {"jsonrpc":"2.0","result":"stray","id":77} ])") == "");
  merge.failPart("orders", {1, 3}, "upstream_connect_refused");
  CHECK(merge.result() ==
        R"([{"jsonrpc":"2.0","result": "A" ,"id":1},)"
        R"({"jsonrpc":"2.0","error":{"code":-32603,"message":"upstream 'orders' failed: upstream_connect_refused"},"id":"two"},)"
        R"({"jsonrpc":"2.0","error":{"code":-32603,"message":"upstream 'orders' failed: upstream_connect_refused"},"id":3},)"
        R"({"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid Request"},"id":9},)"
        R"({"jsonrpc":"2.0","result":"D","id":4}])");
}

TEST_CASE("merge: repeated ids take their responses in turn; missing and malformed answers") {
  JsonRpcBody body(R"([{"jsonrpc":"2.0","method":"a","id":7},{"jsonrpc":"2.0","method":"b","id":7},
                       {"jsonrpc":"2.0","method":"c","id":8}])");
  JsonRpcMerge repeated(body);
  CHECK(repeated.takeResponse("u", {0, 1, 2},
                              R"([{"jsonrpc":"2.0","result":"first","id":7},{"jsonrpc":"2.0","result":"second","id":7}])") ==
        "upstream_missing_response");
  CHECK(repeated.result() ==
        R"([{"jsonrpc":"2.0","result":"first","id":7},{"jsonrpc":"2.0","result":"second","id":7},)"
        R"({"jsonrpc":"2.0","error":{"code":-32603,"message":"upstream 'u' failed: upstream_missing_response"},"id":8}])");

  const char* const not_responses[] = {
      "<html>oops</html>", "", "[1]", R"({"jsonrpc":"2.0","id":7})",
      R"([{"jsonrpc":"2.0","result":1,"error":{"code":1,"message":"x"},"id":7}])",
      R"([{"jsonrpc":"2.0","error":{"code":"1","message":"x"},"id":7}])", R"("a string")",
  };
  for (const char* response : not_responses) {
    JsonRpcMerge merge(body);
    CHECK_MESSAGE(merge.takeResponse("u", {0, 2}, response) == "upstream_not_jsonrpc", response);
    CHECK(merge.result() ==
          R"([{"jsonrpc":"2.0","error":{"code":-32603,"message":"upstream 'u' failed: upstream_not_jsonrpc"},"id":7},)"
          R"({"jsonrpc":"2.0","error":{"code":-32603,"message":"upstream 'u' failed: upstream_not_jsonrpc"},"id":8}])");
  }

  // A single response object answers a part of one call as well.
  JsonRpcMerge single(body);
  CHECK(single.takeResponse("u", {2}, R"({"jsonrpc":"2.0","error":{"code":-1,"message":"no"},"id":8})") == "");
  CHECK(single.result() == R"([{"jsonrpc":"2.0","error":{"code":-1,"message":"no"},"id":8}])");
}

TEST_CASE("merge: notifications only leave nothing to answer") {
  JsonRpcBody body(R"([{"jsonrpc":"2.0","method":"a"},{"jsonrpc":"2.0","method":"b"}])");
  JsonRpcMerge merge(body);
  CHECK(merge.takeResponse("u", {0}, "") == "");
  merge.failPart("v", {1}, "upstream_reset");
  CHECK(merge.result() == "");
}

TEST_CASE("the access log's method list stays short") {
  std::string text = "[";
  for (int i = 0; i < 100; i++) {
    text += std::string(i ? "," : "") + R"({"jsonrpc":"2.0","method":")" + std::string(300, 'm') + R"("})";
  }
  text += "]";
  std::string list = jsonRpcMethodList(JsonRpcBody(text));
  CHECK(list == std::string(128, 'm') + "," + std::string(128, 'm') + "," + std::string(128, 'm') + "," +
                    std::string(128, 'm') + "," + std::string(128, 'm') + ",+95");
}
