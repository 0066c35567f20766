// The `strangler rules ...` commands.
#include <strings.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>

#include <json/json.h>

#include "cli/commands.h"
#include "shared/http_path.h"
#include "shared/jsonrpc.h"
#include "shared/redis_client.h"
#include "shared/router.h"
#include "shared/rules.h"
#include "shared/rules_store.h"

namespace strangler {
namespace {

const char* const kRulesUsage =
    "usage: strangler rules validate PATH\n"
    "       strangler rules push PATH\n"
    "       strangler rules show [VERSION]\n"
    "       strangler rules history\n"
    "       strangler rules rollback VERSION\n"
    "       strangler rules explain [--rules PATH] METHOD URL [-H 'Name: value']... [-d BODY|@FILE]\n"
    "       strangler rules test [--rules PATH] CASES\n";

int usage() {
  std::cerr << kRulesUsage;
  return 2;
}

bool parseVersionArgument(const std::string& text, uint64_t& version) {
  char* end = nullptr;
  version = strtoull(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || version == 0) {
    std::cerr << "strangler: expected a version number, got '" << text << "'\n";
    return false;
  }
  return true;
}

LoadResult loadAndReport(const std::string& path) {
  LoadResult loaded = loadRulesFromPath(path);
  for (const std::string& message : loaded.errors) std::cerr << message << "\n";
  return loaded;
}

int validate(const std::vector<std::string>& arguments) {
  if (arguments.size() != 2) return usage();
  LoadResult loaded = loadAndReport(arguments[1]);
  if (!loaded.ruleset) return 1;
  std::cout << arguments[1] << ": ok, " << loaded.ruleset->upstreams.size() << " upstreams, "
            << loaded.ruleset->routes.size() << " routes\n";
  return 0;
}

int push(const Config& config, const std::vector<std::string>& arguments) {
  if (arguments.size() != 2) return usage();
  LoadResult loaded = loadAndReport(arguments[1]);
  if (!loaded.ruleset) return 1;
  auto redis = openSharedRedis(config);
  if (!redis) return 1;

  PushResult pushed;
  std::string error;
  if (!RulesStore(*redis, config.redis_prefix).push(loaded.document, pushed, error)) {
    std::cerr << "strangler: " << error << "\n";
    return 1;
  }
  std::cout << pushed.version << "\n";
  if (!pushed.created) std::cerr << "identical to version " << pushed.version << ": no new version made\n";
  return 0;
}

int show(const Config& config, const std::vector<std::string>& arguments) {
  if (arguments.size() > 2) return usage();
  auto redis = openSharedRedis(config);
  if (!redis) return 1;
  RulesStore store(*redis, config.redis_prefix);
  std::string error;
  uint64_t version = 0;
  if (arguments.size() == 2) {
    if (!parseVersionArgument(arguments[1], version)) return 2;
  } else if (!store.activeVersion(version, error) || version == 0) {
    std::cerr << "strangler: " << (error.empty() ? "no active version" : error) << "\n";
    return 1;
  }

  std::string document;
  if (!store.document(version, document, error)) {
    std::cerr << "strangler: " << error << "\n";
    return 1;
  }
  Json::Value parsed;
  Json::CharReaderBuilder reader;
  std::string parse_errors;
  std::istringstream input(document);
  if (!Json::parseFromStream(reader, input, &parsed, &parse_errors)) {
    std::cout << document << "\n";
    return 0;
  }
  Json::StreamWriterBuilder writer;
  writer["indentation"] = "  ";
  std::cout << Json::writeString(writer, parsed) << "\n";
  return 0;
}

int history(const Config& config) {
  auto redis = openSharedRedis(config);
  if (!redis) return 1;
  RulesStore store(*redis, config.redis_prefix);
  std::vector<uint64_t> versions;
  uint64_t active = 0;
  std::string error;
  if (!store.history(versions, error) || !store.activeVersion(active, error)) {
    std::cerr << "strangler: " << error << "\n";
    return 1;
  }
  for (uint64_t version : versions) std::cout << version << (version == active ? " active" : "") << "\n";
  return 0;
}

int rollback(const Config& config, const std::vector<std::string>& arguments) {
  if (arguments.size() != 2) return usage();
  uint64_t version = 0;
  if (!parseVersionArgument(arguments[1], version)) return 2;
  auto redis = openSharedRedis(config);
  if (!redis) return 1;
  std::string error;
  if (!RulesStore(*redis, config.redis_prefix).activate(version, error)) {
    std::cerr << "strangler: " << error << "\n";
    return 1;
  }
  std::cout << version << "\n";
  return 0;
}

// A request described on the command line or in a cases file.
struct DescribedRequest {
  std::string method = "GET";
  std::string url;
  HeaderList headers;
  std::optional<std::string> body;
};

// What the proxy would do with a described request.
struct Outcome {
  enum class Kind { refused, no_route, respond, upstream, answer, split };

  Kind kind = Kind::no_route;
  int status = 0;  // the proxy's own answer; 0 when the request is forwarded
  const Route* route = nullptr;
  std::vector<const Route*> element_routes;  // of a split batch
  std::vector<bool> element_valid;
  // For a JSON-RPC body: the route of each call (of the one call, or of each
  // element of a batch), "" for none or for an element that is not a call.
  std::vector<std::string> calls;
};

// Splits "http://host/path?query" or "/path?query".
void splitUrl(const std::string& url, std::string& host, std::string& path, std::string& query) {
  std::string rest = url;
  size_t scheme = rest.find("://");
  if (scheme != std::string::npos) {
    size_t slash = rest.find_first_of("/?", scheme + 3);
    host = rest.substr(scheme + 3, slash == std::string::npos ? std::string::npos : slash - scheme - 3);
    rest = slash == std::string::npos ? "/" : rest.substr(slash);
  }
  size_t question = rest.find('?');
  path = rest.substr(0, question);
  query = question == std::string::npos ? "" : rest.substr(question + 1);
}

std::string routeTarget(const Route& route) {
  return route.respond ? "respond " + std::to_string(route.respond->status) : "upstream " + route.upstream;
}

// Tries every route in order, as the proxy does, printing why each one before
// the chosen route was skipped.
const Route* scanRoutes(const Router& router, const RequestFacts& facts, const std::string& indent,
                        std::ostream* out) {
  for (const Route& route : router.ruleset().routes) {
    std::string failed = router.firstFailedCondition(route, facts);
    if (failed.empty()) return &route;
    if (out) {
      *out << indent << "  skipped " << route.name << " (priority " << route.priority << "): " << failed
           << " does not match\n";
    }
  }
  return nullptr;
}

Outcome routed(const Route* route) {
  Outcome outcome;
  outcome.route = route;
  if (!route) {
    outcome.status = 404;
    return outcome;
  }
  outcome.kind = route->respond ? Outcome::Kind::respond : Outcome::Kind::upstream;
  outcome.status = route->respond ? route->respond->status : 0;
  return outcome;
}

// Routes a JSON-RPC batch, explaining each element when `out` is given.
Outcome routeBatch(const Router& router, RequestFacts facts, const JsonRpcBody& body, const JsonRpcPlan& plan,
                   std::ostream* out) {
  const std::vector<JsonRpcCall>& calls = body.calls();
  if (out) *out << "body: a JSON-RPC batch of " << calls.size() << " elements\n";
  if (plan.action == JsonRpcPlan::Action::answer) {
    if (out) *out << "answered by the proxy (200): " << plan.answer << "\n";
    Outcome outcome;
    outcome.kind = Outcome::Kind::answer;
    outcome.status = 200;
    return outcome;
  }

  std::vector<std::string> names;
  bool needs_answer = false;
  for (size_t i = 0; i < calls.size(); i++) {
    const JsonRpcCall& call = calls[i];
    needs_answer = needs_answer || !call.valid || call.has_id;
    if (!call.valid) {
      if (out) {
        *out << "element " << i << ": not a valid call, so it goes where the body would go uninspected\n";
      }
      names.push_back("");
      continue;
    }
    facts.call = &call;
    if (out) {
      *out << "call " << i << " (method " << call.method << ", "
           << (call.has_id ? "id " + std::string(body.rawId(call)) : "a notification") << "):\n";
    }
    const Route* route = scanRoutes(router, facts, "  ", out);
    if (out) *out << "  -> " << (route ? "route " + route->name + " -> " + routeTarget(*route) : "no route")
                  << "\n";
    names.push_back(route ? route->name : "");
  }

  Outcome outcome = routed(plan.route);
  outcome.calls = names;
  if (plan.action == JsonRpcPlan::Action::whole) {
    if (out) *out << "every call picks the same route: the batch is forwarded whole\n";
    return outcome;
  }
  outcome.kind = Outcome::Kind::split;
  outcome.route = nullptr;
  outcome.status = needs_answer ? 200 : 204;
  outcome.element_routes = plan.element_routes;
  for (const JsonRpcCall& call : calls) outcome.element_valid.push_back(call.valid);
  return outcome;
}

// Where the proxy would send `request`; explained on `out` when given.
Outcome simulate(const Config& config, const Router& router, const DescribedRequest& request,
                 std::ostream* out) {
  std::string host;
  std::string raw_path;
  std::string query;
  splitUrl(request.url, host, raw_path, query);
  for (const auto& [name, value] : request.headers) {
    if (name.size() == 4 && strncasecmp(name.c_str(), "host", 4) == 0) host = value;
  }
  std::string path;
  if (normalizePath(raw_path, config.encoded_slashes, path) != PathVerdict::ok) {
    if (out) *out << "400: the path '" << raw_path << "' is refused before routing\n";
    Outcome outcome;
    outcome.kind = Outcome::Kind::refused;
    outcome.status = 400;
    return outcome;
  }

  RequestFacts facts;
  facts.method = request.method;
  facts.path = path;
  facts.host = host;
  facts.query = query;
  facts.headers = &request.headers;
  HeadRoute head = router.routeHead(facts);
  bool has_body = request.body && !request.body->empty();
  bool fits = has_body && request.body->size() <= config.jsonrpc_max_body;

  if (!has_body || !head.needs_body || !fits) {
    if (out && has_body && !head.needs_body) {
      *out << "body: not read, no route that could still match needs it\n";
    }
    if (out && has_body && head.needs_body && !fits) {
      *out << "body: " << request.body->size() << " bytes, over STRANGLER_JSONRPC_MAX_BODY ("
           << config.jsonrpc_max_body << "): every jsonrpc condition is false\n";
    }
    return routed(scanRoutes(router, facts, "", out));
  }

  JsonRpcBody body(*request.body);
  size_t max_batch = static_cast<size_t>(config.jsonrpc_max_batch);
  JsonRpcPlan plan = planJsonRpc(router, facts, head.route, body, max_batch);
  if (body.kind() == JsonRpcBody::Kind::not_jsonrpc) {
    if (out) *out << "body: not a JSON-RPC 2.0 request: every jsonrpc condition is false\n";
    return routed(scanRoutes(router, facts, "", out));
  }
  if (body.kind() == JsonRpcBody::Kind::single) {
    const JsonRpcCall& call = body.calls()[0];
    if (out) {
      *out << "body: a JSON-RPC call, method " << call.method << ", "
           << (call.has_id ? "id " + std::string(body.rawId(call)) : "a notification") << "\n";
    }
    facts.call = &call;
    Outcome outcome = routed(scanRoutes(router, facts, "", out));
    outcome.calls = {outcome.route ? outcome.route->name : ""};
    return outcome;
  }
  return routeBatch(router, facts, body, plan, out);
}

// One line naming what the proxy would do.
std::string describe(const Outcome& outcome) {
  switch (outcome.kind) {
    case Outcome::Kind::refused: return "400: refused before routing";
    case Outcome::Kind::no_route: return "no route: 404";
    case Outcome::Kind::respond:
    case Outcome::Kind::upstream:
      return "route " + outcome.route->name + " -> " + routeTarget(*outcome.route);
    case Outcome::Kind::answer: return "answered by the proxy: 200 with a JSON-RPC error";
    case Outcome::Kind::split: break;
  }

  // A split: each route with the elements it takes, then what the proxy answers itself.
  auto listOf = [](const std::vector<size_t>& elements) {
    std::string list = elements.size() == 1 ? "element " : "elements ";
    for (size_t i = 0; i < elements.size(); i++) list += (i ? ", " : "") + std::to_string(elements[i]);
    return list;
  };
  std::vector<std::pair<const Route*, std::vector<size_t>>> parts;
  std::vector<size_t> own;
  for (size_t i = 0; i < outcome.element_routes.size(); i++) {
    const Route* route = outcome.element_routes[i];
    if (!outcome.element_valid[i] || !route || route->respond) {
      own.push_back(i);
      continue;
    }
    auto part = std::find_if(parts.begin(), parts.end(), [&](const auto& p) { return p.first == route; });
    if (part == parts.end()) part = parts.insert(parts.end(), {route, {}});
    part->second.push_back(i);
  }
  std::string text = "split:";
  for (size_t i = 0; i < parts.size(); i++) {
    const Route& route = *parts[i].first;
    text += std::string(i ? ";" : "") + " route " + route.name + " -> upstream " + route.upstream + " (" +
            listOf(parts[i].second) + ")";
  }
  if (!own.empty()) text += std::string(parts.empty() ? " " : "; ") + "the proxy answers " + listOf(own);
  return text;
}

bool readBodyArgument(const std::string& text, std::string& body) {
  if (text.empty() || text[0] != '@') {
    body = text;
    return true;
  }
  std::ifstream file(text.substr(1), std::ios::binary);
  if (!file) {
    std::cerr << "strangler: cannot read " << text.substr(1) << "\n";
    return false;
  }
  std::ostringstream contents;
  contents << file.rdbuf();
  body = contents.str();
  return true;
}

bool parseHeaderArgument(const std::string& header, HeaderList& headers) {
  size_t colon = header.find(':');
  if (colon == std::string::npos) return false;
  size_t value_start = header.find_first_not_of(' ', colon + 1);
  std::string value = value_start == std::string::npos ? "" : header.substr(value_start);
  headers.emplace_back(header.substr(0, colon), value);
  return true;
}

std::shared_ptr<const Ruleset> loadRuleset(const std::string& rules_path) {
  if (rules_path.empty()) {
    std::cerr << "strangler: give --rules PATH or set STRANGLER_RULES\n";
    return nullptr;
  }
  LoadResult loaded = loadAndReport(rules_path);
  return std::shared_ptr<const Ruleset>(std::move(loaded.ruleset));
}

int explain(const Config& config, const std::vector<std::string>& arguments) {
  std::string rules_path = config.rules_path;
  std::vector<std::string> positional;
  DescribedRequest request;
  for (size_t i = 1; i < arguments.size(); i++) {
    bool has_value = i + 1 < arguments.size();
    if (arguments[i] == "--rules" && has_value) {
      rules_path = arguments[++i];
    } else if (arguments[i] == "-H" && has_value) {
      if (!parseHeaderArgument(arguments[++i], request.headers)) return usage();
    } else if (arguments[i] == "-d" && has_value) {
      std::string body;
      if (!readBodyArgument(arguments[++i], body)) return 2;
      request.body = body;
    } else {
      positional.push_back(arguments[i]);
    }
  }
  if (positional.size() != 2) return usage();
  std::shared_ptr<const Ruleset> ruleset = loadRuleset(rules_path);
  if (!ruleset) return rules_path.empty() ? usage() : 1;
  Router router(ruleset, 0);

  request.method = positional[0];
  request.url = positional[1];
  Outcome outcome = simulate(config, router, request, &std::cout);
  if (outcome.kind != Outcome::Kind::refused) std::cout << describe(outcome) << "\n";
  return outcome.kind == Outcome::Kind::refused || outcome.kind == Outcome::Kind::no_route ? 1 : 0;
}

// One case of a cases file: a described request and what it must reach.
struct TestCase {
  std::string name;
  DescribedRequest request;
  std::optional<std::string> route;
  std::optional<std::string> upstream;
  std::optional<int> status;
  std::optional<std::vector<std::string>> calls;  // "" for null
};

// False when `value` is not an object; unknown keys are reported as errors.
bool expectObject(const Json::Value& value, std::initializer_list<const char*> allowed,
                  const std::string& where, std::vector<std::string>& errors) {
  if (!value.isObject()) {
    errors.push_back(where + ": expected an object");
    return false;
  }
  for (const std::string& key : value.getMemberNames()) {
    if (std::any_of(allowed.begin(), allowed.end(), [&](const char* name) { return key == name; })) continue;
    std::string expected;
    for (const char* name : allowed) expected += std::string(expected.empty() ? "" : ", ") + name;
    errors.push_back(where + ": unknown key '" + key + "' (expected one of: " + expected + ")");
  }
  return true;
}

void readRequest(const Json::Value& value, const std::string& where, TestCase& test,
                 std::vector<std::string>& errors) {
  if (!expectObject(value, {"method", "url", "headers", "body"}, where, errors)) return;
  DescribedRequest& request = test.request;
  if (value["url"].isString()) request.url = value["url"].asString();
  else errors.push_back(where + ": expected \"url\": a string such as \"/path?x=1\"");

  if (value.isMember("body")) {
    Json::StreamWriterBuilder writer;
    writer["indentation"] = "";
    const Json::Value& body = value["body"];
    request.body = body.isString() ? body.asString() : Json::writeString(writer, body);
  }
  request.method = request.body ? "POST" : "GET";
  if (value.isMember("method")) {
    if (!value["method"].isString()) errors.push_back(where + ".method: expected a string");
    else request.method = value["method"].asString();
  }

  const Json::Value& headers = value["headers"];
  if (headers.isNull()) return;
  if (!headers.isObject()) {
    errors.push_back(where + ".headers: expected an object of name -> value (or a list of values)");
    return;
  }
  for (const std::string& name : headers.getMemberNames()) {
    const Json::Value& field = headers[name];
    bool list = field.isArray() && std::all_of(field.begin(), field.end(), [](const Json::Value& v) {
      return v.isString();
    });
    if (!field.isString() && !list) {
      errors.push_back(where + ".headers." + name + ": expected a string or a list of strings");
      continue;
    }
    if (field.isString()) {
      request.headers.emplace_back(name, field.asString());
      continue;
    }
    for (const Json::Value& item : field) request.headers.emplace_back(name, item.asString());
  }
}

void readExpectation(const Json::Value& value, const std::string& where, TestCase& test,
                     std::vector<std::string>& errors) {
  if (!expectObject(value, {"route", "upstream", "status", "calls"}, where, errors)) return;
  if (value.empty()) errors.push_back(where + ": expected at least one of route, upstream, status, calls");
  if (value.isMember("route")) {
    if (!value["route"].isString()) errors.push_back(where + ".route: expected a route name");
    else test.route = value["route"].asString();
  }
  if (value.isMember("upstream")) {
    if (!value["upstream"].isString()) errors.push_back(where + ".upstream: expected an upstream name");
    else test.upstream = value["upstream"].asString();
  }
  if (value.isMember("status")) {
    if (!value["status"].isIntegral()) errors.push_back(where + ".status: expected a status code");
    else test.status = value["status"].asInt();
  }
  if (value.isMember("calls")) {
    const Json::Value& calls = value["calls"];
    std::vector<std::string> names;
    for (const Json::Value& call : calls) {
      if (call.isString()) names.push_back(call.asString());
      else if (call.isNull()) names.push_back("");
      else errors.push_back(where + ".calls: expected route names (or null)");
    }
    if (!calls.isArray()) errors.push_back(where + ".calls: expected an array of route names (or null)");
    test.calls = names;
  }
}

bool readCases(const std::string& path, std::vector<TestCase>& cases) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    std::cerr << path << ": cannot read file\n";
    return false;
  }
  std::ostringstream text;
  text << file.rdbuf();
  Json::Value root;
  if (!parseStrictJson(text.str(), root)) {
    std::cerr << path << ": not valid JSON (strict: no comments, no duplicate keys)\n";
    return false;
  }
  const Json::Value& list = root.isObject() && root.isMember("cases") ? root["cases"] : root;
  if (!list.isArray()) {
    std::cerr << path << ": expected an array of cases (or {\"cases\": [...]})\n";
    return false;
  }

  std::vector<std::string> errors;
  for (Json::ArrayIndex i = 0; i < list.size(); i++) {
    const Json::Value& value = list[i];
    std::string where = path + ": case " + std::to_string(i);
    TestCase test;
    if (!expectObject(value, {"name", "request", "expect"}, where, errors)) continue;
    test.name = value["name"].isString() ? value["name"].asString() : "case " + std::to_string(i);
    if (value.isMember("name") && !value["name"].isString()) {
      errors.push_back(where + ".name: expected a string");
    }
    if (!value.isMember("request")) errors.push_back(where + ": expected \"request\"");
    else readRequest(value["request"], where + ".request", test, errors);
    if (!value.isMember("expect")) errors.push_back(where + ": expected \"expect\"");
    else readExpectation(value["expect"], where + ".expect", test, errors);
    cases.push_back(std::move(test));
  }
  for (const std::string& error : errors) std::cerr << error << "\n";
  return errors.empty();
}

// "[a, null, b]": route names of calls, "" written as null.
std::string callList(const std::vector<std::string>& names) {
  std::string list;
  for (const std::string& name : names) list += (list.empty() ? "" : ", ") + (name.empty() ? "null" : name);
  return "[" + list + "]";
}

// What about `outcome` differs from the case's expectation; "" when nothing.
std::string mismatch(const TestCase& test, const Outcome& outcome) {
  std::vector<std::string> wrong;
  bool forwarded = outcome.kind == Outcome::Kind::upstream;
  bool has_route = forwarded || outcome.kind == Outcome::Kind::respond;
  if (test.route && !(has_route && outcome.route->name == *test.route)) {
    wrong.push_back("route " + *test.route);
  }
  if (test.upstream && !(forwarded && outcome.route->upstream == *test.upstream)) {
    wrong.push_back("upstream " + *test.upstream);
  }
  if (test.status && !(outcome.status != 0 && outcome.status == *test.status)) {
    wrong.push_back("status " + std::to_string(*test.status));
  }
  if (test.calls && *test.calls != outcome.calls) wrong.push_back("calls " + callList(*test.calls));
  if (wrong.empty()) return "";

  std::string expected;
  for (const std::string& item : wrong) expected += (expected.empty() ? "" : ", ") + item;
  std::string got = describe(outcome);
  if (test.calls && !outcome.calls.empty()) got += " (calls " + callList(outcome.calls) + ")";
  return "expected " + expected + ", got " + got;
}

int testCases(const Config& config, const std::vector<std::string>& arguments) {
  std::string rules_path = config.rules_path;
  std::vector<std::string> positional;
  for (size_t i = 1; i < arguments.size(); i++) {
    if (arguments[i] == "--rules" && i + 1 < arguments.size()) rules_path = arguments[++i];
    else positional.push_back(arguments[i]);
  }
  if (positional.size() != 1) return usage();
  std::shared_ptr<const Ruleset> ruleset = loadRuleset(rules_path);
  if (!ruleset) return rules_path.empty() ? usage() : 1;
  std::vector<TestCase> cases;
  if (!readCases(positional[0], cases)) return 2;

  Router router(ruleset, 0);
  size_t failed = 0;
  for (const TestCase& test : cases) {
    std::string wrong = mismatch(test, simulate(config, router, test.request, nullptr));
    if (wrong.empty()) continue;
    failed++;
    std::cout << "FAIL " << test.name << ": " << test.request.method << " " << test.request.url << ": "
              << wrong << "\n";
  }
  std::cout << cases.size() << " cases, " << cases.size() - failed << " passed, " << failed << " failed\n";
  return failed == 0 ? 0 : 1;
}

}  // namespace

int runRulesCommand(const Config& config, const std::vector<std::string>& arguments) {
  if (arguments.empty()) return usage();
  const std::string& verb = arguments[0];
  if (verb == "validate") return validate(arguments);
  if (verb == "push") return push(config, arguments);
  if (verb == "show") return show(config, arguments);
  if (verb == "history") return history(config);
  if (verb == "rollback") return rollback(config, arguments);
  if (verb == "explain") return explain(config, arguments);
  if (verb == "test") return testCases(config, arguments);
  return usage();
}

}  // namespace strangler
