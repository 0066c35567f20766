// The non-blocking socket under an HTTP/1 connection, client or upstream
// side, without a bufferevent: what a bufferevent would cost per request is
// what the hot path does not need.
//
// - Reads go straight into one read buffer the worker's sockets share, with
//   recv() of a fixed size (a bufferevent asks the kernel with FIONREAD
//   before every read). Whatever the owner leaves unconsumed is copied to the
//   socket's own input buffer, which exists only while it holds bytes.
// - Writes are queued and sent with one send() per socket once the current
//   batch of events is handled, so a response head and its body leave
//   together. The write event is armed only when the kernel does not take it
//   all (EAGAIN or a short write); a bufferevent arms and disarms it for
//   every response, one epoll_ctl each time.
// - Both events are edge-triggered, as nginx registers its sockets: epoll
//   reports a socket once per arrival instead of looking at every ready
//   socket again after each poll. So a read that fills its room, or that
//   comes with the peer's FIN (EV_CLOSED), is followed by another in a later
//   round, and turning reading back on re-registers the socket, which
//   reports what is waiting.
// - An HTTP/2 session takes the socket over with takeOver(), and a tunnel
//   with release() as a bufferevent, each with the bytes read but not
//   consumed and those not yet sent.
#pragma once

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace strangler {

class Http1Socket;

// A byte buffer that holds memory only while it holds bytes.
class ByteBuffer {
 public:
  ByteBuffer() = default;
  ByteBuffer(const ByteBuffer&) = delete;
  ByteBuffer& operator=(const ByteBuffer&) = delete;
  ~ByteBuffer();

  const char* data() const { return data_ + start_; }
  size_t size() const { return end_ - start_; }
  bool empty() const { return end_ == start_; }
  std::string_view view() const { return {data(), size()}; }

  void append(const char* bytes, size_t length) {
    if (length == 0) return;
    if (capacity_ - end_ < length) grow(length);
    memcpy(data_ + end_, bytes, length);
    end_ += length;
  }
  // Room for `length` more bytes at the end; commit() what was written there.
  char* reserve(size_t length);
  void commit(size_t length) { end_ += length; }
  // Drops `length` bytes from the front; the memory goes when nothing is left.
  void consume(size_t length);
  void clear();

 private:
  void grow(size_t length);

  char* data_ = nullptr;
  size_t start_ = 0;
  size_t end_ = 0;
  size_t capacity_ = 0;
};

// What the HTTP/1 sockets of one event base share: the read buffer, and the
// sockets with output waiting for the end of the current batch of events.
class SocketContext {
 public:
  explicit SocketContext(event_base* base);
  SocketContext(const SocketContext&) = delete;
  SocketContext& operator=(const SocketContext&) = delete;
  ~SocketContext();

  // The context made for `base` (the worker makes one for its base).
  static SocketContext& of(event_base* base);

  event_base* base() const { return base_; }
  // A libevent common timeout of this length: adding and removing it is a
  // queue operation, not a heap one (all keep-alive timeouts are alike).
  const timeval* commonTimeout(int64_t milliseconds);
  // Runs before each round of posted writes: the access log's lines leave
  // ahead of the responses they describe.
  void setBeforeWrites(void (*hook)(void*), void* argument) {
    before_writes_ = hook;
    before_writes_argument_ = argument;
  }

  static constexpr size_t kReadSize = 16 * 1024;

 private:
  friend class Http1Socket;
  void post(Http1Socket* socket);
  void unpost(Http1Socket* socket);
  static void onPosted(evutil_socket_t, short, void* self);
  void runPosted();
  // Runs the sockets of this round that flush first, or the others.
  void runRunning(bool flush_first);

  event_base* base_;
  std::vector<std::pair<int64_t, const timeval*>> common_timeouts_;
  event posted_event_;
  std::vector<Http1Socket*> posted_;
  std::vector<Http1Socket*> running_;
  void (*before_writes_)(void*) = nullptr;
  void* before_writes_argument_ = nullptr;
  char* read_buffer_;
  bool read_buffer_busy_ = false;
};

class Http1Socket {
 public:
  // Events are reported with bufferevent's flags: BEV_EVENT_CONNECTED, or
  // BEV_EVENT_EOF / ERROR / TIMEOUT with BEV_EVENT_READING or _WRITING.
  class Handler {
   public:
    virtual ~Handler() = default;
    // New bytes are in pending(); consume() what is used.
    virtual void onSocketRead() = 0;
    // Output was sent; backlog() is what is still queued.
    virtual void onSocketWritten() = 0;
    virtual void onSocketEvent(short events) = 0;
    // What defer() asked for.
    virtual void onSocketDeferred() {}
  };

  Http1Socket(SocketContext& context, Handler& handler);
  Http1Socket(const Http1Socket&) = delete;
  Http1Socket& operator=(const Http1Socket&) = delete;
  // Closes the socket, if it is still held.
  ~Http1Socket();

  // Takes an accepted (non-blocking) socket.
  void adopt(evutil_socket_t fd);
  // A non-blocking connect; false when no socket could be made. The outcome
  // comes as BEV_EVENT_CONNECTED or BEV_EVENT_ERROR; output written before
  // leaves once connected.
  bool connect(const sockaddr* address, socklen_t length);

  evutil_socket_t fd() const { return fd_; }
  // This socket's output leaves ahead of the others' at the end of each batch
  // of events. Client connections ask for it: a client on another CPU then
  // starts on its answers while the requests to upstreams, which are likely
  // to share this CPU and be woken by them, go out. Measured: about 1% less
  // CPU per request on the benchmark (docs/BENCHMARKS.md).
  void setFlushFirst() { flush_first_ = true; }
  SocketContext& context() const { return context_; }

  // Reading is off until asked for. An EOF or a read error turns it off
  // again, as with a bufferevent; a read timeout does not.
  void setReading(bool reading);
  bool reading() const { return reading_; }
  // Silence on the read side for this long is BEV_EVENT_TIMEOUT|READING
  // (and again after as long, while reading); null for none.
  void setReadTimeout(const timeval* timeout);
  // Whether the read side's timer runs with exactly this timeout.
  bool readTimeoutIs(const timeval* timeout) const {
    return has_read_timeout_ && read_event_added_ && read_timeout_.tv_sec == timeout->tv_sec &&
           read_timeout_.tv_usec == timeout->tv_usec;
  }
  // Reading pauses while this many bytes are pending (0: no limit).
  void setReadLimit(size_t limit);

  // Bytes read and not consumed yet.
  std::string_view pending() const;
  void consume(size_t length);
  // Bytes that arrive from elsewhere (a connection handed over) go first.
  void addPending(const char* data, size_t length);

  // Queues bytes; they are sent once the current batch of events is handled.
  void write(const char* data, size_t length) {
    output_.append(data, length);
    if (!flush_wanted_) scheduleFlush();
  }
  void write(std::string_view text) { write(text.data(), text.size()); }
  // Queues "name: value\r\n", in one piece of the output.
  void writeField(std::string_view name, std::string_view value) {
    size_t length = name.size() + value.size() + 4;
    char* at = output_.reserve(length);
    if (!name.empty()) memcpy(at, name.data(), name.size());
    at += name.size();
    at[0] = ':';
    at[1] = ' ';
    if (!value.empty()) memcpy(at + 2, value.data(), value.size());
    at += 2 + value.size();
    at[0] = '\r';
    at[1] = '\n';
    output_.commit(length);
    if (!flush_wanted_) scheduleFlush();
  }
  // Queued bytes not yet taken by the kernel.
  size_t backlog() const { return output_.size(); }
  // Output stuck for this long is BEV_EVENT_TIMEOUT|WRITING; null for none.
  void setWriteTimeout(const timeval* timeout);

  // Calls onSocketDeferred() once the current batch of events is handled,
  // after this socket's output was sent; also after release().
  void defer();
  void cancelDeferred();

  void shutdownWrite();
  // No more reading, writing or socket callbacks; the socket stays open
  // until the object goes (or release()).
  void stop();
  // Takes the socket of `from` (which no longer holds it), with its pending
  // input and its backlog; reading stays off until asked for.
  void takeOver(Http1Socket& from);
  // A bufferevent (BEV_OPT_CLOSE_ON_FREE) on this socket, with the pending
  // input in its input buffer and the backlog in its output buffer, and no
  // callbacks or events enabled. This object no longer holds the socket.
  bufferevent* release();

 private:
  friend class SocketContext;
  static void onRead(evutil_socket_t, short what, void* self);
  static void onWrite(evutil_socket_t, short what, void* self);
  void handleRead(short what);
  void readAgain();
  void handleWrite(short what);
  void scheduleFlush();
  void runPosted();
  void flush();
  void send();
  event* writeEvent();
  void armWrite();
  void disarmWrite();
  void updateReadEvent();
  // Forgets the socket and the bytes held for it; returns the socket.
  evutil_socket_t detach();

  SocketContext& context_;
  Handler& handler_;
  evutil_socket_t fd_ = -1;
  event read_event_;
  event* write_event_ = nullptr;  // made when first needed
  bool events_assigned_ = false;
  bool reading_ = false;
  bool read_event_added_ = false;
  bool write_armed_ = false;
  bool connecting_ = false;
  int connect_error_ = 0;
  bool posted_ = false;
  bool flush_wanted_ = false;
  bool deferred_ = false;
  bool stopped_ = false;
  bool flush_first_ = false;
  bool has_read_timeout_ = false;
  bool has_write_timeout_ = false;
  timeval read_timeout_ = {0, 0};
  timeval write_timeout_ = {0, 0};
  size_t read_limit_ = 0;

  // During onSocketRead, the bytes of this read that are still in the
  // shared read buffer (the input buffer is then empty).
  const char* fresh_ = nullptr;
  size_t fresh_length_ = 0;
  ByteBuffer input_;
  ByteBuffer output_;
};

}  // namespace strangler
