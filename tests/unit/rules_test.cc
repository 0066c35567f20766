// The rules loader: shapes, validation, and error messages with locations.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "shared/rules.h"

using namespace strangler;

namespace {

LoadResult load(const std::string& text) { return loadRulesFromText(text, "rules.json"); }

std::string firstError(const std::string& text) {
  LoadResult result = load(text);
  CHECK_FALSE(result.ruleset);
  return result.errors.empty() ? "<no error>" : result.errors.front();
}

// A scratch folder of rule files, removed at the end of the test.
struct RulesFolder {
  RulesFolder() {
    char pattern[] = "/tmp/strangler-rules-test-XXXXXX";
    path = mkdtemp(pattern);
  }
  ~RulesFolder() {
    std::string command = "rm -rf '" + path + "'";
    CHECK(system(command.c_str()) == 0);
  }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(path + "/" + name) << text;
  }
  std::string path;
};

const char* const kExample = R"({
  "upstreams": {
    "monolith": "http://127.0.0.1:9001",
    "orders": {"endpoints": ["http://127.0.0.1:9002", "http://[::1]:9003/base/"], "protocol": "h2c",
               "connect_timeout_ms": 250, "timeout_ms": 5000}
  },
  "routes": [
    {"name": "monolith", "priority": -100, "match": {}, "upstream": "monolith"},
    {"name": "orders", "priority": 100,
     "match": {"path": {"prefix": "/api/orders"}, "methods": ["get", "POST"],
               "host": {"exact": "Shop.Example.Test"},
               "headers": {"x-client": {"regex": "mobile/.*"}, "X-Debug": {"absent": true}},
               "query": {"beta": "1"}},
     "upstream": "orders",
     "rewrite": {"strip_prefix": "/api", "add_prefix": "/v2", "set_headers": {"x-migrated-by": "strangler"},
                 "remove_headers": ["X-Legacy-Session"]}},
    {"name": "gone", "priority": 100, "match": {"path": "/old"}, "respond": {"status": 410, "body": "gone"}}
  ]
})";

}  // namespace

TEST_CASE("a full document loads with every field") {
  LoadResult result = load(kExample);
  REQUIRE(result.errors.empty());
  REQUIRE(result.ruleset);
  const Ruleset& rules = *result.ruleset;

  REQUIRE(rules.upstreams.size() == 2);
  const Upstream& orders = rules.upstreams.at("orders");
  CHECK(orders.protocol == UpstreamProtocol::h2c);
  CHECK(orders.connect_timeout_ms == 250);
  CHECK(orders.timeout_ms == 5000);
  REQUIRE(orders.endpoints.size() == 2);
  CHECK(orders.endpoints[1].host == "::1");
  CHECK(orders.endpoints[1].port == 9003);
  CHECK(orders.endpoints[1].path_prefix == "/base");
  CHECK(rules.upstreams.at("monolith").endpoints[0].text() == "127.0.0.1:9001");

  // Priority order, ties in read order.
  REQUIRE(rules.routes.size() == 3);
  CHECK(rules.routes[0].name == "orders");
  CHECK(rules.routes[1].name == "gone");
  CHECK(rules.routes[2].name == "monolith");

  const Route& route = rules.routes[0];
  CHECK(route.match.methods == std::vector<std::string>{"GET", "POST"});
  CHECK(route.match.host->matches("shop.example.test"));
  REQUIRE(route.match.headers.size() == 2);
  for (const FieldCondition& condition : route.match.headers) {
    bool known = condition.name == "x-client" || condition.name == "x-debug";
    CHECK(known);
    if (condition.name == "x-debug") CHECK(condition.kind == FieldCondition::Kind::absent);
    if (condition.name == "x-client") CHECK(condition.matcher.matches("mobile/ios"));
  }
  CHECK(route.rewrite.remove_headers == std::vector<std::string>{"x-legacy-session"});
  CHECK(rules.routes[1].respond->status == 410);
  CHECK(rules.routes[1].respond->body == "gone");
}

TEST_CASE("a single route file is a route") {
  LoadResult result = load(R"({"name": "r", "match": {}, "respond": {"status": 204}})");
  REQUIRE(result.ruleset);
  CHECK(result.ruleset->routes.size() == 1);
}

TEST_CASE("string matchers") {
  LoadResult result = load(R"({"routes": [
    {"name": "a", "match": {"path": {"regex": "/v[0-9]+/.*", "ignore_case": true}}, "respond": {"status": 200}},
    {"name": "b", "match": {"path": {"prefix": "/API", "ignore_case": true}}, "respond": {"status": 200}}]})");
  REQUIRE(result.ruleset);
  const StringMatcher& regex = *result.ruleset->routes[0].match.path;
  CHECK(regex.matches("/v12/x"));
  CHECK(regex.matches("/V1/"));
  CHECK_FALSE(regex.matches("/v1"));     // whole value, not a search
  CHECK_FALSE(regex.matches("x/v1/y"));
  const StringMatcher& prefix = *result.ruleset->routes[1].match.path;
  CHECK(prefix.matches("/api/x"));
  CHECK(prefix.matches("/ApI"));
  CHECK_FALSE(prefix.matches("/ap"));
}

TEST_CASE("errors name file, line, column and what was expected") {
  CHECK(firstError("{\n  \"routes\": [\n    {\"name\": \"a\", \"match\": {\"pathh\": \"/x\"}, \"upstream\": \"u\"}\n  ]\n}") ==
        "rules.json:3:38: unknown key 'pathh' in match (expected one of: path, methods, host, headers, query, jsonrpc)");
  CHECK(firstError(R"({"routes": [{"name": "a", "match": {}}]})") ==
        "rules.json:1:13: a route needs exactly one of \"upstream\" (a name) and \"respond\"");
  CHECK(firstError(R"({"routes": [{"name": "a", "match": {}, "upstream": "nope"}]})") ==
        "rules.json:1:52: route 'a' names upstream 'nope', which is not defined (no upstreams are defined)");
  CHECK(firstError(R"({"upstreams": {"u": "ftp://x"}})") ==
        "rules.json:1:21: expected an endpoint http://host:port[/path], got 'ftp://x'");
  CHECK(firstError(R"({"routes": [{"name": "a", "match": {"path": {"regex": "(["}}, "upstream": "u"}]})")
            .find("invalid RE2 regex '([': missing ]") != std::string::npos);
  CHECK(firstError(R"({"routes": [{"name": "a", "match": {"path": "x"}, "respond": {"status": 200}}]})") ==
        "rules.json:1:45: a path must start with '/'");
  CHECK(firstError(R"({"routes": [{"name": "a", "priority": 1.5, "match": {}, "respond": {"status": 200}}]})") ==
        "rules.json:1:39: expected a whole number");
  CHECK(firstError(R"({"routes": [{"name": "a", "match": {}, "respond": {"status": 99}}]})") ==
        "rules.json:1:62: expected \"status\": a status code from 200 to 599");
  CHECK(firstError(R"({"routes": [{"name": "a", "match": {"path": {"exact": "/a", "prefix": "/b"}}, "respond": {"status": 200}}]})") ==
        "rules.json:1:45: a string matcher needs exactly one of \"exact\", \"prefix\" and \"regex\"");
}

TEST_CASE("syntax errors carry jsoncpp's line and column") {
  CHECK(firstError("{\n  \"routes\": [,]\n}").rfind("rules.json:2:", 0) == 0);
  CHECK(firstError("{\"a\": 1, \"a\": 2}").find("rules.json:1:") == 0);
  CHECK(firstError("[1]") == "rules.json:1:1: expected a rules document {\"upstreams\": ..., \"routes\": [...]} or one route");
}

TEST_CASE("duplicate names are refused") {
  CHECK(firstError(R"({"routes": [{"name": "a", "match": {}, "respond": {"status": 200}},
                                  {"name": "a", "match": {}, "respond": {"status": 200}}]})")
            .find("route 'a' is defined twice") != std::string::npos);
}

TEST_CASE("every error is reported, not only the first") {
  LoadResult result = load(R"({"routes": [{"name": "a", "match": {"x": 1}, "respond": {"status": 1}}]})");
  CHECK(result.errors.size() == 2);
}

TEST_CASE("a folder: files in byte order, across files names must be unique") {
  RulesFolder folder;
  folder.write("10-upstreams.json", R"({"upstreams": {"u": "http://127.0.0.1:1"}})");
  folder.write("20-b.json", R"({"name": "b", "match": {}, "upstream": "u"})");
  folder.write("30-a.json", R"({"name": "a", "match": {}, "upstream": "u"})");
  folder.write("notes.txt", "ignored");
  LoadResult result = loadRulesFromPath(folder.path);
  REQUIRE(result.errors.empty());
  REQUIRE(result.ruleset->routes.size() == 2);
  CHECK(result.ruleset->routes[0].name == "b");
  CHECK(result.ruleset->routes[1].name == "a");

  folder.write("40-dup.json", R"({"upstreams": {"u": "http://127.0.0.1:2"}})");
  LoadResult duplicate = loadRulesFromPath(folder.path);
  REQUIRE(duplicate.errors.size() == 1);
  CHECK(duplicate.errors[0] == folder.path + "/40-dup.json:1:21: upstream 'u' is defined twice");
}

TEST_CASE("the canonical document loads back to the same routes") {
  LoadResult first = load(kExample);
  REQUIRE(first.ruleset);
  LoadResult second = loadRulesFromText(first.document, "redis");
  REQUIRE(second.ruleset);
  CHECK(second.document == first.document);
  REQUIRE(second.ruleset->routes.size() == first.ruleset->routes.size());
  for (size_t i = 0; i < first.ruleset->routes.size(); i++) {
    CHECK(second.ruleset->routes[i].name == first.ruleset->routes[i].name);
  }
}

TEST_CASE("jsonnet files are evaluated, with imports and external variables") {
  RulesFolder folder;
  folder.write("lib.libsonnet", R"({ service(name, port):: {name: name, match: {path: {prefix: "/" + name}}, upstream: name} })");
  folder.write("rules.jsonnet", R"(
    local lib = import 'lib.libsonnet';
    local names = ['orders', 'billing'];
    {
      upstreams: {[n]: 'http://127.0.0.1:' + std.extVar('BASE_PORT') for n in names},
      routes: [lib.service(n, 1) for n in names],
    })");
  setenv("STRANGLER_EXT_BASE_PORT", "7000", 1);
  LoadResult result = loadRulesFromPath(folder.path + "/rules.jsonnet");
  unsetenv("STRANGLER_EXT_BASE_PORT");
  REQUIRE(result.errors.empty());
  REQUIRE(result.ruleset->routes.size() == 2);
  CHECK(result.ruleset->routes[0].name == "orders");
  CHECK(result.ruleset->upstreams.at("billing").endpoints[0].port == 7000);
}

TEST_CASE("jsonnet errors name the file, and validation errors the JSON path") {
  RulesFolder folder;
  folder.write("bad.jsonnet", "{ routes: [ 1 + ] }");
  LoadResult broken = loadRulesFromPath(folder.path + "/bad.jsonnet");
  REQUIRE(broken.errors.size() == 1);
  CHECK(broken.errors[0].rfind(folder.path + "/bad.jsonnet: Jsonnet evaluation failed: ", 0) == 0);

  folder.write("bad.jsonnet", "{ routes: [ {name: 'a', match: {paths: '/'}, respond: {status: 200}} ] }");
  LoadResult invalid = loadRulesFromPath(folder.path + "/bad.jsonnet");
  REQUIRE(invalid.errors.size() == 1);
  CHECK(invalid.errors[0] == folder.path +
                                 "/bad.jsonnet: at routes[0].match.paths: unknown key 'paths' in match (expected one "
                                 "of: path, methods, host, headers, query, jsonrpc)");
}

TEST_CASE("a missing path or an empty folder is an error") {
  CHECK(loadRulesFromPath("/nonexistent/rules.json").errors.front() == "/nonexistent/rules.json: no such file or folder");
  RulesFolder folder;
  CHECK(loadRulesFromPath(folder.path).errors.front() == folder.path + ": no *.json or *.jsonnet files in this folder");
}

TEST_CASE("deeply nested input is an error, not a crash") {
  LoadResult result = load(std::string(5000, '['));
  REQUIRE(result.errors.size() == 1);
  CHECK(result.errors[0].rfind("rules.json: invalid JSON: ", 0) == 0);
}
