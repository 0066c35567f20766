// One downstream HTTP/1.0 or HTTP/1.1 connection.
#include "worker/client_connection.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <algorithm>
#include <cstdio>

#include "shared/timeval.h"
#include "worker/worker.h"

namespace strangler {
namespace {

// Response backlog at which the exchange is told the client can take more,
// and the tunnel's window per direction.
constexpr size_t kWritableLowWatermark = 64 * 1024;
constexpr size_t kTunnelHighWatermark = 256 * 1024;
// The largest body of a request upgraded to h2c, held until the switch.
constexpr uint64_t kMaxH2cUpgradeBody = 64 * 1024;

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

Http1RequestParser::Limits limitsOf(const Config& config) {
  Http1RequestParser::Limits limits;
  limits.max_header_size = config.max_header_size;
  limits.max_headers = static_cast<size_t>(config.max_headers);
  limits.max_body = config.max_body;
  return limits;
}

// Parsers of requests that ended, for the next ones: a connection holds one
// only while a request is under way. The worker is single-threaded.
constexpr size_t kSpareParsers = 64;
std::vector<std::unique_ptr<Http1RequestParser>>& spareParsers() {
  static std::vector<std::unique_ptr<Http1RequestParser>> spares;
  return spares;
}

// A decimal number, in `out` (at least 20 bytes); returns its length.
size_t formatNumber(char* out, uint64_t value) {
  char digits[20];
  size_t count = 0;
  do {
    digits[count++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  for (size_t i = 0; i < count; i++) out[i] = digits[count - 1 - i];
  return count;
}

// The status line and fields of a response, straight into the socket's output.
void writeHead(Http1Socket& out, int status, const std::string& reason, const HeaderList& headers) {
  char line[32] = "HTTP/1.1 ";
  size_t length = 9 + formatNumber(line + 9, static_cast<uint64_t>(status < 0 ? 0 : status));
  line[length++] = ' ';
  out.write(line, length);
  if (isPrintableReason(reason)) out.write(reason);
  else out.write(reasonPhrase(status));
  out.write("\r\n", 2);
  for (const auto& [name, value] : headers) out.writeField(name, value);
}

}  // namespace

ClientConnection::ClientConnection(Worker& worker, evutil_socket_t fd, const sockaddr* peer)
    : worker_(worker),
      socket_(SocketContext::of(worker.base()), *this) {
  socket_.adopt(fd);
  socket_.setFlushFirst();
  client_.address = peerAddress(peer);
  for (const Cidr& range : worker.config().trusted_proxies) {
    if (range.contains(peer)) client_.trusted = true;
  }
}

ClientConnection::~ClientConnection() {
  exchange_.reset();
  releaseParser();
  if (deadline_timer_) event_free(deadline_timer_);
  if (tunnel_peer_) bufferevent_free(tunnel_peer_);
  if (bev_) bufferevent_free(bev_);
}

void ClientConnection::start() {
  int one = 1;
  setsockopt(socket_.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  // Reading stops while this much is buffered unparsed (pipelined requests waiting).
  socket_.setReadLimit(worker_.config().max_header_size + 16 * 1024);
  int64_t send_timeout_ms = worker_.config().client_send_timeout_ms;
  if (send_timeout_ms > 0) {
    timeval send_timeout = millisecondsToTimeval(send_timeout_ms);
    const timeval* common = SocketContext::of(worker_.base()).commonTimeout(send_timeout_ms);
    socket_.setWriteTimeout(common ? common : &send_timeout);
  }
  socket_.setReading(true);
  // A new connection owes a request head within the header timeout.
  opened_ = worker_.clock().now();
  arm(Deadline::fresh);
}

void ClientConnection::startHandedOver(const std::string& unparsed) {
  first_bytes_checked_ = true;
  start();
  arm(Deadline::idle);
  if (unparsed.empty()) return;
  socket_.addPending(unparsed.data(), unparsed.size());
  parseInput();
}

bool ClientConnection::closesWhenDraining() const { return draining_ && !worker_.handingOver(); }

void ClientConnection::beginDrain() {
  draining_ = true;
  if (tunnel_peer_ || closing_) return;
  bool idle = !exchange_ && !midMessage();
  if (!idle) return;
  // The last response may still be queued: closing now would drop it under a
  // client waiting for it. The socket moves (or closes) once it has left.
  handover_pending_ = worker_.handingOver() && keep_alive_;
  closeWhenFlushed();
}

void ClientConnection::cut() {
  if (exchange_ && !exchange_->finished()) exchange_->cutByProxy("drain_timeout");
  closeNow();
}

bool ClientConnection::tryHandOver() {
  if (closed_ || exchange_ || midMessage() || !keep_alive_ || !worker_.handingOver()) return false;
  if (bev_ || socket_.backlog() > 0) return false;

  socket_.setReading(false);
  std::string unparsed(socket_.pending());
  if (!worker_.handOver(socket_.fd(), unparsed)) return false;

  // The new worker has the socket now; closing this copy sends nothing.
  closeNow();
  return true;
}

void ClientConnection::onSocketRead() {
  if (lingering_) {
    // After the answer to a refused request: whatever else comes is dropped.
    socket_.consume(socket_.pending().size());
    return;
  }
  parseInput();
}

void ClientConnection::onSocketWritten() {
  // As a bufferevent's write callback would: below the low mark, or, when
  // closing, once everything is out.
  size_t backlog = socket_.backlog();
  if (closing_ ? backlog > 0 : backlog > kWritableLowWatermark) return;
  handleWritable();
}

void ClientConnection::onSocketEvent(short events) {
  if ((events & BEV_EVENT_TIMEOUT) && (events & BEV_EVENT_READING)) {
    // The read side's timeout: the deadline of a connection waiting for a
    // request. It runs on while a request is in flight, and means nothing then.
    if (deadline_ == Deadline::idle && !idleLongEnough()) return;
    if (deadline_ == Deadline::fresh || deadline_ == Deadline::idle) handleDeadline();
    return;
  }
  handleEvent(events);
}

void ClientConnection::onWrite(bufferevent*, void* self) {
  static_cast<ClientConnection*>(self)->handleWritable();
}

void ClientConnection::onEvent(bufferevent*, short events, void* self) {
  static_cast<ClientConnection*>(self)->handleEvent(events);
}

void ClientConnection::onDeadline(evutil_socket_t, short, void* self) {
  static_cast<ClientConnection*>(self)->handleDeadline();
}

void ClientConnection::onSocketDeferred() {
  auto* connection = this;
  if (connection->closed_) return;
  connection->finishCycle();
  if (connection->tunnel_peer_ || connection->lingering_) return;
  if (!connection->closing_) {
    connection->parseInput();
    return;
  }
  if (connection->outputBacklog() == 0) connection->finishClosing();
}

void ClientConnection::arm(Deadline deadline) {
  Deadline before = deadline_;
  deadline_ = deadline;
  const Config& config = worker_.config();
  if (deadline == Deadline::fresh || deadline == Deadline::idle) {
    if (deadline_timer_) evtimer_del(deadline_timer_);
    int64_t ms = deadline == Deadline::idle ? config.keepalive_timeout_ms : config.client_header_timeout_ms;
    if (ms == 0) {
      socket_.setReadTimeout(nullptr);
      return;
    }
    timeval timeout = millisecondsToTimeval(ms);
    const timeval* common = SocketContext::of(worker_.base()).commonTimeout(ms);
    idle_since_ = worker_.clock().now();
    // Kept lazily: the read event's timer already restarted when this
    // request's bytes were read, so after a quick answer it is nearly where a
    // restart would put it. Moving it for every answer costs more than the
    // check when it fires (onSocketEvent), which waits out the rest.
    if (deadline == Deadline::idle && socket_.readTimeoutIs(common ? common : &timeout)) return;
    socket_.setReadTimeout(common ? common : &timeout);
    return;
  }
  constexpr int64_t kLingerMs = 2000;
  int64_t ms = deadline == Deadline::head     ? config.client_header_timeout_ms
               : deadline == Deadline::body   ? config.client_body_timeout_ms
               : deadline == Deadline::linger ? kLingerMs
                                              : 0;
  if (ms == 0) {
    if (deadline_timer_) evtimer_del(deadline_timer_);
    return;
  }
  if (deadline == Deadline::head && before == Deadline::fresh) {
    // A new connection's head is due within the timeout of its opening.
    auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(worker_.clock().now() - opened_);
    ms = std::max<int64_t>(ms - waited.count(), 1);
  }
  if (!deadline_timer_) deadline_timer_ = evtimer_new(worker_.base(), &ClientConnection::onDeadline, this);
  timeval timeout = millisecondsToTimeval(ms);
  evtimer_add(deadline_timer_, &timeout);
}

bool ClientConnection::idleLongEnough() {
  auto timeout = std::chrono::milliseconds(worker_.config().keepalive_timeout_ms);
  auto idle = worker_.clock().now() - idle_since_;
  if (idle >= timeout) return true;
  // The timer ran from an earlier start (see arm): wait out the rest. The
  // next answer puts the full timeout back.
  timeval rest = toTimeval(std::max<std::chrono::nanoseconds>(timeout - idle, std::chrono::microseconds(1)));
  socket_.setReadTimeout(&rest);
  return false;
}

void ClientConnection::handleDeadline() {
  Deadline expired = deadline_;
  deadline_ = Deadline::none;
  if (closed_) return;
  if (expired == Deadline::linger) {
    closeNow();
    return;
  }
  if (closing_) return;
  if (expired == Deadline::linger || expired == Deadline::idle || expired == Deadline::fresh ||
      (expired == Deadline::head && !midMessage())) {
    closeNow();
    return;
  }
  Http1RequestParser::Refusal refusal;
  refusal.status = 408;
  refusal.token = expired == Deadline::head ? "client_header_timeout" : "client_body_timeout";
  refusal.message = expired == Deadline::head ? "the request head did not arrive in time"
                                              : "the request body stalled";
  refuse(refusal);
}

bool ClientConnection::checkForHttp2Preface() {
  static const char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  const size_t preface_length = sizeof kPreface - 1;
  std::string_view input = socket_.pending();
  size_t compared = std::min(input.size(), preface_length);
  std::string_view start = input.substr(0, compared);

  if (start.compare(0, compared, kPreface, compared) != 0) {
    first_bytes_checked_ = true;
    // Starting like the preface but differing is a broken HTTP/2 client, not
    // an HTTP/1 one: an HTTP/1 error page would mean nothing to it.
    if (compared >= 4 && start.compare(0, 4, "PRI ") == 0) {
      closeNow();
      return true;
    }
    return false;
  }
  if (compared < preface_length) return true;  // wait for the rest of it
  first_bytes_checked_ = true;
  switchToHttp2(nullptr, "", "");
  return true;
}

bool ClientConnection::wantsH2cUpgrade(const RequestHead& head, std::string& settings) const {
  // The body comes before the client's first HTTP/2 frame (RFC 7540 3.2), so
  // it is held whole: only a small one of declared length. Other requests
  // are simply answered over HTTP/1.1, as a server may choose to.
  if (draining_ || head.chunked || head.version_minor != 1) return false;
  if (head.content_length && *head.content_length > kMaxH2cUpgradeBody) return false;
  // A client waiting for 100 Continue would wait for a switch that waits for its body.
  if (head.hasBody() && headerHasToken(head.headers, "expect", "100-continue")) return false;
  if (!headerHasToken(head.headers, "upgrade", "h2c")) return false;
  if (!headerHasToken(head.headers, "connection", "http2-settings")) return false;
  const std::string* encoded = findHeader(head.headers, "http2-settings");
  if (!encoded || countHeader(head.headers, "http2-settings") != 1) return false;

  // base64url without padding (RFC 7540 3.2.1).
  static const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  settings.clear();
  uint32_t bits = 0;
  int bit_count = 0;
  for (char c : *encoded) {
    if (c == '=') break;
    size_t value = alphabet.find(c);
    if (value == std::string::npos) return false;
    bits = (bits << 6) | static_cast<uint32_t>(value);
    bit_count += 6;
    if (bit_count >= 8) {
      bit_count -= 8;
      settings += static_cast<char>((bits >> bit_count) & 0xFF);
    }
  }
  return settings.size() % 6 == 0;
}

void ClientConnection::switchToHttp2(const RequestHead* upgrade, const std::string& settings,
                                     const std::string& upgrade_body) {
  // The socket, with any bytes already read, moves to the HTTP/2 session;
  // this object is done and goes to the graveyard with the switch.
  closed_ = true;
  if (deadline_timer_) evtimer_del(deadline_timer_);
  socket_.cancelDeferred();
  worker_.switchToHttp2(this, socket_, client_, upgrade, settings, upgrade_body);
}

Http1RequestParser& ClientConnection::parser() {
  if (parser_) return *parser_;
  Http1RequestParser::Handler& handler = *this;
  auto& spares = spareParsers();
  if (spares.empty()) {
    parser_ = std::make_unique<Http1RequestParser>(handler, limitsOf(worker_.config()));
  } else {
    parser_ = std::move(spares.back());
    spares.pop_back();
    parser_->reset(handler);
  }
  return *parser_;
}

void ClientConnection::releaseParser() {
  if (!parser_) return;
  auto& spares = spareParsers();
  if (spares.size() < kSpareParsers) spares.push_back(std::move(parser_));
  parser_.reset();
}

void ClientConnection::parseInput() {
  if (!first_bytes_checked_ && checkForHttp2Preface()) return;
  bool received = !socket_.pending().empty();
  uint64_t heads_before = heads_;
  if (deadline_ == Deadline::body) arm(Deadline::body);

  while (!closed_ && !closing_ && !tunnel_peer_ && !socket_.pending().empty()) {
    if (request_done_) {
      if (!response_done_) break;  // the next pipelined request waits for this response
      finishCycle();
      if (closing_ || closed_ || tunnel_peer_) break;
    }
    std::string_view chunk = socket_.pending();
    size_t consumed = 0;
    Http1RequestParser::Status status = parser().execute(chunk.data(), chunk.size(), consumed);
    socket_.consume(consumed);
    if (status == Http1RequestParser::Status::refused) {
      refuse(parser_->refusal());
      return;
    }
    if (h2c_ && status == Http1RequestParser::Status::message_done) {
      // The request that asked for h2c is answered on stream 1 of the new
      // session. The 101 waits for the whole body: a client that saw it
      // earlier could start HTTP/2 before its body was sent.
      static const char kSwitching[] =
          "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
      socket_.write(kSwitching, sizeof kSwitching - 1);
      std::unique_ptr<H2cUpgrade> upgrade = std::move(h2c_);
      switchToHttp2(&upgrade->request, upgrade->settings, upgrade->body);
      return;
    }
  }
  if (request_done_ && response_done_ && !closing_ && !closed_) finishCycle();
  // Bytes came and made no request head (part of one, or only the empty
  // lines allowed before one): the head is now due.
  if (received && heads_ == heads_before && !closed_ && !closing_ && !tunnel_peer_ &&
      (deadline_ == Deadline::fresh || deadline_ == Deadline::idle)) {
    arm(Deadline::head);
  }
}

void ClientConnection::onRequestHead(RequestHead& head) {
  heads_++;
  std::string settings;
  if (wantsH2cUpgrade(head, settings)) {
    h2c_ = std::make_unique<H2cUpgrade>();
    h2c_->request = head;
    h2c_->settings = std::move(settings);
    removeConnectionFields(h2c_->request.headers);
    removeHeader(h2c_->request.headers, "http2-settings");
    // The parser goes on through the body; the switch happens at its end.
    arm(head.hasBody() ? Deadline::body : Deadline::none);
    return;
  }
  version_minor_ = head.version_minor;
  keep_alive_ = head.keep_alive && !closesWhenDraining();
  request_done_ = false;
  response_done_ = false;
  request_has_body_ = head.hasBody();
  arm(request_has_body_ ? Deadline::body : Deadline::none);
  // The parser is done with the head: the exchange takes it.
  exchange_ = std::make_unique<Exchange>(worker_, *this, std::move(head), client_);
  exchange_->start();
}

void ClientConnection::onRequestBody(const char* data, size_t length) {
  if (h2c_) {
    h2c_->body.append(data, length);
    return;
  }
  if (exchange_) exchange_->requestBody(data, length);
}

void ClientConnection::onRequestEnd(const HeaderList& trailers) {
  request_done_ = true;
  if (deadline_ == Deadline::body) arm(Deadline::none);
  if (exchange_) exchange_->requestEnd(trailers);
}

void ClientConnection::refuse(const Http1RequestParser::Refusal& refusal) {
  keep_alive_ = false;
  linger_ = true;
  if (exchange_ && !exchange_->finished()) {
    exchange_->refuseRequestBody(refusal.status, refusal.token, refusal.message);
  } else if (!exchange_) {
    RequestHead head = parser_ ? parser_->head() : RequestHead();
    if (head.version_minor > 1) head.version_minor = 1;
    version_minor_ = head.version_minor;
    exchange_ = std::make_unique<Exchange>(worker_, *this, head, client_);
    exchange_->reject(refusal.status, refusal.token, refusal.message);
  }
  closeWhenFlushed();
}

void ClientConnection::handleEvent(short events) {
  if ((events & BEV_EVENT_EOF) && exchange_ && request_done_ && !response_done_) {
    // The client half-closed after a whole request: answer it, then close.
    keep_alive_ = false;
    client_finished_sending_ = true;
    updateReading();
    return;
  }
  closeNow();
}

void ClientConnection::handleWritable() {
  if (closing_ && outputBacklog() == 0) {
    finishClosing();
    return;
  }
  if (exchange_ && !exchange_->finished()) exchange_->downstreamWritable();
}

void ClientConnection::finishCycle() {
  if (!exchange_ || !request_done_ || !response_done_) return;
  worker_.graveyard().add(std::move(exchange_));
  request_done_ = false;
  response_done_ = false;
  if (tunnel_peer_) return;
  // An idle connection holds no parser; a pipelined request needs it still.
  if (socket_.pending().empty()) releaseParser();
  else if (parser_) parser_->resume();
  if (!keep_alive_ || closesWhenDraining()) {
    closeWhenFlushed();
    return;
  }
  if (draining_) {
    // Handed to the new worker once the response has left.
    handover_pending_ = true;
    closeWhenFlushed();
    return;
  }
  arm(Deadline::idle);
}

void ClientConnection::sendInformational(const ResponseHead& head) {
  writeHead(socket_, head.status, reasonPhrase(head.status), head.headers);
  socket_.write("\r\n", 2);
}

void ClientConnection::sendResponseHead(const ResponseHead& head, bool has_body) {
  bool client_is_1_1 = version_minor_ >= 1;
  if (!has_body) framing_ = ResponseFraming::none;
  else if (head.content_length) framing_ = ResponseFraming::content_length;
  else if (client_is_1_1) framing_ = ResponseFraming::chunked;
  else framing_ = ResponseFraming::until_close;
  // A final answer before the whole request arrived (an early error, or no
  // 100 Continue): the rest of the body cannot be told from a next request.
  bool body_still_due = request_has_body_ && !request_done_;
  if (framing_ == ResponseFraming::until_close || closesWhenDraining() || body_still_due || head.close_downstream) {
    keep_alive_ = false;
  }
  if (body_still_due) linger_ = true;

  writeHead(socket_, head.status, head.reason, head.headers);
  if (!head.request_id.empty()) socket_.writeField("X-Request-Id", head.request_id);
  // HEAD and 304 answers may say how long the body would have been.
  bool length_without_body = framing_ == ResponseFraming::none && head.content_length && head.status != 204;
  if (framing_ == ResponseFraming::content_length || length_without_body) {
    char line[48] = "Content-Length: ";
    size_t length = 16 + formatNumber(line + 16, *head.content_length);
    line[length++] = '\r';
    line[length++] = '\n';
    socket_.write(line, length);
  } else if (framing_ == ResponseFraming::chunked) {
    socket_.write("Transfer-Encoding: chunked\r\n");
  }
  if (!keep_alive_) socket_.write("Connection: close\r\n");
  else if (!client_is_1_1) socket_.write("Connection: keep-alive\r\n");
  socket_.write("\r\n", 2);
}

void ClientConnection::sendResponseBody(const char* data, size_t length) {
  if (framing_ == ResponseFraming::none || length == 0) return;
  if (framing_ == ResponseFraming::chunked) {
    char size_line[24];
    int size_length = snprintf(size_line, sizeof size_line, "%zx\r\n", length);
    socket_.write(size_line, static_cast<size_t>(size_length));
    socket_.write(data, length);
    socket_.write("\r\n", 2);
    return;
  }
  socket_.write(data, length);
}

void ClientConnection::sendResponseEnd(const HeaderList& trailers) {
  if (framing_ != ResponseFraming::chunked) return;
  socket_.write("0\r\n", 3);
  for (const auto& [name, value] : trailers) {
    if (!isHopByHop(name)) socket_.writeField(name, value);
  }
  socket_.write("\r\n", 2);
}

void ClientConnection::abortResponse() {
  // Whatever was sent stays short of its framing, so the client sees the cut.
  keep_alive_ = false;
  closeWhenFlushed();
}

size_t ClientConnection::responseBacklog() const { return outputBacklog(); }

size_t ClientConnection::outputBacklog() const {
  return bev_ ? evbuffer_get_length(bufferevent_get_output(bev_)) : socket_.backlog();
}

void ClientConnection::pauseRequestBody(bool paused) {
  body_paused_ = paused;

  // While the proxy holds the body back for a slow upstream, the client is
  // not silent, it is not let to send: the body's clock stops, and starts
  // afresh when reading resumes.
  if (deadline_ == Deadline::body) {
    if (!paused) arm(Deadline::body);
    else if (deadline_timer_) evtimer_del(deadline_timer_);
  }

  updateReading();
}

void ClientConnection::exchangeFinished() {
  response_done_ = true;
  if (closed_) return;
  if (request_done_) {
    socket_.defer();
  } else if (!keep_alive_) {
    // Answered before the whole request arrived: no next request can follow.
    closeWhenFlushed();
  }
}

bool ClientConnection::startTunnel(const ResponseHead& head, bufferevent* upstream) {
  writeHead(socket_, head.status, head.reason, head.headers);
  socket_.write("\r\n", 2);

  // The client's socket becomes a bufferevent too, with what it had read
  // past the request and the 101 still to send.
  bev_ = socket_.release();
  tunnel_peer_ = upstream;
  arm(Deadline::none);
  bufferevent_set_timeouts(tunnel_peer_, nullptr, nullptr);
  bufferevent_setwatermark(bev_, EV_READ, 0, 0);
  bufferevent_setwatermark(tunnel_peer_, EV_READ, 0, 0);
  bufferevent_setwatermark(tunnel_peer_, EV_WRITE, kWritableLowWatermark, 0);
  bufferevent_setcb(bev_, &ClientConnection::onTunnelRead, &ClientConnection::onTunnelWrite,
                    &ClientConnection::onTunnelEvent, this);
  bufferevent_setcb(tunnel_peer_, &ClientConnection::onTunnelRead, &ClientConnection::onTunnelWrite,
                    &ClientConnection::onTunnelEvent, this);
  bufferevent_enable(bev_, EV_READ | EV_WRITE);
  bufferevent_enable(tunnel_peer_, EV_READ | EV_WRITE);

  // Bytes either side sent right behind the handshake go first, in order.
  pumpTunnel(bev_);
  pumpTunnel(tunnel_peer_);
  return true;
}

void ClientConnection::onTunnelRead(bufferevent* from, void* self) {
  static_cast<ClientConnection*>(self)->pumpTunnel(from);
}

void ClientConnection::onTunnelWrite(bufferevent* to, void* self) {
  // The side written to has room again: resume reading from the other one.
  auto* connection = static_cast<ClientConnection*>(self);
  bufferevent* other = to == connection->bev_ ? connection->tunnel_peer_ : connection->bev_;
  if (other && !connection->closing_) bufferevent_enable(other, EV_READ);
  if (connection->closing_ && connection->outputBacklog() == 0) {
    connection->closeNow();
  }
}

void ClientConnection::onTunnelEvent(bufferevent*, short, void* self) {
  static_cast<ClientConnection*>(self)->endTunnel();
}

void ClientConnection::pumpTunnel(bufferevent* from) {
  if (!tunnel_peer_) return;
  bufferevent* to = from == bev_ ? tunnel_peer_ : bev_;
  evbuffer_add_buffer(bufferevent_get_output(to), bufferevent_get_input(from));
  if (evbuffer_get_length(bufferevent_get_output(to)) > kTunnelHighWatermark) bufferevent_disable(from, EV_READ);
}

void ClientConnection::endTunnel() {
  // Either side closing closes the other; what the client is owed is flushed first.
  if (tunnel_peer_) {
    pumpTunnel(tunnel_peer_);
    bufferevent_free(tunnel_peer_);
    tunnel_peer_ = nullptr;
  }
  bufferevent_setcb(bev_, nullptr, &ClientConnection::onWrite, &ClientConnection::onEvent, this);
  keep_alive_ = false;
  closeWhenFlushed();
}

void ClientConnection::updateReading() {
  if (closed_) return;
  bool reading = !body_paused_ && !closing_ && !client_finished_sending_;
  if (!bev_) socket_.setReading(reading);
  else if (reading) bufferevent_enable(bev_, EV_READ);
  else bufferevent_disable(bev_, EV_READ);
}

void ClientConnection::closeWhenFlushed() {
  if (closed_) return;
  closing_ = true;
  arm(Deadline::none);
  updateReading();
  if (outputBacklog() == 0) {
    // Deferred: the caller may be deep inside this connection's own callbacks.
    socket_.defer();
    return;
  }
  // Called back when the output is empty (onSocketWritten, or the
  // tunnel's bufferevent).
  if (bev_) bufferevent_setwatermark(bev_, EV_WRITE, 0, 0);
}

void ClientConnection::finishClosing() {
  // Once: the output can be found empty both by the deferred resume and
  // right after a send.
  if (finishing_) return;
  finishing_ = true;
  if (handover_pending_) {
    handover_pending_ = false;
    if (tryHandOver()) return;
  }
  if (!linger_ || lingering_ || bev_) {
    closeNow();
    return;
  }
  lingering_ = true;
  socket_.shutdownWrite();
  socket_.consume(socket_.pending().size());
  socket_.setReadLimit(0);
  socket_.setReading(true);
  arm(Deadline::linger);
}

void ClientConnection::closeNow() {
  if (closed_) return;
  closed_ = true;
  if (exchange_ && !exchange_->finished()) exchange_->downstreamAborted();
  if (deadline_timer_) evtimer_del(deadline_timer_);
  socket_.stop();
  socket_.cancelDeferred();
  if (bev_) {
    bufferevent_setcb(bev_, nullptr, nullptr, nullptr, nullptr);
    bufferevent_disable(bev_, EV_READ | EV_WRITE);
  }
  if (tunnel_peer_) {
    bufferevent_free(tunnel_peer_);
    tunnel_peer_ = nullptr;
  }
  worker_.connectionClosed(this);
}

}  // namespace strangler
