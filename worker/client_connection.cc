// One downstream HTTP/1.0 or HTTP/1.1 connection.
#include "worker/client_connection.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <cstdio>

#include "worker/worker.h"

namespace strangler {
namespace {

// A client silent for this long between requests, or while sending one, is
// disconnected; so is one that takes no response bytes for this long.
constexpr int kClientTimeoutSeconds = 60;
// Response backlog at which the exchange is told the client can take more.
constexpr size_t kWritableLowWatermark = 64 * 1024;

ClientConnection* self(llhttp_t* parser) { return static_cast<ClientConnection*>(parser->data); }

std::string peerAddress(const sockaddr* peer) {
  char text[INET6_ADDRSTRLEN] = "";
  if (peer->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(peer)->sin_addr, text, sizeof text);
  } else if (peer->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(peer)->sin6_addr, text, sizeof text);
  }
  return text;
}

bool isPrintableReason(const std::string& reason) {
  if (reason.empty()) return false;
  for (unsigned char c : reason) {
    if ((c < 0x20 && c != '\t') || c == 0x7F) return false;
  }
  return true;
}

}  // namespace

// Trampolines from llhttp's C callbacks to the connection.
struct RequestParserCallbacks {
  static int onMessageBegin(llhttp_t* p) { return self(p)->beginMessage(); }
  static int onUrl(llhttp_t* p, const char* at, size_t n) { return self(p)->appendUrl(at, n); }
  static int onHeaderField(llhttp_t* p, const char* at, size_t n) { return self(p)->appendHeaderName(at, n); }
  static int onHeaderValue(llhttp_t* p, const char* at, size_t n) { return self(p)->appendHeaderValue(at, n); }
  static int onHeaderValueComplete(llhttp_t* p) { return self(p)->completeHeaderValue(); }
  static int onHeadersComplete(llhttp_t* p) { return self(p)->completeHeaders(); }
  static int onBody(llhttp_t* p, const char* at, size_t n) { return self(p)->appendBody(at, n); }
  static int onMessageComplete(llhttp_t* p) { return self(p)->completeMessage(); }

  static const llhttp_settings_t* settings() {
    static llhttp_settings_t value = [] {
      llhttp_settings_t s;
      llhttp_settings_init(&s);
      s.on_message_begin = onMessageBegin;
      s.on_url = onUrl;
      s.on_header_field = onHeaderField;
      s.on_header_value = onHeaderValue;
      s.on_header_value_complete = onHeaderValueComplete;
      s.on_headers_complete = onHeadersComplete;
      s.on_body = onBody;
      s.on_message_complete = onMessageComplete;
      return s;
    }();
    return &value;
  }
};

ClientConnection::ClientConnection(Worker& worker, evutil_socket_t fd, const sockaddr* peer, socklen_t)
    : worker_(worker) {
  bev_ = bufferevent_socket_new(worker.base(), fd, BEV_OPT_CLOSE_ON_FREE);
  resume_event_ = event_new(worker.base(), -1, 0, &ClientConnection::onResume, this);
  llhttp_init(&parser_, HTTP_REQUEST, RequestParserCallbacks::settings());
  parser_.data = this;

  client_.address = peerAddress(peer);
  for (const Cidr& range : worker.config().trusted_proxies) {
    if (range.contains(peer)) client_.trusted = true;
  }
}

ClientConnection::~ClientConnection() {
  exchange_.reset();
  event_free(resume_event_);
  bufferevent_free(bev_);
}

void ClientConnection::start() {
  int one = 1;
  setsockopt(bufferevent_getfd(bev_), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  bufferevent_setcb(bev_, &ClientConnection::onRead, &ClientConnection::onWrite,
                    &ClientConnection::onEvent, this);
  // Reading stops while this much is buffered unparsed (pipelined requests waiting).
  bufferevent_setwatermark(bev_, EV_READ, 0, worker_.config().max_header_size + 16 * 1024);
  bufferevent_setwatermark(bev_, EV_WRITE, kWritableLowWatermark, 0);
  struct timeval timeout = {kClientTimeoutSeconds, 0};
  bufferevent_set_timeouts(bev_, &timeout, &timeout);
  bufferevent_enable(bev_, EV_READ | EV_WRITE);
}

void ClientConnection::beginDrain() {
  draining_ = true;
  bool idle = !exchange_ && !in_message_ && evbuffer_get_length(bufferevent_get_input(bev_)) == 0;
  if (idle) closeNow();
}

void ClientConnection::onRead(bufferevent*, void* self) { static_cast<ClientConnection*>(self)->parseInput(); }

void ClientConnection::onWrite(bufferevent*, void* self) {
  static_cast<ClientConnection*>(self)->handleWritable();
}

void ClientConnection::onEvent(bufferevent*, short events, void* self) {
  static_cast<ClientConnection*>(self)->handleEvent(events);
}

void ClientConnection::onResume(evutil_socket_t, short, void* self) {
  auto* connection = static_cast<ClientConnection*>(self);
  if (connection->closed_) return;
  connection->finishCycle();
  if (!connection->closing_) {
    connection->parseInput();
    return;
  }
  if (evbuffer_get_length(bufferevent_get_output(connection->bev_)) == 0) connection->closeNow();
}

void ClientConnection::parseInput() {
  evbuffer* input = bufferevent_get_input(bev_);
  while (!closed_ && !closing_ && evbuffer_get_length(input) > 0) {
    if (request_done_) {
      if (!response_done_) break;  // the next pipelined request waits for this response
      finishCycle();
      if (closing_ || closed_) break;
    }
    evbuffer_iovec chunk;
    if (evbuffer_peek(input, -1, nullptr, &chunk, 1) < 1) break;
    const char* data = static_cast<const char*>(chunk.iov_base);
    llhttp_errno_t status = llhttp_execute(&parser_, data, chunk.iov_len);

    if (status == HPE_OK) {
      evbuffer_drain(input, chunk.iov_len);
    } else if (status == HPE_PAUSED) {
      evbuffer_drain(input, static_cast<size_t>(llhttp_get_error_pos(&parser_) - data));
    } else if (status == HPE_PAUSED_UPGRADE) {
      // Upgrade was removed from the forwarded request, so the connection stays HTTP/1.
      evbuffer_drain(input, static_cast<size_t>(llhttp_get_error_pos(&parser_) - data));
      llhttp_resume_after_upgrade(&parser_);
    } else if (status == HPE_CLOSED_CONNECTION) {
      // Bytes after a request that closes the connection are not a request.
      evbuffer_drain(input, evbuffer_get_length(input));
    } else {
      if (closed_ || closing_) return;
      bool in_body = headers_done_ && !request_done_;
      rejectRequest(400, in_body ? "bad_request_body" : "bad_request", llhttp_get_error_reason(&parser_));
      return;
    }
  }
  if (request_done_ && response_done_ && !closing_ && !closed_) finishCycle();
}

void ClientConnection::handleEvent(short events) {
  if (events & BEV_EVENT_TIMEOUT) {
    // Waiting on the upstream is not the client's silence.
    bool waiting_for_response = exchange_ && request_done_ && !response_done_;
    if ((events & BEV_EVENT_READING) && waiting_for_response) {
      bufferevent_enable(bev_, EV_READ);
      return;
    }
    closeNow();
    return;
  }
  if ((events & BEV_EVENT_EOF) && exchange_ && request_done_ && !response_done_) {
    // The client half-closed after a whole request: answer it, then close.
    keep_alive_ = false;
    bufferevent_disable(bev_, EV_READ);
    return;
  }
  closeNow();
}

void ClientConnection::handleWritable() {
  if (closing_ && evbuffer_get_length(bufferevent_get_output(bev_)) == 0) {
    closeNow();
    return;
  }
  if (exchange_ && !exchange_->finished()) exchange_->downstreamWritable();
}

int ClientConnection::beginMessage() {
  in_message_ = true;
  headers_done_ = false;
  request_done_ = false;
  response_done_ = false;
  request_ = RequestHead();
  trailers_.clear();
  head_bytes_ = 0;
  body_bytes_ = 0;
  return 0;
}

int ClientConnection::appendUrl(const char* at, size_t length) {
  head_bytes_ += length;
  request_.target.append(at, length);
  if (head_bytes_ > worker_.config().max_header_size) {
    rejectRequest(414, "target_too_long", "the request target is over the limit");
    return HPE_USER;
  }
  return 0;
}

int ClientConnection::appendHeaderName(const char* at, size_t length) {
  if (in_value_) completeHeaderValue();
  head_bytes_ += length;
  field_name_.append(at, length);
  return 0;
}

int ClientConnection::appendHeaderValue(const char* at, size_t length) {
  in_value_ = true;
  head_bytes_ += length;
  field_value_.append(at, length);
  if (head_bytes_ > worker_.config().max_header_size) {
    rejectRequest(431, "headers_too_large", "the request header section is over the limit");
    return HPE_USER;
  }
  return 0;
}

int ClientConnection::completeHeaderValue() {
  while (!field_value_.empty() && (field_value_.back() == ' ' || field_value_.back() == '\t')) {
    field_value_.pop_back();
  }
  HeaderList& target = headers_done_ ? trailers_ : request_.headers;
  target.emplace_back(std::move(field_name_), std::move(field_value_));
  field_name_.clear();
  field_value_.clear();
  in_value_ = false;
  return 0;
}

bool ClientConnection::validateHead(int& status, const char*& token, const char*& message) {
  status = 400;
  if (parser_.http_major != 1 || parser_.http_minor > 1) {
    status = 505;
    token = "http_version_not_supported";
    message = "only HTTP/1.0 and HTTP/1.1 are served here (HTTP/2: send the connection preface)";
    return false;
  }
  if (parser_.method == HTTP_CONNECT) {
    status = 405;
    token = "connect_not_supported";
    message = "this is a reverse proxy: CONNECT is not supported";
    return false;
  }
  size_t hosts = countHeader(request_.headers, "host");
  if (hosts > 1 || (hosts == 0 && parser_.http_minor == 1)) {
    token = "bad_host";
    message = hosts > 1 ? "more than one Host header" : "an HTTP/1.1 request needs a Host header";
    return false;
  }
  for (const auto& field : request_.headers) {
    if (field.first.empty()) {
      token = "bad_header";
      message = "a header field has an empty name";
      return false;
    }
  }
  bool has_transfer_encoding = (parser_.flags & F_TRANSFER_ENCODING) != 0;
  if (has_transfer_encoding && (parser_.http_minor == 0 || !(parser_.flags & F_CHUNKED))) {
    token = "bad_transfer_encoding";
    message = "Transfer-Encoding must end in chunked, and only in HTTP/1.1";
    return false;
  }
  if ((parser_.flags & F_CONTENT_LENGTH) && worker_.config().max_body &&
      parser_.content_length > *worker_.config().max_body) {
    status = 413;
    token = "body_too_large";
    message = "the request body is over the limit";
    return false;
  }
  return true;
}

int ClientConnection::completeHeaders() {
  if (in_value_) completeHeaderValue();
  headers_done_ = true;

  int status = 0;
  const char* token = "";
  const char* message = "";
  if (!validateHead(status, token, message)) {
    rejectRequest(status, token, message);
    return HPE_USER;
  }

  request_.method = llhttp_method_name(static_cast<llhttp_method_t>(parser_.method));
  request_.version_major = parser_.http_major;
  request_.version_minor = parser_.http_minor;
  request_.chunked = (parser_.flags & F_CHUNKED) != 0;
  if (parser_.flags & F_CONTENT_LENGTH) request_.content_length = parser_.content_length;
  request_.keep_alive = llhttp_should_keep_alive(&parser_) != 0;
  keep_alive_ = request_.keep_alive && !draining_;

  exchange_ = std::make_unique<Exchange>(worker_, *this, request_, client_);
  exchange_->start();
  return 0;
}

int ClientConnection::appendBody(const char* at, size_t length) {
  body_bytes_ += length;
  const auto& limit = worker_.config().max_body;
  if (limit && body_bytes_ > *limit) {
    rejectRequest(413, "body_too_large", "the request body is over the limit");
    return HPE_USER;
  }
  if (exchange_) exchange_->requestBody(at, length);
  return 0;
}

int ClientConnection::completeMessage() {
  in_message_ = false;
  request_done_ = true;
  if (exchange_) exchange_->requestEnd(trailers_);
  // Pause here: a pipelined request is parsed only once this one is answered.
  return HPE_PAUSED;
}

void ClientConnection::rejectRequest(int status, const char* reason_token, const char* message) {
  keep_alive_ = false;
  if (exchange_ && !exchange_->finished()) {
    exchange_->refuseRequestBody(status, reason_token, message);
  } else if (!exchange_) {
    if (request_.method.empty() && parser_.method <= HTTP_SOURCE) {
      request_.method = llhttp_method_name(static_cast<llhttp_method_t>(parser_.method));
    }
    request_.version_minor = parser_.http_minor <= 1 ? parser_.http_minor : 1;
    exchange_ = std::make_unique<Exchange>(worker_, *this, request_, client_);
    exchange_->reject(status, reason_token, message);
  }
  closeWhenFlushed();
}

void ClientConnection::finishCycle() {
  if (!exchange_ || !request_done_ || !response_done_) return;
  worker_.graveyard().add(std::move(exchange_));
  request_done_ = false;
  response_done_ = false;
  llhttp_resume(&parser_);
  if (!keep_alive_ || draining_) closeWhenFlushed();
}

void ClientConnection::sendInformational(const ResponseHead& head) {
  std::string text = "HTTP/1.1 " + std::to_string(head.status) + " " + reasonPhrase(head.status) + "\r\n";
  for (const auto& [name, value] : head.headers) text += name + ": " + value + "\r\n";
  text += "\r\n";
  bufferevent_write(bev_, text.data(), text.size());
}

void ClientConnection::sendResponseHead(const ResponseHead& head, bool has_body) {
  bool client_is_1_1 = request_.version_minor >= 1;
  if (!has_body) framing_ = ResponseFraming::none;
  else if (head.content_length) framing_ = ResponseFraming::content_length;
  else if (client_is_1_1) framing_ = ResponseFraming::chunked;
  else framing_ = ResponseFraming::until_close;
  if (framing_ == ResponseFraming::until_close) keep_alive_ = false;
  if (draining_) keep_alive_ = false;

  std::string text;
  text.reserve(256);
  text += "HTTP/1.1 ";
  text += std::to_string(head.status);
  text += ' ';
  text += isPrintableReason(head.reason) ? head.reason : reasonPhrase(head.status);
  text += "\r\n";
  for (const auto& [name, value] : head.headers) {
    text += name;
    text += ": ";
    text += value;
    text += "\r\n";
  }
  // HEAD and 304 answers may say how long the body would have been.
  bool length_without_body = framing_ == ResponseFraming::none && head.content_length && head.status != 204;
  if (framing_ == ResponseFraming::content_length || length_without_body) {
    text += "Content-Length: " + std::to_string(*head.content_length) + "\r\n";
  } else if (framing_ == ResponseFraming::chunked) {
    text += "Transfer-Encoding: chunked\r\n";
  }
  if (!keep_alive_) text += "Connection: close\r\n";
  else if (!client_is_1_1) text += "Connection: keep-alive\r\n";
  text += "\r\n";
  bufferevent_write(bev_, text.data(), text.size());
}

void ClientConnection::sendResponseBody(const char* data, size_t length) {
  if (framing_ == ResponseFraming::none || length == 0) return;
  if (framing_ == ResponseFraming::chunked) {
    char size_line[24];
    int size_length = snprintf(size_line, sizeof size_line, "%zx\r\n", length);
    bufferevent_write(bev_, size_line, static_cast<size_t>(size_length));
    bufferevent_write(bev_, data, length);
    bufferevent_write(bev_, "\r\n", 2);
    return;
  }
  bufferevent_write(bev_, data, length);
}

void ClientConnection::sendResponseEnd(const HeaderList& trailers) {
  if (framing_ != ResponseFraming::chunked) return;
  std::string last = "0\r\n";
  for (const auto& [name, value] : trailers) {
    if (isHopByHop(name)) continue;
    last += name + ": " + value + "\r\n";
  }
  last += "\r\n";
  bufferevent_write(bev_, last.data(), last.size());
}

void ClientConnection::abortResponse() {
  // Whatever was sent stays short of its framing, so the client sees the cut.
  keep_alive_ = false;
  closeWhenFlushed();
}

size_t ClientConnection::responseBacklog() const {
  return evbuffer_get_length(bufferevent_get_output(bev_));
}

void ClientConnection::pauseRequestBody(bool paused) {
  body_paused_ = paused;
  updateReading();
}

void ClientConnection::exchangeFinished() {
  response_done_ = true;
  if (request_done_ && !closed_) event_active(resume_event_, 0, 0);
}

void ClientConnection::updateReading() {
  if (closed_) return;
  if (body_paused_ || closing_) bufferevent_disable(bev_, EV_READ);
  else bufferevent_enable(bev_, EV_READ);
}

void ClientConnection::closeWhenFlushed() {
  if (closed_) return;
  closing_ = true;
  updateReading();
  if (evbuffer_get_length(bufferevent_get_output(bev_)) == 0) {
    // Deferred: the caller may be deep inside this connection's own callbacks.
    event_active(resume_event_, 0, 0);
    return;
  }
  // Called back when the output is empty.
  bufferevent_setwatermark(bev_, EV_WRITE, 0, 0);
}

void ClientConnection::closeNow() {
  if (closed_) return;
  closed_ = true;
  if (exchange_ && !exchange_->finished()) exchange_->downstreamAborted();
  bufferevent_setcb(bev_, nullptr, nullptr, nullptr, nullptr);
  bufferevent_disable(bev_, EV_READ | EV_WRITE);
  event_del(resume_event_);
  worker_.connectionClosed(this);
}

}  // namespace strangler
