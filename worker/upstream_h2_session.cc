// HTTP/2 over cleartext to upstreams: sessions, their streams, and the line
// of streams waiting for room.
#include "worker/upstream_h2_session.h"

#include <event2/buffer.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <cctype>
#include <cstdlib>

#include "shared/ascii.h"
#include "shared/process_log.h"
#include "shared/timeval.h"
#include "worker/http2_codec.h"
#include "worker/upstream_pool.h"

namespace strangler {
namespace {

// Sessions per endpoint; past them, streams wait for room on one.
constexpr size_t kMaxSessionsPerEndpoint = 4;
// What nghttp2 assumes of a peer's SETTINGS_MAX_CONCURRENT_STREAMS until
// they arrive; this codec itself sends one stream only before then.
constexpr uint32_t kInitialStreamLimit = 100;
// Each stream's receive window: the response body an upstream can push at
// the proxy per stream while the client is slow, beyond the exchange's own mark.
constexpr int32_t kStreamWindow = 256 * 1024;
constexpr int32_t kConnectionWindow = 4 * 1024 * 1024;
// A stream's request body below which its exchange may send more.
constexpr size_t kRequestLowWatermark = 64 * 1024;
// The largest response head (names and values) and field count taken, as for HTTP/1.
constexpr size_t kMaxResponseHead = 64 * 1024;
constexpr size_t kMaxResponseFields = 256;

// Fields that describe one connection, or that this codec writes itself.
bool staysOffHttp2(const std::string& name) {
  static const char* const fields[] = {"host", "connection", "keep-alive", "proxy-connection", "transfer-encoding",
                                       "upgrade", "te", "content-length", "http2-settings"};
  for (const char* field : fields) {
    if (equalsIgnoreCase(name, field)) return true;
  }
  return false;
}

// `pairs` are lowercase names and their values, in turn.
std::vector<nghttp2_nv> fieldArray(const std::vector<std::string>& pairs) {
  std::vector<nghttp2_nv> fields;
  fields.reserve(pairs.size() / 2);
  for (size_t i = 0; i + 1 < pairs.size(); i += 2) {
    uint8_t flags = http2::isNewEveryMessage(pairs[i]) ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE;
    fields.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(pairs[i].data())),
                      reinterpret_cast<uint8_t*>(const_cast<char*>(pairs[i + 1].data())), pairs[i].size(),
                      pairs[i + 1].size(), flags});
  }
  return fields;
}

// The session's output as collectFrames() sees it.
struct EvbufferOutput {
  evbuffer* buffer;
  const bool& session_closed;  // a callback may close the session meanwhile
  bool wantsMore() const {
    return !session_closed && evbuffer_get_length(buffer) < http2::kOutputHighWatermark;
  }
  void append(const char* data, size_t length) { evbuffer_add(buffer, data, length); }
};

}  // namespace

// Trampolines from nghttp2's C callbacks to the session.
struct H2ClientCallbacks {
  static UpstreamH2Session* of(void* user) { return static_cast<UpstreamH2Session*>(user); }

  static void install(nghttp2_session_callbacks* callbacks) {
    nghttp2_session_callbacks_set_on_header_callback(callbacks, header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, frameReceived);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(callbacks, frameNotSent);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, dataChunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, streamClose);
  }
  static int header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t name_length,
                    const uint8_t* value, size_t value_length, uint8_t, void* user) {
    return of(user)->header(frame, name, name_length, value, value_length);
  }
  static int frameReceived(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    return of(user)->frameReceived(frame);
  }
  static int frameNotSent(nghttp2_session*, const nghttp2_frame* frame, int, void* user) {
    return of(user)->frameNotSent(frame);
  }
  static int dataChunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t length,
                       void* user) {
    return of(user)->dataChunk(stream_id, data, length);
  }
  static int streamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user) {
    return of(user)->streamClose(stream_id, error_code);
  }
  static ssize_t readRequestBody(nghttp2_session*, int32_t stream_id, uint8_t* buffer, size_t length,
                                 uint32_t* flags, nghttp2_data_source*, void* user) {
    // Looked up by id: a stream the exchange let go of may still be known to nghttp2.
    UpstreamH2Stream* stream = of(user)->stream(stream_id);
    return stream ? stream->readRequestBody(buffer, length, flags) : static_cast<ssize_t>(NGHTTP2_ERR_DEFERRED);
  }
};

// ---- UpstreamH2Stream

UpstreamH2Stream::UpstreamH2Stream(UpstreamH2Endpoint& endpoint, event_base* base)
    : endpoint_(endpoint), timeout_(evtimer_new(base, &UpstreamH2Stream::onTimeout, this)), pending_(evbuffer_new()) {}

UpstreamH2Stream::~UpstreamH2Stream() {
  event_free(timeout_);
  evbuffer_free(pending_);
}

EndpointState& UpstreamH2Stream::endpoint() { return endpoint_.state(); }

void UpstreamH2Stream::attach(UpstreamObserver* observer, bool response_has_no_body) {
  observer_ = observer;
  response_has_no_body_ = response_has_no_body;
}

void UpstreamH2Stream::sendHead(const UpstreamRequest& request) {
  const std::string* host = findHeader(request.headers, "host");
  request_fields_ = {":method", request.method, ":scheme", "http", ":authority",
                     host ? *host : endpoint().endpoint.text(), ":path", request.target};
  for (const auto& [name, value] : request.headers) {
    if (staysOffHttp2(name)) continue;
    request_fields_.push_back(asciiLowercase(name));
    request_fields_.push_back(value);
  }
  if (request.trailers_accepted) {
    request_fields_.push_back("te");
    request_fields_.push_back("trailers");
  }
  if (request.content_length) {
    request_fields_.push_back("content-length");
    request_fields_.push_back(std::to_string(*request.content_length));
  }
  request_has_body_ = request.hasBody();
  started_ = endpoint_.clock().now();
  armTimeout();
  endpoint_.place(*this);
}

void UpstreamH2Stream::sendBody(const char* data, size_t length) {
  if (length == 0 || request_ended_) return;
  evbuffer_add(pending_, data, length);
  if (session_ && id_ >= 0) session_->resume(*this);
}

void UpstreamH2Stream::sendEnd(const HeaderList& trailers) {
  if (request_ended_) return;
  request_ended_ = true;
  request_trailers_ = trailers;
  if (session_ && id_ >= 0 && request_has_body_) session_->resume(*this);
}

size_t UpstreamH2Stream::backlog() const { return evbuffer_get_length(pending_); }

void UpstreamH2Stream::setReading(bool reading) {
  reading_ = reading;
  if (!reading || unconsumed_ == 0 || !session_ || id_ < 0) return;
  session_->consume(id_, unconsumed_);
  unconsumed_ = 0;
  session_->flush();
}

bool UpstreamH2Stream::submitTo(UpstreamH2Session& session) {
  session_ = &session;
  reused_ = session.streamsServed() > 0;
  if (session.submit(*this, fieldArray(request_fields_), request_has_body_)) return true;
  session_ = nullptr;
  return false;
}

void UpstreamH2Stream::field(std::string name, std::string value) {
  head_bytes_ += name.size() + value.size();
  if (head_bytes_ > kMaxResponseHead || head_.headers.size() + trailers_.size() >= kMaxResponseFields) {
    head_too_large_ = true;
    return;
  }
  if (name == ":status") {
    head_.status = atoi(value.c_str());
    return;
  }
  if (head_done_) {
    trailers_.emplace_back(std::move(name), std::move(value));
    return;
  }
  if (name == "content-length") head_.content_length = strtoull(value.c_str(), nullptr, 10);
  head_.headers.emplace_back(std::move(name), std::move(value));
}

void UpstreamH2Stream::headersEnded(bool end_stream) {
  received_anything_ = true;
  armTimeout();
  if (head_too_large_) {
    fail(UpstreamFailure::bad_response);
    return;
  }
  if (head_done_) {
    if (end_stream) remoteEnded();
    return;
  }

  if (head_.status < 200) {
    // Each 1xx is a head of its own; the final one follows. (nghttp2 refuses a 101.)
    head_.reason = reasonPhrase(head_.status);
    if (observer_) observer_->onInformational(head_);
    head_ = ResponseHead();
    head_bytes_ = 0;
    return;
  }
  head_done_ = true;
  head_.reason = reasonPhrase(head_.status);
  removeConnectionFields(head_.headers);
  endpoint_.metrics().upstreamResponded(endpoint().upstream_name,
                                        endpoint_.clock().secondsSince(started_));
  bool has_body = !end_stream && !response_has_no_body_ && head_.status != 204 && head_.status != 304;
  if (observer_) observer_->onResponseHead(head_, has_body);
  // The exchange may have let go of the stream in that call.
  if (observer_ && end_stream) remoteEnded();
}

void UpstreamH2Stream::body(const uint8_t* data, size_t length) {
  received_anything_ = true;
  armTimeout();
  UpstreamH2Session* session = session_;
  int32_t id = id_;
  if (observer_ && head_done_ && !response_has_no_body_) {
    observer_->onResponseBody(reinterpret_cast<const char*>(data), length);
  }
  // The window opens again only as fast as the client takes the bytes
  // (the exchange turns reading off when the client falls behind).
  if (!reading_ && session_) unconsumed_ += length;
  else session->consume(id, length);
}

void UpstreamH2Stream::remoteEnded() {
  if (response_done_ || !head_done_) return;
  response_done_ = true;
  finishResponse();
}

void UpstreamH2Stream::finishResponse() {
  UpstreamObserver* observer = observer_;
  observer_ = nullptr;
  evtimer_del(timeout_);
  HeaderList trailers = std::move(trailers_);
  trailers_.clear();
  if (observer) observer->onResponseEnd(this, trailers, true);
}

void UpstreamH2Stream::closed(uint32_t error_code) {
  session_ = nullptr;
  id_ = -1;
  if (response_done_) return;
  fail(error_code == NGHTTP2_REFUSED_STREAM ? UpstreamFailure::refused : UpstreamFailure::reset);
}

ssize_t UpstreamH2Stream::readRequestBody(uint8_t* buffer, size_t length, uint32_t* flags) {
  size_t copied = static_cast<size_t>(evbuffer_remove(pending_, buffer, length));
  if (copied > 0) armTimeout();
  if (evbuffer_get_length(pending_) < kRequestLowWatermark) wants_writable_ = true;
  if (copied == 0 && !request_ended_) return NGHTTP2_ERR_DEFERRED;

  if (request_ended_ && evbuffer_get_length(pending_) == 0) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (!request_trailers_.empty()) {
      // The trailers end the stream themselves.
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      session_->submitTrailers(id_, request_trailers_);
    }
  }
  return static_cast<ssize_t>(copied);
}

void UpstreamH2Stream::notifyWritable() {
  if (!wants_writable_) return;
  wants_writable_ = false;
  if (observer_) observer_->onUpstreamWritable();
}

void UpstreamH2Stream::fail(UpstreamFailure failure) {
  UpstreamObserver* observer = observer_;
  observer_ = nullptr;
  evtimer_del(timeout_);
  if (session_) session_->cancel(*this);
  endpoint_.release(this);
  if (observer) observer->onUpstreamFailure(failure, received_anything_);
}

void UpstreamH2Stream::leaveSession() {
  session_ = nullptr;
  id_ = -1;
}

void UpstreamH2Stream::armTimeout() {
  timeval timeout = millisecondsToTimeval(endpoint().timeout_ms);
  evtimer_add(timeout_, &timeout);
}

void UpstreamH2Stream::onTimeout(evutil_socket_t, short, void* self) {
  static_cast<UpstreamH2Stream*>(self)->fail(UpstreamFailure::response_timeout);
}

// ---- UpstreamH2Session

UpstreamH2Session::UpstreamH2Session(UpstreamH2Endpoint& endpoint, event_base* base)
    : endpoint_(endpoint),
      bev_(bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE)),
      connect_timer_(evtimer_new(base, &UpstreamH2Session::onConnectTimeout, this)),
      flush_event_(event_new(base, -1, 0, &UpstreamH2Session::onFlush, this)) {}

UpstreamH2Session::~UpstreamH2Session() {
  if (session_) nghttp2_session_del(session_);
  event_free(flush_event_);
  event_free(connect_timer_);
  bufferevent_free(bev_);
}

bool UpstreamH2Session::createSession() {
  // Stream windows open as the client takes response bytes, not as they arrive.
  session_ =
      http2::newSession(http2::Role::client, this, H2ClientCallbacks::install, [](nghttp2_option* options) {
        nghttp2_option_set_peer_max_concurrent_streams(options, kInitialStreamLimit);
      });
  if (!session_) return false;

  http2::submitSettings(session_,
                        {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                         {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kStreamWindow)},
                         {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(kMaxResponseHead)}},
                        kConnectionWindow);
  return true;
}

bool UpstreamH2Session::connect() {
  if (!bev_ || !connect_timer_ || !flush_event_ || !createSession()) return false;
  bufferevent_setcb(bev_, &UpstreamH2Session::onRead, &UpstreamH2Session::onWrite, &UpstreamH2Session::onEvent,
                    this);
  bufferevent_setwatermark(bev_, EV_WRITE, http2::kOutputLowWatermark, 0);
  bufferevent_enable(bev_, EV_READ | EV_WRITE);

  EndpointState& endpoint = endpoint_.state();
  timeval timeout = millisecondsToTimeval(endpoint.connect_timeout_ms);
  evtimer_add(connect_timer_, &timeout);
  connect_started_ = endpoint_.clock().now();
  if (bufferevent_socket_connect(bev_, reinterpret_cast<sockaddr*>(&endpoint.address),
                                 static_cast<int>(endpoint.address_length)) != 0) {
    return false;
  }
  // The preface and SETTINGS wait in the output buffer until the connect completes.
  flush();
  return true;
}

bool UpstreamH2Session::hasRoom() const {
  return usable() && open_ids_.size() + reserved_ < capacity_;
}

bool UpstreamH2Session::submit(UpstreamH2Stream& stream, const std::vector<nghttp2_nv>& fields, bool with_body) {
  nghttp2_data_provider provider = {};
  provider.read_callback = H2ClientCallbacks::readRequestBody;
  int32_t id = nghttp2_submit_request(session_, nullptr, fields.data(), fields.size(),
                                      with_body ? &provider : nullptr, nullptr);
  if (id < 0) {
    // Stream ids spent: this session takes no more.
    plog::debug("upstream HTTP/2 request not submitted", {{"error", nghttp2_strerror(id)}});
    draining_ = true;
    return false;
  }
  stream.id_ = id;
  streams_[id] = &stream;
  open_ids_.insert(id);
  flush();
  return true;
}

void UpstreamH2Session::cancel(UpstreamH2Stream& stream) {
  int32_t id = stream.id_;
  stream.leaveSession();
  if (id < 0 || closed_) return;
  streams_.erase(id);
  // A stream whose request went out whole and whose response ended needs no
  // reset. One whose HEADERS have not left yet is unknown to nghttp2 (both
  // answers -1); the reset then cancels the HEADERS.
  bool both_closed = nghttp2_session_get_stream_local_close(session_, id) == 1 &&
                     nghttp2_session_get_stream_remote_close(session_, id) == 1;
  if (open_ids_.count(id) && !both_closed) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  }
  flush();
}

void UpstreamH2Session::resume(UpstreamH2Stream& stream) {
  nghttp2_session_resume_data(session_, stream.id_);
  flush();
}

void UpstreamH2Session::consume(int32_t id, size_t length) { nghttp2_session_consume_stream(session_, id, length); }

void UpstreamH2Session::submitTrailers(int32_t id, const HeaderList& trailers) {
  http2::OutgoingFields& fields = http2::OutgoingFields::start(trailers);
  for (const auto& [name, value] : trailers) {
    if (!staysOffHttp2(name)) fields.add(name, value);
  }
  nghttp2_submit_trailer(session_, id, fields.data(), fields.size());
}

void UpstreamH2Session::onRead(bufferevent*, void* self) { static_cast<UpstreamH2Session*>(self)->receive(); }

void UpstreamH2Session::onWrite(bufferevent*, void* self) { static_cast<UpstreamH2Session*>(self)->flush(); }

void UpstreamH2Session::onEvent(bufferevent*, short events, void* self) {
  static_cast<UpstreamH2Session*>(self)->handleEvent(events);
}

void UpstreamH2Session::onConnectTimeout(evutil_socket_t, short, void* self) {
  static_cast<UpstreamH2Session*>(self)->handleConnectTimeout();
}

void UpstreamH2Session::onFlush(evutil_socket_t, short, void* self) {
  static_cast<UpstreamH2Session*>(self)->writeFrames();
}

void UpstreamH2Session::handleEvent(short events) {
  if (events & BEV_EVENT_CONNECTED) {
    connected_ = true;
    evtimer_del(connect_timer_);
    endpoint_.metrics().upstreamConnected(
        endpoint_.state().upstream_name,
        endpoint_.clock().secondsSince(connect_started_));
    int one = 1;
    setsockopt(bufferevent_getfd(bev_), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    flush();
    return;
  }
  // Frames that came just before the end are still the upstream's word.
  if (connected_ && (events & BEV_EVENT_EOF)) receive();
  if (!closed_) close(connected_ ? UpstreamFailure::reset : UpstreamFailure::connect_refused);
}

void UpstreamH2Session::handleConnectTimeout() { close(UpstreamFailure::connect_timeout); }

void UpstreamH2Session::receive() {
  if (closed_) return;
  evbuffer* input = bufferevent_get_input(bev_);
  while (!closed_ && evbuffer_get_length(input) > 0) {
    evbuffer_iovec chunk;
    if (evbuffer_peek(input, -1, nullptr, &chunk, 1) < 1) break;
    ssize_t used = nghttp2_session_mem_recv(session_, static_cast<const uint8_t*>(chunk.iov_base), chunk.iov_len);
    if (used < 0) {
      plog::debug("upstream HTTP/2 session error", {{"upstream", endpoint_.state().upstream_name},
                                                      {"error", nghttp2_strerror(static_cast<int>(used))}});
      close(UpstreamFailure::bad_response);
      return;
    }
    evbuffer_drain(input, static_cast<size_t>(used));
  }
  flush();
}

void UpstreamH2Session::flush() {
  if (!closed_ && session_) event_active(flush_event_, 0, 0);
}

void UpstreamH2Session::writeFrames() {
  if (closed_) return;
  EvbufferOutput output{bufferevent_get_output(bev_), closed_};
  if (http2::collectFrames(session_, output) != 0) {
    close(UpstreamFailure::bad_response);
    return;
  }
  if (closed_) return;

  // Streams whose request body ran low may take more from their client now.
  std::vector<UpstreamH2Stream*> open;
  for (auto& entry : streams_) open.push_back(entry.second);
  for (UpstreamH2Stream* stream : open) {
    if (stream->session_ == this) stream->notifyWritable();
  }
  closeIfDone();
}

void UpstreamH2Session::closeIfDone() {
  if (closed_) return;
  bool has_streams = !streams_.empty() || !open_ids_.empty();
  // Most connection errors nghttp2 handles itself: it sends GOAWAY and then
  // reads no more. The streams still open have no answer coming.
  if (has_streams && !nghttp2_session_want_read(session_)) {
    plog::debug("upstream HTTP/2 session ended by a protocol error", {{"upstream", endpoint_.state().upstream_name}});
    close(UpstreamFailure::bad_response);
    return;
  }
  if (has_streams || reserved_ > 0) return;
  bool over = !nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_);
  bool flushed = evbuffer_get_length(bufferevent_get_output(bev_)) == 0;
  if ((draining_ || over) && flushed) close(UpstreamFailure::reset);
}

void UpstreamH2Session::close(UpstreamFailure failure) {
  if (closed_) return;
  closed_ = true;
  evtimer_del(connect_timer_);
  event_del(flush_event_);
  bufferevent_setcb(bev_, nullptr, nullptr, nullptr, nullptr);
  bufferevent_disable(bev_, EV_READ | EV_WRITE);

  std::vector<UpstreamH2Stream*> held;
  for (auto& entry : streams_) held.push_back(entry.second);
  streams_.clear();
  open_ids_.clear();
  // Out of the endpoint's choice before anyone retries.
  endpoint_.sessionClosed(this);
  for (UpstreamH2Stream* stream : held) {
    stream->leaveSession();
    stream->fail(failure);
  }
}

UpstreamH2Stream* UpstreamH2Session::stream(int32_t id) {
  auto found = streams_.find(id);
  return found == streams_.end() ? nullptr : found->second;
}

int UpstreamH2Session::header(const nghttp2_frame* frame, const uint8_t* name, size_t name_length,
                              const uint8_t* value, size_t value_length) {
  UpstreamH2Stream* target = stream(frame->hd.stream_id);
  if (!target) return 0;
  target->field(std::string(reinterpret_cast<const char*>(name), name_length),
                std::string(reinterpret_cast<const char*>(value), value_length));
  return 0;
}

int UpstreamH2Session::frameReceived(const nghttp2_frame* frame) {
  switch (frame->hd.type) {
    case NGHTTP2_SETTINGS:
      if (frame->hd.flags & NGHTTP2_FLAG_ACK) return 0;
      capacity_ = nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
      settings_received_ = true;
      endpoint_.serveWaiting();
      return 0;
    case NGHTTP2_GOAWAY:
      // nghttp2 closes the streams above the last one taken as refused, right after this.
      draining_ = true;
      plog::debug("upstream HTTP/2 session got GOAWAY",
                  {{"upstream", endpoint_.state().upstream_name},
                   {"last_stream_id", frame->goaway.last_stream_id},
                   {"error_code", static_cast<unsigned long>(frame->goaway.error_code)}});
      endpoint_.serveWaiting();
      return 0;
    case NGHTTP2_HEADERS: {
      UpstreamH2Stream* target = stream(frame->hd.stream_id);
      if (target) target->headersEnded((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0);
      return 0;
    }
    case NGHTTP2_DATA: {
      UpstreamH2Stream* target = stream(frame->hd.stream_id);
      if (target && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) target->remoteEnded();
      return 0;
    }
    default:
      return 0;
  }
}

int UpstreamH2Session::frameNotSent(const nghttp2_frame* frame) {
  // A request HEADERS that never left (a GOAWAY came first) opened no stream
  // in nghttp2, so no close follows: the stream was refused unprocessed.
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  int32_t id = frame->hd.stream_id;
  if (nghttp2_session_find_stream(session_, id) || !open_ids_.erase(id)) return 0;
  UpstreamH2Stream* target = stream(id);
  streams_.erase(id);
  if (target) target->closed(NGHTTP2_REFUSED_STREAM);
  endpoint_.serveWaiting();
  return 0;
}

int UpstreamH2Session::dataChunk(int32_t stream_id, const uint8_t* data, size_t length) {
  // The connection window always opens at once; stream windows bound the memory.
  nghttp2_session_consume_connection(session_, length);
  UpstreamH2Stream* target = stream(stream_id);
  if (target) target->body(data, length);
  else nghttp2_session_consume_stream(session_, stream_id, length);
  return 0;
}

int UpstreamH2Session::streamClose(int32_t stream_id, uint32_t error_code) {
  if (!open_ids_.erase(stream_id)) return 0;
  streams_served_++;
  UpstreamH2Stream* target = stream(stream_id);
  streams_.erase(stream_id);
  if (target) target->closed(error_code);
  endpoint_.serveWaiting();
  return 0;
}

// ---- UpstreamH2Endpoint

UpstreamH2Endpoint::UpstreamH2Endpoint(event_base* base, DeferredDeleteQueue& graveyard,
                                       metrics::MetricsWriter& metrics, EndpointState& endpoint)
    : base_(base), clock_(LoopClock::of(base)), graveyard_(graveyard), metrics_(metrics), endpoint_(endpoint) {}

UpstreamH2Endpoint::~UpstreamH2Endpoint() {
  waiting_.clear();
  streams_.clear();
  sessions_.clear();
}

UpstreamH2Stream* UpstreamH2Endpoint::open(bool fresh) {
  UpstreamH2Session* session = sessionWithRoom(fresh);
  if (!session && mayStartSession()) {
    session = startSession();
    if (!session && usableSessions() == 0) return nullptr;
  }
  auto stream = std::make_unique<UpstreamH2Stream>(*this, base_);
  UpstreamH2Stream* raw = stream.get();
  streams_[raw] = std::move(stream);
  if (session) {
    raw->session_ = session;
    session->reserve();
  }
  return raw;
}

UpstreamH2Session* UpstreamH2Endpoint::sessionWithRoom(bool fresh) {
  UpstreamH2Session* best = nullptr;
  for (const auto& [raw, session] : sessions_) {
    if (!raw->hasRoom()) continue;
    if (fresh && raw->streamsServed() > 0) continue;
    // The busiest session with room: the others may then go idle and close.
    if (!best || raw->load() > best->load()) best = raw;
  }
  return best;
}

bool UpstreamH2Endpoint::mayStartSession() const {
  if (usableSessions() >= kMaxSessionsPerEndpoint) return false;
  for (const auto& entry : sessions_) {
    if (entry.first->awaitingSettings()) return false;
  }
  return true;
}

size_t UpstreamH2Endpoint::usableSessions() const {
  size_t count = 0;
  for (const auto& entry : sessions_) count += entry.first->usable() ? 1 : 0;
  return count;
}

UpstreamH2Session* UpstreamH2Endpoint::startSession() {
  auto session = std::make_unique<UpstreamH2Session>(*this, base_);
  UpstreamH2Session* raw = session.get();
  sessions_[raw] = std::move(session);
  if (!raw->connect()) {
    plog::warn("upstream HTTP/2 session cannot connect",
               {{"upstream", endpoint_.upstream_name}, {"endpoint", endpoint_.endpoint.text()}});
    auto found = sessions_.find(raw);
    graveyard_.add(std::move(found->second));
    sessions_.erase(found);
    return nullptr;
  }
  return raw;
}

void UpstreamH2Endpoint::place(UpstreamH2Stream& stream) {
  UpstreamH2Session* session = stream.session_;
  if (session) {
    session->unreserve();
    if (session->usable() && stream.submitTo(*session)) return;
    stream.session_ = nullptr;
  }
  waiting_.push_back(&stream);
  serveWaiting();
}

void UpstreamH2Endpoint::serveWaiting() {
  while (!waiting_.empty()) {
    UpstreamH2Session* session = sessionWithRoom(false);
    if (!session && mayStartSession()) session = startSession();
    if (!session) break;
    UpstreamH2Stream* stream = waiting_.front();
    waiting_.pop_front();
    if (!stream->submitTo(*session)) waiting_.push_front(stream);
  }
  if (waiting_.empty() || usableSessions() > 0) return;

  // No session can even be started: the waiting streams cannot be carried.
  std::deque<UpstreamH2Stream*> stranded;
  stranded.swap(waiting_);
  for (UpstreamH2Stream* stream : stranded) stream->fail(UpstreamFailure::connect_refused);
}

void UpstreamH2Endpoint::release(UpstreamH2Stream* stream) {
  auto found = streams_.find(stream);
  if (found == streams_.end()) return;
  stopWaiting(*stream);
  stream->observer_ = nullptr;
  evtimer_del(stream->timeout_);
  if (stream->session_) {
    if (stream->id_ < 0) stream->session_->unreserve();
    else stream->session_->cancel(*stream);
    stream->leaveSession();
  }
  graveyard_.add(std::move(found->second));
  streams_.erase(found);
}

void UpstreamH2Endpoint::stopWaiting(UpstreamH2Stream& stream) {
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    if (*it == &stream) {
      waiting_.erase(it);
      return;
    }
  }
}

void UpstreamH2Endpoint::sessionClosed(UpstreamH2Session* session) {
  auto found = sessions_.find(session);
  if (found == sessions_.end()) return;
  graveyard_.add(std::move(found->second));
  sessions_.erase(found);
  serveWaiting();
}

size_t UpstreamH2Endpoint::idleSessions() const {
  size_t count = 0;
  for (const auto& entry : sessions_) count += entry.first->idle() ? 1 : 0;
  return count;
}

}  // namespace strangler
