// One downstream HTTP/2 connection over cleartext, on nghttp2.
#include "worker/http2_connection.h"

#include <event2/buffer.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <vector>

#include "shared/process_log.h"
#include "worker/worker.h"

namespace strangler {
namespace {

// Connection output queued before nghttp2 is asked for more frames.
constexpr size_t kOutputHighWatermark = 256 * 1024;
constexpr size_t kOutputLowWatermark = 64 * 1024;
// Each stream's receive window: the most request body a slow upstream can
// leave in the proxy per stream, beyond the exchange's own window.
constexpr int32_t kStreamWindow = 256 * 1024;
constexpr int32_t kConnectionWindow = 4 * 1024 * 1024;
// Rapid reset (CVE-2023-44487): streams a client may reset, in a burst and per second.
constexpr uint64_t kResetBurst = 1000;
constexpr uint64_t kResetsPerSecond = 100;
// From the shutdown notice to the final GOAWAY: more than a client's round trip.
constexpr timeval kFinalGoawayDelay = {0, 500 * 1000};

// Fields that describe one HTTP/1 connection have no place in HTTP/2 (RFC 9113 8.2.2).
bool isConnectionSpecific(const std::string& name) {
  return equalsIgnoreCase(name, "connection") || equalsIgnoreCase(name, "keep-alive") ||
         equalsIgnoreCase(name, "proxy-connection") || equalsIgnoreCase(name, "transfer-encoding") ||
         equalsIgnoreCase(name, "upgrade") || equalsIgnoreCase(name, "content-length");
}

// Header fields for nghttp2, with lowercase names kept alive until submitted.
class NameValues {
 public:
  void add(std::string name, std::string value) {
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    names_.push_back(std::move(name));
    values_.push_back(std::move(value));
  }
  std::vector<nghttp2_nv> build() const {
    std::vector<nghttp2_nv> fields;
    for (size_t i = 0; i < names_.size(); i++) {
      fields.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(names_[i].data())),
                        reinterpret_cast<uint8_t*>(const_cast<char*>(values_[i].data())), names_[i].size(),
                        values_[i].size(), NGHTTP2_NV_FLAG_NONE});
    }
    return fields;
  }

 private:
  std::vector<std::string> names_;
  std::vector<std::string> values_;
};

Http2Connection* connectionOf(void* user_data) { return static_cast<Http2Connection*>(user_data); }

}  // namespace

// One request stream: the DownstreamSink of its exchange.
class Http2Connection::Stream : public DownstreamSink, public Deletable {
 public:
  Stream(Http2Connection& connection, int32_t id)
      : connection_(connection), id_(id), pending_(evbuffer_new()) {}
  ~Stream() override {
    exchange_.reset();
    evbuffer_free(pending_);
  }

  void addField(std::string name, std::string value);
  void headComplete(bool end_stream);
  void startWith(const RequestHead& upgraded);
  void body(const uint8_t* data, size_t length);
  void end();
  void closed(bool cleanly);
  void cut() {
    if (exchange_ && !exchange_->finished()) exchange_->cutByProxy("drain_timeout");
  }
  void notifyWritable();
  ssize_t readData(uint8_t* buffer, size_t length, uint32_t* flags);

  // DownstreamSink
  void sendInformational(const ResponseHead& head) override;
  void sendResponseHead(const ResponseHead& head, bool has_body) override;
  void sendResponseBody(const char* data, size_t length) override;
  void sendResponseEnd(const HeaderList& trailers) override;
  void abortResponse() override;
  size_t responseBacklog() const override { return evbuffer_get_length(pending_); }
  void pauseRequestBody(bool paused) override;
  bool startTunnel(const ResponseHead&, bufferevent*) override { return false; }
  void exchangeFinished() override;

  bool finished() const { return !exchange_ || exchange_->finished(); }

 private:
  void startExchange();
  NameValues responseFields(const ResponseHead& head, bool has_body) const;

  Http2Connection& connection_;
  int32_t id_;
  evbuffer* pending_;  // response body not yet taken by nghttp2

  std::string method_;
  std::string path_;
  std::string authority_;
  std::string cookies_;
  RequestHead head_;
  HeaderList trailers_;
  bool head_done_ = false;
  bool is_head_request_ = false;

  std::unique_ptr<Exchange> exchange_;
  bool response_ended_ = false;
  HeaderList response_trailers_;
  bool body_paused_ = false;
  size_t unconsumed_ = 0;
  bool wants_writable_ = false;
  bool closed_ = false;
};

void Http2Connection::Stream::addField(std::string name, std::string value) {
  if (head_done_) {
    trailers_.emplace_back(std::move(name), std::move(value));
    return;
  }
  if (name == ":method") method_ = std::move(value);
  else if (name == ":path") path_ = std::move(value);
  else if (name == ":authority") authority_ = std::move(value);
  else if (name[0] == ':') return;  // :scheme; nghttp2 has checked the set
  // HTTP/2 may split cookies into several fields; HTTP/1 wants one (RFC 9113 8.2.3).
  else if (name == "cookie") cookies_ += (cookies_.empty() ? "" : "; ") + value;
  else head_.headers.emplace_back(std::move(name), std::move(value));
}

void Http2Connection::Stream::headComplete(bool end_stream) {
  head_done_ = true;
  head_.method = method_;
  head_.target = path_;
  head_.version_major = 2;
  head_.version_minor = 0;
  if (!findHeader(head_.headers, "host") && !authority_.empty()) {
    head_.headers.insert(head_.headers.begin(), {"Host", authority_});
  }
  if (!cookies_.empty()) head_.headers.emplace_back("cookie", cookies_);
  const std::string* length = findHeader(head_.headers, "content-length");
  if (length) head_.content_length = strtoull(length->c_str(), nullptr, 10);
  // A body without a declared length goes to an HTTP/1 upstream chunked.
  head_.chunked = !end_stream && !length;
  if (end_stream && !length) head_.content_length.reset();
  startExchange();
  if (end_stream) end();
}

void Http2Connection::Stream::startWith(const RequestHead& upgraded) {
  head_done_ = true;
  head_ = upgraded;
  head_.version_major = 2;
  head_.version_minor = 0;
  startExchange();
  end();
}

void Http2Connection::Stream::startExchange() {
  is_head_request_ = head_.method == "HEAD";
  exchange_ = std::make_unique<Exchange>(connection_.worker_, *this, head_, connection_.client_);
  exchange_->start();
}

void Http2Connection::Stream::body(const uint8_t* data, size_t length) {
  if (exchange_ && !exchange_->finished()) exchange_->requestBody(reinterpret_cast<const char*>(data), length);
  // The window opens again only as fast as the upstream takes the bytes.
  if (body_paused_) {
    unconsumed_ += length;
  } else {
    nghttp2_session_consume(connection_.session_, id_, length);
  }
}

void Http2Connection::Stream::end() {
  if (exchange_ && !exchange_->finished()) exchange_->requestEnd(trailers_);
}

void Http2Connection::Stream::closed(bool cleanly) {
  closed_ = true;
  // A clean close right after the last response frame is the normal end:
  // the exchange is finishing on its own, further up this very call.
  if (cleanly && response_ended_) return;
  if (exchange_ && !exchange_->finished()) exchange_->downstreamAborted();
}

void Http2Connection::Stream::pauseRequestBody(bool paused) {
  body_paused_ = paused;
  if (paused || unconsumed_ == 0 || closed_) return;
  nghttp2_session_consume(connection_.session_, id_, unconsumed_);
  unconsumed_ = 0;
  connection_.flush();
}

NameValues Http2Connection::Stream::responseFields(const ResponseHead& head, bool has_body) const {
  NameValues fields;
  fields.add(":status", std::to_string(head.status));
  for (const auto& [name, value] : head.headers) {
    if (!isConnectionSpecific(name)) fields.add(name, value);
  }
  bool length_allowed = head.status != 204 && head.status != 304 && head.status >= 200;
  if (head.content_length && length_allowed && (has_body || is_head_request_)) {
    fields.add("content-length", std::to_string(*head.content_length));
  }
  return fields;
}

void Http2Connection::Stream::sendInformational(const ResponseHead& head) {
  NameValues fields;
  fields.add(":status", std::to_string(head.status));
  for (const auto& [name, value] : head.headers) {
    if (!isConnectionSpecific(name)) fields.add(name, value);
  }
  std::vector<nghttp2_nv> built = fields.build();
  nghttp2_submit_headers(connection_.session_, NGHTTP2_FLAG_NONE, id_, nullptr, built.data(), built.size(), nullptr);
  connection_.flush();
}

void Http2Connection::Stream::sendResponseHead(const ResponseHead& head, bool has_body) {
  if (closed_) return;
  // The fields must outlive the submit call, which copies them.
  NameValues fields = responseFields(head, has_body);
  std::vector<nghttp2_nv> built = fields.build();
  nghttp2_data_provider provider;
  provider.source.ptr = this;
  provider.read_callback = [](nghttp2_session*, int32_t, uint8_t* buffer, size_t length, uint32_t* flags,
                              nghttp2_data_source* source, void*) -> ssize_t {
    return static_cast<Stream*>(source->ptr)->readData(buffer, length, flags);
  };
  response_ended_ = !has_body;
  nghttp2_submit_response(connection_.session_, id_, built.data(), built.size(), has_body ? &provider : nullptr);
  connection_.flush();
}

void Http2Connection::Stream::sendResponseBody(const char* data, size_t length) {
  if (closed_ || length == 0) return;
  evbuffer_add(pending_, data, length);
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
  size_t copied = static_cast<size_t>(evbuffer_remove(pending_, buffer, length));
  if (evbuffer_get_length(pending_) < kOutputLowWatermark) wants_writable_ = true;
  if (copied == 0 && !response_ended_) return NGHTTP2_ERR_DEFERRED;

  if (response_ended_ && evbuffer_get_length(pending_) == 0) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (!response_trailers_.empty()) {
      // Trailers end the stream themselves (gRPC's grpc-status travels here).
      NameValues fields;
      for (const auto& [name, value] : response_trailers_) {
        if (!isConnectionSpecific(name)) fields.add(name, value);
      }
      std::vector<nghttp2_nv> built = fields.build();
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      nghttp2_submit_trailer(connection_.session_, id_, built.data(), built.size());
    }
  }
  return static_cast<ssize_t>(copied);
}

void Http2Connection::Stream::notifyWritable() {
  if (!wants_writable_) return;
  wants_writable_ = false;
  if (exchange_ && !exchange_->finished()) exchange_->downstreamWritable();
}

void Http2Connection::Stream::abortResponse() {
  if (closed_) return;
  nghttp2_submit_rst_stream(connection_.session_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_INTERNAL_ERROR);
  connection_.flush();
}

void Http2Connection::Stream::exchangeFinished() {
  // The stream itself ends when nghttp2 closes it (after the last frame).
}

// Trampolines from nghttp2's C callbacks to the connection.
struct Http2Callbacks {
  static ssize_t send(nghttp2_session*, const uint8_t*, size_t, int, void*) { return NGHTTP2_ERR_CALLBACK_FAILURE; }
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
};

Http2Connection::Http2Connection(Worker& worker, bufferevent* socket, const ClientInfo& client)
    : worker_(worker),
      bev_(socket),
      idle_timer_(evtimer_new(worker.base(), &Http2Connection::onIdleTimer, this)),
      goaway_timer_(evtimer_new(worker.base(), &Http2Connection::onGoawayTimer, this)),
      client_(client) {}

Http2Connection::~Http2Connection() {
  streams_.clear();
  if (session_) nghttp2_session_del(session_);
  event_free(idle_timer_);
  event_free(goaway_timer_);
  if (bev_) bufferevent_free(bev_);
}

bool Http2Connection::createSession() {
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_send_callback(callbacks, Http2Callbacks::send);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, Http2Callbacks::beginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, Http2Callbacks::header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, Http2Callbacks::frameReceived);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, Http2Callbacks::dataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, Http2Callbacks::streamClose);

  nghttp2_option* options = nullptr;
  nghttp2_option_new(&options);
  // Windows open as the upstream takes request bytes, not as they arrive.
  nghttp2_option_set_no_auto_window_update(options, 1);
  nghttp2_option_set_stream_reset_rate_limit(options, kResetBurst, kResetsPerSecond);
  nghttp2_option_set_max_send_header_block_length(options, 256 * 1024);

  int status = nghttp2_session_server_new2(&session_, callbacks, this, options);
  nghttp2_option_del(options);
  nghttp2_session_callbacks_del(callbacks);
  if (status != 0) return false;

  const Config& config = worker_.config();
  nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, static_cast<uint32_t>(config.h2_max_streams)},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kStreamWindow)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(config.max_header_size)},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, sizeof settings / sizeof settings[0]);
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);

  bufferevent_setcb(bev_, &Http2Connection::onRead, &Http2Connection::onWrite, &Http2Connection::onEvent, this);
  bufferevent_setwatermark(bev_, EV_READ, 0, 0);
  bufferevent_setwatermark(bev_, EV_WRITE, kOutputLowWatermark, 0);
  bufferevent_set_timeouts(bev_, nullptr, nullptr);
  bufferevent_enable(bev_, EV_READ | EV_WRITE);
  return true;
}

bool Http2Connection::start() {
  if (!createSession()) return false;
  receive();
  return !closed_;
}

bool Http2Connection::startUpgraded(const RequestHead& request, const std::string& settings) {
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
  raw->startWith(request);
  receive();
  return !closed_;
}

void Http2Connection::onRead(bufferevent*, void* self) { static_cast<Http2Connection*>(self)->receive(); }

void Http2Connection::onWrite(bufferevent*, void* self) { static_cast<Http2Connection*>(self)->flush(); }

void Http2Connection::onEvent(bufferevent*, short events, void* self) {
  static_cast<Http2Connection*>(self)->handleEvent(events);
}

void Http2Connection::onIdleTimer(evutil_socket_t, short, void* self) {
  static_cast<Http2Connection*>(self)->handleIdle();
}

void Http2Connection::onGoawayTimer(evutil_socket_t, short, void* self) {
  static_cast<Http2Connection*>(self)->sendFinalGoaway();
}

void Http2Connection::receive() {
  evbuffer* input = bufferevent_get_input(bev_);
  while (!closed_ && evbuffer_get_length(input) > 0) {
    evbuffer_iovec chunk;
    if (evbuffer_peek(input, -1, nullptr, &chunk, 1) < 1) break;
    ssize_t used = nghttp2_session_mem_recv(session_, static_cast<const uint8_t*>(chunk.iov_base), chunk.iov_len);
    if (used < 0) {
      // A connection error: nghttp2 has queued a GOAWAY where it could.
      plog::debug("HTTP/2 connection error", {{"error", nghttp2_strerror(static_cast<int>(used))}});
      evbuffer_drain(input, evbuffer_get_length(input));
      flush();
      close();
      return;
    }
    evbuffer_drain(input, static_cast<size_t>(used));
  }
  flush();
}

void Http2Connection::flush() {
  if (closed_ || flushing_ || !session_) return;
  flushing_ = true;
  evbuffer* output = bufferevent_get_output(bev_);
  while (evbuffer_get_length(output) < kOutputHighWatermark) {
    const uint8_t* data = nullptr;
    ssize_t length = nghttp2_session_mem_send(session_, &data);
    if (length <= 0) break;
    evbuffer_add(output, data, static_cast<size_t>(length));
  }
  flushing_ = false;

  // Streams whose queued body ran low may take more from their upstream now.
  std::vector<Stream*> open;
  for (auto& entry : streams_) open.push_back(entry.second.get());
  for (Stream* stream : open) stream->notifyWritable();
  closeIfDone();
}

void Http2Connection::closeIfDone() {
  if (closed_) return;
  bool session_over = !nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_);
  bool flushed = evbuffer_get_length(bufferevent_get_output(bev_)) == 0;
  if ((session_over || (draining_ && streams_.empty())) && flushed) {
    close();
    return;
  }
  if (streams_.empty() && !draining_ && !evtimer_pending(idle_timer_, nullptr)) {
    timeval idle = {static_cast<time_t>(worker_.config().keepalive_timeout_ms / 1000),
                    static_cast<suseconds_t>((worker_.config().keepalive_timeout_ms % 1000) * 1000)};
    evtimer_add(idle_timer_, &idle);
  }
}

void Http2Connection::handleIdle() {
  if (!streams_.empty()) return;
  beginDrain();
}

void Http2Connection::handleEvent(short) {
  // EOF, a reset or a write timeout: every open stream is cut.
  std::vector<Stream*> open;
  for (auto& entry : streams_) open.push_back(entry.second.get());
  for (Stream* stream : open) stream->closed(false);
  close();
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
  bufferevent_setcb(bev_, nullptr, nullptr, nullptr, nullptr);
  bufferevent_disable(bev_, EV_READ | EV_WRITE);
  for (auto& entry : streams_) entry.second->closed(false);
  worker_.connectionClosed(this);
}

Http2Connection::Stream* Http2Connection::stream(int32_t id) {
  auto found = streams_.find(id);
  return found == streams_.end() ? nullptr : found->second.get();
}

int Http2Connection::beginHeaders(const nghttp2_frame* frame) {
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  int32_t id = frame->hd.stream_id;
  evtimer_del(idle_timer_);
  highest_stream_id_ = std::max(highest_stream_id_, id);
  streams_[id] = std::make_unique<Stream>(*this, id);
  return 0;
}

int Http2Connection::header(const nghttp2_frame* frame, const uint8_t* name, size_t name_length,
                            const uint8_t* value, size_t value_length) {
  Stream* target = stream(frame->hd.stream_id);
  if (!target) return 0;
  target->addField(std::string(reinterpret_cast<const char*>(name), name_length),
                   std::string(reinterpret_cast<const char*>(value), value_length));
  return 0;
}

int Http2Connection::frameReceived(const nghttp2_frame* frame) {
  Stream* target = stream(frame->hd.stream_id);
  if (!target) return 0;
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

int Http2Connection::streamClose(int32_t stream_id, uint32_t error_code) {
  auto found = streams_.find(stream_id);
  if (found == streams_.end()) return 0;
  found->second->closed(error_code == NGHTTP2_NO_ERROR);
  worker_.graveyard().add(std::move(found->second));
  streams_.erase(found);
  return 0;
}

}  // namespace strangler
