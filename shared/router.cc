// The compiled, immutable router of one ruleset version.
#include "shared/router.h"

#include <strings.h>

#include <algorithm>
#include <cctype>

#include "shared/http_path.h"

namespace strangler {
namespace {

bool headerMatches(const FieldCondition& condition, const HeaderList& headers) {
  bool present = false;
  for (const auto& [name, value] : headers) {
    if (name.size() != condition.name.size() ||
        strncasecmp(name.data(), condition.name.data(), name.size()) != 0) {
      continue;
    }
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

bool queryMatches(const FieldCondition& condition,
                  const std::vector<std::pair<std::string, std::string>>& parameters) {
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

}  // namespace

std::string hostWithoutPort(std::string_view host) {
  std::string_view name = host;
  if (!name.empty() && name[0] == '[') {
    size_t close = name.find(']');
    name = close == std::string_view::npos ? name.substr(1) : name.substr(1, close - 1);
  } else {
    size_t colon = name.rfind(':');
    if (colon != std::string_view::npos) name = name.substr(0, colon);
  }
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower;
}

Router::Router(std::shared_ptr<const Ruleset> ruleset, uint64_t version)
    : ruleset_(std::move(ruleset)), version_(version) {}

std::string Router::firstFailedCondition(const Route& route, const RequestFacts& request) const {
  const Match& match = route.match;
  if (match.path && !match.path->matches(request.path)) return "path";

  if (!match.methods.empty() &&
      std::find(match.methods.begin(), match.methods.end(), request.method) == match.methods.end()) {
    return "methods";
  }

  if (match.host && !match.host->matches(hostWithoutPort(request.host))) return "host";

  static const HeaderList no_headers;
  const HeaderList& headers = request.headers ? *request.headers : no_headers;
  for (const FieldCondition& condition : match.headers) {
    if (!headerMatches(condition, headers)) return "headers." + condition.name;
  }

  if (!match.query.empty()) {
    auto parameters = parseQuery(request.query);
    for (const FieldCondition& condition : match.query) {
      if (!queryMatches(condition, parameters)) return "query." + condition.name;
    }
  }

  // JSON-RPC bodies are not inspected yet: such a condition never holds.
  if (match.jsonrpc) return "jsonrpc";
  return "";
}

const Route* Router::route(const RequestFacts& request) const {
  for (const Route& candidate : ruleset_->routes) {
    if (firstFailedCondition(candidate, request).empty()) return &candidate;
  }
  return nullptr;
}

}  // namespace strangler
