// Route choice: conditions, priorities and first-match order.
#include <doctest/doctest.h>

#include "shared/router.h"

using namespace strangler;

namespace {

Router compile(const std::string& text) {
  LoadResult result = loadRulesFromText(text, "rules.json");
  for (const std::string& error : result.errors) MESSAGE(error);
  REQUIRE(result.ruleset);
  return Router(std::shared_ptr<const Ruleset>(std::move(result.ruleset)), 1);
}

std::string routeOf(const Router& router, const std::string& method, const std::string& path,
                    const HeaderList& headers = {}, const std::string& query = "", const std::string& host = "h") {
  RequestFacts facts;
  facts.method = method;
  facts.path = path;
  facts.host = host;
  facts.query = query;
  facts.headers = &headers;
  const Route* route = router.route(facts);
  return route ? route->name : "<none>";
}

const char* const kMigration = R"({
  "upstreams": {"monolith": "http://127.0.0.1:9001", "accounts": "http://127.0.0.1:9002"},
  "routes": [
    {"name": "monolith", "priority": -100, "match": {}, "upstream": "monolith"},
    {"name": "accounts-http", "priority": 10, "match": {"path": {"prefix": "/api/v2/accounts"}}, "upstream": "accounts"},
    {"name": "accounts-canary", "priority": 10, "match": {"headers": {"x-backend": "new"}}, "upstream": "accounts"},
    {"name": "writes", "priority": 5, "match": {"methods": ["POST", "PUT"], "path": {"regex": "/orders/[0-9]+"}},
     "upstream": "accounts"},
    {"name": "shop-host", "priority": 5, "match": {"host": "shop.example.test"}, "upstream": "accounts"},
    {"name": "beta", "priority": 4, "match": {"query": {"beta": "1", "legacy": {"absent": true}}}, "upstream": "accounts"},
    {"name": "debug", "priority": 3, "match": {"headers": {"x-debug": {"present": true}}}, "upstream": "accounts"}
  ]
})";

}  // namespace

TEST_CASE("the catch-all takes what nothing else matches") {
  Router router = compile(kMigration);
  CHECK(routeOf(router, "GET", "/legacy/page") == "monolith");
  CHECK(routeOf(router, "GET", "/api/v2/accounts/7") == "accounts-http");
  CHECK(routeOf(router, "GET", "/api/v2/account") == "monolith");
}

TEST_CASE("equal priority keeps read order") {
  Router router = compile(kMigration);
  CHECK(routeOf(router, "GET", "/api/v2/accounts", {{"X-Backend", "new"}}) == "accounts-http");
  CHECK(routeOf(router, "GET", "/x", {{"X-Backend", "new"}}) == "accounts-canary");
}

TEST_CASE("header names are compared without case, values exactly, any repeated value matches") {
  Router router = compile(kMigration);
  CHECK(routeOf(router, "GET", "/x", {{"x-BACKEND", "new"}}) == "accounts-canary");
  CHECK(routeOf(router, "GET", "/x", {{"X-Backend", "New"}}) == "monolith");
  CHECK(routeOf(router, "GET", "/x", {{"X-Backend", "old"}, {"X-Backend", "new"}}) == "accounts-canary");
  CHECK(routeOf(router, "GET", "/x", {{"X-Debug", ""}}) == "debug");
}

TEST_CASE("methods and whole-value regexes") {
  Router router = compile(kMigration);
  CHECK(routeOf(router, "POST", "/orders/12") == "writes");
  CHECK(routeOf(router, "GET", "/orders/12") == "monolith");
  CHECK(routeOf(router, "POST", "/orders/12/items") == "monolith");
}

TEST_CASE("host without port and case") {
  Router router = compile(kMigration);
  CHECK(routeOf(router, "GET", "/", {}, "", "SHOP.example.test:8080") == "shop-host");
  CHECK(routeOf(router, "GET", "/", {}, "", "shop.example.test.evil") == "monolith");
  CHECK(hostWithoutPort("[::1]:80") == "::1");
}

TEST_CASE("query parameters, decoded, with absence") {
  Router router = compile(kMigration);
  CHECK(routeOf(router, "GET", "/", {}, "beta=1") == "beta");
  CHECK(routeOf(router, "GET", "/", {}, "x=2&beta=%31") == "beta");
  CHECK(routeOf(router, "GET", "/", {}, "beta=1&legacy=") == "monolith");
  CHECK(routeOf(router, "GET", "/", {}, "beta=2") == "monolith");
}

TEST_CASE("the first failed condition is named") {
  Router router = compile(kMigration);
  HeaderList none;
  RequestFacts facts;
  facts.method = "GET";
  facts.path = "/orders/1";
  facts.host = "h";
  facts.headers = &none;
  const Ruleset& rules = router.ruleset();
  auto named = [&](const std::string& name) -> const Route& {
    for (const Route& route : rules.routes) {
      if (route.name == name) return route;
    }
    FAIL("no route " << name);
    return rules.routes[0];
  };
  CHECK(router.firstFailedCondition(named("writes"), facts) == "methods");
  CHECK(router.firstFailedCondition(named("accounts-http"), facts) == "path");
  CHECK(router.firstFailedCondition(named("accounts-canary"), facts) == "headers.x-backend");
  CHECK(router.firstFailedCondition(named("beta"), facts) == "query.beta");
  CHECK(router.firstFailedCondition(named("monolith"), facts) == "");
}

TEST_CASE("no route at all") {
  Router router = compile(R"({"routes": [{"name": "only", "match": {"path": "/x"}, "respond": {"status": 200}}]})");
  CHECK(routeOf(router, "GET", "/y") == "<none>");
}
