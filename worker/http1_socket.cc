// The non-blocking socket under an HTTP/1 connection, without a bufferevent.
#include "worker/http1_socket.h"

#include <event2/buffer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "shared/timeval.h"

namespace strangler {
namespace {

std::vector<SocketContext*>& contexts() {
  static std::vector<SocketContext*> all;
  return all;
}

bool wouldBlock(int error) { return error == EAGAIN || error == EWOULDBLOCK || error == EINTR; }

// Buffers emptied go back here, up to a bound; the worker is single-threaded.
constexpr size_t kBlockSize = 4096;
constexpr size_t kSpareBlocks = 64;
struct SpareBlocks : std::vector<char*> {
  ~SpareBlocks() {
    for (char* block : *this) free(block);
  }
};
SpareBlocks& spareBlocks() {
  static SpareBlocks spares;
  return spares;
}

}  // namespace

// --- ByteBuffer ------------------------------------------------------------------

ByteBuffer::~ByteBuffer() { clear(); }

char* ByteBuffer::reserve(size_t length) {
  if (capacity_ - end_ < length) grow(length);
  return data_ + end_;
}

void ByteBuffer::grow(size_t length) {
  size_t held = size();
  if (start_ > 0) {
    memmove(data_, data_ + start_, held);
    start_ = 0;
    end_ = held;
    if (capacity_ - end_ >= length) return;
  }
  if (!data_ && length <= kBlockSize) {
    // Most buffers hold one head and a small body: a block from the spares.
    auto& spares = spareBlocks();
    if (spares.empty()) {
      data_ = static_cast<char*>(malloc(kBlockSize));
      if (!data_) abort();
    } else {
      data_ = spares.back();
      spares.pop_back();
    }
    capacity_ = kBlockSize;
    return;
  }
  size_t wanted = std::max({held + length, 2 * capacity_, kBlockSize});
  char* grown = static_cast<char*>(realloc(data_, wanted));
  if (!grown) abort();
  data_ = grown;
  capacity_ = wanted;
}

void ByteBuffer::consume(size_t length) {
  start_ += length;
  if (start_ >= end_) clear();
}

void ByteBuffer::clear() {
  if (data_ && capacity_ == kBlockSize && spareBlocks().size() < kSpareBlocks) spareBlocks().push_back(data_);
  else free(data_);
  data_ = nullptr;
  start_ = end_ = capacity_ = 0;
}

// --- SocketContext ---------------------------------------------------------------

SocketContext::SocketContext(event_base* base)
    : base_(base), read_buffer_(static_cast<char*>(malloc(kReadSize))) {
  event_assign(&posted_event_, base, -1, 0, &SocketContext::onPosted, this);
  contexts().push_back(this);
}

SocketContext::~SocketContext() {
  event_del(&posted_event_);
  free(read_buffer_);
  auto& all = contexts();
  all.erase(std::remove(all.begin(), all.end(), this), all.end());
}

const timeval* SocketContext::commonTimeout(int64_t milliseconds) {
  for (const auto& [length, timeout] : common_timeouts_) {
    if (length == milliseconds) return timeout;
  }
  timeval duration = millisecondsToTimeval(milliseconds);
  const timeval* timeout = event_base_init_common_timeout(base_, &duration);
  // libevent has room for 256 lengths; past that, a plain timeout (copied by event_add).
  if (!timeout) return nullptr;
  common_timeouts_.emplace_back(milliseconds, timeout);
  return timeout;
}

SocketContext& SocketContext::of(event_base* base) {
  for (SocketContext* context : contexts()) {
    if (context->base_ == base) return *context;
  }
  // A base without a worker (a test): one context for it, for the process's life.
  return *new SocketContext(base);
}

void SocketContext::post(Http1Socket* socket) {
  socket->posted_ = true;
  posted_.push_back(socket);
  if (posted_.size() == 1) event_active(&posted_event_, EV_TIMEOUT, 0);
}

void SocketContext::unpost(Http1Socket* socket) {
  socket->posted_ = false;
  std::replace(posted_.begin(), posted_.end(), socket, static_cast<Http1Socket*>(nullptr));
  std::replace(running_.begin(), running_.end(), socket, static_cast<Http1Socket*>(nullptr));
}

void SocketContext::onPosted(evutil_socket_t, short, void* self) { static_cast<SocketContext*>(self)->runPosted(); }

void SocketContext::runPosted() {
  if (before_writes_) before_writes_(before_writes_argument_);
  // Sending may post other sockets (a response makes the next request go
  // upstream): they go in this round too.
  while (!posted_.empty()) {
    running_.swap(posted_);
    runRunning(true);
    runRunning(false);
    running_.clear();
  }
}

void SocketContext::runRunning(bool flush_first) {
  for (size_t i = 0; i < running_.size(); i++) {
    Http1Socket* socket = running_[i];
    if (socket && socket->flush_first_ == flush_first) socket->runPosted();
  }
}

// --- Http1Socket -----------------------------------------------------------------

Http1Socket::Http1Socket(SocketContext& context, Handler& handler) : context_(context), handler_(handler) {}

Http1Socket::~Http1Socket() {
  stop();
  cancelDeferred();
  if (write_event_) event_free(write_event_);
  if (fd_ >= 0) evutil_closesocket(fd_);
}

void Http1Socket::adopt(evutil_socket_t fd) {
  fd_ = fd;
  // Edge-triggered: epoll reports a socket once per arrival, and does not
  // look at it again after every poll as it does for a level-triggered one.
  // EV_CLOSED (EPOLLRDHUP) says when the peer's FIN came with the last bytes,
  // so that the end is read too.
  event_assign(&read_event_, context_.base_, fd, EV_READ | EV_CLOSED | EV_PERSIST | EV_ET,
               &Http1Socket::onRead, this);
  events_assigned_ = true;
}

event* Http1Socket::writeEvent() {
  // Edge-triggered like the read event: libevent refuses to mix the two on one socket.
  if (!write_event_) {
    write_event_ = event_new(context_.base_, fd_, EV_WRITE | EV_PERSIST | EV_ET, &Http1Socket::onWrite, this);
  }
  return write_event_;
}

bool Http1Socket::connect(const sockaddr* address, socklen_t length) {
  evutil_socket_t fd = socket(address->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  adopt(fd);
  connecting_ = true;
  if (::connect(fd, address, length) == 0) {
    // Connected at once: reported from the loop all the same.
    event_active(writeEvent(), EV_WRITE, 1);
    return true;
  }
  int error = errno;
  if (error == EINPROGRESS || error == EINTR) {
    armWrite();
    return true;
  }
  if (error == ECONNREFUSED) {
    // Refused at once (loopback): reported from the loop, as a bufferevent does.
    connect_error_ = error;
    event_active(writeEvent(), EV_WRITE, 1);
    return true;
  }
  return false;
}

void Http1Socket::updateReadEvent() {
  if (!events_assigned_) return;
  bool wanted = reading_ && !stopped_ && fd_ >= 0 && !(read_limit_ && pending().size() >= read_limit_);
  if (wanted == read_event_added_) return;
  if (wanted) {
    event_add(&read_event_, has_read_timeout_ ? &read_timeout_ : nullptr);
  } else {
    event_del(&read_event_);
  }
  read_event_added_ = wanted;
}

void Http1Socket::setReading(bool reading) {
  reading_ = reading;
  updateReadEvent();
}

void Http1Socket::setReadTimeout(const timeval* timeout) {
  has_read_timeout_ = timeout != nullptr;
  if (timeout) read_timeout_ = *timeout;
  if (!read_event_added_) return;
  // Only the timer changes: the socket stays registered as it is.
  if (timeout) event_add(&read_event_, &read_timeout_);
  else event_remove_timer(&read_event_);
}

void Http1Socket::setWriteTimeout(const timeval* timeout) {
  has_write_timeout_ = timeout != nullptr;
  if (timeout) write_timeout_ = *timeout;
  if (!write_armed_ || connecting_) return;
  if (timeout) event_add(write_event_, &write_timeout_);
  else event_remove_timer(write_event_);
}

void Http1Socket::setReadLimit(size_t limit) {
  read_limit_ = limit;
  updateReadEvent();
}

std::string_view Http1Socket::pending() const {
  if (fresh_length_ > 0) return {fresh_, fresh_length_};
  return input_.view();
}

void Http1Socket::consume(size_t length) {
  if (fresh_length_ > 0) {
    fresh_ += length;
    fresh_length_ -= length;
    return;
  }
  input_.consume(length);
  if (read_limit_ && reading_ && !read_event_added_) updateReadEvent();
}

void Http1Socket::addPending(const char* data, size_t length) {
  input_.append(data, length);
  updateReadEvent();
}

void Http1Socket::onRead(evutil_socket_t, short what, void* self) { static_cast<Http1Socket*>(self)->handleRead(what); }

void Http1Socket::onWrite(evutil_socket_t, short what, void* self) {
  static_cast<Http1Socket*>(self)->handleWrite(what);
}

void Http1Socket::handleRead(short what) {
  if (what & EV_TIMEOUT) {
    handler_.onSocketEvent(BEV_EVENT_TIMEOUT | BEV_EVENT_READING);
    return;
  }
  size_t room = SocketContext::kReadSize;
  if (read_limit_) {
    size_t held = input_.size();
    if (held >= read_limit_) {
      updateReadEvent();
      return;
    }
    room = std::min(room, read_limit_ - held);
  }
  // Into the shared buffer when nothing is held, else behind what is.
  bool shared = input_.empty() && !context_.read_buffer_busy_;
  char* target = shared ? context_.read_buffer_ : input_.reserve(room);
  ssize_t received = recv(fd_, target, room, 0);
  // A read that filled its room may have left bytes in the kernel, and one
  // that came with the peer's FIN has left the end to read; no new edge will
  // tell of either. Come back for them in a later round.
  bool maybe_more = received > 0 && (static_cast<size_t>(received) == room || (what & EV_CLOSED));
  if (received < 0) {
    if (wouldBlock(errno)) return;
    reading_ = false;
    updateReadEvent();
    handler_.onSocketEvent(BEV_EVENT_ERROR | BEV_EVENT_READING);
    return;
  }
  if (received == 0) {
    reading_ = false;
    updateReadEvent();
    handler_.onSocketEvent(BEV_EVENT_EOF | BEV_EVENT_READING);
    return;
  }
  if (!shared) {
    input_.commit(static_cast<size_t>(received));
    handler_.onSocketRead();
    updateReadEvent();
    if (maybe_more) readAgain();
    return;
  }
  context_.read_buffer_busy_ = true;
  fresh_ = target;
  fresh_length_ = static_cast<size_t>(received);
  handler_.onSocketRead();
  context_.read_buffer_busy_ = false;
  // What the owner left (a partial head, a pipelined request) is kept.
  if (fresh_length_ > 0 && !stopped_) input_.append(fresh_, fresh_length_);
  fresh_ = nullptr;
  fresh_length_ = 0;
  updateReadEvent();
  if (maybe_more) readAgain();
}

void Http1Socket::readAgain() {
  // Only while reading is on: when it is turned on again, re-registering the
  // socket reports what is waiting.
  if (read_event_added_) event_active(&read_event_, EV_READ, 1);
}

void Http1Socket::scheduleFlush() {
  if (write_armed_ || connecting_ || stopped_ || fd_ < 0) return;
  flush_wanted_ = true;
  if (!posted_) context_.post(this);
}

void Http1Socket::defer() {
  deferred_ = true;
  if (!posted_) context_.post(this);
}

void Http1Socket::cancelDeferred() {
  deferred_ = false;
  if (posted_ && !flush_wanted_) context_.unpost(this);
}

void Http1Socket::runPosted() {
  posted_ = false;
  if (flush_wanted_) flush();
  if (deferred_) {
    deferred_ = false;
    handler_.onSocketDeferred();
  }
}

void Http1Socket::flush() {
  flush_wanted_ = false;
  if (stopped_ || fd_ < 0 || write_armed_ || connecting_) return;
  send();
}

void Http1Socket::send() {
  if (output_.empty()) {
    disarmWrite();
    return;
  }
  ssize_t sent = ::send(fd_, output_.data(), output_.size(), MSG_NOSIGNAL);
  if (sent < 0) {
    if (wouldBlock(errno)) {
      armWrite();
      return;
    }
    disarmWrite();
    stopped_ = true;  // nothing more can be sent; the owner closes
    reading_ = false;
    updateReadEvent();
    handler_.onSocketEvent(BEV_EVENT_ERROR | BEV_EVENT_WRITING);
    return;
  }
  output_.consume(static_cast<size_t>(sent));
  // A short write means the kernel's buffer is full: wait until it has room.
  if (output_.empty()) disarmWrite();
  else armWrite();
  handler_.onSocketWritten();
}

void Http1Socket::armWrite() {
  if (write_armed_ || !events_assigned_) return;
  event_add(writeEvent(), has_write_timeout_ && !connecting_ ? &write_timeout_ : nullptr);
  write_armed_ = true;
}

void Http1Socket::disarmWrite() {
  if (!write_armed_) return;
  event_del(write_event_);
  write_armed_ = false;
}

void Http1Socket::handleWrite(short what) {
  if (connecting_) {
    int error = connect_error_;
    if (!error) {
      socklen_t length = sizeof error;
      if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
    }
    if (error == EINPROGRESS || error == EINTR) return;
    connecting_ = false;
    disarmWrite();
    if (error) {
      handler_.onSocketEvent(BEV_EVENT_ERROR | BEV_EVENT_WRITING);
      return;
    }
    handler_.onSocketEvent(BEV_EVENT_CONNECTED);
    if (stopped_ || fd_ < 0) return;
    send();
    return;
  }
  if (what & EV_TIMEOUT) {
    disarmWrite();
    handler_.onSocketEvent(BEV_EVENT_TIMEOUT | BEV_EVENT_WRITING);
    return;
  }
  send();
}

void Http1Socket::shutdownWrite() {
  if (fd_ >= 0) shutdown(fd_, SHUT_WR);
}

void Http1Socket::stop() {
  stopped_ = true;
  reading_ = false;
  if (events_assigned_) {
    if (read_event_added_) event_del(&read_event_);
    read_event_added_ = false;
    // Also takes back an activation not yet run (a connect's outcome).
    if (write_event_) event_del(write_event_);
    write_armed_ = false;
  }
  flush_wanted_ = false;
  if (posted_ && !deferred_) context_.unpost(this);
}

void Http1Socket::takeOver(Http1Socket& from) {
  std::string_view rest = from.pending();
  input_.append(rest.data(), rest.size());
  output_.append(from.output_.data(), from.output_.size());
  flush_first_ = from.flush_first_;
  adopt(from.detach());
  if (!output_.empty()) scheduleFlush();
}

evutil_socket_t Http1Socket::detach() {
  evutil_socket_t fd = fd_;
  fresh_length_ = 0;
  input_.clear();
  output_.clear();
  stop();
  fd_ = -1;
  return fd;
}

bufferevent* Http1Socket::release() {
  std::string_view rest = pending();
  bufferevent* taken = bufferevent_socket_new(context_.base_, fd_, BEV_OPT_CLOSE_ON_FREE);
  if (!rest.empty()) {
    // A socket bufferevent keeps the end of its input frozen outside its own reads.
    evbuffer* input = bufferevent_get_input(taken);
    evbuffer_unfreeze(input, 0);
    evbuffer_add(input, rest.data(), rest.size());
    evbuffer_freeze(input, 0);
  }
  if (!output_.empty()) evbuffer_add(bufferevent_get_output(taken), output_.data(), output_.size());
  detach();
  return taken;
}

}  // namespace strangler
