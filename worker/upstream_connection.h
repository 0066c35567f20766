// One HTTP/1.1 connection to an upstream endpoint: the client half of the
// HTTP/1 codec. It writes a request the exchange has already framed, parses
// the response with llhttp and reports it to its observer.
#pragma once

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <llhttp.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "worker/deferred_delete.h"
#include "worker/http1_head_scanner.h"
#include "worker/header_collector.h"
#include "worker/llhttp_callbacks.h"
#include "worker/http_message.h"

namespace strangler {

class UpstreamConnection;
class UpstreamPool;
struct EndpointState;

// Why an upstream exchange failed, as the stable token logs and metrics use.
enum class UpstreamFailure {
  connect_refused,   // refused or unreachable while connecting
  connect_timeout,
  reset,             // closed or reset before a complete response
  response_timeout,  // silent for longer than the upstream's timeout_ms
  bad_response,      // not parseable as HTTP/1.1
};

const char* failureToken(UpstreamFailure failure);

// What an UpstreamConnection tells the exchange using it.
class UpstreamObserver {
 public:
  virtual ~UpstreamObserver() = default;
  virtual void onInformational(const ResponseHead& head) = 0;  // 1xx other than 101
  virtual void onResponseHead(ResponseHead& head, bool has_body) = 0;
  virtual void onResponseBody(const char* data, size_t length) = 0;
  // The connection is detached by now: the observer must hand it back with
  // UpstreamPool::release (reusable only when `upstream_keeps_alive` and the
  // whole request was sent) or UpstreamPool::discard.
  virtual void onResponseEnd(UpstreamConnection* connection, const HeaderList& trailers,
                             bool upstream_keeps_alive) = 0;
  // The connection is already discarded.
  virtual void onUpstreamFailure(UpstreamFailure failure, bool anything_received) = 0;
  virtual void onUpstreamWritable() = 0;  // the request backlog fell below the low mark
  // A 101 Switching Protocols: the observer may take the socket for a tunnel
  // with releaseForTunnel(), and must hand the connection to discard().
  virtual void onUpgrade(UpstreamConnection* connection, const ResponseHead& head) = 0;
};

class UpstreamConnection : public Deletable {
 public:
  UpstreamConnection(event_base* base, UpstreamPool& pool, EndpointState& endpoint);
  ~UpstreamConnection() override;

  // Starts a non-blocking connect; false when the socket cannot even be created.
  bool connect();

  // Hands the connection to an exchange for one request/response.
  void attach(UpstreamObserver* observer, bool response_has_no_body);
  // Parks the connection in the pool: any byte or EOF now closes it.
  void park();
  // Stops every callback: the connection is about to be deleted.
  void silence();

  // Gives up the socket (and any bytes already read past the 101) for a tunnel.
  bufferevent* releaseForTunnel();

  void send(const char* data, size_t length);
  size_t backlog() const;
  void setReading(bool reading);

  bool reused() const { return exchanges_ > 1; }
  EndpointState& endpoint() { return endpoint_; }

 private:
  static void onRead(bufferevent*, void* self);
  static void onWrite(bufferevent*, void* self);
  static void onEvent(bufferevent*, short events, void* self);
  static void onConnectTimeout(evutil_socket_t, short, void* self);

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
  bufferevent* bev_ = nullptr;
  event* connect_timer_ = nullptr;
  llhttp_t parser_;
  Http1HeadScanner scanner_;
  UpstreamObserver* observer_ = nullptr;

  bool connected_ = false;
  bool response_has_no_body_ = false;
  bool headers_done_ = false;
  bool message_done_ = false;
  bool received_anything_ = false;
  bool upgraded_ = false;
  int exchanges_ = 0;
  // For the connect and response latency metrics.
  std::chrono::steady_clock::time_point connect_started_;
  std::chrono::steady_clock::time_point request_started_;

  ResponseHead head_;
  HeaderList trailers_;
  HeaderCollector fields_;
};

}  // namespace strangler
