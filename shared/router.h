// The compiled, immutable router of one ruleset version: picks the first
// route, in priority order, whose every condition holds for a request. Routes
// are indexed by exact path, by path prefix (regex paths by the literal text
// their matches start with) and, without a path condition, by a header they
// need, so that a request is checked against its candidate routes only, in
// the same order as a full scan.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "shared/rules.h"

namespace strangler {

struct JsonRpcCall;
class JsonRpcMatcher;

// What the router sees of a request. Every view must outlive the call.
struct RequestFacts {
  std::string_view method;
  std::string_view path;   // normalised (see http_path.h)
  std::string_view host;   // Host or :authority, port removed
  std::string_view query;  // raw, after '?', without '#'
  const HeaderList* headers = nullptr;  // names as received
  // The JSON-RPC call in the body; null when the body was not inspected or
  // holds no valid call, which makes every jsonrpc condition false.
  const JsonRpcCall* call = nullptr;
};

// The route a request takes before its body is read, and whether reading it
// could change that.
struct HeadRoute {
  const Route* route = nullptr;  // the choice with every jsonrpc condition false
  // A route with a jsonrpc condition, whose other conditions hold, comes
  // before `route`: the body must be inspected.
  bool needs_body = false;
};

class Router {
 public:
  Router(std::shared_ptr<const Ruleset> ruleset, uint64_t version);

  // The chosen route, or null when none matches.
  const Route* route(const RequestFacts& request) const;

  // The choice before the body is read (`request.call` is ignored).
  HeadRoute routeHead(const RequestFacts& request) const;

  // The first condition of `route` that fails for `request` ("path",
  // "methods", "host", "headers.x-name", "query.name", "jsonrpc",
  // "jsonrpc.method", "jsonrpc.params/pointer"), or an empty string when
  // all hold.
  std::string firstFailedCondition(const Route& route, const RequestFacts& request) const;

  const Ruleset& ruleset() const { return *ruleset_; }
  uint64_t version() const { return version_; }

 private:
  // Routes by their position in ruleset().routes, ascending.
  using RouteList = std::vector<uint32_t>;

  // A trie over path bytes; a node lists the routes whose prefix ends there.
  struct PrefixNode {
    std::vector<std::pair<unsigned char, uint32_t>> children;  // sorted by byte
    RouteList routes;
  };

  class Candidates;
  struct Evaluation;

  void index(uint32_t position, const Route& route);
  void addPrefix(std::vector<PrefixNode>& trie, std::string_view prefix, uint32_t position);
  void collectPrefixes(const std::vector<PrefixNode>& trie, std::string_view path,
                       Candidates& candidates) const;
  void collectCandidates(const RequestFacts& request, Candidates& candidates) const;
  bool holds(uint32_t position, Evaluation& evaluation, bool with_jsonrpc, std::string* failed) const;

  std::shared_ptr<const Ruleset> ruleset_;
  uint64_t version_;
  std::vector<std::shared_ptr<const JsonRpcMatcher>> jsonrpc_;  // by position; null without a condition

  // Keys view the matchers' text in ruleset_ (lowercased when ignore_case).
  std::unordered_map<std::string_view, RouteList> exact_;
  std::unordered_map<std::string_view, RouteList> exact_folded_;
  std::vector<PrefixNode> prefixes_ = std::vector<PrefixNode>(1);  // node 0: the root
  std::vector<PrefixNode> prefixes_folded_ = std::vector<PrefixNode>(1);
  bool any_folded_ = false;
  // Routes without a path condition, by the (lowercased) name of a header they need.
  std::unordered_map<std::string_view, RouteList> by_header_;
  // No path condition and no header needed, or a regex path that no literal
  // text starts every match of (others sit in prefixes_ under that text):
  // tried for every request.
  RouteList always_;
};

// The host part of a Host header value: port and IPv6 brackets removed, lowercased.
std::string hostWithoutPort(std::string_view host);

}  // namespace strangler
