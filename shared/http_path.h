// Normalisation of request paths and parsing of query strings, shared by the
// router and the forwarding code so that the path a route was chosen by and
// the path an upstream sees never disagree.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shared/config.h"

namespace strangler {

enum class PathVerdict {
  ok,
  malformed,      // not starting with '/', a bad percent escape, or a raw byte not allowed in a path
  encoded_slash,  // %2F, %5C or %00 under the reject policy (or %00 under decode)
};

// Decodes percent-encoded unreserved characters, upper-cases the remaining
// escapes, merges repeated slashes and removes dot segments (RFC 3986 5.2.4).
PathVerdict normalizePath(std::string_view raw, EncodedSlashes policy, std::string& normalized);
// The same, with the result as a view: of `raw` itself when normalisation
// leaves it as it is (the usual case, and no copy), else of `storage`.
PathVerdict normalizePath(std::string_view raw, EncodedSlashes policy, std::string& storage,
                          std::string_view& normalized);

// Splits an origin-form ("/p?q") or absolute-form ("http://host/p?q")
// request target into authority (empty for origin form), path and query;
// path and query are views into `target` (or of a literal "/").
// False for anything else: a fragment, userinfo, no leading '/'.
bool splitRequestTarget(std::string_view target, std::string& authority, std::string_view& path,
                        std::string_view& query);

// Splits a query string ("a=1&b=x%20y") into decoded name/value pairs; '+' is a space.
std::vector<std::pair<std::string, std::string>> parseQuery(std::string_view query);

// Percent-decodes `text`; false on a malformed escape.
bool percentDecode(std::string_view text, std::string& decoded, bool plus_is_space);

}  // namespace strangler
