// One downstream HTTP/2 connection over cleartext (h2c), by prior knowledge
// or by an HTTP/1.1 `Upgrade: h2c`: the server half of the HTTP/2 codec, on
// nghttp2. Each stream is one exchange, routed like an HTTP/1 request; HTTP/2
// flow control carries the backpressure of both directions.
#pragma once

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#include <chrono>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "worker/downstream.h"
#include "worker/exchange.h"
#include "worker/http1_socket.h"

namespace strangler {

class Worker;

// The session runs on the same socket layer as HTTP/1: each readable event is
// one recv() fed to nghttp2, and the frames nghttp2 has ready are collected in
// the socket's output and sent once per batch of events.
class Http2Connection : public DownstreamConnection, private Http1Socket::Handler {
 public:
  // Takes the socket of `from`, with the bytes it read and has not consumed
  // (the client preface, perhaps more) and any output still queued (a 101).
  Http2Connection(Worker& worker, Http1Socket& from, const ClientInfo& client);
  ~Http2Connection() override;

  // Prior knowledge: the client preface is (or will be) in the input buffer.
  bool start();
  // After `101 Switching Protocols`: `request`, with its whole `body`, becomes stream 1.
  bool startUpgraded(const RequestHead& request, const std::string& settings, const std::string& body);

  // A GOAWAY that still takes every stream, so that requests already on the
  // wire are served; a second later the final GOAWAY with the last stream
  // taken. The streams taken finish.
  void beginDrain() override;
  void cut() override;
  void close();

  class Stream;

  // A count of events allowed per fixed window (an abuse budget).
  class WindowBudget {
   public:
    // False once more than `limit` events fell in the current window.
    bool spend(int limit);

   private:
    std::chrono::steady_clock::time_point window_start_;
    int spent_ = 0;
  };

 private:
  friend class Stream;
  friend struct Http2Callbacks;
  using Clock = std::chrono::steady_clock;

  bool createSession();
  void receive();
  void flush();
  void notifyWritableStreams();
  void handleEvent(short events);
  void handleIdle();
  void sendFinalGoaway();
  void closeIfDone();
  Stream* stream(int32_t id);
  void streamClosed(int32_t id);

  // The header and body timeouts share one timer, set for the earliest
  // deadline. A deadline that moves later leaves the timer alone: it fires,
  // finds nothing due and is set again, so a DATA frame costs no timer call.
  void scheduleDeadlines();
  void handleDeadlines();
  const timeval* commonTimeoutFor(Clock::duration wait, const timeval* exact);
  // The streams whose request body is due, least recently heard from first.
  void awaitBody(Stream& stream);
  void bodyHeard(Stream& stream, Clock::time_point at);
  void stopAwaitingBody(Stream& stream);
  // Whether the client can send `stream` any DATA: a window the proxy keeps
  // shut (a slow upstream) is not the client's silence.
  bool windowOpen(int32_t stream_id);
  // The client kept a header block (or the connection preface) unfinished
  // for the header timeout: GOAWAY, and the connection ends.
  void closeForSlowHeaders(const char* detail);
  void abortOpenStreams();

  // The connection fails: GOAWAY with `error_code`, then a lingering close.
  // With `abuse_kind` (an index in metrics::kH2AbuseKinds) it is counted as
  // abuse. Returns what a callback returns to stop nghttp2 at once.
  int fail(uint32_t error_code, const char* reason, std::optional<size_t> abuse_kind = std::nullopt);
  void failAfterRecv(int nghttp2_error);
  void linger();
  void handleLingerInput();

  // nghttp2 callbacks (trampolines in the .cc file call these).
  int beginFrame(const nghttp2_frame_hd& hd);
  int beginHeaders(const nghttp2_frame* frame);
  int header(const nghttp2_frame* frame, const uint8_t* name, size_t name_length, const uint8_t* value,
             size_t value_length);
  int frameReceived(const nghttp2_frame* frame);
  int dataChunk(int32_t stream_id, const uint8_t* data, size_t length);
  int streamClose(int32_t stream_id, uint32_t error_code);
  int frameSent(const nghttp2_frame* frame);

  // Http1Socket::Handler
  void onSocketRead() override { receive(); }
  void onSocketWritten() override;
  void onSocketEvent(short events) override { handleEvent(events); }

  static void onIdleTimer(evutil_socket_t, short, void* self);
  static void onGoawayTimer(evutil_socket_t, short, void* self);
  static void onDeadlineTimer(evutil_socket_t, short, void* self);

  Worker& worker_;
  Http1Socket socket_;
  event* idle_timer_;
  event* goaway_timer_;
  event* deadline_timer_ = nullptr;  // made when a first deadline is set
  ClientInfo client_;
  nghttp2_session* session_ = nullptr;
  std::map<int32_t, std::unique_ptr<Stream>> streams_;
  // The stream stream() found last (nullptr once it closes).
  Stream* last_stream_ = nullptr;
  int32_t last_stream_id_ = 0;
  // Streams whose queued response body ran low since the last flush.
  std::vector<int32_t> writable_streams_;
  int32_t highest_stream_id_ = 0;
  bool shutdown_noticed_ = false;  // the first GOAWAY is sent
  bool draining_ = false;          // the final GOAWAY is sent
  bool closed_ = false;
  bool flushing_ = false;

  // Header and body timeouts (docs/DESIGN.md, HTTP/2).
  Clock::time_point received_at_;  // when the input being handled was read
  Clock::time_point started_;
  bool settings_received_ = false;  // the client's preface is complete
  // From a HEADERS frame's header until the block has been read: its
  // frameReceived, or the next frame that is not a CONTINUATION.
  bool header_block_open_ = false;
  int32_t header_block_stream_ = 0;
  bool header_block_ending_ = false;  // its last frame (END_HEADERS) has begun
  Clock::time_point header_block_started_;
  int32_t last_head_stream_id_ = 0;  // the last stream whose request head was taken
  std::list<Stream*> awaiting_body_;
  std::optional<Clock::time_point> deadline_timer_due_;

  // Abuse limits (docs/DESIGN.md, HTTP/2).
  WindowBudget resets_;
  WindowBudget control_frames_;
  size_t header_block_bytes_ = 0;
  size_t header_block_frames_ = 0;
  struct Failure {
    uint32_t error_code;
    const char* reason;
    std::optional<size_t> abuse_kind;
  };
  std::optional<Failure> failure_;
  bool lingering_ = false;  // GOAWAY written or being written; input is discarded
};

}  // namespace strangler
