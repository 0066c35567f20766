// One request and its response, from the moment the downstream codec has
// parsed the request head: routing, local answers, and the upstream
// exchange with its streamed bodies in both directions.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "shared/router.h"
#include "worker/access_log.h"
#include "worker/deferred_delete.h"
#include "worker/downstream.h"
#include "worker/upstream_connection.h"

namespace strangler {

class Worker;

class Exchange : public Deletable, public UpstreamObserver {
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

  bool finished() const { return finished_; }
  bool responseStarted() const { return response_started_; }

  // UpstreamObserver
  void onInformational(const ResponseHead& head) override;
  void onResponseHead(ResponseHead& head, bool has_body) override;
  void onResponseBody(const char* data, size_t length) override;
  void onResponseEnd(UpstreamConnection* connection, const HeaderList& trailers,
                     bool upstream_keeps_alive) override;
  void onUpstreamFailure(UpstreamFailure failure, bool anything_received) override;
  void onUpstreamWritable() override;

 private:
  bool routeRequest();
  bool connectUpstream(bool fresh);
  std::string upstreamRequestHead() const;
  void respondLocally(int status, const char* reason_token, const std::string& message,
                      const HeaderList& extra_headers = {});
  void respondWithRoute(const Respond& respond);
  void finish(const char* terminated_by);

  Worker& worker_;
  DownstreamSink& downstream_;
  RequestHead request_;
  ClientInfo client_;
  std::shared_ptr<const Router> router_;  // the version this request is routed by
  std::chrono::steady_clock::time_point started_;

  std::string path_;   // normalised
  std::string query_;  // raw, without '?'
  std::string host_;
  const Route* route_ = nullptr;
  UpstreamConnection* upstream_ = nullptr;
  bool retried_ = false;
  bool request_complete_ = false;
  bool response_started_ = false;
  bool response_has_body_ = false;
  bool finished_ = false;

  AccessRecord record_;
};

}  // namespace strangler
