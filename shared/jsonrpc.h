// JSON-RPC 2.0 bodies as routing sees them: strict parsing into calls and
// batches, JSON Pointers into `params`, the compiled `jsonrpc` condition of
// a route, the route plan of an inspected body, and the merged answer of a
// batch that was split across upstreams.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <json/json.h>

#include "shared/router.h"
#include "shared/rules.h"

namespace strangler {

// Standard error codes the proxy answers with.
constexpr int kJsonRpcInvalidRequest = -32600;
constexpr int kJsonRpcMethodNotFound = -32601;
constexpr int kJsonRpcInternalError = -32603;

// An RFC 6901 JSON Pointer, split into its reference tokens once.
class JsonPointer {
 public:
  // Nothing for text that is not a pointer: it must be empty or start with
  // '/', and '~' may only be followed by '0' or '1'.
  static std::optional<JsonPointer> parse(std::string_view text);

  // The value the pointer refers to inside `root`, or null when there is none.
  // Array indexes are digits without leading zeros; "-" never exists.
  const Json::Value* resolve(const Json::Value& root) const;

  const std::vector<std::string>& tokens() const { return tokens_; }

 private:
  std::vector<std::string> tokens_;
};

// Equality by value: numbers compare numerically (1 equals 1.0), object
// members regardless of their order, arrays element by element.
bool jsonEquals(const Json::Value& a, const Json::Value& b);

// Reads JSON text strictly: no comments, no duplicate keys, nothing after the
// value, arrays and objects nested at most 256 deep. Duplicate keys are
// refused because the router and an upstream could otherwise read different
// methods out of one body. Never throws.
bool parseStrictJson(std::string_view text, Json::Value& root);

// One element of a JSON-RPC body.
struct JsonRpcCall {
  bool valid = false;   // a JSON-RPC 2.0 request object
  bool has_id = false;  // valid and with an "id": a call that expects a response
  std::string method;
  const Json::Value* params = nullptr;  // null when absent
  const Json::Value* id = nullptr;      // null when absent or not a string, number or null
  size_t begin = 0;                     // the element's bytes in the body
  size_t end = 0;

  bool notification() const { return valid && !has_id; }
};

// A request body parsed for JSON-RPC. It owns the text, and its calls point
// into it, so it is neither copied nor moved.
class JsonRpcBody {
 public:
  enum class Kind {
    not_jsonrpc,  // not JSON, or neither a request object nor an array
    single,       // one valid request object
    batch,        // an array (perhaps empty, perhaps with invalid elements)
  };

  explicit JsonRpcBody(std::string text);
  JsonRpcBody(const JsonRpcBody&) = delete;
  JsonRpcBody& operator=(const JsonRpcBody&) = delete;

  Kind kind() const { return kind_; }
  const std::string& text() const { return text_; }
  // One call for a single request, one per element for a batch.
  const std::vector<JsonRpcCall>& calls() const { return calls_; }

  std::string_view raw(const JsonRpcCall& call) const;
  // The call's id as the client wrote it, or "null".
  std::string_view rawId(const JsonRpcCall& call) const;

 private:
  std::string text_;
  Json::Value root_;
  Kind kind_ = Kind::not_jsonrpc;
  std::vector<JsonRpcCall> calls_;
};

// A route's `jsonrpc` condition, compiled: pointers split, `equals` values parsed.
class JsonRpcMatcher {
 public:
  explicit JsonRpcMatcher(const JsonRpcCondition& condition);

  // True when `call` (null: no JSON-RPC call) satisfies the condition. When
  // it does not and `failed` is given, it is set to the part that failed:
  // "jsonrpc" (no call), "jsonrpc.method" or "jsonrpc.params/POINTER".
  bool matches(const JsonRpcCall* call, std::string* failed) const;

 private:
  struct Param {
    std::string text;
    std::optional<JsonPointer> pointer;  // nothing: the pointer is malformed and never matches
    const StringMatcher* matcher = nullptr;
    Json::Value equals;
  };

  const StringMatcher* method_ = nullptr;
  std::vector<Param> params_;
};

// How a request whose body was inspected goes on.
struct JsonRpcPlan {
  enum class Action {
    whole,   // the request goes on as it is, by `route` (null: no route)
    split,   // each element goes by `element_routes`
    answer,  // the proxy answers `answer` itself with 200: an empty or too long batch
  };

  Action action = Action::whole;
  const Route* route = nullptr;
  std::vector<const Route*> element_routes;  // for a batch, the route each element picks
  std::string answer;
  std::string reason;   // the reason token of an answer: "jsonrpc_empty_batch", "jsonrpc_batch_too_long"
  std::string methods;  // for the access log; empty when the body is not JSON-RPC
};

// Plans a request by its body. `head_route` is the route the request takes
// with every jsonrpc condition false: bodies that are not JSON-RPC, and
// batch elements that are not valid calls, go there.
JsonRpcPlan planJsonRpc(const Router& router, const RequestFacts& request, const Route* head_route,
                        const JsonRpcBody& body, size_t max_batch);

// The methods of a body's valid calls for the access log: the first few,
// each cut short, then a count of the rest ("a,b,c,d,e,+95").
std::string jsonRpcMethodList(const JsonRpcBody& body);

// A JSON-RPC error response; `id_json` is JSON text ("null", "7", "\"a\"").
std::string jsonRpcError(int code, std::string_view message, std::string_view id_json);

// The body of one part of a split batch: the given elements, unchanged, in order.
std::string jsonRpcPartBody(const JsonRpcBody& body, const std::vector<size_t>& elements);

// The answer to a split batch, gathered element by element.
class JsonRpcMerge {
 public:
  explicit JsonRpcMerge(const JsonRpcBody& body);

  // The proxy answers element `element` itself (nothing for a notification).
  void answerError(size_t element, int code, const std::string& message);

  // Upstream `upstream` answered the part made of `elements` with
  // `response`. Responses are matched to calls by id, in any order; calls
  // sharing an id take the responses with that id in turn. Returns a reason
  // token when the answer is not a JSON-RPC response (every call of the part
  // then gets an error) or misses a call (that call gets one); else "".
  std::string takeResponse(const std::string& upstream, const std::vector<size_t>& elements,
                           std::string_view response);

  // The part failed as a whole: each call with an id gets
  // "upstream 'NAME' failed: REASON" (-32603).
  void failPart(const std::string& upstream, const std::vector<size_t>& elements,
                const std::string& reason);

  // The merged array in the order of the batch, or "" when no element has an
  // answer (every element was a notification).
  std::string result() const;

 private:
  const JsonRpcBody& body_;
  std::vector<std::optional<std::string>> answers_;
};

}  // namespace strangler
