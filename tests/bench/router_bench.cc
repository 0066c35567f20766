// router_bench: the time one Router::route() call takes with many routes,
// against a full scan of the same routes in priority order. Not a test: it
// prints figures and asserts nothing about them.
//
// usage: router_bench [ROUTES] [CALLS] [PATHLESS]
//   defaults 10000 routes, 1000000 calls, and 100 of the routes without a
//   path condition (a header condition alone), which every request is
//   checked against.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "shared/router.h"

using namespace strangler;

namespace {

uint64_t g_state = 0x9E3779B97F4A7C15ull;

uint64_t nextRandom(uint64_t bound) {
  g_state ^= g_state << 13;
  g_state ^= g_state >> 7;
  g_state ^= g_state << 17;
  return g_state % bound;
}

// A large migration: services by exact path and by prefix (some of them
// case-insensitive or limited to methods), regex paths, `pathless` routes on
// a header alone, and the monolith as the catch-all.
std::string rulesText(size_t routes, size_t pathless) {
  std::string text = R"({"upstreams": {"monolith": "http://127.0.0.1:9001", "svc": "http://127.0.0.1:9002"}, "routes": [)";
  size_t every = pathless ? routes / pathless : routes + 1;
  for (size_t i = 0; i < routes; i++) {
    std::string name = "\"name\": \"r" + std::to_string(i) + "\"";
    std::string priority = ", \"priority\": " + std::to_string(nextRandom(20));
    std::string match;
    if (i % every == 1) {
      match = R"("headers": {"x-tenant": "t)" + std::to_string(i) + R"("})";
      text += "{" + name + priority + ", \"match\": {" + match + "}, \"upstream\": \"svc\"},\n";
      continue;
    }
    switch (i % 20) {
      case 0: case 1: match = R"("path": {"regex": "/re)" + std::to_string(i) + R"(/[0-9]+"})"; break;
      case 2: case 3: match = R"("path": {"prefix": "/Svc)" + std::to_string(i) + R"(/", "ignore_case": true})"; break;
      case 4: case 5: case 6: case 7:
        match = R"("path": {"prefix": "/svc)" + std::to_string(i) + R"(/"}, "methods": ["GET", "POST"])";
        break;
      default: match = R"("path": "/api/svc)" + std::to_string(i) + R"(/items")"; break;
    }
    text += "{" + name + priority + ", \"match\": {" + match + "}, \"upstream\": \"svc\"},\n";
  }
  text += R"({"name": "monolith", "priority": -100, "match": {}, "upstream": "monolith"}]})";
  return text;
}

std::vector<std::string> requestPaths(size_t routes, size_t count) {
  std::vector<std::string> paths;
  for (size_t i = 0; i < count; i++) {
    size_t target = nextRandom(routes);
    switch (nextRandom(5)) {
      case 0: paths.push_back("/api/svc" + std::to_string(target) + "/items"); break;
      case 1: paths.push_back("/svc" + std::to_string(target) + "/orders/" + std::to_string(i)); break;
      case 2: paths.push_back("/SVC" + std::to_string(target) + "/x"); break;
      case 3: paths.push_back("/re" + std::to_string(target) + "/42"); break;
      default: paths.push_back("/legacy/page/" + std::to_string(i)); break;
    }
  }
  return paths;
}

template <typename Choose>
double nanosecondsPerCall(const std::vector<std::string>& paths, size_t calls, Choose choose, size_t& matched) {
  HeaderList headers = {{"Host", "shop.example.test"}, {"User-Agent", "bench"}};
  RequestFacts facts;
  facts.method = "GET";
  facts.host = "shop.example.test";
  facts.headers = &headers;
  matched = 0;
  auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < calls; i++) {
    facts.path = paths[i % paths.size()];
    matched += choose(facts) != nullptr;
  }
  auto elapsed = std::chrono::steady_clock::now() - start;
  return std::chrono::duration<double, std::nano>(elapsed).count() / static_cast<double>(calls);
}

}  // namespace

int main(int argc, char** argv) {
  size_t routes = argc > 1 ? strtoul(argv[1], nullptr, 10) : 10000;
  size_t calls = argc > 2 ? strtoul(argv[2], nullptr, 10) : 1000000;
  size_t pathless = argc > 3 ? strtoul(argv[3], nullptr, 10) : 100;
  if (routes == 0 || calls == 0 || pathless > routes) {
    fprintf(stderr, "usage: router_bench [ROUTES] [CALLS] [PATHLESS]\n");
    return 2;
  }

  LoadResult loaded = loadRulesFromText(rulesText(routes, pathless), "bench");
  if (!loaded.ruleset) {
    fprintf(stderr, "router_bench: %s\n", loaded.errors.empty() ? "invalid rules" : loaded.errors[0].c_str());
    return 1;
  }
  auto compile_start = std::chrono::steady_clock::now();
  Router router(std::shared_ptr<const Ruleset>(std::move(loaded.ruleset)), 1);
  double compile_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - compile_start).count();
  std::vector<std::string> paths = requestPaths(routes, 4096);

  size_t matched = 0;
  double indexed = nanosecondsPerCall(paths, calls, [&](const RequestFacts& f) { return router.route(f); }, matched);
  printf("routes: %zu (%zu on a header alone); router compiled in %.1f ms\n", router.ruleset().routes.size(),
         pathless, compile_ms);
  printf("Router::route(): %.0f ns per call (%zu calls, %zu matched)\n", indexed, calls, matched);

  // The full scan is what the index replaces; far fewer calls keep it short.
  size_t scan_calls = calls / 100 > 0 ? calls / 100 : 1;
  auto scan = [&](const RequestFacts& f) -> const Route* {
    for (const Route& route : router.ruleset().routes) {
      if (router.firstFailedCondition(route, f).empty()) return &route;
    }
    return nullptr;
  };
  double scanned = nanosecondsPerCall(paths, scan_calls, scan, matched);
  printf("full scan:       %.0f ns per call (%zu calls, %zu matched)\n", scanned, scan_calls, matched);
  return 0;
}
