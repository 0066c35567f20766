// The rules model (upstreams and routes) and its loader: JSON and Jsonnet
// files from disk, or a stored ruleset document from Redis, validated with
// errors that name the file, line and column (or JSON path) and what was
// expected.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace re2 {
class RE2;
}

namespace strangler {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// exact, prefix or whole-value RE2 regex, optionally ignoring case.
struct StringMatcher {
  enum class Kind { exact, prefix, regex };

  Kind kind = Kind::exact;
  std::string text;  // lowercased at load when ignore_case, for exact and prefix
  bool ignore_case = false;
  std::shared_ptr<const re2::RE2> regex;

  bool matches(std::string_view value) const;
};

// A header or query condition: a matcher, or only presence or absence.
struct FieldCondition {
  enum class Kind { match, present, absent };

  std::string name;  // lowercased for headers
  Kind kind = Kind::match;
  StringMatcher matcher;
};

// A condition on `params` of a JSON-RPC call, by JSON Pointer.
struct ParamCondition {
  std::string pointer;
  std::optional<StringMatcher> matcher;  // for string values
  std::string equals_json;               // canonical JSON of {"equals": ...}, when given
};

struct JsonRpcCondition {
  std::optional<StringMatcher> method;
  std::vector<ParamCondition> params;
};

struct Match {
  std::optional<StringMatcher> path;
  std::vector<std::string> methods;  // empty: any method
  std::optional<StringMatcher> host;
  std::vector<FieldCondition> headers;
  std::vector<FieldCondition> query;
  std::optional<JsonRpcCondition> jsonrpc;
};

struct Rewrite {
  std::string strip_prefix;
  std::string add_prefix;
  HeaderList set_headers;                   // names as written
  std::vector<std::string> remove_headers;  // lowercased
};

struct Respond {
  int status = 200;
  std::string body;
  HeaderList headers;
};

struct Route {
  std::string name;
  int64_t priority = 0;
  size_t read_order = 0;  // files by name, then position in the file
  Match match;
  std::string upstream;  // empty when `respond` is given
  std::optional<Respond> respond;
  Rewrite rewrite;
  bool websocket = false;
};

struct Endpoint {
  std::string host;
  uint16_t port = 80;
  std::string path_prefix;  // prepended to forwarded paths; no trailing slash

  std::string text() const;  // host:port
};

enum class UpstreamProtocol { http1, h2c };

struct Upstream {
  std::string name;
  std::vector<Endpoint> endpoints;
  UpstreamProtocol protocol = UpstreamProtocol::http1;
  int64_t connect_timeout_ms = 1000;
  int64_t timeout_ms = 30000;
};

// One validated ruleset. Routes are in the order they are tried.
struct Ruleset {
  std::map<std::string, Upstream> upstreams;
  std::vector<Route> routes;
};

struct LoadResult {
  std::unique_ptr<Ruleset> ruleset;  // null when errors is not empty
  std::vector<std::string> errors;   // "FILE:LINE:COLUMN: message"
  std::string document;              // the ruleset as one canonical JSON document
};

// Loads a file or every *.json / *.jsonnet file directly inside a folder.
// Jsonnet files see each STRANGLER_EXT_<NAME> environment variable as
// std.extVar("<NAME>").
LoadResult loadRulesFromPath(const std::string& path);

// Loads a ruleset from JSON text (one document or one route); `source` names
// it in error messages. Without `with_document`, LoadResult::document stays
// empty (a worker, loading a stored version, has no use for it).
LoadResult loadRulesFromText(const std::string& text, const std::string& source, bool with_document = true);

}  // namespace strangler
