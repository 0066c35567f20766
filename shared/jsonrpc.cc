// JSON-RPC 2.0 bodies as routing sees them.
#include "shared/jsonrpc.h"

#include <algorithm>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>

#include "shared/json_writer.h"

namespace strangler {
namespace {

// Deepest nesting of arrays and objects read; jsoncpp itself throws beyond 1000.
constexpr size_t kMaxNesting = 256;

// How much of the methods of a batch the access log gets.
constexpr size_t kLoggedMethods = 5;
constexpr size_t kLoggedMethodBytes = 128;

// Whether arrays and objects in `text` nest at most `limit` deep (brackets
// inside strings do not count).
bool nestingWithin(std::string_view text, size_t limit) {
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); i++) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') i++;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') depth++;
    else if ((c == ']' || c == '}') && depth > 0) depth--;
    if (depth > limit) return false;
  }
  return true;
}

bool failedAt(std::string* failed, const std::string& what) {
  if (failed) *failed = what;
  return false;
}

const Json::Value* member(const Json::Value& object, std::string_view name) {
  return object.find(name.data(), name.data() + name.size());
}

std::string_view stringOf(const Json::Value& value) {
  const char* begin = nullptr;
  const char* end = nullptr;
  if (!value.getString(&begin, &end)) return {};
  return std::string_view(begin, static_cast<size_t>(end - begin));
}

bool isId(const Json::Value& value) { return value.isString() || value.isNumeric() || value.isNull(); }

JsonRpcCall readCall(const Json::Value& element) {
  JsonRpcCall call;
  call.begin = static_cast<size_t>(element.getOffsetStart());
  call.end = static_cast<size_t>(element.getOffsetLimit());
  if (!element.isObject()) return call;

  const Json::Value* id = member(element, "id");
  if (id && isId(*id)) call.id = id;

  const Json::Value* version = member(element, "jsonrpc");
  const Json::Value* method = member(element, "method");
  const Json::Value* params = member(element, "params");
  if (!version || !version->isString() || stringOf(*version) != "2.0") return call;
  if (!method || !method->isString()) return call;
  if (params && !params->isArray() && !params->isObject()) return call;
  if (id && !isId(*id)) return call;

  call.valid = true;
  call.has_id = id != nullptr;
  call.method = std::string(stringOf(*method));
  call.params = params;
  return call;
}

// A key under which equal ids (by value) meet: 7 and 7.0 are one id.
std::string idKey(const Json::Value& id) {
  if (id.isString()) return "s" + std::string(stringOf(id));
  if (id.isInt64()) return "i" + std::to_string(id.asInt64());
  if (id.isUInt64()) return "i" + std::to_string(id.asUInt64());
  if (id.isNumeric()) {
    char text[40];
    snprintf(text, sizeof text, "d%.17g", id.asDouble());
    return text;
  }
  return "n";
}

bool isResponse(const Json::Value& value) {
  if (!value.isObject()) return false;
  const Json::Value* version = member(value, "jsonrpc");
  const Json::Value* id = member(value, "id");
  const Json::Value* result = member(value, "result");
  const Json::Value* error = member(value, "error");
  if (!version || !version->isString() || stringOf(*version) != "2.0") return false;
  if (!id || !isId(*id)) return false;
  if ((result != nullptr) == (error != nullptr)) return false;
  if (!error) return true;
  if (!error->isObject()) return false;
  const Json::Value* code = member(*error, "code");
  const Json::Value* message = member(*error, "message");
  return code && code->isIntegral() && message && message->isString();
}

std::string_view rawOf(std::string_view text, const Json::Value& value) {
  size_t begin = static_cast<size_t>(value.getOffsetStart());
  size_t end = static_cast<size_t>(value.getOffsetLimit());
  if (begin > end || end > text.size()) return {};
  return text.substr(begin, end - begin);
}

}  // namespace

std::optional<JsonPointer> JsonPointer::parse(std::string_view text) {
  JsonPointer pointer;
  if (text.empty()) return pointer;
  if (text[0] != '/') return std::nullopt;

  std::string token;
  for (size_t i = 1; i <= text.size(); i++) {
    if (i == text.size() || text[i] == '/') {
      pointer.tokens_.push_back(std::move(token));
      token.clear();
      continue;
    }
    if (text[i] != '~') {
      token += text[i];
      continue;
    }
    // One pass, left to right, so that "~01" is "~1" and not "/".
    if (i + 1 == text.size() || (text[i + 1] != '0' && text[i + 1] != '1')) return std::nullopt;
    token += text[i + 1] == '0' ? '~' : '/';
    i++;
  }
  return pointer;
}

const Json::Value* JsonPointer::resolve(const Json::Value& root) const {
  const Json::Value* at = &root;
  for (const std::string& token : tokens_) {
    if (at->isObject()) {
      at = at->find(token.data(), token.data() + token.size());
      if (!at) return nullptr;
      continue;
    }
    if (!at->isArray()) return nullptr;

    bool digits = !token.empty() && token.size() <= 9 && (token == "0" || token[0] != '0');
    for (char c : token) digits = digits && c >= '0' && c <= '9';
    if (!digits) return nullptr;
    Json::ArrayIndex index = static_cast<Json::ArrayIndex>(std::stoul(token));
    if (index >= at->size()) return nullptr;
    at = &(*at)[index];
  }
  return at;
}

bool jsonEquals(const Json::Value& a, const Json::Value& b) {
  if (a.isNumeric() && b.isNumeric()) {
    if (a.isInt64() && b.isInt64()) return a.asInt64() == b.asInt64();
    if (a.isUInt64() && b.isUInt64()) return a.asUInt64() == b.asUInt64();
    bool a_whole = a.isInt64() || a.isUInt64();
    bool b_whole = b.isInt64() || b.isUInt64();
    // Both whole but not in one range: one is negative, the other above INT64_MAX.
    if (a_whole && b_whole) return false;
    return a.asDouble() == b.asDouble();
  }
  if (a.type() != b.type()) return false;

  switch (a.type()) {
    case Json::nullValue: return true;
    case Json::booleanValue: return a.asBool() == b.asBool();
    case Json::stringValue: return stringOf(a) == stringOf(b);
    case Json::arrayValue:
      if (a.size() != b.size()) return false;
      for (Json::ArrayIndex i = 0; i < a.size(); i++) {
        if (!jsonEquals(a[i], b[i])) return false;
      }
      return true;
    case Json::objectValue:
      if (a.size() != b.size()) return false;
      for (auto entry = a.begin(); entry != a.end(); ++entry) {
        const char* end = nullptr;
        const char* name = entry.memberName(&end);
        const Json::Value* other = b.find(name, end);
        if (!other || !jsonEquals(*entry, *other)) return false;
      }
      return true;
    default: return false;
  }
}

bool parseStrictJson(std::string_view text, Json::Value& root) {
  // jsoncpp throws past its own depth limit; a request must never get that far.
  if (!nestingWithin(text, kMaxNesting)) return false;

  Json::CharReaderBuilder builder;
  Json::CharReaderBuilder::strictMode(&builder.settings_);
  // A scalar is valid JSON; callers decide whether they want one.
  builder.settings_["strictRoot"] = false;
  std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
  std::string errors;
  return reader->parse(text.data(), text.data() + text.size(), &root, &errors);
}

JsonRpcBody::JsonRpcBody(std::string text) : text_(std::move(text)) {
  if (!parseStrictJson(text_, root_)) return;

  if (root_.isArray()) {
    kind_ = Kind::batch;
    calls_.reserve(root_.size());
    for (const Json::Value& element : root_) calls_.push_back(readCall(element));
    return;
  }

  JsonRpcCall call = readCall(root_);
  if (!call.valid) return;
  kind_ = Kind::single;
  calls_.push_back(std::move(call));
}

std::string_view JsonRpcBody::raw(const JsonRpcCall& call) const {
  if (call.begin > call.end || call.end > text_.size()) return {};
  return std::string_view(text_).substr(call.begin, call.end - call.begin);
}

std::string_view JsonRpcBody::rawId(const JsonRpcCall& call) const {
  if (!call.id) return "null";
  std::string_view id = rawOf(text_, *call.id);
  return id.empty() ? "null" : id;
}

JsonRpcMatcher::JsonRpcMatcher(const JsonRpcCondition& condition) {
  if (condition.method) method_ = &*condition.method;
  for (const ParamCondition& param : condition.params) {
    Param compiled;
    compiled.text = param.pointer;
    compiled.pointer = JsonPointer::parse(param.pointer);
    if (param.matcher) {
      compiled.matcher = &*param.matcher;
    } else if (!parseStrictJson(param.equals_json, compiled.equals)) {
      // The loader wrote this text itself; unreadable, it can only never match.
      compiled.pointer.reset();
    }
    params_.push_back(std::move(compiled));
  }
}

bool JsonRpcMatcher::matches(const JsonRpcCall* call, std::string* failed) const {
  if (!call || !call->valid) return failedAt(failed, "jsonrpc");
  if (method_ && !method_->matches(call->method)) return failedAt(failed, "jsonrpc.method");

  for (const Param& param : params_) {
    const Json::Value* value = nullptr;
    if (param.pointer && call->params) value = param.pointer->resolve(*call->params);
    bool holds = false;
    if (value && param.matcher) holds = value->isString() && param.matcher->matches(stringOf(*value));
    else if (value) holds = jsonEquals(*value, param.equals);
    if (!holds) return failedAt(failed, "jsonrpc.params" + param.text);
  }
  return true;
}

JsonRpcPlan planJsonRpc(const Router& router, const RequestFacts& request, const Route* head_route,
                        const JsonRpcBody& body, size_t max_batch) {
  JsonRpcPlan plan;
  plan.route = head_route;
  if (body.kind() == JsonRpcBody::Kind::not_jsonrpc) return plan;

  plan.methods = jsonRpcMethodList(body);
  RequestFacts facts = request;
  const std::vector<JsonRpcCall>& calls = body.calls();
  if (body.kind() == JsonRpcBody::Kind::single) {
    facts.call = &calls[0];
    plan.route = router.route(facts);
    return plan;
  }

  if (calls.empty() || calls.size() > max_batch) {
    std::string message = calls.empty() ? "Invalid Request: an empty batch"
                                        : "Invalid Request: a batch of " + std::to_string(calls.size()) +
                                              " calls is over the limit of " + std::to_string(max_batch) +
                                              " (STRANGLER_JSONRPC_MAX_BATCH)";
    plan.action = JsonRpcPlan::Action::answer;
    plan.reason = calls.empty() ? "jsonrpc_empty_batch" : "jsonrpc_batch_too_long";
    plan.route = nullptr;
    plan.answer = jsonRpcError(kJsonRpcInvalidRequest, message, "null");
    return plan;
  }

  plan.element_routes.reserve(calls.size());
  for (const JsonRpcCall& call : calls) {
    facts.call = &call;
    plan.element_routes.push_back(call.valid ? router.route(facts) : head_route);
  }
  const Route* first = plan.element_routes[0];
  bool same = std::all_of(plan.element_routes.begin(), plan.element_routes.end(),
                          [&](const Route* route) { return route == first; });
  plan.route = same ? first : nullptr;
  plan.action = same ? JsonRpcPlan::Action::whole : JsonRpcPlan::Action::split;
  return plan;
}

std::string jsonRpcMethodList(const JsonRpcBody& body) {
  std::string list;
  size_t listed = 0;
  size_t rest = 0;
  for (const JsonRpcCall& call : body.calls()) {
    if (!call.valid) continue;
    if (listed == kLoggedMethods) {
      rest++;
      continue;
    }
    if (listed++ > 0) list += ',';
    list += call.method.substr(0, kLoggedMethodBytes);
  }
  if (rest > 0) list += ",+" + std::to_string(rest);
  return list;
}

std::string jsonRpcError(int code, std::string_view message, std::string_view id_json) {
  std::string text = "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":";
  text += std::to_string(code);
  text += ",\"message\":\"";
  appendJsonEscaped(text, message);
  text += "\"},\"id\":";
  text += id_json;
  text += '}';
  return text;
}

std::string jsonRpcPartBody(const JsonRpcBody& body, const std::vector<size_t>& elements) {
  std::string text = "[";
  for (size_t i = 0; i < elements.size(); i++) {
    if (i > 0) text += ',';
    text += body.raw(body.calls()[elements[i]]);
  }
  text += ']';
  return text;
}

JsonRpcMerge::JsonRpcMerge(const JsonRpcBody& body) : body_(body), answers_(body.calls().size()) {}

void JsonRpcMerge::answerError(size_t element, int code, const std::string& message) {
  const JsonRpcCall& call = body_.calls()[element];
  if (call.notification()) return;
  answers_[element] = jsonRpcError(code, message, body_.rawId(call));
}

void JsonRpcMerge::failPart(const std::string& upstream, const std::vector<size_t>& elements,
                            const std::string& reason) {
  std::string message = "upstream '" + upstream + "' failed: " + reason;
  for (size_t element : elements) answerError(element, kJsonRpcInternalError, message);
}

std::string JsonRpcMerge::takeResponse(const std::string& upstream, const std::vector<size_t>& elements,
                                       std::string_view response) {
  // The calls waiting for a response, by id, in the order they were sent.
  std::map<std::string, std::deque<size_t>> waiting;
  for (size_t element : elements) {
    const JsonRpcCall& call = body_.calls()[element];
    if (call.has_id) waiting[idKey(*call.id)].push_back(element);
  }
  if (waiting.empty()) return "";

  Json::Value root;
  std::vector<const Json::Value*> responses;
  bool readable = parseStrictJson(response, root) && (root.isArray() || root.isObject());
  if (readable && root.isObject()) responses.push_back(&root);
  if (readable && root.isArray()) {
    for (const Json::Value& item : root) responses.push_back(&item);
  }
  for (const Json::Value* item : responses) readable = readable && isResponse(*item);
  if (!readable) {
    failPart(upstream, elements, "upstream_not_jsonrpc");
    return "upstream_not_jsonrpc";
  }

  for (const Json::Value* item : responses) {
    auto found = waiting.find(idKey((*item)["id"]));
    if (found == waiting.end() || found->second.empty()) continue;  // an id nobody sent
    answers_[found->second.front()] = std::string(rawOf(response, *item));
    found->second.pop_front();
  }

  std::vector<size_t> unanswered;
  for (const auto& [key, queue] : waiting) unanswered.insert(unanswered.end(), queue.begin(), queue.end());
  if (unanswered.empty()) return "";
  failPart(upstream, unanswered, "upstream_missing_response");
  return "upstream_missing_response";
}

std::string JsonRpcMerge::result() const {
  std::string text;
  for (const std::optional<std::string>& answer : answers_) {
    if (!answer) continue;
    text += text.empty() ? '[' : ',';
    text += *answer;
  }
  if (!text.empty()) text += ']';
  return text;
}

}  // namespace strangler
