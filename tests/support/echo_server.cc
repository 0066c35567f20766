// strangler-echo: the scripted HTTP/1.1 upstream behind the demo, the integration tests and the
// benchmark. It answers each request with a JSON account of what it received; paths under
// /__echo/ make it answer with another status, late, with a large body, or not at all.
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {

constexpr int kConnectionTimeoutSeconds = 60;
constexpr size_t kMaxEchoedBody = 64 << 10;
constexpr size_t kPieceBytes = 64 << 10;
// Bytes queued per refill of a streamed answer; the refill waits until they are written.
constexpr size_t kRefillBytes = 1 << 20;
constexpr uint64_t kMaxDelayMs = 600000;
constexpr uint64_t kMaxStreamBytes = uint64_t{1} << 40;

template <auto Free>
struct CDeleter {
  template <typename T>
  void operator()(T* handle) const { Free(handle); }
};

using EventBasePtr = std::unique_ptr<event_base, CDeleter<event_base_free>>;
using EvhttpPtr = std::unique_ptr<evhttp, CDeleter<evhttp_free>>;
using EventPtr = std::unique_ptr<event, CDeleter<event_free>>;
using EvbufferPtr = std::unique_ptr<evbuffer, CDeleter<evbuffer_free>>;
using MallocPtr = std::unique_ptr<char, CDeleter<std::free>>;

// ---- command line ----

struct Options {
  std::string name;
  std::string host;
  uint16_t port = 0;
  bool quiet = false;
};

void printUsage(FILE* out) {
  fprintf(out,
          "usage: strangler-echo --name NAME --listen HOST:PORT [--quiet]\n"
          "  HOST is a numeric IPv4 address; PORT 0 lets the kernel choose one.\n"
          "  Prints \"listening HOST:PORT\" once listening; exits 0 on SIGTERM or SIGINT.\n");
}

// Parses a decimal number made only of digits and no larger than `max`.
std::optional<uint64_t> parseNumber(std::string_view text, uint64_t max) {
  if (text.empty() || text.size() > 19) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  if (value > max) return std::nullopt;
  return value;
}

bool parseListen(std::string_view text, Options& options) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return false;

  std::string host(text.substr(0, colon));
  in_addr address{};
  if (inet_pton(AF_INET, host.c_str(), &address) != 1) return false;

  std::optional<uint64_t> port = parseNumber(text.substr(colon + 1), 65535);
  if (!port) return false;

  options.host = host;
  options.port = static_cast<uint16_t>(*port);
  return true;
}

// The name is sent back as a header value, so it must be printable.
bool isValidName(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) return false;
  }
  return true;
}

std::optional<Options> parseOptions(int argc, char** argv) {
  Options options;
  bool have_listen = false;
  for (int i = 1; i < argc; i++) {
    std::string_view arg = argv[i];
    bool has_value = i + 1 < argc;
    if (arg == "--quiet") {
      options.quiet = true;
    } else if (arg == "--name" && has_value) {
      options.name = argv[++i];
    } else if (arg == "--listen" && has_value) {
      if (!parseListen(argv[++i], options)) return std::nullopt;
      have_listen = true;
    } else {
      return std::nullopt;
    }
  }

  if (!have_listen || !isValidName(options.name)) return std::nullopt;
  return options;
}

// ---- JSON and hashing ----

// Length of the well-formed UTF-8 sequence at `at` (RFC 3629), or 0 if there is none.
size_t utf8SequenceLength(std::string_view text, size_t at) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  unsigned char lead = byte(at);
  if (lead < 0x80) return 1;

  // The allowed range of the second byte is what rules out overlong forms, surrogates and
  // code points above U+10FFFF; every later byte is a plain continuation byte.
  size_t length = 0;
  unsigned char low = 0x80;
  unsigned char high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;
    if (lead == 0xED) high = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;
    if (lead == 0xF4) high = 0x8F;
  } else {
    return 0;
  }
  if (at + length > text.size()) return 0;

  if (byte(at + 1) < low || byte(at + 1) > high) return 0;
  for (size_t i = 2; i < length; i++) {
    if ((byte(at + i) & 0xC0) != 0x80) return 0;
  }
  return length;
}

bool isValidUtf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    size_t length = utf8SequenceLength(text, i);
    if (length == 0) return false;
    i += length;
  }
  return true;
}

void appendEscapedByte(std::string& out, unsigned char c) {
  char escaped[8];
  snprintf(escaped, sizeof escaped, "\\u%04x", c);
  out += escaped;
}

// Appends `text` as a quoted JSON string. A byte that is not part of valid UTF-8 is written as
// \u00XX (its Latin-1 reading), so odd header bytes stay visible instead of being replaced.
void appendJsonString(std::string& out, std::string_view text) {
  out += '"';
  for (size_t i = 0; i < text.size();) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    size_t length = utf8SequenceLength(text, i);
    if (length > 1) {
      out.append(text.substr(i, length));
    } else if (length == 0) {
      appendEscapedByte(out, c);
      length = 1;
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20) {
      appendEscapedByte(out, c);
    } else {
      out += static_cast<char>(c);
    }
    i += length;
  }
  out += '"';
}

// FNV-1a, 64 bits, over the buffer's bytes where they lie, without flattening the buffer.
uint64_t fnv1a64(evbuffer* buffer) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  int extents = evbuffer_peek(buffer, -1, nullptr, nullptr, 0);
  std::vector<evbuffer_iovec> pieces(static_cast<size_t>(extents > 0 ? extents : 0));
  evbuffer_peek(buffer, -1, nullptr, pieces.data(), extents);

  for (const evbuffer_iovec& piece : pieces) {
    const unsigned char* bytes = static_cast<const unsigned char*>(piece.iov_base);
    for (size_t i = 0; i < piece.iov_len; i++) {
      hash = (hash ^ bytes[i]) * 0x100000001b3ULL;
    }
  }
  return hash;
}

const char* methodName(evhttp_cmd_type method) {
  switch (method) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
  }
  return "UNKNOWN";
}

void appendHeaders(std::string& out, evkeyvalq* headers) {
  out += '[';
  for (evkeyval* header = headers->tqh_first; header != nullptr; header = header->next.tqe_next) {
    if (header != headers->tqh_first) out += ',';
    out += '[';
    appendJsonString(out, header->key);
    out += ',';
    appendJsonString(out, header->value);
    out += ']';
  }
  out += ']';
}

void appendBody(std::string& out, evbuffer* body) {
  size_t length = evbuffer_get_length(body);
  char hash[24];
  snprintf(hash, sizeof hash, "%016" PRIx64, fnv1a64(body));
  out += ",\"body_bytes\":" + std::to_string(length);
  out += ",\"body_fnv1a64\":\"" + std::string(hash) + '"';

  if (length > kMaxEchoedBody) return;
  // Flattening is cheap here: the body is at most 64 KiB.
  const char* bytes = reinterpret_cast<const char*>(evbuffer_pullup(body, -1));
  std::string_view text(bytes, length);
  if (!isValidUtf8(text)) return;
  out += ",\"body\":";
  appendJsonString(out, text);
}

std::string describeRequest(evhttp_request* req, std::string_view upstream) {
  std::string out;
  out.reserve(1024);
  out += "{\"upstream\":";
  appendJsonString(out, upstream);
  out += ",\"method\":";
  appendJsonString(out, methodName(evhttp_request_get_command(req)));
  out += ",\"target\":";
  appendJsonString(out, evhttp_request_get_uri(req));

  char version[32];
  // libevent 2.1 has no accessor for the version; the struct fields are its public API.
  snprintf(version, sizeof version, "HTTP/%d.%d", req->major, req->minor);
  out += ",\"version\":";
  appendJsonString(out, version);

  out += ",\"headers\":";
  appendHeaders(out, evhttp_request_get_input_headers(req));
  appendBody(out, evhttp_request_get_input_buffer(req));
  out += '}';
  return out;
}

// ---- query strings ----

std::string uriDecode(std::string_view text) {
  std::string input(text);
  size_t size = 0;
  MallocPtr decoded(evhttp_uridecode(input.c_str(), 1, &size));
  if (!decoded) return input;
  return std::string(decoded.get(), size);
}

// Every value of `key` in `query` ("a=1&b=2"), percent-decoded, '+' read as a space.
std::vector<std::string> queryValues(std::string_view query, std::string_view key) {
  std::vector<std::string> values;
  while (!query.empty()) {
    size_t end = query.find('&');
    std::string_view pair = query.substr(0, end);
    query = end == std::string_view::npos ? std::string_view() : query.substr(end + 1);

    size_t equals = pair.find('=');
    if (pair.substr(0, equals) != key) continue;
    values.push_back(equals == std::string_view::npos ? "" : uriDecode(pair.substr(equals + 1)));
  }
  return values;
}

bool consumePrefix(std::string_view& text, std::string_view prefix) {
  if (text.substr(0, prefix.size()) != prefix) return false;
  text.remove_prefix(prefix.size());
  return true;
}

// RFC 9110 token characters, so a test cannot make the server write a broken header line.
bool isHeaderName(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!alnum && std::strchr("!#$%&'*+-.^_`|~", c) == nullptr) return false;
  }
  return true;
}

// ---- answers ----

// The a..z pattern, long enough that any piece can start at any of the 26 phases.
const char* patternBytes() {
  static const std::string pattern = [] {
    std::string bytes(kPieceBytes + 26, '\0');
    for (size_t i = 0; i < bytes.size(); i++) bytes[i] = static_cast<char>('a' + i % 26);
    return bytes;
  }();
  return pattern.data();
}

// Owns the exchanges that outlive their request callback: delayed and streamed answers.
template <typename T>
class Registry {
 public:
  T* add(std::unique_ptr<T> item) {
    T* raw = item.get();
    items_.emplace(raw, std::move(item));
    return raw;
  }

  // Hands the item back so that the caller decides when it dies.
  std::unique_ptr<T> take(T* item) {
    auto found = items_.find(item);
    if (found == items_.end()) return nullptr;
    std::unique_ptr<T> owned = std::move(found->second);
    items_.erase(found);
    return owned;
  }

 private:
  std::unordered_map<T*, std::unique_ptr<T>> items_;
};

class EchoServer;

// A request whose answer waits on a timer. `then` is the target routed when the timer fires.
struct DelayedAnswer {
  EchoServer* server = nullptr;
  evhttp_request* req = nullptr;
  std::string then;
  EventPtr timer;

  ~DelayedAnswer() {
    // Only reached with the request unanswered when the server stops. A request that evhttp
    // detached (its client left) is ours to free; an attached one dies with its connection.
    if (req != nullptr && evhttp_request_get_connection(req) == nullptr) evhttp_request_free(req);
  }
};

// Streams `length` bytes of the pattern, refilling only once the previous refill is written,
// so the process never holds more than kRefillBytes of it (and those are references to the
// static pattern, not copies).
class PatternStream {
 public:
  PatternStream(EchoServer* server, evhttp_request* req, uint64_t length)
      : server_(server), req_(req), remaining_(length), scratch_(evbuffer_new()) {}

  ~PatternStream() {
    // Only reached with the answer unfinished when the server stops: evhttp then frees the
    // request with its connection and must not call back into this object.
    if (req_ == nullptr) return;
    if (evhttp_connection* connection = evhttp_request_get_connection(req_)) {
      evhttp_connection_set_closecb(connection, nullptr, nullptr);
    }
  }

  EchoServer* server() const { return server_; }
  bool finished() const { return remaining_ == 0; }

  // Queues up to kRefillBytes more, in pieces of at most kPieceBytes (one chunk each).
  void refill(void (*written)(evhttp_connection*, void*)) {
    size_t queued = 0;
    while (remaining_ > 0 && queued < kRefillBytes) {
      size_t piece = static_cast<size_t>(std::min<uint64_t>(remaining_, kPieceBytes));
      evbuffer_add_reference(scratch_.get(), patternBytes() + offset_ % 26, piece, nullptr,
                             nullptr);
      evhttp_send_reply_chunk_with_cb(req_, scratch_.get(), written, this);
      offset_ += piece;
      remaining_ -= piece;
      queued += piece;
    }
  }

  // Ends the answer; evhttp finishes writing it and then owns the request again.
  void finish() {
    evhttp_connection_set_closecb(evhttp_request_get_connection(req_), nullptr, nullptr);
    evhttp_send_reply_end(req_);
    req_ = nullptr;
  }

  // The connection went away mid-answer. evhttp detached the unfinished request from it, and
  // ending the detached request is what frees it.
  void abandon() {
    if (evhttp_request_get_connection(req_) == nullptr) evhttp_send_reply_end(req_);
    req_ = nullptr;
  }

 private:
  EchoServer* server_;
  evhttp_request* req_;
  uint64_t remaining_;
  uint64_t offset_ = 0;
  EvbufferPtr scratch_;
};

class EchoServer {
 public:
  EchoServer(event_base* base, Options options) : base_(base), options_(std::move(options)) {}

  // Binds, installs the signal events and writes the "listening" line; false on failure.
  bool start();

  // Routes `req` by `target` (its own URI, or a delayed answer's `then`).
  void route(evhttp_request* req, std::string_view target);

  void delayExpired(DelayedAnswer* delayed);
  void streamWritten(PatternStream* stream);
  void streamClosed(PatternStream* stream);
  void stop(int signal_number);

 private:
  bool bind();
  bool addSignal(int signal_number);

  void sendEcho(evhttp_request* req, int status, evkeyvalq* extra_headers);
  void sendBadArgument(evhttp_request* req, const char* reason);
  void answerStatus(evhttp_request* req, std::string_view code);
  void answerLater(evhttp_request* req, std::string_view milliseconds, std::string_view query);
  void answerPattern(evhttp_request* req, std::string_view length, bool with_length);
  void answerWithHeaders(evhttp_request* req, std::string_view query);
  void closeWithoutAnswer(evhttp_request* req);

  event_base* base_;
  Options options_;
  EvhttpPtr http_;
  std::vector<EventPtr> signals_;
  // Declared after http_ so that they are destroyed first, while their requests still exist.
  Registry<DelayedAnswer> delays_;
  Registry<PatternStream> streams_;
};

// ---- libevent trampolines ----

void onRequest(evhttp_request* req, void* arg) {
  static_cast<EchoServer*>(arg)->route(req, evhttp_request_get_uri(req));
}

void onDelayExpired(evutil_socket_t, short, void* arg) {
  DelayedAnswer* delayed = static_cast<DelayedAnswer*>(arg);
  delayed->server->delayExpired(delayed);
}

void onStreamWritten(evhttp_connection*, void* arg) {
  PatternStream* stream = static_cast<PatternStream*>(arg);
  stream->server()->streamWritten(stream);
}

void onStreamClosed(evhttp_connection*, void* arg) {
  PatternStream* stream = static_cast<PatternStream*>(arg);
  stream->server()->streamClosed(stream);
}

void onSignal(evutil_socket_t signal_number, short, void* arg) {
  static_cast<EchoServer*>(arg)->stop(static_cast<int>(signal_number));
}

// ---- EchoServer ----

bool EchoServer::start() {
  http_.reset(evhttp_new(base_));
  if (!http_) return false;

  evhttp_set_timeout(http_.get(), kConnectionTimeoutSeconds);
  evhttp_set_max_body_size(http_.get(), -1);
  evhttp_set_max_headers_size(http_.get(), -1);
  evhttp_set_allowed_methods(http_.get(), EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                              EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                              EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                              EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
  evhttp_set_gencb(http_.get(), onRequest, this);

  return addSignal(SIGTERM) && addSignal(SIGINT) && bind();
}

bool EchoServer::addSignal(int signal_number) {
  EventPtr signal_event(evsignal_new(base_, signal_number, onSignal, this));
  if (!signal_event || evsignal_add(signal_event.get(), nullptr) != 0) return false;
  signals_.push_back(std::move(signal_event));
  return true;
}

bool EchoServer::bind() {
  evhttp_bound_socket* bound =
      evhttp_bind_socket_with_handle(http_.get(), options_.host.c_str(), options_.port);
  if (bound == nullptr) {
    fprintf(stderr, "strangler-echo: bind failed: %s:%u: %s\n", options_.host.c_str(),
            options_.port, strerror(errno));
    return false;
  }

  // With port 0 only the socket knows which port the kernel chose.
  sockaddr_in address{};
  socklen_t size = sizeof address;
  evutil_socket_t fd = evhttp_bound_socket_get_fd(bound);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) return false;
  // libevent listens with a backlog of 128. A proxy opening a few hundred
  // upstream connections at once (h2load with many streams) would overflow
  // it, and each dropped SYN waits a second to be sent again: longer than
  // an upstream's connect timeout. Linux lets listen() raise the backlog.
  if (listen(fd, SOMAXCONN) != 0) return false;

  printf("listening %s:%u\n", options_.host.c_str(), ntohs(address.sin_port));
  fflush(stdout);
  return true;
}

void EchoServer::stop(int signal_number) {
  if (!options_.quiet) {
    fprintf(stderr, "strangler-echo %s: stopping on signal %d\n", options_.name.c_str(),
            signal_number);
  }
  event_base_loopexit(base_, nullptr);
}

void EchoServer::route(evhttp_request* req, std::string_view target) {
  // A delayed request whose client left in the meantime has no connection to answer on.
  if (evhttp_request_get_connection(req) == nullptr) {
    evhttp_request_free(req);
    return;
  }

  size_t question = target.find('?');
  std::string_view path = target.substr(0, question);
  std::string_view query =
      question == std::string_view::npos ? std::string_view() : target.substr(question + 1);

  if (!consumePrefix(path, "/__echo/")) return sendEcho(req, 200, nullptr);
  if (path == "close") return closeWithoutAnswer(req);
  if (path == "header") return answerWithHeaders(req, query);
  if (consumePrefix(path, "status/")) return answerStatus(req, path);
  if (consumePrefix(path, "delay/")) return answerLater(req, path, query);
  if (consumePrefix(path, "bytes/")) return answerPattern(req, path, true);
  if (consumePrefix(path, "chunked/")) return answerPattern(req, path, false);
  sendEcho(req, 200, nullptr);
}

void EchoServer::sendEcho(evhttp_request* req, int status, evkeyvalq* extra_headers) {
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  evhttp_add_header(headers, "X-Echo-Upstream", options_.name.c_str());
  if (extra_headers != nullptr) {
    for (evkeyval* h = extra_headers->tqh_first; h != nullptr; h = h->next.tqe_next) {
      evhttp_add_header(headers, h->key, h->value);
    }
  }

  // evhttp drops the body of these itself; leaving it out keeps Content-Type away too.
  if (status == 204 || status == 304) {
    evhttp_send_reply(req, status, nullptr, nullptr);
    return;
  }

  std::string json = describeRequest(req, options_.name);
  evhttp_add_header(headers, "Content-Type", "application/json");
  // evhttp leaves the length out for HEAD, CONNECT and HTTP/1.0 without keep-alive; stating it
  // always makes every answer framed the same way, and a HEAD answer then carries the length
  // without the body, as real servers do.
  evhttp_add_header(headers, "Content-Length", std::to_string(json.size()).c_str());

  EvbufferPtr body(evbuffer_new());
  evbuffer_add(body.get(), json.data(), json.size());
  evhttp_send_reply(req, status, nullptr, body.get());
}

void EchoServer::sendBadArgument(evhttp_request* req, const char* reason) {
  evkeyvalq extra;
  TAILQ_INIT(&extra);
  evhttp_add_header(&extra, "X-Echo-Error", reason);
  sendEcho(req, 400, &extra);
  evhttp_clear_headers(&extra);
}

void EchoServer::answerStatus(evhttp_request* req, std::string_view code) {
  std::optional<uint64_t> status = parseNumber(code, 599);
  if (!status || *status < 200) return sendBadArgument(req, "bad_status");
  sendEcho(req, static_cast<int>(*status), nullptr);
}

void EchoServer::answerLater(evhttp_request* req, std::string_view milliseconds,
                             std::string_view query) {
  std::optional<uint64_t> delay = parseNumber(milliseconds, kMaxDelayMs);
  if (!delay) return sendBadArgument(req, "bad_delay");

  auto delayed = std::make_unique<DelayedAnswer>();
  delayed->server = this;
  delayed->req = req;
  std::vector<std::string> then = queryValues(query, "then");
  delayed->then = then.empty() ? "/" : then.front();
  delayed->timer.reset(evtimer_new(base_, onDelayExpired, delayed.get()));

  timeval wait{static_cast<time_t>(*delay / 1000), static_cast<suseconds_t>(*delay % 1000 * 1000)};
  evtimer_add(delayed->timer.get(), &wait);
  delays_.add(std::move(delayed));
}

void EchoServer::delayExpired(DelayedAnswer* delayed) {
  std::unique_ptr<DelayedAnswer> owned = delays_.take(delayed);
  evhttp_request* req = std::exchange(owned->req, nullptr);
  route(req, owned->then);
}

void EchoServer::answerPattern(evhttp_request* req, std::string_view length, bool with_length) {
  std::optional<uint64_t> bytes = parseNumber(length, kMaxStreamBytes);
  if (!bytes) return sendBadArgument(req, "bad_length");

  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  evhttp_add_header(headers, "X-Echo-Upstream", options_.name.c_str());
  evhttp_add_header(headers, "Content-Type", "application/octet-stream");
  if (with_length) {
    evhttp_add_header(headers, "Content-Length", std::to_string(*bytes).c_str());
  } else if (req->major == 1 && req->minor == 0) {
    // An HTTP/1.0 client gets no chunked encoding, so the end of the body can only be told by
    // closing. evhttp keeps a "Connection: keep-alive" 1.0 connection open unless the request
    // header is gone.
    evkeyvalq* request_headers = evhttp_request_get_input_headers(req);
    while (evhttp_remove_header(request_headers, "Connection") == 0) continue;
  }

  evhttp_send_reply_start(req, 200, nullptr);
  // evhttp silently drops body chunks of a HEAD answer and never reports them written.
  if (*bytes == 0 || evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
    evhttp_send_reply_end(req);
    return;
  }

  PatternStream* stream = streams_.add(std::make_unique<PatternStream>(this, req, *bytes));
  evhttp_connection_set_closecb(evhttp_request_get_connection(req), onStreamClosed, stream);
  streamWritten(stream);
}

void EchoServer::streamWritten(PatternStream* stream) {
  stream->refill(onStreamWritten);
  if (!stream->finished()) return;

  // The last bytes may still be queued; evhttp completes the answer once they are written.
  std::unique_ptr<PatternStream> owned = streams_.take(stream);
  owned->finish();
}

void EchoServer::streamClosed(PatternStream* stream) {
  std::unique_ptr<PatternStream> owned = streams_.take(stream);
  if (owned) owned->abandon();
}

void EchoServer::answerWithHeaders(evhttp_request* req, std::string_view query) {
  std::vector<std::string> names = queryValues(query, "name");
  std::vector<std::string> values = queryValues(query, "value");
  if (names.empty() || names.size() != values.size()) return sendBadArgument(req, "bad_header");

  evkeyvalq extra;
  TAILQ_INIT(&extra);
  bool valid = true;
  for (size_t i = 0; i < names.size() && valid; i++) {
    // evhttp_add_header refuses values with CR or LF.
    valid = isHeaderName(names[i]) && values[i].find('\0') == std::string::npos &&
            evhttp_add_header(&extra, names[i].c_str(), values[i].c_str()) == 0;
  }

  if (valid) {
    sendEcho(req, 200, &extra);
  } else {
    sendBadArgument(req, "bad_header");
  }
  evhttp_clear_headers(&extra);
}

void EchoServer::closeWithoutAnswer(evhttp_request* req) {
  // Frees the request too; evhttp does not touch either after this callback returns.
  evhttp_connection_free(evhttp_request_get_connection(req));
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      printUsage(stdout);
      return 0;
    }
  }

  std::optional<Options> options = parseOptions(argc, argv);
  if (!options) {
    printUsage(stderr);
    return 2;
  }

  // A client that resets mid-answer must cost a failed write, not the process.
  signal(SIGPIPE, SIG_IGN);

  EventBasePtr base(event_base_new());
  if (!base) {
    fprintf(stderr, "strangler-echo: event_base_new failed\n");
    return 1;
  }

  bool stopped_cleanly = false;
  {
    EchoServer server(base.get(), std::move(*options));
    if (server.start()) stopped_cleanly = event_base_dispatch(base.get()) == 0;
  }
  return stopped_cleanly ? 0 : 1;
}
