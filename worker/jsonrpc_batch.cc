// A JSON-RPC batch split across upstreams, and its merged answer.
#include "worker/jsonrpc_batch.h"

#include <algorithm>

#include "worker/upstream_pool.h"

namespace strangler {
namespace {

// Names listed in an access line: the first few, then a count, so that the
// line stays one atomic write.
constexpr size_t kListedNames = 8;

std::string nameList(const std::vector<std::string>& names) {
  std::string list;
  for (size_t i = 0; i < names.size() && i < kListedNames; i++) list += (i ? "," : "") + names[i];
  if (names.size() > kListedNames) list += ",+" + std::to_string(names.size() - kListedNames);
  return list;
}

}  // namespace

// The calls of one route: sent as one array, answered as one array.
class JsonRpcSplit::Part : public UpstreamObserver {
 public:
  Part(JsonRpcSplit& split, const Route& route) : split_(split), route_(route) {}
  ~Part() override { drop(); }

  const Route& route() const { return route_; }
  void add(size_t element) { elements_.push_back(element); }
  bool settled() const { return settled_; }

  void send() {
    body_ = jsonRpcPartBody(split_.body_, elements_);
    if (!connect(false)) fail("no_endpoint");
  }

  // Lets go of the connection, if the part still holds one.
  void drop() {
    if (!stream_) return;
    split_.pools_.discard(stream_);
    stream_ = nullptr;
  }

  // A response cut short over the limit keeps its connection until the split's own callback.
  void dropIfCut() {
    if (cut_) drop();
  }

  // UpstreamObserver
  void onInformational(const ResponseHead&) override {}
  void onResponseHead(ResponseHead&, bool) override {}
  void onUpstreamWritable() override {}

  void onResponseBody(const char* data, size_t length) override {
    if (settled_) return;
    if (response_.size() + length <= split_.max_response_) {
      response_.append(data, length);
      return;
    }
    // Dropping the connection here would pull it from under its own parser.
    cut_ = true;
    std::string().swap(response_);
    if (stream_) stream_->setReading(false);
    fail("upstream_response_too_large");
  }

  void onResponseEnd(UpstreamStream* stream, const HeaderList&, bool upstream_keeps_alive) override {
    stream_ = nullptr;
    bool reusable = upstream_keeps_alive && !cut_ && stream->backlog() == 0;
    split_.pools_.release(stream, reusable);
    if (settled_) return;
    std::string error = split_.merge_.takeResponse(route_.upstream, elements_, response_);
    std::string().swap(response_);
    settleWith(error);
  }

  void onUpstreamFailure(UpstreamFailure failure, bool) override {
    UpstreamStream* failed = stream_;
    stream_ = nullptr;
    if (settled_) return;

    // Nothing reached an endpoint that could not be connected to: another may take the part.
    bool connect_failed =
        failure == UpstreamFailure::connect_refused || failure == UpstreamFailure::connect_timeout;
    if (connect_failed && failed) split_.pools_.markFailed(failed->endpoint());
    if (connect_failed && attempts_ < split_.pools_.endpointCount(route_.upstream) && connect(true)) return;
    fail(failureToken(failure));
  }

  void onUpgrade(UpstreamConnection* connection, const ResponseHead&) override {
    // Nobody asked for a 101: the upstream is not answering this request.
    stream_ = nullptr;
    split_.pools_.discard(connection);
    if (!settled_) fail("upstream_bad_response");
  }

 private:
  bool connect(bool fresh) {
    attempts_++;
    stream_ = split_.pools_.acquire(route_.upstream, fresh);
    if (!stream_) return false;
    stream_->attach(this, false);
    split_.observer_.sendPartHead(route_, *stream_, body_.size());
    stream_->sendBody(body_.data(), body_.size());
    stream_->sendEnd({});
    return true;
  }

  void fail(const std::string& reason) {
    split_.merge_.failPart(route_.upstream, elements_, reason);
    settleWith(reason);
  }

  void settleWith(const std::string& error) {
    settled_ = true;
    if (!error.empty() && split_.first_error_.empty()) split_.first_error_ = error;
    split_.partSettled();
  }

  JsonRpcSplit& split_;
  const Route& route_;
  std::vector<size_t> elements_;
  std::string body_;
  std::string response_;
  UpstreamStream* stream_ = nullptr;
  size_t attempts_ = 0;
  bool cut_ = false;
  bool settled_ = false;
};

JsonRpcSplit::JsonRpcSplit(event_base* base, UpstreamPool& pools, JsonRpcSplitObserver& observer,
                           const JsonRpcBody& body, const std::vector<const Route*>& element_routes,
                           uint64_t max_response)
    : pools_(pools), observer_(observer), body_(body), max_response_(max_response), merge_(body) {
  settle_event_ = event_new(base, -1, 0, &JsonRpcSplit::onSettle, this);

  const std::vector<JsonRpcCall>& calls = body.calls();
  for (size_t element = 0; element < calls.size(); element++) {
    const Route* route = element_routes[element];
    if (!calls[element].valid) {
      merge_.answerError(element, kJsonRpcInvalidRequest, "Invalid Request");
      continue;
    }
    if (!route) {
      merge_.answerError(element, kJsonRpcMethodNotFound, "Method not found: no route matches this call");
      continue;
    }
    if (route->respond) {
      merge_.answerError(element, kJsonRpcMethodNotFound,
                         "Method not found: route '" + route->name + "' answers HTTP " +
                             std::to_string(route->respond->status));
      continue;
    }

    auto part = std::find_if(parts_.begin(), parts_.end(),
                             [&](const auto& candidate) { return &candidate->route() == route; });
    if (part == parts_.end()) part = parts_.insert(parts_.end(), std::make_unique<Part>(*this, *route));
    (*part)->add(element);
  }
}

JsonRpcSplit::~JsonRpcSplit() {
  cancel();
  parts_.clear();
  event_free(settle_event_);
}

void JsonRpcSplit::start() {
  for (const auto& part : parts_) part->send();
  // With nothing to send, the answer is known already; it still leaves from the event.
  if (parts_.empty()) partSettled();
}

void JsonRpcSplit::cancel() {
  cancelled_ = true;
  for (const auto& part : parts_) part->drop();
  event_del(settle_event_);
}

std::string JsonRpcSplit::routeNames() const {
  std::vector<std::string> names;
  for (const auto& part : parts_) names.push_back(part->route().name);
  return nameList(names);
}

std::string JsonRpcSplit::upstreamNames() const {
  std::vector<std::string> names;
  for (const auto& part : parts_) {
    const std::string& upstream = part->route().upstream;
    if (std::find(names.begin(), names.end(), upstream) == names.end()) names.push_back(upstream);
  }
  return nameList(names);
}

void JsonRpcSplit::onSettle(evutil_socket_t, short, void* self) {
  static_cast<JsonRpcSplit*>(self)->settle();
}

void JsonRpcSplit::partSettled() {
  if (!cancelled_) event_active(settle_event_, 0, 0);
}

void JsonRpcSplit::settle() {
  if (cancelled_ || answered_) return;
  for (const auto& part : parts_) part->dropIfCut();
  for (const auto& part : parts_) {
    if (!part->settled()) return;
  }
  answered_ = true;
  observer_.onSplitAnswered(merge_.result(), first_error_);
}

}  // namespace strangler
