// libFuzzer target over the downstream request path short of the network:
// the raw head check, llhttp, the parser's own validation, target splitting,
// path normalisation and routing. The first input byte picks the size of the
// pieces the rest is fed in, so read boundaries are fuzzed too.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "shared/http_path.h"
#include "shared/router.h"
#include "shared/rules.h"
#include "worker/http1_request_parser.h"

namespace {

using namespace strangler;

const char* const kRules = R"({
  "upstreams": {"a": "http://127.0.0.1:1", "b": "http://127.0.0.1:2"},
  "routes": [
    {"name": "prefix", "priority": 5, "match": {"path": {"prefix": "/api/"}, "methods": ["GET", "POST"]}, "upstream": "a"},
    {"name": "regex", "priority": 5, "match": {"path": {"regex": "/v[0-9]+/.*", "ignore_case": true}}, "upstream": "b"},
    {"name": "header", "priority": 4, "match": {"headers": {"x-backend": {"prefix": "new"}, "x-off": {"absent": true}}}, "upstream": "b"},
    {"name": "query", "priority": 3, "match": {"query": {"beta": "1"}, "host": {"exact": "shop.test"}}, "upstream": "b"},
    {"name": "rest", "priority": -1, "match": {}, "upstream": "a"}
  ]})";

const Router& router() {
  static Router instance = [] {
    LoadResult loaded = loadRulesFromText(kRules, "fuzz");
    return Router(std::shared_ptr<const Ruleset>(std::move(loaded.ruleset)), 1);
  }();
  return instance;
}

// Routes every request head the parser delivers, as an exchange would.
struct RoutingHandler : Http1RequestParser::Handler {
  void onRequestHead(RequestHead& head) override {
    std::string authority;
    std::string_view raw_path;
    std::string_view query;
    if (!splitRequestTarget(head.target, authority, raw_path, query)) return;
    std::string path;
    if (normalizePath(raw_path, EncodedSlashes::reject, path) != PathVerdict::ok) return;
    RequestFacts facts;
    facts.method = head.method;
    facts.path = path;
    facts.query = query;
    const std::string* host = findHeader(head.headers, "host");
    std::string host_value = !authority.empty() ? authority : host ? *host : "";
    facts.host = host_value;
    facts.headers = &head.headers;
    routed += router().route(facts) ? 1 : 0;
  }
  void onRequestBody(const char*, size_t length) override { body_bytes += length; }
  void onRequestEnd(const HeaderList&) override {}

  size_t routed = 0;
  size_t body_bytes = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  size_t piece = 1 + data[0] % 64;
  std::string input(reinterpret_cast<const char*>(data + 1), size - 1);

  RoutingHandler handler;
  Http1RequestParser::Limits limits;
  limits.max_header_size = 8192;
  limits.max_headers = 64;
  limits.max_body = 1 << 20;
  Http1RequestParser parser(handler, limits);

  std::string pending;
  size_t fed = 0;
  for (int rounds = 0; rounds < 100000; rounds++) {
    if (fed < input.size()) {
      pending.append(input, fed, piece);
      fed += piece;
    }
    size_t consumed = 0;
    auto status = parser.execute(pending.data(), pending.size(), consumed);
    pending.erase(0, consumed);
    if (status == Http1RequestParser::Status::refused) break;
    if (status == Http1RequestParser::Status::message_done) {
      parser.resume();
      continue;
    }
    if (fed >= input.size()) break;
  }
  return 0;
}
