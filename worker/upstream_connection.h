// One HTTP/1.1 connection to an upstream endpoint: the client half of the
// HTTP/1 codec. It frames the request the exchange hands it, parses the
// response with llhttp and reports it to its observer.
#pragma once

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <llhttp.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "worker/deferred_delete.h"
#include "worker/header_collector.h"
#include "worker/http1_head_scanner.h"
#include "worker/http1_socket.h"
#include "worker/http_message.h"
#include "worker/llhttp_callbacks.h"
#include "worker/loop_clock.h"
#include "worker/upstream_stream.h"

namespace strangler {

class UpstreamPool;

class UpstreamConnection : public UpstreamStream, public Deletable, private Http1Socket::Handler {
 public:
  UpstreamConnection(event_base* base, UpstreamPool& pool, EndpointState& endpoint);
  ~UpstreamConnection() override;

  // Starts a non-blocking connect; false when the socket cannot even be created.
  bool connect();

  // UpstreamStream
  void attach(UpstreamObserver* observer, bool response_has_no_body) override;
  void sendHead(const UpstreamRequest& request) override;
  void sendHeadView(const UpstreamHeadView& head) override;
  void sendBody(const char* data, size_t length) override;
  void sendEnd(const HeaderList& trailers) override;
  size_t backlog() const override;
  void setReading(bool reading) override;
  bool reused() const override { return exchanges_ > 1; }
  EndpointState& endpoint() override { return endpoint_; }

  // Parks the connection in the pool: any byte or EOF now closes it.
  void park();
  // Stops every callback: the connection is about to be deleted.
  void silence();

  // Gives up the socket (and any bytes already read past the 101) for a tunnel.
  bufferevent* releaseForTunnel();

 private:
  void send(const char* data, size_t length);
  // Http1Socket::Handler
  void onSocketRead() override;
  void onSocketWritten() override;
  void onSocketEvent(short events) override;
  static void onConnectTimeout(evutil_socket_t, short, void* self);
  static void onSilenceTimer(evutil_socket_t, short, void* self);

  // The response timeout (the endpoint's timeout_ms of silence while a
  // request is under way) is kept lazily: a read only notes the time, and
  // the timer, when it fires, either finds the silence long enough or is
  // armed again for the rest. So a request and its response move no timer;
  // the timer moves once per timeout at most.
  void heardFrom() { last_heard_ = clock_.now(); }
  void armSilenceTimer(std::chrono::nanoseconds after);
  void checkSilence();

  void handleRead();
  void handleEvent(short events);
  void parseInput();
  void fail(UpstreamFailure failure);
  void finishResponse();

  // llhttp callbacks (trampolines in the .cc file call these).
  template <typename> friend struct LlhttpCallbacks;
  static constexpr bool kParsesResponses = true;
  int beginMessage();
  int appendStatus(const char* at, size_t length);
  int appendHeaderName(const char* at, size_t length);
  int appendHeaderValue(const char* at, size_t length);
  int completeHeaderValue();
  int completeHeaders();
  int appendBody(const char* at, size_t length);
  int completeMessage();

  UpstreamPool& pool_;
  EndpointState& endpoint_;
  LoopClock& clock_;
  Http1Socket socket_;
  bool released_ = false;  // the socket went to a tunnel
  event* connect_timer_ = nullptr;
  event* silence_timer_ = nullptr;
  bool silence_timer_armed_ = false;
  LoopClock::TimePoint last_heard_;
  llhttp_t parser_;
  Http1HeadScanner scanner_;
  UpstreamObserver* observer_ = nullptr;

  bool connected_ = false;
  bool response_has_no_body_ = false;
  bool headers_done_ = false;
  bool message_done_ = false;
  bool received_anything_ = false;
  bool upgraded_ = false;
  bool request_chunked_ = false;
  int exchanges_ = 0;
  // For the connect and response latency metrics.
  LoopClock::TimePoint connect_started_;
  LoopClock::TimePoint request_started_;

  ResponseHead head_;
  HeaderList trailers_;
  HeaderCollector fields_;
};

}  // namespace strangler
