// One downstream HTTP/1.0 or HTTP/1.1 connection: the server half of the
// HTTP/1 codec. Requests are parsed by Http1RequestParser; one exchange runs
// at a time (pipelined requests wait their turn); each response is framed
// for this client. After a 101 from the upstream the connection becomes a
// byte tunnel.
#pragma once

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sys/socket.h>

#include <chrono>
#include <memory>
#include <string>

#include "worker/deferred_delete.h"
#include "worker/downstream.h"
#include "worker/exchange.h"
#include "worker/http1_request_parser.h"
#include "worker/loop_clock.h"
#include "worker/http1_socket.h"

namespace strangler {

class Worker;

class ClientConnection : public DownstreamConnection,
                         public DownstreamSink,
                         private Http1RequestParser::Handler,
                         private Http1Socket::Handler {
 public:
  ClientConnection(Worker& worker, evutil_socket_t fd, const sockaddr* peer);
  ~ClientConnection() override;

  void start();
  // A connection handed over by the previous worker of this slot, with the
  // bytes it had read but not parsed.
  void startHandedOver(const std::string& unparsed);
  // Stop taking requests: close at once when idle, else after the current
  // response. A tunnel is left to end by itself (or by the drain timeout).
  void beginDrain() override;
  void cut() override;

  // DownstreamSink
  void sendInformational(const ResponseHead& head) override;
  void sendResponseHead(const ResponseHead& head, bool has_body) override;
  void sendResponseBody(const char* data, size_t length) override;
  void sendResponseEnd(const HeaderList& trailers) override;
  void abortResponse() override;
  size_t responseBacklog() const override;
  void pauseRequestBody(bool paused) override;
  bool startTunnel(const ResponseHead& head, bufferevent* upstream) override;
  void exchangeFinished() override;

 private:
  enum class ResponseFraming { none, content_length, chunked, until_close };
  // fresh: a new connection waiting for its first request; idle: kept alive
  // between requests. Both are the read side's own timeout; the others a
  // timer of their own, made when first needed.
  enum class Deadline { none, fresh, idle, head, body, linger };

  // Http1RequestParser::Handler
  void onRequestHead(RequestHead& head) override;
  void onRequestBody(const char* data, size_t length) override;
  void onRequestEnd(const HeaderList& trailers) override;

  // Http1Socket::Handler
  void onSocketRead() override;
  void onSocketWritten() override;
  void onSocketEvent(short events) override;
  void onSocketDeferred() override;

  // Once tunnelling, the socket is a bufferevent.
  static void onWrite(bufferevent*, void* self);
  static void onEvent(bufferevent*, short events, void* self);
  static void onDeadline(evutil_socket_t, short, void* self);
  static void onTunnelRead(bufferevent* from, void* self);
  static void onTunnelWrite(bufferevent* to, void* self);
  static void onTunnelEvent(bufferevent*, short events, void* self);

  void parseInput();
  Http1RequestParser& parser();
  void releaseParser();
  bool midMessage() const { return parser_ && parser_->midMessage(); }
  // At the start of a connection: the HTTP/2 preface moves it to an HTTP/2
  // session. Returns true when the bytes were taken care of (switched, or
  // waiting for the rest of the preface, or closed).
  bool checkForHttp2Preface();
  bool wantsH2cUpgrade(const RequestHead& head, std::string& settings) const;
  void switchToHttp2(const RequestHead* upgrade, const std::string& settings, const std::string& upgrade_body);
  void handleEvent(short events);
  void handleWritable();
  void handleDeadline();
  // For an idle connection's timeout: whether it has been idle for the whole
  // keep-alive timeout; if not, its timer is set for the rest.
  bool idleLongEnough();
  void finishCycle();
  void refuse(const Http1RequestParser::Refusal& refusal);
  void arm(Deadline deadline);
  void closeWhenFlushed();
  // The output is flushed: close, or first linger if the client may still be
  // sending (closing then would reset the connection and lose the answer).
  void finishClosing();
  // Passes the socket to the slot's new worker, if between requests with
  // the whole response sent. True when it is gone.
  bool tryHandOver();
  bool closesWhenDraining() const;
  void closeNow();
  void updateReading();
  // Response bytes not yet taken by the kernel.
  size_t outputBacklog() const;
  void pumpTunnel(bufferevent* from);
  void endTunnel();

  Worker& worker_;
  Http1Socket socket_;
  bufferevent* bev_ = nullptr;  // the client side of a tunnel
  event* deadline_timer_ = nullptr;
  Deadline deadline_ = Deadline::none;
  uint64_t heads_ = 0;  // request heads parsed
  std::chrono::steady_clock::time_point opened_;
  LoopClock::TimePoint idle_since_;  // when the connection last became idle
  // Made when a request starts, gone while the connection is idle.
  std::unique_ptr<Http1RequestParser> parser_;
  ClientInfo client_;

  std::unique_ptr<Exchange> exchange_;
  int version_minor_ = 1;  // of the request being answered
  bool request_has_body_ = false;
  bool request_done_ = false;
  bool response_done_ = false;

  ResponseFraming framing_ = ResponseFraming::none;
  bool keep_alive_ = true;
  bool body_paused_ = false;
  bool client_finished_sending_ = false;  // half-closed after a whole request
  bool closing_ = false;
  bool finishing_ = false;  // finishClosing() ran
  bool linger_ = false;
  bool handover_pending_ = false;
  bool lingering_ = false;
  bool draining_ = false;
  bool closed_ = false;
  bufferevent* tunnel_peer_ = nullptr;  // the upstream side, once tunnelling
  bool first_bytes_checked_ = false;
  struct H2cUpgrade {
    RequestHead request;
    std::string settings;  // decoded HTTP2-Settings
    std::string body;      // the upgrading request's body, read before the switch
  };
  std::unique_ptr<H2cUpgrade> h2c_;  // an upgrade asked for, pending its request's end
};

}  // namespace strangler
