// Route choice: conditions, priorities and first-match order.
#include <doctest/doctest.h>

#include <set>

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

namespace {

// The route a full scan in priority order picks: what the index must agree with.
std::string scannedRouteOf(const Router& router, const RequestFacts& facts) {
  for (const Route& route : router.ruleset().routes) {
    if (router.firstFailedCondition(route, facts).empty()) return route.name;
  }
  return "<none>";
}

}  // namespace

TEST_CASE("the path index picks exactly what a full scan picks") {
  // Exact, prefix, case-folded, regex and path-less routes (by header or
  // not) over a small alphabet, so that many of them overlap; priorities
  // collide on purpose.
  const char* const segments[] = {"/a", "/b", "/A", "/ab", "/a/", "/B", "/c"};
  uint64_t state = 0x2545F4914F6CDD1Dull;
  auto next = [&](uint64_t bound) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state % bound;
  };
  auto randomPath = [&](size_t parts) {
    std::string path;
    for (size_t i = 0; i < parts; i++) path += segments[next(7)];
    return path;
  };

  std::string routes;
  std::vector<std::string> route_paths;
  for (int i = 0; i < 300; i++) {
    int kind = static_cast<int>(next(11));
    // Short prefixes would swallow everything below them; exact paths may be short.
    std::string path = randomPath(kind == 0 || kind == 3 ? 1 + next(3) : 3 + next(2));
    route_paths.push_back(path);
    std::string match;
    switch (kind) {
      case 0: match = R"("path": ")" + path + "\""; break;
      case 1: match = R"("path": {"prefix": ")" + path + "\"}"; break;
      case 2: match = R"("path": {"prefix": ")" + path + R"(", "ignore_case": true})"; break;
      case 3: match = R"("path": {"exact": ")" + path + R"(", "ignore_case": true})"; break;
      case 4: match = R"("path": {"regex": ")" + path + R"((/b)?"})"; break;
      case 5: match = R"("methods": ["PUT"])"; break;
      case 7: match = R"("headers": {"x-h": ")" + path + R"("})"; break;
      case 8: match = R"("headers": {"x-gone": {"absent": true}, "x-h": {"present": true}}, "methods": ["PUT"])"; break;
      case 9: match = R"("path": {"regex": "()" + path + "|" + randomPath(2) + R"()/c?"})"; break;
      case 10: match = R"("path": {"regex": ")" + path + R"(.*", "ignore_case": true})"; break;
      default: match = R"("path": {"prefix": ")" + path + R"("}, "methods": ["GET"])"; break;
    }
    routes += std::string(i ? ",\n" : "") + R"({"name": "r)" + std::to_string(i) + R"(", "priority": )" +
              std::to_string(static_cast<int>(next(7)) - 3) + R"(, "match": {)" + match + R"(}, "upstream": "u"})";
  }
  Router router = compile(R"({"upstreams": {"u": "http://127.0.0.1:1"}, "routes": [)" + routes + "]}");

  std::set<std::string> chosen;
  for (int i = 0; i < 5000; i++) {
    // Mostly a route's own path, perhaps longer or in other case; else anything.
    std::string path = next(10) < 7 ? route_paths[next(route_paths.size())] : randomPath(1 + next(5));
    if (next(3) == 0) path += segments[next(7)];
    if (next(4) == 0) {
      for (char& c : path) c = static_cast<char>(next(2) ? toupper(c) : tolower(c));
    }
    HeaderList headers;
    if (next(3) == 0) headers.emplace_back(next(2) ? "X-H" : "x-h", route_paths[next(route_paths.size())]);
    if (next(5) == 0) headers.emplace_back("X-H", path);
    if (next(4) == 0) headers.emplace_back("X-Gone", "1");
    RequestFacts facts;
    facts.method = next(20) == 0 ? "PUT" : next(2) ? "GET" : "POST";
    facts.path = path;
    facts.host = "h";
    facts.headers = &headers;
    const Route* indexed = router.route(facts);
    std::string expected = scannedRouteOf(router, facts);
    CHECK_MESSAGE((indexed ? indexed->name : "<none>") == expected, facts.method << " " << path);
    chosen.insert(expected);
  }
  // Many different routes win, so the comparison covers every kind of index entry.
  MESSAGE(chosen.size() << " different routes chosen");
  CHECK(chosen.size() > 100);
}
