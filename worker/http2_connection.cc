// One downstream HTTP/2 connection over cleartext, on nghttp2.
#include "worker/http2_connection.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "shared/metrics.h"
#include "shared/process_log.h"
#include "shared/timeval.h"
#include "worker/http2_codec.h"
#include "worker/worker.h"

namespace strangler {
namespace {

// Each stream's receive window: the most request body a slow upstream can
// leave in the proxy per stream, beyond the exchange's own window.
constexpr int32_t kStreamWindow = 256 * 1024;
constexpr int32_t kConnectionWindow = 4 * 1024 * 1024;
// nghttp2's own limit on every RST_STREAM received, in a burst and per
// second: a backstop behind the proxy's count of cancelled exchanges.
constexpr uint64_t kResetBurst = 1000;
constexpr uint64_t kResetsPerSecond = 100;
// From the shutdown notice to the final GOAWAY: more than a client's round trip.
constexpr timeval kFinalGoawayDelay = {0, 500 * 1000};
// The abuse budgets of Config (h2_max_resets, h2_max_control_frames) count per window.
constexpr std::chrono::seconds kBudgetWindow{10};
// A header block (HEADERS and its CONTINUATION frames) may exceed the
// advertised header list size by this much before the connection is closed:
// one frame, and padding. Blocks between the two get 431.
constexpr size_t kHeaderBlockSlack = 16 * 1024;
constexpr size_t kMaxContinuations = 8;
// After a connection error, the longest wait for the client to read the
// GOAWAY and close (closing with its input unread would reset the
// connection and could destroy the GOAWAY in flight).
constexpr timeval kLinger = {2, 0};

size_t abuseKind(const char* name) {
  for (size_t k = 0; k < metrics::kH2AbuseKinds.size(); k++) {
    if (std::strcmp(metrics::kH2AbuseKinds[k], name) == 0) return k;
  }
  return 0;
}

// Fields that describe one HTTP/1 connection have no place in HTTP/2 (RFC 9113 8.2.2).
bool isConnectionSpecific(const std::string& name) {
  // By length first: most fields have none of these lengths.
  switch (name.size()) {
    case 7:
      return equalsIgnoreCase(name, "upgrade");
    case 10:
      return equalsIgnoreCase(name, "connection") || equalsIgnoreCase(name, "keep-alive");
    case 14:
      return equalsIgnoreCase(name, "content-length");
    case 16:
      return equalsIgnoreCase(name, "proxy-connection");
    case 17:
      return equalsIgnoreCase(name, "transfer-encoding");
    default:
      return false;
  }
}

// The end-to-end fields of `headers`, for an HTTP/2 response.
void addEndToEnd(http2::OutgoingFields& fields, const HeaderList& headers) {
  for (const auto& [name, value] : headers) {
    if (!isConnectionSpecific(name)) fields.add(name, value);
  }
}

// The socket as collectFrames() sees it.
struct SocketOutput {
  Http1Socket& socket;
  bool wantsMore() const { return socket.backlog() < http2::kOutputHighWatermark; }
  void append(const char* data, size_t length) { socket.write(data, length); }
};

Http2Connection* connectionOf(void* user_data) { return static_cast<Http2Connection*>(user_data); }

}  // namespace

// One request stream: the DownstreamSink of its exchange.
class Http2Connection::Stream : public DownstreamSink, public Deletable {
 public:
  Stream(Http2Connection& connection, int32_t id)
      : connection_(connection), id_(id) {}
  ~Stream() override { exchange_.reset(); }

  // False when trailers go over the limits (the stream is then reset).
  bool addField(std::string_view name, std::string_view value);
  void headComplete(bool end_stream);
  void startWith(const RequestHead& upgraded, const std::string& body);
  void body(const uint8_t* data, size_t length);
  void end();
  void closed(bool cleanly);
  // No DATA came for the body timeout while the body was due.
  void bodyTimedOut();
  // nghttp2 sent the frame that ends the response.
  void responseEndSent();
  void cut() {
    if (exchange_ && !exchange_->finished()) exchange_->cutByProxy("drain_timeout");
  }
  void notifyWritable();
  // The queued body ran low: the exchange hears of it after this flush.
  void wantWritable();
  ssize_t readData(uint8_t* buffer, size_t length, uint32_t* flags);

  // DownstreamSink
  void sendInformational(const ResponseHead& head) override;
  void sendResponseHead(const ResponseHead& head, bool has_body) override;
  void sendResponseBody(const char* data, size_t length) override;
  void sendResponseEnd(const HeaderList& trailers) override;
  void abortResponse() override;
  size_t responseBacklog() const override { return pending_.size(); }
  void pauseRequestBody(bool paused) override;
  bool startTunnel(const ResponseHead&, bufferevent*) override { return false; }
  void exchangeFinished() override;

  bool finished() const { return !exchange_ || exchange_->finished(); }
  // The proxy has taken the request and not yet finished its exchange.
  bool working() const { return exchange_ && !exchange_->finished(); }
  int32_t id() const { return id_; }

 private:
  // The connection keeps the streams whose body is due in a list of its own.
  friend class Http2Connection;

  void startExchange();

  Http2Connection& connection_;
  int32_t id_;
  ByteBuffer pending_;  // response body not yet taken by nghttp2

  std::string authority_;
  std::string cookies_;
  RequestHead head_;
  HeaderList trailers_;
  bool head_done_ = false;
  bool is_head_request_ = false;
  // Counted as SETTINGS_MAX_HEADER_LIST_SIZE counts (RFC 9113 6.5.2), head
  // and trailers alike; past the limits, fields are no longer kept.
  uint64_t field_bytes_ = 0;
  int regular_fields_ = 0;
  bool oversized_ = false;

  std::unique_ptr<Exchange> exchange_;
  bool response_ended_ = false;
  HeaderList response_trailers_;
  bool body_paused_ = false;
  size_t unconsumed_ = 0;
  bool wants_writable_ = false;
  bool closed_ = false;

  bool body_due_ = false;  // the head is taken and END_STREAM has not come
  std::optional<std::list<Stream*>::iterator> awaiting_entry_;  // in the connection's list
  std::chrono::steady_clock::time_point body_heard_at_;
  // After a body timeout the stream is reset once the response has left,
  // and a response cut short is CANCEL: nothing failed in the proxy.
  bool reset_after_response_ = false;
  uint32_t abort_code_ = NGHTTP2_INTERNAL_ERROR;
  bool response_end_sent_ = false;
};

bool Http2Connection::Stream::addField(std::string_view name, std::string_view value) {
  const Config& config = connection_.worker_.config();
  field_bytes_ += name.size() + value.size() + 32;
  if (name[0] != ':') regular_fields_++;
  if (field_bytes_ > config.max_header_size || regular_fields_ > config.max_headers) {
    oversized_ = true;
    return !head_done_;
  }
  if (head_done_) {
    trailers_.emplace_back(name, value);
    return true;
  }
  if (name == ":method") head_.method = value;
  else if (name == ":path") head_.target = value;
  else if (name == ":authority") authority_ = value;
  else if (name[0] == ':') return true;  // :scheme; nghttp2 has checked the set
  // HTTP/2 may split cookies into several fields; HTTP/1 wants one (RFC 9113 8.2.3).
  else if (name == "cookie") cookies_.append(cookies_.empty() ? "" : "; ").append(value);
  else head_.headers.emplace_back(name, value);
  return true;
}

void Http2Connection::Stream::headComplete(bool end_stream) {
  head_done_ = true;
  head_.version_major = 2;
  head_.version_minor = 0;
  if (!findHeader(head_.headers, "host") && !authority_.empty()) {
    head_.headers.insert(head_.headers.begin(), {"Host", authority_});
  }
  if (!cookies_.empty()) head_.headers.emplace_back("cookie", cookies_);
  const std::string* length = findHeader(head_.headers, "content-length");
  if (length) head_.content_length = strtoull(length->c_str(), nullptr, 10);
  bool has_length = length != nullptr;
  // A body without a declared length goes to an HTTP/1 upstream chunked.
  head_.chunked = !end_stream && !has_length;
  if (end_stream && !has_length) head_.content_length.reset();
  connection_.last_head_stream_id_ = id_;
  if (!end_stream) {
    body_due_ = true;
    connection_.awaitBody(*this);
  }
  if (oversized_) {
    // Answered without routing; any body that follows is read and dropped.
    exchange_ = std::make_unique<Exchange>(connection_.worker_, *this, std::move(head_), connection_.client_);
    exchange_->reject(431, regular_fields_ > connection_.worker_.config().max_headers ? "too_many_headers"
                                                                                        : "headers_too_large",
                      "the header section is over the limit");
    return;
  }
  startExchange();
  if (end_stream) end();
}

void Http2Connection::Stream::startWith(const RequestHead& upgraded, const std::string& body) {
  head_done_ = true;
  head_ = upgraded;
  connection_.last_head_stream_id_ = id_;
  head_.version_major = 2;
  head_.version_minor = 0;
  startExchange();
  if (!body.empty() && working()) exchange_->requestBody(body.data(), body.size());
  end();
}

void Http2Connection::Stream::startExchange() {
  is_head_request_ = head_.method == "HEAD";
  // The exchange keeps the head; trailers, if any, come to trailers_.
  exchange_ = std::make_unique<Exchange>(connection_.worker_, *this, std::move(head_), connection_.client_);
  exchange_->start();
}

void Http2Connection::Stream::body(const uint8_t* data, size_t length) {
  if (body_due_) connection_.bodyHeard(*this, connection_.received_at_);
  if (exchange_ && !exchange_->finished()) exchange_->requestBody(reinterpret_cast<const char*>(data), length);
  // The window opens again only as fast as the upstream takes the bytes.
  if (body_paused_) {
    unconsumed_ += length;
  } else {
    nghttp2_session_consume(connection_.session_, id_, length);
  }
}

void Http2Connection::Stream::end() {
  body_due_ = false;
  connection_.stopAwaitingBody(*this);
  if (exchange_ && !exchange_->finished()) exchange_->requestEnd(trailers_);
}

void Http2Connection::Stream::closed(bool cleanly) {
  closed_ = true;
  body_due_ = false;
  connection_.stopAwaitingBody(*this);
  // A clean close right after the last response frame is the normal end:
  // the exchange is finishing on its own, further up this very call.
  if (cleanly && response_ended_) return;
  if (exchange_ && !exchange_->finished()) exchange_->downstreamAborted();
}

void Http2Connection::Stream::pauseRequestBody(bool paused) {
  body_paused_ = paused;
  // While the proxy holds the body up, the client's silence is not counted.
  if (paused) {
    connection_.stopAwaitingBody(*this);
  } else if (body_due_ && !closed_) {
    connection_.awaitBody(*this);
  }
  if (paused || unconsumed_ == 0 || closed_) return;
  nghttp2_session_consume(connection_.session_, id_, unconsumed_);
  unconsumed_ = 0;
  connection_.flush();
}

void Http2Connection::Stream::sendInformational(const ResponseHead& head) {
  std::string status = std::to_string(head.status);
  http2::OutgoingFields& fields = http2::OutgoingFields::start(head.headers);
  fields.add(":status", status);
  addEndToEnd(fields, head.headers);
  nghttp2_submit_headers(connection_.session_, NGHTTP2_FLAG_NONE, id_, nullptr, fields.data(), fields.size(), nullptr);
  connection_.flush();
}

void Http2Connection::Stream::sendResponseHead(const ResponseHead& head, bool has_body) {
  if (closed_) return;
  // The strings the fields point at outlive the submit call, which copies them.
  std::string status = std::to_string(head.status);
  std::string length;
  http2::OutgoingFields& fields = http2::OutgoingFields::start(head.headers);
  fields.add(":status", status);
  addEndToEnd(fields, head.headers);
  if (!head.request_id.empty()) fields.add("x-request-id", head.request_id);
  bool length_allowed = head.status != 204 && head.status != 304 && head.status >= 200;
  if (head.content_length && length_allowed && (has_body || is_head_request_)) {
    length = std::to_string(*head.content_length);
    fields.add("content-length", length);
  }

  nghttp2_data_provider provider;
  provider.source.ptr = this;
  provider.read_callback = [](nghttp2_session*, int32_t, uint8_t* buffer, size_t length, uint32_t* flags,
                              nghttp2_data_source* source, void*) -> ssize_t {
    return static_cast<Stream*>(source->ptr)->readData(buffer, length, flags);
  };
  response_ended_ = !has_body;
  nghttp2_submit_response(connection_.session_, id_, fields.data(), fields.size(), has_body ? &provider : nullptr);
  connection_.flush();
}

void Http2Connection::Stream::sendResponseBody(const char* data, size_t length) {
  if (closed_ || length == 0) return;
  pending_.append(data, length);
  nghttp2_session_resume_data(connection_.session_, id_);
  connection_.flush();
}

void Http2Connection::Stream::sendResponseEnd(const HeaderList& trailers) {
  if (closed_ || response_ended_) return;
  response_ended_ = true;
  response_trailers_ = trailers;
  nghttp2_session_resume_data(connection_.session_, id_);
  connection_.flush();
}

ssize_t Http2Connection::Stream::readData(uint8_t* buffer, size_t length, uint32_t* flags) {
  size_t copied = std::min(length, pending_.size());
  if (copied > 0) {
    memcpy(buffer, pending_.data(), copied);
    pending_.consume(copied);
  }
  if (pending_.size() < http2::kOutputLowWatermark) wantWritable();
  if (copied == 0 && !response_ended_) return NGHTTP2_ERR_DEFERRED;

  if (response_ended_ && pending_.empty()) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (!response_trailers_.empty()) {
      // Trailers end the stream themselves (gRPC's grpc-status travels here).
      http2::OutgoingFields& fields = http2::OutgoingFields::start(response_trailers_);
      addEndToEnd(fields, response_trailers_);
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      nghttp2_submit_trailer(connection_.session_, id_, fields.data(), fields.size());
    }
  }
  return static_cast<ssize_t>(copied);
}

void Http2Connection::Stream::wantWritable() {
  if (wants_writable_) return;
  wants_writable_ = true;
  connection_.writable_streams_.push_back(id_);
}

void Http2Connection::Stream::notifyWritable() {
  if (!wants_writable_) return;
  wants_writable_ = false;
  if (exchange_ && !exchange_->finished()) exchange_->downstreamWritable();
}

void Http2Connection::Stream::abortResponse() {
  if (closed_) return;
  nghttp2_submit_rst_stream(connection_.session_, NGHTTP2_FLAG_NONE, id_, abort_code_);
  connection_.flush();
}

void Http2Connection::Stream::bodyTimedOut() {
  connection_.stopAwaitingBody(*this);
  body_due_ = false;
  reset_after_response_ = true;
  abort_code_ = NGHTTP2_CANCEL;
  if (working()) {
    // As over HTTP/1: 408 if no response has started, else the response is
    // cut; either way the upstream request is dropped, mid-body.
    exchange_->refuseRequestBody(408, "client_body_timeout", "the request body stalled");
    return;
  }
  // Already answered (a 431, or an upstream that did not wait for the body).
  if (response_end_sent_ && !closed_) {
    nghttp2_submit_rst_stream(connection_.session_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_NO_ERROR);
    connection_.flush();
  }
}

void Http2Connection::Stream::responseEndSent() {
  response_end_sent_ = true;
  // The rest of the request body is not wanted (RFC 9113 8.1).
  bool client_still_sending = !nghttp2_session_get_stream_remote_close(connection_.session_, id_);
  if (reset_after_response_ && !closed_ && client_still_sending) {
    nghttp2_submit_rst_stream(connection_.session_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_NO_ERROR);
  }
}

void Http2Connection::Stream::exchangeFinished() {
  // The stream itself ends when nghttp2 closes it (after the last frame).
}

// Trampolines from nghttp2's C callbacks to the connection.
struct Http2Callbacks {
  static void install(nghttp2_session_callbacks* callbacks) {
    nghttp2_session_callbacks_set_on_begin_frame_callback(callbacks, beginFrame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, beginHeaders);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, frameReceived);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, dataChunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, streamClose);
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, frameSent);
  }
  static int beginFrame(nghttp2_session*, const nghttp2_frame_hd* hd, void* user) {
    return connectionOf(user)->beginFrame(*hd);
  }
  static int beginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    return connectionOf(user)->beginHeaders(frame);
  }
  static int header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t name_length,
                    const uint8_t* value, size_t value_length, uint8_t, void* user) {
    return connectionOf(user)->header(frame, name, name_length, value, value_length);
  }
  static int frameReceived(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    return connectionOf(user)->frameReceived(frame);
  }
  static int dataChunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t length,
                       void* user) {
    return connectionOf(user)->dataChunk(stream_id, data, length);
  }
  static int streamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user) {
    return connectionOf(user)->streamClose(stream_id, error_code);
  }
  static int frameSent(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    return connectionOf(user)->frameSent(frame);
  }
};

Http2Connection::Http2Connection(Worker& worker, Http1Socket& from, const ClientInfo& client)
    : worker_(worker),
      socket_(from.context(), *this),
      idle_timer_(evtimer_new(worker.base(), &Http2Connection::onIdleTimer, this)),
      goaway_timer_(evtimer_new(worker.base(), &Http2Connection::onGoawayTimer, this)),
      client_(client) {
  socket_.takeOver(from);
}

Http2Connection::~Http2Connection() {
  streams_.clear();
  if (session_) nghttp2_session_del(session_);
  event_free(idle_timer_);
  event_free(goaway_timer_);
  if (deadline_timer_) event_free(deadline_timer_);
}

bool Http2Connection::createSession() {
  // Windows open as the upstream takes request bytes, not as they arrive.
  session_ =
      http2::newSession(http2::Role::server, this, Http2Callbacks::install, [](nghttp2_option* options) {
        nghttp2_option_set_stream_reset_rate_limit(options, kResetBurst, kResetsPerSecond);
        nghttp2_option_set_max_send_header_block_length(options, 256 * 1024);
        // The proxy counts CONTINUATION frames itself (beginFrame); this is Debian's
        // backported limit (CVE-2024-28182), one further, as a backstop.
        nghttp2_option_set_max_continuations(options, kMaxContinuations + 1);
      });
  if (!session_) return false;
  // The client's preface, its SETTINGS included, is due within the header timeout.
  started_ = received_at_ = Clock::now();
  scheduleDeadlines();

  const Config& config = worker_.config();
  http2::submitSettings(
      session_,
      {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, static_cast<uint32_t>(config.h2_max_streams)},
       {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kStreamWindow)},
       {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(config.max_header_size)}},
      kConnectionWindow);

  timeval send_timeout = millisecondsToTimeval(config.client_send_timeout_ms);
  socket_.setWriteTimeout(&send_timeout);
  socket_.setReading(true);
  return true;
}

bool Http2Connection::start() {
  if (!createSession()) return false;
  receive();
  return !closed_;
}

bool Http2Connection::startUpgraded(const RequestHead& request, const std::string& settings,
                                    const std::string& body) {
  if (!createSession()) return false;
  int status = nghttp2_session_upgrade2(session_, reinterpret_cast<const uint8_t*>(settings.data()), settings.size(),
                                        request.method == "HEAD", nullptr);
  if (status != 0) {
    plog::debug("h2c upgrade refused by nghttp2", {{"error", nghttp2_strerror(status)}});
    return false;
  }
  highest_stream_id_ = 1;
  auto stream = std::make_unique<Stream>(*this, 1);
  Stream* raw = stream.get();
  streams_[1] = std::move(stream);
  raw->startWith(request, body);
  receive();
  return !closed_;
}

void Http2Connection::onSocketWritten() {
  // nghttp2 is asked for more frames once the kernel has taken most of them.
  if (socket_.backlog() <= http2::kOutputLowWatermark) flush();
}

void Http2Connection::onIdleTimer(evutil_socket_t, short, void* self) {
  static_cast<Http2Connection*>(self)->handleIdle();
}

void Http2Connection::onGoawayTimer(evutil_socket_t, short, void* self) {
  static_cast<Http2Connection*>(self)->sendFinalGoaway();
}

void Http2Connection::onDeadlineTimer(evutil_socket_t, short, void* self) {
  static_cast<Http2Connection*>(self)->handleDeadlines();
}

void Http2Connection::receive() {
  if (lingering_) {
    handleLingerInput();
    return;
  }
  // One clock reading for every frame of this read.
  received_at_ = Clock::now();
  while (!closed_ && !socket_.pending().empty()) {
    std::string_view input = socket_.pending();
    ssize_t used = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(input.data()), input.size());
    if (used < 0) {
      failAfterRecv(static_cast<int>(used));
      return;
    }
    socket_.consume(static_cast<size_t>(used));
  }
  // A block that came whole in this read never needed the timer.
  if (header_block_open_) scheduleDeadlines();
  flush();
}

void Http2Connection::failAfterRecv(int nghttp2_error) {
  if (!failure_) {
    // nghttp2's own limits end the session without a GOAWAY of their own.
    if (nghttp2_error == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
      fail(NGHTTP2_ENHANCE_YOUR_CALM, "too many CONTINUATION frames", abuseKind("header_flood"));
    } else if (nghttp2_error == NGHTTP2_ERR_FLOODED) {
      fail(NGHTTP2_ENHANCE_YOUR_CALM, "SETTINGS or PING acknowledgements not read", abuseKind("control_flood"));
    } else {
      plog::debug("HTTP/2 connection error", {{"error", nghttp2_strerror(nghttp2_error)}});
      // Not HTTP/2 at all (a broken preface) is closed without a frame.
      if (nghttp2_error != NGHTTP2_ERR_BAD_CLIENT_MAGIC) failure_ = Failure{NGHTTP2_INTERNAL_ERROR, nullptr, {}};
    }
  }

  if (failure_) {
    nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                          failure_->error_code, nullptr, 0);
  }
  abortOpenStreams();
  flush();
  linger();
}

void Http2Connection::abortOpenStreams() {
  // Every exchange ends now: their upstream requests are cancelled.
  std::vector<Stream*> open;
  for (auto& entry : streams_) open.push_back(entry.second.get());
  for (Stream* stream : open) stream->closed(false);
}

int Http2Connection::fail(uint32_t error_code, const char* reason, std::optional<size_t> abuse_kind) {
  if (failure_) return NGHTTP2_ERR_CALLBACK_FAILURE;
  failure_ = Failure{error_code, reason, abuse_kind};
  if (abuse_kind) {
    worker_.metrics().h2AbuseClosed(*abuse_kind);
    plog::warn("HTTP/2 connection closed for abuse",
               {{"reason", metrics::kH2AbuseKinds[*abuse_kind]}, {"detail", reason}, {"client", client_.address},
                {"error_code", nghttp2_http2_strerror(error_code)}});
  } else {
    plog::info("HTTP/2 connection error",
               {{"detail", reason}, {"client", client_.address}, {"error_code", nghttp2_http2_strerror(error_code)}});
  }
  return NGHTTP2_ERR_CALLBACK_FAILURE;
}

void Http2Connection::linger() {
  if (lingering_ || closed_) return;
  lingering_ = true;
  if (deadline_timer_) evtimer_del(deadline_timer_);
  evtimer_del(idle_timer_);
  evtimer_add(idle_timer_, &kLinger);
  handleLingerInput();
}

void Http2Connection::handleLingerInput() {
  socket_.consume(socket_.pending().size());
  // Once the GOAWAY has left, the client sees the end of the stream; its
  // own close (EOF here) or the linger timer ends the connection.
  if (socket_.backlog() == 0) socket_.shutdownWrite();
}

void Http2Connection::flush() {
  if (closed_ || flushing_ || !session_) return;
  flushing_ = true;
  SocketOutput output{socket_};
  // An error ends the collecting; what nghttp2 made of the session, closeIfDone() looks at.
  http2::collectFrames(session_, output);
  flushing_ = false;
  if (lingering_) {
    handleLingerInput();
    return;
  }

  notifyWritableStreams();
  closeIfDone();
}

void Http2Connection::notifyWritableStreams() {
  // Streams whose queued body ran low may take more from their upstream now.
  // By id: a stream notified may end another.
  std::vector<int32_t> ready;
  ready.swap(writable_streams_);
  for (int32_t id : ready) {
    if (Stream* target = stream(id)) target->notifyWritable();
  }
  // The list's memory is kept for the next flush, unless it filled again meanwhile.
  if (writable_streams_.empty()) {
    ready.clear();
    writable_streams_.swap(ready);
  }
}

void Http2Connection::closeIfDone() {
  if (closed_) return;
  bool session_over = !nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_);
  bool flushed = socket_.backlog() == 0;
  if (session_over && flushed) {
    // nghttp2 ended the session itself (a GOAWAY it sent for a protocol error).
    linger();
    return;
  }
  if (draining_ && streams_.empty() && flushed) {
    close();
    return;
  }
  if (streams_.empty() && !draining_ && !evtimer_pending(idle_timer_, nullptr)) {
    timeval idle = millisecondsToTimeval(worker_.config().keepalive_timeout_ms);
    evtimer_add(idle_timer_, &idle);
  }
}

void Http2Connection::handleIdle() {
  if (lingering_) {
    close();
    return;
  }
  if (!streams_.empty()) return;
  beginDrain();
}

void Http2Connection::handleEvent(short) {
  // EOF, a reset or a write timeout: every open stream is cut.
  abortOpenStreams();
  close();
}

void Http2Connection::scheduleDeadlines() {
  if (closed_ || lingering_) return;
  const Config& config = worker_.config();
  std::optional<Clock::time_point> next;
  auto consider = [&next](Clock::time_point at) {
    if (!next || at < *next) next = at;
  };
  if (config.client_header_timeout_ms > 0) {
    std::chrono::milliseconds header_timeout{config.client_header_timeout_ms};
    if (!settings_received_) consider(started_ + header_timeout);
    if (header_block_open_) consider(header_block_started_ + header_timeout);
  }
  if (!awaiting_body_.empty()) {
    std::chrono::milliseconds body_timeout{config.client_body_timeout_ms};
    consider(awaiting_body_.front()->body_heard_at_ + body_timeout);
  }

  if (!next || (deadline_timer_due_ && *deadline_timer_due_ <= *next)) return;
  if (!deadline_timer_) deadline_timer_ = evtimer_new(worker_.base(), &onDeadlineTimer, this);
  Clock::duration wait = *next - Clock::now();
  timeval exact = toTimeval(std::max<Clock::duration>(wait, std::chrono::milliseconds(1)));
  evtimer_add(deadline_timer_, commonTimeoutFor(wait, &exact));
  deadline_timer_due_ = *next;
}

const timeval* Http2Connection::commonTimeoutFor(Clock::duration wait, const timeval* exact) {
  // A wait of one whole timeout (a new connection's preface, the first body
  // due) is the most usual: as a libevent common timeout, arming it is a
  // queue operation rather than a heap one. It fires under 1 ms late.
  const Config& config = worker_.config();
  for (int64_t ms : {config.client_header_timeout_ms, config.client_body_timeout_ms}) {
    std::chrono::milliseconds whole{ms};
    if (ms == 0 || wait > whole || whole - wait >= std::chrono::milliseconds{1}) continue;
    if (const timeval* common = socket_.context().commonTimeout(ms)) return common;
  }
  return exact;
}

void Http2Connection::handleDeadlines() {
  deadline_timer_due_.reset();
  if (closed_ || lingering_) return;
  const Config& config = worker_.config();
  Clock::time_point now = Clock::now();
  if (config.client_header_timeout_ms > 0) {
    std::chrono::milliseconds header_timeout{config.client_header_timeout_ms};
    if (!settings_received_ && now >= started_ + header_timeout) {
      closeForSlowHeaders("the connection preface did not arrive in time");
      return;
    }
    // After the final GOAWAY nghttp2 skips new streams' blocks; the drain timeout bounds them.
    bool block_stalled = header_block_open_ && !draining_ && now >= header_block_started_ + header_timeout;
    if (block_stalled) {
      closeForSlowHeaders("a header block was left unfinished");
      return;
    }
  }

  std::chrono::milliseconds body_timeout{config.client_body_timeout_ms};
  while (!awaiting_body_.empty() && !closed_ && !lingering_) {
    Stream* oldest = awaiting_body_.front();
    if (now < oldest->body_heard_at_ + body_timeout) break;
    if (windowOpen(oldest->id())) {
      oldest->bodyTimedOut();
    } else {
      bodyHeard(*oldest, now);
    }
  }
  flush();
  scheduleDeadlines();
}

void Http2Connection::awaitBody(Stream& stream) {
  if (stream.awaiting_entry_ || worker_.config().client_body_timeout_ms == 0) return;
  stream.body_heard_at_ = Clock::now();
  stream.awaiting_entry_ = awaiting_body_.insert(awaiting_body_.end(), &stream);
  scheduleDeadlines();
}

void Http2Connection::bodyHeard(Stream& stream, Clock::time_point at) {
  if (!stream.awaiting_entry_) return;
  stream.body_heard_at_ = at;
  awaiting_body_.splice(awaiting_body_.end(), awaiting_body_, *stream.awaiting_entry_);
}

void Http2Connection::stopAwaitingBody(Stream& stream) {
  if (!stream.awaiting_entry_) return;
  awaiting_body_.erase(*stream.awaiting_entry_);
  stream.awaiting_entry_.reset();
}

bool Http2Connection::windowOpen(int32_t stream_id) {
  return nghttp2_session_get_stream_local_window_size(session_, stream_id) > 0 &&
         nghttp2_session_get_local_window_size(session_) > 0;
}

void Http2Connection::closeForSlowHeaders(const char* detail) {
  plog::info("HTTP/2 connection timed out",
             {{"reason", "client_header_timeout"}, {"detail", detail}, {"client", client_.address}});
  // The stream of an unfinished block was not taken: the client may send it again elsewhere.
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, last_head_stream_id_, NGHTTP2_NO_ERROR, nullptr, 0);
  abortOpenStreams();
  flush();
  linger();
}

void Http2Connection::beginDrain() {
  if (shutdown_noticed_ || closed_) return;
  shutdown_noticed_ = true;
  // A GOAWAY naming the highest stream id at once would refuse the requests
  // the client sent before it arrived, and clients do not all retry them. So
  // first the notice (last stream 2^31-1), and the final GOAWAY a round trip
  // later: by then the client opens no new stream here.
  nghttp2_submit_shutdown_notice(session_);
  flush();
  evtimer_add(goaway_timer_, &kFinalGoawayDelay);
}

void Http2Connection::sendFinalGoaway() {
  if (draining_ || closed_) return;
  draining_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                        NGHTTP2_NO_ERROR, nullptr, 0);
  flush();
}

void Http2Connection::cut() {
  for (auto& entry : streams_) entry.second->cut();
  close();
}

void Http2Connection::close() {
  if (closed_) return;
  closed_ = true;
  evtimer_del(idle_timer_);
  evtimer_del(goaway_timer_);
  if (deadline_timer_) evtimer_del(deadline_timer_);
  socket_.stop();
  for (auto& entry : streams_) entry.second->closed(false);
  worker_.connectionClosed(this);
}

Http2Connection::Stream* Http2Connection::stream(int32_t id) {
  // Each field of a header block, and each frame after, asks for the same stream.
  if (last_stream_ && last_stream_id_ == id) return last_stream_;
  auto found = streams_.find(id);
  if (found == streams_.end()) return nullptr;
  last_stream_id_ = id;
  last_stream_ = found->second.get();
  return last_stream_;
}

int Http2Connection::beginFrame(const nghttp2_frame_hd& hd) {
  const Config& config = worker_.config();
  // A header block ends at the frame after it: CONTINUATION frames alone may follow.
  if (hd.type != NGHTTP2_CONTINUATION) header_block_open_ = false;
  switch (hd.type) {
    case NGHTTP2_HEADERS:
      // nghttp2 ignores a new stream numbered below one already opened
      // (RFC 9113 5.1.1 makes it a connection error). A lower id it still
      // knows is a trailer or a frame on a closed stream, which it handles.
      if (hd.stream_id <= highest_stream_id_ && !nghttp2_session_find_stream(session_, hd.stream_id)) {
        return fail(NGHTTP2_PROTOCOL_ERROR, "HEADERS on a stream id below one already used");
      }
      highest_stream_id_ = std::max(highest_stream_id_, hd.stream_id);
      header_block_bytes_ = hd.length;
      header_block_frames_ = 1;
      header_block_open_ = true;
      header_block_stream_ = hd.stream_id;
      header_block_started_ = received_at_;
      header_block_ending_ = (hd.flags & NGHTTP2_FLAG_END_HEADERS) != 0;
      break;
    case NGHTTP2_CONTINUATION:
      header_block_ending_ = (hd.flags & NGHTTP2_FLAG_END_HEADERS) != 0;
      header_block_bytes_ += hd.length;
      header_block_frames_++;
      if (header_block_frames_ > kMaxContinuations + 1 ||
          header_block_bytes_ > config.max_header_size + kHeaderBlockSlack) {
        return fail(NGHTTP2_ENHANCE_YOUR_CALM, "header block too long", abuseKind("header_flood"));
      }
      break;
    case NGHTTP2_PING:
    case NGHTTP2_SETTINGS:
      if (hd.flags & NGHTTP2_FLAG_ACK) break;
      [[fallthrough]];
    case NGHTTP2_PRIORITY:
      if (!control_frames_.spend(config.h2_max_control_frames)) {
        return fail(NGHTTP2_ENHANCE_YOUR_CALM, "too many control frames", abuseKind("control_flood"));
      }
      break;
    case NGHTTP2_DATA:
      // Empty DATA frames that do not end the stream carry nothing but work.
      if (hd.length == 0 && !(hd.flags & NGHTTP2_FLAG_END_STREAM) &&
          !control_frames_.spend(config.h2_max_control_frames)) {
        return fail(NGHTTP2_ENHANCE_YOUR_CALM, "too many empty DATA frames", abuseKind("control_flood"));
      }
      break;
    default:
      break;
  }
  return 0;
}

bool Http2Connection::WindowBudget::spend(int limit) {
  auto now = std::chrono::steady_clock::now();
  if (now - window_start_ >= kBudgetWindow) {
    window_start_ = now;
    spent_ = 0;
  }
  return ++spent_ <= limit;
}

int Http2Connection::beginHeaders(const nghttp2_frame* frame) {
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  int32_t id = frame->hd.stream_id;
  evtimer_del(idle_timer_);
  last_stream_ = nullptr;
  streams_[id] = std::make_unique<Stream>(*this, id);
  return 0;
}

int Http2Connection::header(const nghttp2_frame* frame, const uint8_t* name, size_t name_length,
                            const uint8_t* value, size_t value_length) {
  Stream* target = stream(frame->hd.stream_id);
  if (!target) return 0;
  bool kept = target->addField({reinterpret_cast<const char*>(name), name_length},
                               {reinterpret_cast<const char*>(value), value_length});
  // Trailers over the limits reset the stream (nghttp2 sends RST_STREAM).
  return kept ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

int Http2Connection::frameReceived(const nghttp2_frame* frame) {
  if (frame->hd.type == NGHTTP2_SETTINGS && !(frame->hd.flags & NGHTTP2_FLAG_ACK)) settings_received_ = true;
  if (frame->hd.type == NGHTTP2_HEADERS) header_block_open_ = false;
  Stream* target = stream(frame->hd.stream_id);
  if (!target) return 0;
  // Rapid reset (CVE-2023-44487): streams opened and cancelled cost the
  // proxy a routed exchange, and perhaps an upstream request, each.
  if (frame->hd.type == NGHTTP2_RST_STREAM && target->working() &&
      !resets_.spend(worker_.config().h2_max_resets)) {
    return fail(NGHTTP2_ENHANCE_YOUR_CALM, "too many streams cancelled", abuseKind("rapid_reset"));
  }
  bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    target->headComplete(end_stream);
  } else if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) && end_stream) {
    target->end();
  }
  return 0;
}

int Http2Connection::dataChunk(int32_t stream_id, const uint8_t* data, size_t length) {
  Stream* target = stream(stream_id);
  if (target) target->body(data, length);
  else nghttp2_session_consume_connection(session_, length);
  return 0;
}

int Http2Connection::frameSent(const nghttp2_frame* frame) {
  // A block nghttp2 refuses (REFUSED_STREAM) or resets is skipped without a
  // frameReceived: once its last frame has begun, the client owes nothing more.
  bool block_reset = frame->hd.type == NGHTTP2_RST_STREAM && frame->hd.stream_id == header_block_stream_;
  if (block_reset && header_block_ending_) header_block_open_ = false;
  bool response_frame = frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS;
  if (!response_frame || !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;
  if (Stream* target = stream(frame->hd.stream_id)) target->responseEndSent();
  return 0;
}

int Http2Connection::streamClose(int32_t stream_id, uint32_t error_code) {
  auto found = streams_.find(stream_id);
  if (found == streams_.end()) return 0;
  found->second->closed(error_code == NGHTTP2_NO_ERROR);
  if (last_stream_ == found->second.get()) last_stream_ = nullptr;
  worker_.graveyard().add(std::move(found->second));
  streams_.erase(found);
  return 0;
}

}  // namespace strangler
