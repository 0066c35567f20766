// The compiled, immutable router of one ruleset version: picks the first
// route, in priority order, whose every condition holds for a request.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "shared/rules.h"

namespace strangler {

// What the router sees of a request. Every view must outlive the call.
struct RequestFacts {
  std::string_view method;
  std::string_view path;   // normalised (see http_path.h)
  std::string_view host;   // Host or :authority, port removed
  std::string_view query;  // raw, after '?', without '#'
  const HeaderList* headers = nullptr;  // names as received
};

class Router {
 public:
  Router(std::shared_ptr<const Ruleset> ruleset, uint64_t version);

  // The chosen route, or null when none matches.
  const Route* route(const RequestFacts& request) const;

  // The first condition of `route` that fails for `request` ("path",
  // "methods", "host", "headers.x-name", "query.name", "jsonrpc"), or an
  // empty string when all hold.
  std::string firstFailedCondition(const Route& route, const RequestFacts& request) const;

  const Ruleset& ruleset() const { return *ruleset_; }
  uint64_t version() const { return version_; }

 private:
  std::shared_ptr<const Ruleset> ruleset_;
  uint64_t version_;
};

// The host part of a Host header value: port and IPv6 brackets removed, lowercased.
std::string hostWithoutPort(std::string_view host);

}  // namespace strangler
