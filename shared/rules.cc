// The rules loader: JSON and Jsonnet files, validated into a Ruleset.
#include "shared/rules.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <json/json.h>
#include <re2/re2.h>

extern "C" {
#include <libjsonnet.h>
}

#include "shared/ascii.h"

extern char** environ;

namespace strangler {
namespace {

bool endsWith(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool isToken(std::string_view text) {
  if (text.empty()) return false;
  for (unsigned char c : text) {
    if (c <= 0x20 || c >= 0x7F || std::strchr("\"(),/:;<=>?@[\\]{}", c)) return false;
  }
  return true;
}

// A text the rules were read from, to turn value offsets into line:column.
struct Source {
  std::string name;
  std::string text;
  bool evaluated = false;  // Jsonnet output: locations are JSON paths
};

// Where a value sits: its JSON path and, through the source, its line.
struct Where {
  const Source* source;
  std::string path;

  Where operator/(const std::string& member) const {
    return {source, path.empty() ? member : path + "." + member};
  }
  Where operator[](Json::ArrayIndex index) const {
    return {source, path + "[" + std::to_string(index) + "]"};
  }
};

class Validator {
 public:
  explicit Validator(std::vector<std::string>& errors) : errors_(errors) {}

  void error(const Where& where, const Json::Value& value, const std::string& message) {
    errors_.push_back(locate(where, value) + ": " + message);
  }

  void readFile(const Source& source, const Json::Value& root, Ruleset& ruleset,
                Json::Value& upstreams_json, Json::Value& routes_json);
  void checkReferences(const Ruleset& ruleset, const std::vector<Where>& route_places,
                       const std::vector<const Json::Value*>& route_values);

  std::vector<Where> route_places;
  std::vector<const Json::Value*> route_values;
  // False: the canonical document is not wanted, so the JSON is not copied for it.
  bool keep_document = true;

 private:
  std::string locate(const Where& where, const Json::Value& value) const;
  bool expectObject(const Where& where, const Json::Value& value, const char* what,
                    std::initializer_list<const char*> allowed);
  bool readString(const Where& where, const Json::Value& value, std::string& out);

  void readUpstreams(const Where& where, const Json::Value& value, Ruleset& ruleset,
                     Json::Value& upstreams_json);
  void readUpstream(const Where& where, const std::string& name, const Json::Value& value,
                    Upstream& upstream);
  bool readEndpoint(const Where& where, const Json::Value& value, Endpoint& endpoint);
  void readRoute(const Where& where, const Json::Value& value, Ruleset& ruleset,
                 Json::Value& routes_json);
  void readMatch(const Where& where, const Json::Value& value, Match& match);
  bool readMatcher(const Where& where, const Json::Value& value, StringMatcher& matcher,
                   bool always_ignore_case = false);
  void readFieldConditions(const Where& where, const Json::Value& value, bool lowercase_names,
                           std::vector<FieldCondition>& conditions);
  void readJsonRpc(const Where& where, const Json::Value& value, JsonRpcCondition& condition);
  void readRewrite(const Where& where, const Json::Value& value, Rewrite& rewrite);
  void readRespond(const Where& where, const Json::Value& value, Respond& respond);
  bool readHeaderMap(const Where& where, const Json::Value& value, HeaderList& headers);
  bool readTimeout(const Where& where, const Json::Value& value, int64_t& ms);

  std::vector<std::string>& errors_;
  std::set<std::string> route_names_;
  size_t next_read_order_ = 0;
};

std::string Validator::locate(const Where& where, const Json::Value& value) const {
  const Source& source = *where.source;
  if (source.evaluated || value.getOffsetStart() < 0) {
    return source.name + ": at " + (where.path.empty() ? "the top" : where.path);
  }
  size_t offset = std::min(static_cast<size_t>(value.getOffsetStart()), source.text.size());
  size_t line = 1;
  size_t line_start = 0;
  for (size_t i = 0; i < offset; i++) {
    if (source.text[i] == '\n') {
      line++;
      line_start = i + 1;
    }
  }
  return source.name + ":" + std::to_string(line) + ":" + std::to_string(offset - line_start + 1);
}

bool Validator::expectObject(const Where& where, const Json::Value& value, const char* what,
                             std::initializer_list<const char*> allowed) {
  if (!value.isObject()) {
    error(where, value, std::string("expected ") + what + " (a JSON object)");
    return false;
  }
  for (const std::string& key : value.getMemberNames()) {
    bool known = std::any_of(allowed.begin(), allowed.end(),
                             [&](const char* name) { return key == name; });
    if (known) continue;
    std::string expected;
    for (const char* name : allowed) expected += std::string(expected.empty() ? "" : ", ") + name;
    error(where / key, value[key],
          "unknown key '" + key + "' in " + what + " (expected one of: " + expected + ")");
  }
  return true;
}

bool Validator::readString(const Where& where, const Json::Value& value, std::string& out) {
  if (!value.isString()) {
    error(where, value, "expected a string");
    return false;
  }
  out = value.asString();
  return true;
}

void Validator::readFile(const Source& source, const Json::Value& root, Ruleset& ruleset,
                         Json::Value& upstreams_json, Json::Value& routes_json) {
  Where top{&source, ""};
  if (!root.isObject()) {
    error(top, root, "expected a rules document {\"upstreams\": ..., \"routes\": [...]} or one route");
    return;
  }

  bool single_route = root.isMember("match") || root.isMember("name");
  if (single_route) {
    readRoute(top, root, ruleset, routes_json);
    return;
  }

  if (!expectObject(top, root, "rules document", {"upstreams", "routes"})) return;
  if (root.isMember("upstreams")) readUpstreams(top / "upstreams", root["upstreams"], ruleset, upstreams_json);
  if (!root.isMember("routes")) return;

  const Json::Value& routes = root["routes"];
  if (!routes.isArray()) {
    error(top / "routes", routes, "expected an array of routes");
    return;
  }
  for (Json::ArrayIndex i = 0; i < routes.size(); i++) {
    readRoute((top / "routes")[i], routes[i], ruleset, routes_json);
  }
}

void Validator::readUpstreams(const Where& where, const Json::Value& value, Ruleset& ruleset,
                              Json::Value& upstreams_json) {
  if (!value.isObject()) {
    error(where, value, "expected an object of upstreams by name");
    return;
  }
  for (const std::string& name : value.getMemberNames()) {
    const Json::Value& spec = value[name];
    if (name.empty()) {
      error(where, spec, "an upstream name must not be empty");
      continue;
    }
    if (ruleset.upstreams.count(name)) {
      error(where / name, spec, "upstream '" + name + "' is defined twice");
      continue;
    }
    Upstream upstream;
    upstream.name = name;
    size_t errors_before = errors_.size();
    readUpstream(where / name, name, spec, upstream);
    if (errors_.size() != errors_before) continue;
    ruleset.upstreams[name] = std::move(upstream);
    if (keep_document) upstreams_json[name] = spec;
  }
}

void Validator::readUpstream(const Where& where, const std::string& name, const Json::Value& value,
                             Upstream& upstream) {
  if (value.isString()) {
    readEndpoint(where, value, upstream.endpoints.emplace_back());
    return;
  }
  if (!expectObject(where, value, "upstream",
                    {"endpoints", "protocol", "connect_timeout_ms", "timeout_ms"})) {
    return;
  }

  const Json::Value& endpoints = value["endpoints"];
  if (!endpoints.isArray() || endpoints.empty()) {
    error(where / "endpoints", endpoints.isNull() ? value : endpoints,
          "upstream '" + name + "' needs \"endpoints\": a non-empty array of http://host:port");
  } else {
    for (Json::ArrayIndex i = 0; i < endpoints.size(); i++) {
      readEndpoint((where / "endpoints")[i], endpoints[i], upstream.endpoints.emplace_back());
    }
  }

  if (value.isMember("protocol")) {
    std::string protocol;
    if (readString(where / "protocol", value["protocol"], protocol)) {
      if (protocol == "http1") upstream.protocol = UpstreamProtocol::http1;
      else if (protocol == "h2c") upstream.protocol = UpstreamProtocol::h2c;
      else error(where / "protocol", value["protocol"], "expected \"http1\" or \"h2c\"");
    }
  }
  if (value.isMember("connect_timeout_ms")) {
    readTimeout(where / "connect_timeout_ms", value["connect_timeout_ms"], upstream.connect_timeout_ms);
  }
  if (value.isMember("timeout_ms")) {
    readTimeout(where / "timeout_ms", value["timeout_ms"], upstream.timeout_ms);
  }
}

bool Validator::readTimeout(const Where& where, const Json::Value& value, int64_t& ms) {
  if (!value.isIntegral() || value.asInt64() < 1 || value.asInt64() > 86400000) {
    error(where, value, "expected a whole number of milliseconds from 1 to 86400000");
    return false;
  }
  ms = value.asInt64();
  return true;
}

bool Validator::readEndpoint(const Where& where, const Json::Value& value, Endpoint& endpoint) {
  std::string url;
  if (!readString(where, value, url)) return false;

  static const std::regex shape(R"(http://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:([0-9]{1,5}))?(/[^?#]*)?)");
  std::smatch parts;
  if (!std::regex_match(url, parts, shape)) {
    error(where, value, "expected an endpoint http://host:port[/path], got '" + url + "'");
    return false;
  }
  endpoint.host = parts[1].str();
  if (endpoint.host.front() == '[') endpoint.host = endpoint.host.substr(1, endpoint.host.size() - 2);
  if (parts[3].matched) {
    int port = std::stoi(parts[3].str());
    if (port < 1 || port > 65535) {
      error(where, value, "expected a port from 1 to 65535 in '" + url + "'");
      return false;
    }
    endpoint.port = static_cast<uint16_t>(port);
  }
  endpoint.path_prefix = parts[4].str();
  while (!endpoint.path_prefix.empty() && endpoint.path_prefix.back() == '/') endpoint.path_prefix.pop_back();
  return true;
}

void Validator::readRoute(const Where& where, const Json::Value& value, Ruleset& ruleset,
                          Json::Value& routes_json) {
  if (!expectObject(where, value, "route",
                    {"name", "priority", "match", "upstream", "respond", "rewrite", "websocket"})) {
    return;
  }
  size_t errors_before = errors_.size();
  Route route;

  if (!value.isMember("name")) {
    error(where, value, "a route needs \"name\": a unique string");
  } else if (readString(where / "name", value["name"], route.name)) {
    if (route.name.empty()) error(where / "name", value["name"], "a route name must not be empty");
    if (!route_names_.insert(route.name).second) {
      error(where / "name", value["name"], "route '" + route.name + "' is defined twice");
    }
  }

  if (value.isMember("priority")) {
    const Json::Value& priority = value["priority"];
    if (!priority.isIntegral()) error(where / "priority", priority, "expected a whole number");
    else route.priority = priority.asInt64();
  }

  if (!value.isMember("match")) {
    error(where, value, "a route needs \"match\": an object of conditions ({} matches every request)");
  } else {
    readMatch(where / "match", value["match"], route.match);
  }

  bool has_upstream = value.isMember("upstream");
  bool has_respond = value.isMember("respond");
  if (has_upstream == has_respond) {
    error(where, value, "a route needs exactly one of \"upstream\" (a name) and \"respond\"");
  } else if (has_upstream) {
    readString(where / "upstream", value["upstream"], route.upstream);
  } else {
    readRespond(where / "respond", value["respond"], route.respond.emplace());
  }

  if (value.isMember("rewrite")) readRewrite(where / "rewrite", value["rewrite"], route.rewrite);
  if (value.isMember("websocket")) {
    if (!value["websocket"].isBool()) error(where / "websocket", value["websocket"], "expected true or false");
    else route.websocket = value["websocket"].asBool();
  }

  if (errors_.size() != errors_before) return;
  route.read_order = next_read_order_++;
  ruleset.routes.push_back(std::move(route));
  if (keep_document) routes_json.append(value);
  route_places.push_back(where);
  route_values.push_back(&value);
}

void Validator::readMatch(const Where& where, const Json::Value& value, Match& match) {
  if (!expectObject(where, value, "match", {"path", "methods", "host", "headers", "query", "jsonrpc"})) {
    return;
  }
  if (value.isMember("path")) {
    const Json::Value& path = value["path"];
    if (readMatcher(where / "path", path, match.path.emplace())) {
      bool literal = match.path->kind != StringMatcher::Kind::regex;
      if (literal && (match.path->text.empty() || match.path->text[0] != '/')) {
        error(where / "path", path, "a path must start with '/'");
      }
    }
  }
  if (value.isMember("methods")) {
    const Json::Value& methods = value["methods"];
    if (!methods.isArray() || methods.empty()) {
      error(where / "methods", methods, "expected a non-empty array of method names");
    } else {
      for (Json::ArrayIndex i = 0; i < methods.size(); i++) {
        std::string method;
        if (!readString((where / "methods")[i], methods[i], method)) continue;
        if (!isToken(method)) {
          error((where / "methods")[i], methods[i], "expected a method name such as \"GET\"");
          continue;
        }
        for (char& c : method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        match.methods.push_back(method);
      }
    }
  }
  if (value.isMember("host")) readMatcher(where / "host", value["host"], match.host.emplace(), true);
  if (value.isMember("headers")) readFieldConditions(where / "headers", value["headers"], true, match.headers);
  if (value.isMember("query")) readFieldConditions(where / "query", value["query"], false, match.query);
  if (value.isMember("jsonrpc")) readJsonRpc(where / "jsonrpc", value["jsonrpc"], match.jsonrpc.emplace());
}

bool Validator::readMatcher(const Where& where, const Json::Value& value, StringMatcher& matcher,
                            bool always_ignore_case) {
  matcher.ignore_case = always_ignore_case;
  if (value.isString()) {
    matcher.kind = StringMatcher::Kind::exact;
    matcher.text = value.asString();
  } else {
    if (!expectObject(where, value, "string matcher", {"exact", "prefix", "regex", "ignore_case"})) {
      return false;
    }
    int kinds = value.isMember("exact") + value.isMember("prefix") + value.isMember("regex");
    if (kinds != 1) {
      error(where, value, "a string matcher needs exactly one of \"exact\", \"prefix\" and \"regex\"");
      return false;
    }
    const char* key = value.isMember("exact") ? "exact" : value.isMember("prefix") ? "prefix" : "regex";
    matcher.kind = value.isMember("exact")    ? StringMatcher::Kind::exact
                   : value.isMember("prefix") ? StringMatcher::Kind::prefix
                                              : StringMatcher::Kind::regex;
    if (!readString(where / key, value[key], matcher.text)) return false;
    if (value.isMember("ignore_case")) {
      if (!value["ignore_case"].isBool()) {
        error(where / "ignore_case", value["ignore_case"], "expected true or false");
        return false;
      }
      matcher.ignore_case = matcher.ignore_case || value["ignore_case"].asBool();
    }
  }

  if (matcher.kind == StringMatcher::Kind::regex) {
    RE2::Options options;
    options.set_log_errors(false);
    options.set_case_sensitive(!matcher.ignore_case);
    auto regex = std::make_shared<RE2>(matcher.text, options);
    if (!regex->ok()) {
      error(where, value, "invalid RE2 regex '" + matcher.text + "': " + regex->error());
      return false;
    }
    matcher.regex = std::move(regex);
  } else if (matcher.ignore_case) {
    matcher.text = asciiLowercase(matcher.text);
  }
  return true;
}

void Validator::readFieldConditions(const Where& where, const Json::Value& value, bool lowercase_names,
                                    std::vector<FieldCondition>& conditions) {
  if (!value.isObject()) {
    error(where, value, "expected an object of name -> string matcher, {\"present\": true} or {\"absent\": true}");
    return;
  }
  for (const std::string& name : value.getMemberNames()) {
    const Json::Value& spec = value[name];
    FieldCondition condition;
    condition.name = lowercase_names ? asciiLowercase(name) : name;
    if (name.empty() || (lowercase_names && !isToken(name))) {
      error(where / name, spec, "expected a header name, got '" + name + "'");
      continue;
    }
    bool presence = spec.isObject() && (spec.isMember("present") || spec.isMember("absent"));
    if (presence) {
      const char* key = spec.isMember("present") ? "present" : "absent";
      if (spec.size() != 1 || !spec[key].isBool() || !spec[key].asBool()) {
        error(where / name, spec, std::string("expected {\"") + key + "\": true} alone");
        continue;
      }
      condition.kind = spec.isMember("present") ? FieldCondition::Kind::present : FieldCondition::Kind::absent;
    } else if (!readMatcher(where / name, spec, condition.matcher)) {
      continue;
    }
    conditions.push_back(std::move(condition));
  }
}

void Validator::readJsonRpc(const Where& where, const Json::Value& value, JsonRpcCondition& condition) {
  if (!expectObject(where, value, "jsonrpc condition", {"method", "params"})) return;
  if (value.isMember("method")) readMatcher(where / "method", value["method"], condition.method.emplace());
  if (!value.isMember("params")) return;

  const Json::Value& params = value["params"];
  if (!params.isObject()) {
    error(where / "params", params, "expected an object of JSON Pointer -> string matcher or {\"equals\": value}");
    return;
  }
  for (const std::string& pointer : params.getMemberNames()) {
    const Json::Value& spec = params[pointer];
    Where place = where / "params" / pointer;
    if (!pointer.empty() && pointer[0] != '/') {
      error(place, spec, "expected a JSON Pointer such as \"/0\" or \"/customer/region\", got '" + pointer + "'");
      continue;
    }
    ParamCondition param;
    param.pointer = pointer;
    if (spec.isObject() && spec.isMember("equals")) {
      if (spec.size() != 1) {
        error(place, spec, "expected {\"equals\": value} alone");
        continue;
      }
      Json::StreamWriterBuilder writer;
      writer["indentation"] = "";
      param.equals_json = Json::writeString(writer, spec["equals"]);
    } else if (!readMatcher(place, spec, param.matcher.emplace())) {
      continue;
    }
    condition.params.push_back(std::move(param));
  }
}

bool Validator::readHeaderMap(const Where& where, const Json::Value& value, HeaderList& headers) {
  if (!value.isObject()) {
    error(where, value, "expected an object of header name -> value");
    return false;
  }
  for (const std::string& name : value.getMemberNames()) {
    std::string text;
    if (!isToken(name)) {
      error(where / name, value[name], "expected a header name, got '" + name + "'");
      continue;
    }
    if (!readString(where / name, value[name], text)) continue;
    bool clean = std::none_of(text.begin(), text.end(), [](char c) {
      return c == '\r' || c == '\n' || c == '\0';
    });
    if (!clean) {
      error(where / name, value[name], "a header value must not hold CR, LF or NUL");
      continue;
    }
    headers.emplace_back(name, text);
  }
  return true;
}

void Validator::readRewrite(const Where& where, const Json::Value& value, Rewrite& rewrite) {
  if (!expectObject(where, value, "rewrite", {"strip_prefix", "add_prefix", "set_headers", "remove_headers"})) {
    return;
  }
  for (auto [key, target] : {std::pair{"strip_prefix", &rewrite.strip_prefix},
                             std::pair{"add_prefix", &rewrite.add_prefix}}) {
    if (!value.isMember(key)) continue;
    if (readString(where / key, value[key], *target) && (target->empty() || (*target)[0] != '/')) {
      error(where / key, value[key], std::string(key) + " must start with '/'");
    }
  }
  if (value.isMember("set_headers")) readHeaderMap(where / "set_headers", value["set_headers"], rewrite.set_headers);
  if (value.isMember("remove_headers")) {
    const Json::Value& names = value["remove_headers"];
    if (!names.isArray()) {
      error(where / "remove_headers", names, "expected an array of header names");
      return;
    }
    for (Json::ArrayIndex i = 0; i < names.size(); i++) {
      std::string name;
      if (!readString((where / "remove_headers")[i], names[i], name)) continue;
      if (!isToken(name)) error((where / "remove_headers")[i], names[i], "expected a header name");
      else rewrite.remove_headers.push_back(asciiLowercase(name));
    }
  }
}

void Validator::readRespond(const Where& where, const Json::Value& value, Respond& respond) {
  if (!expectObject(where, value, "respond", {"status", "body", "headers"})) return;
  const Json::Value& status = value["status"];
  if (!status.isIntegral() || status.asInt() < 200 || status.asInt() > 599) {
    error(where / "status", status.isNull() ? value : status, "expected \"status\": a status code from 200 to 599");
  } else {
    respond.status = status.asInt();
  }
  if (value.isMember("body")) readString(where / "body", value["body"], respond.body);
  if (value.isMember("headers")) readHeaderMap(where / "headers", value["headers"], respond.headers);
}

void Validator::checkReferences(const Ruleset& ruleset, const std::vector<Where>& places,
                                const std::vector<const Json::Value*>& values) {
  for (size_t i = 0; i < ruleset.routes.size(); i++) {
    const Route& route = ruleset.routes[i];
    if (route.respond || ruleset.upstreams.count(route.upstream)) continue;
    std::string known;
    for (const auto& [name, upstream] : ruleset.upstreams) known += (known.empty() ? "" : ", ") + name;
    error(places[i] / "upstream", (*values[i])["upstream"],
          "route '" + route.name + "' names upstream '" + route.upstream + "', which is not defined" +
              (known.empty() ? " (no upstreams are defined)" : " (defined: " + known + ")"));
  }
}

// Reads JSON text strictly: no comments, no duplicate keys, nothing after the value.
bool parseJson(const Source& source, Json::Value& root, std::vector<std::string>& errors) {
  Json::CharReaderBuilder builder;
  Json::CharReaderBuilder::strictMode(&builder.settings_);
  std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
  std::string message;
  const char* begin = source.text.data();
  try {
    if (reader->parse(begin, begin + source.text.size(), &root, &message)) return true;
  } catch (const Json::Exception& error) {
    // jsoncpp throws instead of failing on some inputs, deep nesting among them.
    errors.push_back(source.name + ": invalid JSON: " + error.what());
    return false;
  }

  // jsoncpp writes "* Line L, Column C\n  Message"; keep the first of them.
  static const std::regex first_error(R"(Line (\d+), Column (\d+)\s+(.*?)\s*(\n|$))");
  std::smatch parts;
  if (std::regex_search(message, parts, first_error)) {
    errors.push_back(source.name + ":" + parts[1].str() + ":" + parts[2].str() +
                     ": invalid JSON: " + parts[3].str());
  } else {
    errors.push_back(source.name + ": invalid JSON: " + message);
  }
  return false;
}

bool readWholeFile(const std::string& path, std::string& text) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return false;
  std::ostringstream contents;
  contents << file.rdbuf();
  text = contents.str();
  return !file.bad();
}

bool evaluateJsonnet(const std::string& path, Source& source, std::vector<std::string>& errors) {
  JsonnetVm* vm = jsonnet_make();
  const std::string prefix = "STRANGLER_EXT_";
  for (char** entry = environ; *entry; entry++) {
    std::string variable = *entry;
    size_t equals = variable.find('=');
    if (variable.compare(0, prefix.size(), prefix) != 0 || equals == std::string::npos) continue;
    std::string name = variable.substr(prefix.size(), equals - prefix.size());
    jsonnet_ext_var(vm, name.c_str(), variable.c_str() + equals + 1);
  }

  int failed = 0;
  char* output = jsonnet_evaluate_file(vm, path.c_str(), &failed);
  std::string text = output ? output : "";
  jsonnet_realloc(vm, output, 0);
  jsonnet_destroy(vm);

  if (failed) {
    while (!text.empty() && text.back() == '\n') text.pop_back();
    errors.push_back(path + ": Jsonnet evaluation failed: " + text);
    return false;
  }
  source.text = std::move(text);
  source.evaluated = true;
  return true;
}

std::vector<std::string> listRuleFiles(const std::string& folder, std::vector<std::string>& errors) {
  std::vector<std::string> names;
  DIR* dir = opendir(folder.c_str());
  if (!dir) {
    errors.push_back(folder + ": cannot open folder");
    return names;
  }
  while (dirent* entry = readdir(dir)) {
    std::string name = entry->d_name;
    if (name[0] == '.') continue;
    if (endsWith(name, ".json") || endsWith(name, ".jsonnet")) names.push_back(name);
  }
  closedir(dir);

  std::sort(names.begin(), names.end());
  for (std::string& name : names) name = folder + (endsWith(folder, "/") ? "" : "/") + name;
  if (names.empty()) errors.push_back(folder + ": no *.json or *.jsonnet files in this folder");
  return names;
}

std::string canonicalDocument(const Json::Value& upstreams, const Json::Value& routes) {
  Json::Value document(Json::objectValue);
  document["upstreams"] = upstreams.isNull() ? Json::Value(Json::objectValue) : upstreams;
  document["routes"] = routes.isNull() ? Json::Value(Json::arrayValue) : routes;
  Json::StreamWriterBuilder writer;
  writer["indentation"] = "";
  return Json::writeString(writer, document);
}

LoadResult loadSources(const std::vector<Source>& sources, std::vector<std::string> errors,
                       bool with_document = true) {
  LoadResult result;
  auto ruleset = std::make_unique<Ruleset>();
  Json::Value upstreams_json(Json::objectValue);
  Json::Value routes_json(Json::arrayValue);
  std::vector<Json::Value> roots(sources.size());
  Validator validator(errors);
  validator.keep_document = with_document;

  for (size_t i = 0; i < sources.size(); i++) {
    if (!parseJson(sources[i], roots[i], errors)) continue;
    validator.readFile(sources[i], roots[i], *ruleset, upstreams_json, routes_json);
  }
  if (errors.empty()) validator.checkReferences(*ruleset, validator.route_places, validator.route_values);

  if (!errors.empty()) {
    result.errors = std::move(errors);
    return result;
  }

  std::stable_sort(ruleset->routes.begin(), ruleset->routes.end(),
                   [](const Route& a, const Route& b) { return a.priority > b.priority; });
  if (with_document) result.document = canonicalDocument(upstreams_json, routes_json);
  result.ruleset = std::move(ruleset);
  return result;
}

}  // namespace

std::string Endpoint::text() const {
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

bool StringMatcher::matches(std::string_view value) const {
  switch (kind) {
    case Kind::exact:
      if (!ignore_case) return value == text;
      return value.size() == text.size() && std::equal(value.begin(), value.end(), text.begin(),
                                                       [](char a, char b) { return asciiLower(a) == b; });
    case Kind::prefix:
      if (value.size() < text.size()) return false;
      if (!ignore_case) return value.compare(0, text.size(), text) == 0;
      return std::equal(text.begin(), text.end(), value.begin(),
                        [](char a, char b) { return a == asciiLower(b); });
    case Kind::regex:
      return RE2::FullMatch(re2::StringPiece(value.data(), value.size()), *regex);
  }
  return false;
}

LoadResult loadRulesFromPath(const std::string& path) {
  std::vector<std::string> errors;
  struct stat info;
  if (stat(path.c_str(), &info) != 0) {
    LoadResult result;
    result.errors.push_back(path + ": no such file or folder");
    return result;
  }

  std::vector<std::string> files;
  if (S_ISDIR(info.st_mode)) files = listRuleFiles(path, errors);
  else files.push_back(path);

  std::vector<Source> sources;
  for (const std::string& file : files) {
    Source source;
    source.name = file;
    if (endsWith(file, ".jsonnet")) {
      if (!evaluateJsonnet(file, source, errors)) continue;
    } else if (!readWholeFile(file, source.text)) {
      errors.push_back(file + ": cannot read file");
      continue;
    }
    sources.push_back(std::move(source));
  }
  return loadSources(sources, std::move(errors));
}

LoadResult loadRulesFromText(const std::string& text, const std::string& source_name, bool with_document) {
  Source source;
  source.name = source_name;
  source.text = text;
  return loadSources({source}, {}, with_document);
}

}  // namespace strangler
