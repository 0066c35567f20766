// The compiled, immutable router of one ruleset version.
#include "shared/router.h"

#include <algorithm>
#include <optional>

#include <re2/re2.h>

#include "shared/ascii.h"
#include "shared/http_path.h"
#include "shared/jsonrpc.h"

namespace strangler {
namespace {

using QueryParameters = std::vector<std::pair<std::string, std::string>>;

bool headerMatches(const FieldCondition& condition, const HeaderList& headers) {
  bool present = false;
  for (const auto& [name, value] : headers) {
    if (!equalsIgnoreCase(name, condition.name)) continue;
    present = true;
    if (condition.kind == FieldCondition::Kind::match && condition.matcher.matches(value)) return true;
  }
  switch (condition.kind) {
    case FieldCondition::Kind::present: return present;
    case FieldCondition::Kind::absent: return !present;
    case FieldCondition::Kind::match: return false;
  }
  return false;
}

bool queryMatches(const FieldCondition& condition, const QueryParameters& parameters) {
  bool present = false;
  for (const auto& [name, value] : parameters) {
    if (name != condition.name) continue;
    present = true;
    if (condition.kind == FieldCondition::Kind::match && condition.matcher.matches(value)) return true;
  }
  if (condition.kind == FieldCondition::Kind::present) return present;
  if (condition.kind == FieldCondition::Kind::absent) return !present;
  return false;
}

// Records which condition failed, when the caller asked.
bool failedAt(std::string* failed, const char* what, const std::string& name = "") {
  if (failed) *failed = what + name;
  return false;
}

// The text every whole-value match of `regex` starts with. RE2 bounds the
// strings that can match from below and above; any string between two
// bounds starts with what they have in common.
std::string literalPrefix(const re2::RE2& regex) {
  std::string low;
  std::string high;
  if (!regex.PossibleMatchRange(&low, &high, 64)) return "";
  size_t common = 0;
  while (common < low.size() && common < high.size() && low[common] == high[common]) common++;
  return low.substr(0, common);
}

}  // namespace

// What one request's evaluation computes at most once, whatever the number
// of routes it is checked against.
struct Router::Evaluation {
  const RequestFacts& request;
  std::optional<QueryParameters> parameters;
  std::optional<std::string> host;

  const QueryParameters& query() {
    if (!parameters) parameters = parseQuery(request.query);
    return *parameters;
  }
  const std::string& hostName() {
    if (!host) host = hostWithoutPort(request.host);
    return *host;
  }
};

// The candidate routes of one request: several sorted lists, walked as one
// merged list so that routes are tried in exactly their priority order.
class Router::Candidates {
 public:
  // Adds `list` unless it is empty or added already (a header sent twice).
  void add(const RouteList& list) {
    if (list.empty()) return;
    for (size_t i = 0; i < count_; i++) {
      if (inline_[i].end == list.data() + list.size()) return;
    }
    for (const Span& span : overflow_) {
      if (span.end == list.data() + list.size()) return;
    }
    Span span{list.data(), list.data() + list.size()};
    if (count_ < kInline) inline_[count_++] = span;
    else overflow_.push_back(span);
  }

  // The next position in ascending order; false when none is left.
  bool next(uint32_t& position) {
    Span* best = nullptr;
    auto consider = [&](Span& span) {
      if (span.at != span.end && (!best || *span.at < *best->at)) best = &span;
    };
    for (size_t i = 0; i < count_; i++) consider(inline_[i]);
    for (Span& span : overflow_) consider(span);
    if (!best) return false;
    position = *best->at++;
    return true;
  }

 private:
  struct Span {
    const uint32_t* at;
    const uint32_t* end;
  };
  static constexpr size_t kInline = 8;

  Span inline_[kInline];
  size_t count_ = 0;
  std::vector<Span> overflow_;
};

std::string hostWithoutPort(std::string_view host) {
  std::string_view name = host;
  if (!name.empty() && name[0] == '[') {
    size_t close = name.find(']');
    name = close == std::string_view::npos ? name.substr(1) : name.substr(1, close - 1);
  } else {
    size_t colon = name.rfind(':');
    if (colon != std::string_view::npos) name = name.substr(0, colon);
  }
  return asciiLowercase(name);
}

Router::Router(std::shared_ptr<const Ruleset> ruleset, uint64_t version)
    : ruleset_(std::move(ruleset)), version_(version) {
  const std::vector<Route>& routes = ruleset_->routes;
  jsonrpc_.resize(routes.size());
  for (uint32_t position = 0; position < routes.size(); position++) {
    const Route& route = routes[position];
    if (route.match.jsonrpc) jsonrpc_[position] = std::make_shared<JsonRpcMatcher>(*route.match.jsonrpc);
    index(position, route);
  }
}

void Router::index(uint32_t position, const Route& route) {
  const std::optional<StringMatcher>& path = route.match.path;
  if (!path) {
    // A header the route needs present makes a good index too.
    const auto& headers = route.match.headers;
    auto needed = std::find_if(headers.begin(), headers.end(), [](const FieldCondition& condition) {
      return condition.kind != FieldCondition::Kind::absent;
    });
    if (needed == headers.end()) always_.push_back(position);
    else by_header_[needed->name].push_back(position);
    return;
  }
  if (path->kind == StringMatcher::Kind::regex) {
    std::string prefix = literalPrefix(*path->regex);
    if (prefix.empty()) always_.push_back(position);
    else addPrefix(prefixes_, prefix, position);
    return;
  }
  any_folded_ = any_folded_ || path->ignore_case;
  if (path->kind == StringMatcher::Kind::exact) {
    (path->ignore_case ? exact_folded_ : exact_)[path->text].push_back(position);
    return;
  }
  addPrefix(path->ignore_case ? prefixes_folded_ : prefixes_, path->text, position);
}

void Router::addPrefix(std::vector<PrefixNode>& trie, std::string_view prefix, uint32_t position) {
  uint32_t node = 0;
  for (char c : prefix) {
    unsigned char byte = static_cast<unsigned char>(c);
    auto& children = trie[node].children;
    auto found = std::lower_bound(children.begin(), children.end(), byte,
                                  [](const auto& child, unsigned char key) { return child.first < key; });
    if (found != children.end() && found->first == byte) {
      node = found->second;
      continue;
    }
    uint32_t added = static_cast<uint32_t>(trie.size());
    children.insert(found, {byte, added});
    // `children` may dangle once the trie grows, so it is not used after this.
    trie.emplace_back();
    node = added;
  }
  trie[node].routes.push_back(position);
}

void Router::collectPrefixes(const std::vector<PrefixNode>& trie, std::string_view path,
                             Candidates& candidates) const {
  uint32_t node = 0;
  candidates.add(trie[0].routes);
  for (char c : path) {
    unsigned char byte = static_cast<unsigned char>(c);
    const auto& children = trie[node].children;
    auto found = std::lower_bound(children.begin(), children.end(), byte,
                                  [](const auto& child, unsigned char key) { return child.first < key; });
    if (found == children.end() || found->first != byte) return;
    node = found->second;
    candidates.add(trie[node].routes);
  }
}

void Router::collectCandidates(const RequestFacts& request, Candidates& candidates) const {
  candidates.add(always_);
  if (!by_header_.empty() && request.headers) {
    for (const auto& field : *request.headers) {
      // Folded on the stack: a usual field name does not need a string of its own.
      char folded[64];
      std::string long_name;
      std::string_view name = field.first;
      if (name.size() <= sizeof folded) {
        for (size_t i = 0; i < name.size(); i++) folded[i] = asciiLower(name[i]);
        name = std::string_view(folded, name.size());
      } else {
        long_name = asciiLowercase(name);
        name = long_name;
      }
      auto found = by_header_.find(name);
      if (found != by_header_.end()) candidates.add(found->second);
    }
  }
  auto exact = exact_.find(request.path);
  if (exact != exact_.end()) candidates.add(exact->second);
  collectPrefixes(prefixes_, request.path, candidates);
  if (!any_folded_) return;

  // Matchers that ignore case hold lowercased text, so the path is folded the same way.
  std::string folded = asciiLowercase(request.path);
  auto folded_exact = exact_folded_.find(folded);
  if (folded_exact != exact_folded_.end()) candidates.add(folded_exact->second);
  collectPrefixes(prefixes_folded_, folded, candidates);
}

bool Router::holds(uint32_t position, Evaluation& evaluation, bool with_jsonrpc, std::string* failed) const {
  const Match& match = ruleset_->routes[position].match;
  const RequestFacts& request = evaluation.request;
  if (match.path && !match.path->matches(request.path)) return failedAt(failed, "path");

  if (!match.methods.empty() &&
      std::find(match.methods.begin(), match.methods.end(), request.method) == match.methods.end()) {
    return failedAt(failed, "methods");
  }

  if (match.host && !match.host->matches(evaluation.hostName())) return failedAt(failed, "host");

  static const HeaderList no_headers;
  const HeaderList& headers = request.headers ? *request.headers : no_headers;
  for (const FieldCondition& condition : match.headers) {
    if (!headerMatches(condition, headers)) return failedAt(failed, "headers.", condition.name);
  }

  for (const FieldCondition& condition : match.query) {
    if (!queryMatches(condition, evaluation.query())) return failedAt(failed, "query.", condition.name);
  }

  if (!with_jsonrpc || !jsonrpc_[position]) return true;
  return jsonrpc_[position]->matches(request.call, failed);
}

std::string Router::firstFailedCondition(const Route& route, const RequestFacts& request) const {
  const std::vector<Route>& routes = ruleset_->routes;
  Evaluation evaluation{request, {}, {}};
  std::string failed;
  bool ours = !routes.empty() && &route >= routes.data() && &route < routes.data() + routes.size();
  if (ours) {
    holds(static_cast<uint32_t>(&route - routes.data()), evaluation, true, &failed);
    return failed;
  }

  // A route of another ruleset: evaluated through a one-route router of its own.
  auto single = std::make_shared<Ruleset>();
  single->routes.push_back(route);
  return Router(single, 0).firstFailedCondition(single->routes[0], request);
}

HeadRoute Router::routeHead(const RequestFacts& request) const {
  Evaluation evaluation{request, {}, {}};
  Candidates candidates;
  collectCandidates(request, candidates);

  HeadRoute head;
  uint32_t position = 0;
  while (candidates.next(position)) {
    if (!holds(position, evaluation, false, nullptr)) continue;
    if (jsonrpc_[position]) {
      head.needs_body = true;
      continue;
    }
    head.route = &ruleset_->routes[position];
    break;
  }
  return head;
}

const Route* Router::route(const RequestFacts& request) const {
  Evaluation evaluation{request, {}, {}};
  Candidates candidates;
  collectCandidates(request, candidates);

  uint32_t position = 0;
  while (candidates.next(position)) {
    if (holds(position, evaluation, true, nullptr)) return &ruleset_->routes[position];
  }
  return nullptr;
}

}  // namespace strangler
