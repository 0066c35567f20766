// One downstream HTTP/1.0 or HTTP/1.1 connection: the server half of the
// HTTP/1 codec. Parses requests with llhttp (strict build) plus checks of its
// own, runs one exchange at a time (pipelined requests wait their turn), and
// frames each response for this client.
#pragma once

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <llhttp.h>
#include <sys/socket.h>

#include <memory>
#include <string>

#include "worker/deferred_delete.h"
#include "worker/downstream.h"
#include "worker/exchange.h"

namespace strangler {

class Worker;

class ClientConnection : public Deletable, public DownstreamSink {
 public:
  ClientConnection(Worker& worker, evutil_socket_t fd, const sockaddr* peer, socklen_t peer_length);
  ~ClientConnection() override;

  void start();
  // Stop taking requests: close at once when idle, else after the current response.
  void beginDrain();

  // DownstreamSink
  void sendInformational(const ResponseHead& head) override;
  void sendResponseHead(const ResponseHead& head, bool has_body) override;
  void sendResponseBody(const char* data, size_t length) override;
  void sendResponseEnd(const HeaderList& trailers) override;
  void abortResponse() override;
  size_t responseBacklog() const override;
  void pauseRequestBody(bool paused) override;
  void exchangeFinished() override;

 private:
  enum class ResponseFraming { none, content_length, chunked, until_close };

  static void onRead(bufferevent*, void* self);
  static void onWrite(bufferevent*, void* self);
  static void onEvent(bufferevent*, short events, void* self);
  static void onResume(evutil_socket_t, short, void* self);

  void parseInput();
  void handleEvent(short events);
  void handleWritable();
  void finishCycle();
  void rejectRequest(int status, const char* reason_token, const char* message);
  bool validateHead(int& status, const char*& token, const char*& message);
  void closeWhenFlushed();
  void closeNow();
  void updateReading();

  // llhttp callbacks (trampolines in the .cc file call these).
  friend struct RequestParserCallbacks;
  int beginMessage();
  int appendUrl(const char* at, size_t length);
  int appendHeaderName(const char* at, size_t length);
  int appendHeaderValue(const char* at, size_t length);
  int completeHeaderValue();
  int completeHeaders();
  int appendBody(const char* at, size_t length);
  int completeMessage();

  Worker& worker_;
  bufferevent* bev_;
  event* resume_event_;
  llhttp_t parser_;
  ClientInfo client_;

  std::unique_ptr<Exchange> exchange_;
  RequestHead request_;
  HeaderList trailers_;
  std::string field_name_;
  std::string field_value_;
  bool in_value_ = false;
  bool in_message_ = false;
  bool headers_done_ = false;
  bool request_done_ = false;
  bool response_done_ = false;
  size_t head_bytes_ = 0;
  uint64_t body_bytes_ = 0;

  ResponseFraming framing_ = ResponseFraming::none;
  bool keep_alive_ = true;
  bool body_paused_ = false;
  bool closing_ = false;
  bool draining_ = false;
  bool closed_ = false;
};

}  // namespace strangler
