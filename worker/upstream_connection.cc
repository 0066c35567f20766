// One HTTP/1.1 connection to an upstream endpoint.
#include "worker/upstream_connection.h"

#include <event2/buffer.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <algorithm>
#include <cstdio>

#include "shared/timeval.h"
#include "worker/upstream_pool.h"

namespace strangler {
namespace {

// The largest response head accepted from an upstream, and its field count.
constexpr size_t kMaxResponseHead = 64 * 1024;
constexpr size_t kMaxResponseFields = 256;

// Data kept in the output buffer before the client side is paused, and the
// level at which it is resumed: the bounded window of an upload.
constexpr size_t kHighWatermark = 256 * 1024;
constexpr size_t kLowWatermark = 64 * 1024;

}  // namespace

const char* failureToken(UpstreamFailure failure) {
  switch (failure) {
    case UpstreamFailure::connect_refused: return "upstream_connect_refused";
    case UpstreamFailure::connect_timeout: return "upstream_connect_timeout";
    case UpstreamFailure::reset: return "upstream_reset";
    case UpstreamFailure::response_timeout: return "upstream_response_timeout";
    case UpstreamFailure::bad_response: return "upstream_bad_response";
    case UpstreamFailure::refused: return "upstream_refused";
  }
  return "upstream_error";
}

UpstreamConnection::UpstreamConnection(event_base* base, UpstreamPool& pool, EndpointState& endpoint)
    : pool_(pool),
      endpoint_(endpoint),
      clock_(LoopClock::of(base)),
      socket_(SocketContext::of(base), *this),
      scanner_(Http1HeadScanner::Kind::response, kMaxResponseHead, kMaxResponseFields) {
  connect_timer_ = evtimer_new(base, &UpstreamConnection::onConnectTimeout, this);
  silence_timer_ = evtimer_new(base, &UpstreamConnection::onSilenceTimer, this);
  llhttp_init(&parser_, HTTP_RESPONSE, LlhttpCallbacks<UpstreamConnection>::settings());
  parser_.data = this;
}

UpstreamConnection::~UpstreamConnection() {
  if (connect_timer_) event_free(connect_timer_);
  if (silence_timer_) event_free(silence_timer_);
}

bool UpstreamConnection::connect() {
  timeval timeout = millisecondsToTimeval(endpoint_.connect_timeout_ms);
  evtimer_add(connect_timer_, &timeout);
  connect_started_ = clock_.now();
  if (!socket_.connect(reinterpret_cast<sockaddr*>(&endpoint_.address), endpoint_.address_length)) return false;
  socket_.setReading(true);
  return true;
}

void UpstreamConnection::attach(UpstreamObserver* observer, bool response_has_no_body) {
  observer_ = observer;
  response_has_no_body_ = response_has_no_body;
  headers_done_ = false;
  message_done_ = false;
  received_anything_ = false;
  upgraded_ = false;
  request_chunked_ = false;
  scanner_.reset();
  exchanges_++;
  request_started_ = clock_.now();
  llhttp_init(&parser_, HTTP_RESPONSE, LlhttpCallbacks<UpstreamConnection>::settings());
  parser_.data = this;

  timeval timeout = millisecondsToTimeval(endpoint_.timeout_ms);
  const timeval* common = socket_.context().commonTimeout(endpoint_.timeout_ms);
  socket_.setWriteTimeout(common ? common : &timeout);
  socket_.setReading(true);
  heardFrom();
  if (!silence_timer_armed_) armSilenceTimer(std::chrono::milliseconds(endpoint_.timeout_ms));
}

void UpstreamConnection::park() {
  observer_ = nullptr;
  // An idle upstream connection has no deadline of its own here; the
  // upstream's keep-alive timeout closes it, and the EOF removes it. A
  // silence timer still armed finds no observer and lapses.
  socket_.setWriteTimeout(nullptr);
  socket_.setReading(true);
}

void UpstreamConnection::armSilenceTimer(std::chrono::nanoseconds after) {
  // At least 1 µs: a rest that rounds to 0 would fire again at once.
  timeval wait = toTimeval(std::max<std::chrono::nanoseconds>(after, std::chrono::microseconds(1)));
  evtimer_add(silence_timer_, &wait);
  silence_timer_armed_ = true;
}

void UpstreamConnection::onSilenceTimer(evutil_socket_t, short, void* self) {
  static_cast<UpstreamConnection*>(self)->checkSilence();
}

void UpstreamConnection::checkSilence() {
  silence_timer_armed_ = false;
  if (!observer_ || released_) return;
  // Reading paused for a slow client is not the upstream's silence.
  if (!socket_.reading()) heardFrom();
  auto timeout = std::chrono::milliseconds(endpoint_.timeout_ms);
  auto silent = clock_.now() - last_heard_;
  if (silent < timeout) {
    armSilenceTimer(timeout - silent);
    return;
  }
  fail(UpstreamFailure::response_timeout);
}

void UpstreamConnection::silence() {
  observer_ = nullptr;
  evtimer_del(connect_timer_);
  evtimer_del(silence_timer_);
  silence_timer_armed_ = false;
  socket_.stop();
}

bufferevent* UpstreamConnection::releaseForTunnel() {
  evtimer_del(connect_timer_);
  evtimer_del(silence_timer_);
  silence_timer_armed_ = false;
  released_ = true;
  return socket_.release();
}

void UpstreamConnection::sendHead(const UpstreamRequest& request) { sendHeadView(UpstreamHeadView(request)); }

void UpstreamConnection::sendHeadView(const UpstreamHeadView& head) {
  // Piece by piece into the socket's output: the fields are not gathered first.
  socket_.write(head.method);
  socket_.write(" ", 1);
  socket_.write(head.path);
  if (!head.query.empty()) {
    socket_.write("?", 1);
    socket_.write(head.query);
  }
  socket_.write(" HTTP/1.1\r\n", 11);
  for (const auto& [name, value] : head.fields) socket_.writeField(name, value);

  request_chunked_ = head.length_unknown;
  if (head.length_unknown) {
    socket_.write("Transfer-Encoding: chunked\r\n", 28);
  } else if (head.content_length) {
    socket_.write("Content-Length: ", 16);
    socket_.write(std::to_string(*head.content_length));
    socket_.write("\r\n", 2);
  }
  socket_.write("\r\n", 2);
}

void UpstreamConnection::sendBody(const char* data, size_t length) {
  if (length == 0) return;
  if (!request_chunked_) {
    send(data, length);
    return;
  }
  char size_line[24];
  int size_length = snprintf(size_line, sizeof size_line, "%zx\r\n", length);
  send(size_line, static_cast<size_t>(size_length));
  send(data, length);
  send("\r\n", 2);
}

void UpstreamConnection::sendEnd(const HeaderList& trailers) {
  if (!request_chunked_) return;
  socket_.write("0\r\n", 3);
  for (const auto& [name, value] : trailers) socket_.writeField(name, value);
  socket_.write("\r\n", 2);
}

void UpstreamConnection::send(const char* data, size_t length) { socket_.write(data, length); }

size_t UpstreamConnection::backlog() const { return released_ ? 0 : socket_.backlog(); }

void UpstreamConnection::setReading(bool reading) {
  if (released_) return;
  // The silence counts from when reading resumes, as it did when the read
  // event carried the timeout.
  if (reading && !socket_.reading()) heardFrom();
  socket_.setReading(reading);
}

void UpstreamConnection::onSocketRead() { handleRead(); }

void UpstreamConnection::onSocketWritten() {
  // As a bufferevent's write callback with a low watermark would.
  if (socket_.backlog() > kLowWatermark) return;
  if (observer_) observer_->onUpstreamWritable();
}

void UpstreamConnection::onSocketEvent(short events) { handleEvent(events); }

void UpstreamConnection::onConnectTimeout(evutil_socket_t, short, void* self) {
  static_cast<UpstreamConnection*>(self)->fail(UpstreamFailure::connect_timeout);
}

void UpstreamConnection::handleRead() {
  heardFrom();
  if (!observer_) {
    // A parked connection must stay silent: bytes now are a protocol error.
    pool_.discard(this);
    return;
  }
  received_anything_ = true;
  parseInput();
}

void UpstreamConnection::parseInput() {
  while (!socket_.pending().empty() && observer_ && !message_done_) {
    std::string_view chunk = socket_.pending();
    const char* data = chunk.data();
    if (scanner_.inHead()) {
      size_t head_length = 0;
      if (scanner_.scan(data, chunk.size(), head_length) == Http1HeadScanner::Verdict::refused) {
        fail(UpstreamFailure::bad_response);
        return;
      }
    }
    llhttp_errno_t status = llhttp_execute(&parser_, data, chunk.size());

    if (status == HPE_OK) {
      socket_.consume(chunk.size());
      continue;
    }
    if (status == HPE_PAUSED || status == HPE_PAUSED_UPGRADE) {
      socket_.consume(static_cast<size_t>(llhttp_get_error_pos(&parser_) - data));
      if (message_done_ || upgraded_) break;
      // An informational response ended; the final one follows.
      scanner_.reset();
      llhttp_resume(&parser_);
      continue;
    }
    fail(UpstreamFailure::bad_response);
    return;
  }
  if (upgraded_ && observer_) {
    UpstreamObserver* observer = observer_;
    observer_ = nullptr;
    observer->onUpgrade(this, head_);
    return;
  }
  if (message_done_) finishResponse();
}

void UpstreamConnection::handleEvent(short events) {
  if (events & BEV_EVENT_CONNECTED) {
    connected_ = true;
    evtimer_del(connect_timer_);
    pool_.metrics().upstreamConnected(pool_.metricsSeries(endpoint_),
                                      clock_.secondsSince(connect_started_));
    request_started_ = clock_.now();  // the request could not leave before
    heardFrom();
    int one = 1;
    setsockopt(socket_.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return;
  }
  if (!observer_) {
    pool_.discard(this);
    return;
  }
  if (events & BEV_EVENT_TIMEOUT) {
    fail(UpstreamFailure::response_timeout);
    return;
  }
  if (events & BEV_EVENT_EOF) {
    // A response without a length ends with the connection.
    parseInput();
    if (!observer_) return;
    if (headers_done_ && llhttp_finish(&parser_) == HPE_OK && message_done_) {
      finishResponse();
      return;
    }
  }
  fail(connected_ ? UpstreamFailure::reset : UpstreamFailure::connect_refused);
}

void UpstreamConnection::fail(UpstreamFailure failure) {
  UpstreamObserver* observer = observer_;
  observer_ = nullptr;
  evtimer_del(connect_timer_);
  socket_.stop();
  pool_.discard(this);
  if (observer) observer->onUpstreamFailure(failure, received_anything_);
}

void UpstreamConnection::finishResponse() {
  UpstreamObserver* observer = observer_;
  observer_ = nullptr;
  bool keeps_alive = head_.keep_alive && socket_.pending().empty();
  HeaderList trailers = std::move(trailers_);
  trailers_.clear();
  observer->onResponseEnd(this, trailers, keeps_alive);
}

int UpstreamConnection::beginMessage() {
  // Field by field, so that the list keeps its room from one response to the next.
  head_.status = 200;
  head_.reason.clear();
  head_.headers.clear();
  head_.request_id = {};
  head_.content_length.reset();
  head_.keep_alive = true;
  head_.close_downstream = false;
  trailers_.clear();
  fields_ = HeaderCollector();
  headers_done_ = false;
  return 0;
}

int UpstreamConnection::appendStatus(const char* at, size_t length) {
  head_.reason.append(at, length);
  return 0;
}

int UpstreamConnection::appendHeaderName(const char* at, size_t length) {
  if (fields_.inValue()) completeHeaderValue();
  fields_.appendName(at, length);
  return 0;
}

int UpstreamConnection::appendHeaderValue(const char* at, size_t length) {
  fields_.appendValue(at, length);
  return 0;
}

int UpstreamConnection::completeHeaderValue() {
  fields_.finish(headers_done_ ? trailers_ : head_.headers);
  return 0;
}

int UpstreamConnection::completeHeaders() {
  if (fields_.inValue()) completeHeaderValue();
  headers_done_ = true;
  head_.status = parser_.status_code;
  if (head_.status < 100 || head_.status > 599) return -1;
  if (parser_.flags & F_CONTENT_LENGTH) head_.content_length = parser_.content_length;
  head_.keep_alive = llhttp_should_keep_alive(&parser_) != 0;

  bool informational = head_.status < 200;
  bool no_body = response_has_no_body_ || informational || head_.status == 204 || head_.status == 304;
  if (head_.status == 101) {
    upgraded_ = true;
    return 1;
  }
  if (informational) {
    // Each 1xx is a message of its own; the final response follows it.
    observer_->onInformational(head_);
    return 1;
  }
  pool_.metrics().upstreamResponded(pool_.metricsSeries(endpoint_),
                                    clock_.secondsSince(request_started_));
  removeConnectionFields(head_.headers);
  observer_->onResponseHead(head_, !no_body);
  // Returning 1 tells llhttp that this response has no body, whatever its headers say.
  return no_body ? 1 : 0;
}

int UpstreamConnection::appendBody(const char* at, size_t length) {
  if (observer_) observer_->onResponseBody(at, length);
  return 0;
}

int UpstreamConnection::completeMessage() {
  // Pause after a 1xx as well, so the final response's head is checked too.
  if (head_.status < 200) return HPE_PAUSED;
  message_done_ = true;
  return HPE_PAUSED;
}

}  // namespace strangler
