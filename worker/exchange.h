// One request and its response, from the moment the downstream codec has
// parsed the request head: routing, local answers, and the upstream
// exchange with its streamed bodies in both directions.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/jsonrpc.h"
#include "shared/router.h"
#include "worker/access_log.h"
#include "worker/deferred_delete.h"
#include "worker/downstream.h"
#include "worker/jsonrpc_batch.h"
#include "worker/upstream_connection.h"
#include "worker/upstream_stream.h"

namespace strangler {

class Worker;

class Exchange : public Deletable, public UpstreamObserver, public JsonRpcSplitObserver {
 public:
  Exchange(Worker& worker, DownstreamSink& downstream, RequestHead request, const ClientInfo& client);
  ~Exchange() override;

  // Routes the request and answers it or starts the upstream exchange.
  void start();

  // Answers a request the codec found malformed or over a limit, without routing it.
  void reject(int status, const char* reason_token, const std::string& message);
  // The request body turned out malformed or over a limit after the head
  // was accepted (and perhaps forwarded): the upstream exchange is dropped.
  void refuseRequestBody(int status, const char* reason_token, const std::string& message);

  // Request body bytes, already de-framed by the downstream codec.
  void requestBody(const char* data, size_t length);
  void requestEnd(const HeaderList& trailers);

  // The downstream took enough of the response backlog to accept more.
  void downstreamWritable();
  // The client went away: stop everything, log, finish.
  void downstreamAborted();
  // The proxy itself ends the exchange unfinished (the drain timeout ran out).
  void cutByProxy(const char* reason_token);

  bool finished() const { return finished_; }
  bool responseStarted() const { return response_started_; }

  // UpstreamObserver
  void onInformational(const ResponseHead& head) override;
  void onResponseHead(ResponseHead& head, bool has_body) override;
  void onResponseBody(const char* data, size_t length) override;
  void onResponseEnd(UpstreamStream* stream, const HeaderList& trailers, bool upstream_keeps_alive) override;
  void onUpstreamFailure(UpstreamFailure failure, bool anything_received) override;
  void onUpgrade(UpstreamConnection* connection, const ResponseHead& head) override;
  void onUpstreamWritable() override;

  // JsonRpcSplitObserver
  void sendPartHead(const Route& route, UpstreamStream& stream, size_t length) override;
  void onSplitAnswered(const std::string& answer, const std::string& error) override;

 private:
  bool routeRequest();
  RequestFacts requestFacts() const;
  void proceed();
  bool connectUpstream(bool fresh);
  // The head of the request for `route` on `endpoint`; with `part_length`,
  // that of one part of a split JSON-RPC batch: a POST with a body of that
  // length. Views into this exchange, the route and `head` itself.
  void upstreamHead(const Route& route, const Endpoint& endpoint, std::optional<size_t> part_length,
                    UpstreamHeadView& head) const;
  void upstreamPath(const Rewrite& rewrite, const Endpoint& endpoint, UpstreamHeadView& head) const;
  void keepClientFields(const Rewrite& rewrite, bool drop_expect, std::vector<FieldView>& fields) const;
  void addForwardingFields(const Endpoint& endpoint, bool upgrade, UpstreamHeadView& head) const;
  void forwardBody(const char* data, size_t length);

  // JSON-RPC: the body is held until it is read whole (or over the limit),
  // then routes the request; see docs/RULES.md.
  void beginInspection();
  void inspectBody(const char* data, size_t length);
  void routeByBody();
  void goOnWhole(const Route* route, std::string_view held);
  void sendJson(int status, const std::string& body);

  // The global rate limit, once the route is known and before any action: a
  // request counts once, a JSON-RPC batch once per call. False: answered.
  bool admitByRateLimit();
  void respondLocally(int status, const char* reason_token, const std::string& message,
                      const HeaderList& extra_headers = {});
  void respondWithRoute(const Respond& respond);
  void finish(const char* terminated_by);
  void countInMetrics();
  // The id sent upstream and back: the client's, or ours.
  std::string_view requestId() const {
    return client_request_id_.empty() ? record_.request_id : std::string_view(client_request_id_);
  }

  Worker& worker_;
  DownstreamSink& downstream_;
  RequestHead request_;
  ClientInfo client_;
  std::shared_ptr<const Router> router_;  // the version this request is routed by
  std::chrono::steady_clock::time_point started_;

  std::string_view path_;        // normalised: a view into request_.target, or of normalized_path_
  std::string normalized_path_;  // when normalisation changed the path
  std::string_view query_;  // raw, without '?': a view into request_.target
  std::string host_;
  const Route* route_ = nullptr;
  UpstreamStream* upstream_ = nullptr;
  bool retried_ = false;
  int refusals_ = 0;  // streams an HTTP/2 upstream refused unprocessed, each sent again
  size_t connect_attempts_ = 0;
  bool upgrade_requested_ = false;  // a WebSocket handshake on a route that allows it
  bool trailers_accepted_ = false;  // the client sent TE: trailers
  std::string client_request_id_;   // the client's X-Request-Id, when it sent one we keep
  bool request_complete_ = false;
  HeaderList request_trailers_;  // kept for a request sent again after it ended
  bool response_started_ = false;
  bool response_has_body_ = false;
  bool finished_ = false;

  const Route* head_route_ = nullptr;  // the route with every jsonrpc condition false
  bool inspecting_ = false;
  bool continue_sent_ = false;  // the proxy itself answered Expect: 100-continue
  std::string body_;            // held while inspecting
  std::string_view held_;       // inspected bytes, sent ahead of the rest on every connect
  std::unique_ptr<JsonRpcBody> jsonrpc_body_;
  std::unique_ptr<JsonRpcSplit> split_;  // declared after the body it reads

  // The proxy's own request id, which record_.request_id views.
  char own_request_id_[kRequestIdSize];
  AccessRecord record_;
};

}  // namespace strangler
