// HTTP/2 over cleartext to an upstream (`"protocol": "h2c"`, prior
// knowledge): the client half of the HTTP/2 codec, on nghttp2. A few
// sessions per endpoint carry the streams of many exchanges; a stream waits
// in line when every session is at the upstream's SETTINGS_MAX_CONCURRENT_STREAMS.
#pragma once

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "shared/metrics.h"
#include "worker/deferred_delete.h"
#include "worker/loop_clock.h"
#include "worker/upstream_stream.h"

namespace strangler {

class UpstreamH2Endpoint;
class UpstreamH2Session;

// One exchange's stream: placed on a session when there is room, or waiting
// for one. Request body bytes wait in the stream until the upstream's flow
// control window takes them.
class UpstreamH2Stream : public UpstreamStream, public Deletable {
 public:
  UpstreamH2Stream(UpstreamH2Endpoint& endpoint, event_base* base);
  ~UpstreamH2Stream() override;

  // UpstreamStream
  void attach(UpstreamObserver* observer, bool response_has_no_body) override;
  void sendHead(const UpstreamRequest& request) override;
  void sendBody(const char* data, size_t length) override;
  void sendEnd(const HeaderList& trailers) override;
  size_t backlog() const override;
  void setReading(bool reading) override;
  bool reused() const override { return reused_; }
  EndpointState& endpoint() override;

 private:
  friend class UpstreamH2Session;
  friend class UpstreamH2Endpoint;
  friend struct H2ClientCallbacks;

  // From the session.
  bool submitTo(UpstreamH2Session& session);
  void field(std::string name, std::string value);
  void headersEnded(bool end_stream);
  void body(const uint8_t* data, size_t length);
  void remoteEnded();
  void closed(uint32_t error_code);
  ssize_t readRequestBody(uint8_t* buffer, size_t length, uint32_t* flags);
  void notifyWritable();
  // Detaches from the session and tells the observer (once).
  void fail(UpstreamFailure failure);
  // Forgets the session without a word to it (it is going away).
  void leaveSession();

  void finishResponse();
  void armTimeout();
  static void onTimeout(evutil_socket_t, short, void* self);

  UpstreamH2Endpoint& endpoint_;
  event* timeout_;
  UpstreamObserver* observer_ = nullptr;
  UpstreamH2Session* session_ = nullptr;
  int32_t id_ = -1;  // once submitted
  bool reused_ = false;

  std::vector<std::string> request_fields_;  // name, value, name, value, ...
  bool request_has_body_ = false;
  evbuffer* pending_;  // request body not yet taken by nghttp2
  bool request_ended_ = false;
  HeaderList request_trailers_;
  bool wants_writable_ = false;

  bool response_has_no_body_ = false;
  bool head_done_ = false;
  bool response_done_ = false;
  bool received_anything_ = false;
  bool reading_ = true;
  size_t unconsumed_ = 0;  // response bytes whose window is held back while not reading
  size_t head_bytes_ = 0;
  bool head_too_large_ = false;
  ResponseHead head_;
  HeaderList trailers_;
  std::chrono::steady_clock::time_point started_;
};

// One TCP connection to the endpoint and its nghttp2 client session.
class UpstreamH2Session : public Deletable {
 public:
  UpstreamH2Session(UpstreamH2Endpoint& endpoint, event_base* base);
  ~UpstreamH2Session() override;

  // Starts the connect; false when the socket cannot even be created.
  bool connect();

  // Whether a new stream may be placed here now.
  bool hasRoom() const;
  // Takes new streams at all: not closed, no GOAWAY received, stream ids left.
  bool usable() const { return !closed_ && !draining_; }
  bool idle() const { return connected_ && usable() && load() == 0; }
  size_t load() const { return open_ids_.size() + reserved_; }
  // Until the upstream's SETTINGS arrive, a session carries one stream.
  bool awaitingSettings() const { return usable() && !settings_received_; }
  uint64_t streamsServed() const { return streams_served_; }

  // A stream counts against this session from now on (it is not submitted yet).
  void reserve() { reserved_++; }
  void unreserve() { reserved_--; }
  // Submits the stream's request; false when nghttp2 refuses it.
  bool submit(UpstreamH2Stream& stream, const std::vector<nghttp2_nv>& fields, bool with_body);
  // The exchange let go of a stream still open: reset it (CANCEL).
  void cancel(UpstreamH2Stream& stream);
  void resume(UpstreamH2Stream& stream);
  void consume(int32_t id, size_t length);
  void submitTrailers(int32_t id, const HeaderList& trailers);
  // Frames go out from an event of the session's own, never from inside a
  // caller's frame: an exchange is never called back while it is calling in.
  void flush();

 private:
  friend struct H2ClientCallbacks;

  bool createSession();
  void receive();
  void writeFrames();
  void handleEvent(short events);
  void handleConnectTimeout();
  // Ends the session: every stream on it fails with `failure`.
  void close(UpstreamFailure failure);
  void closeIfDone();
  UpstreamH2Stream* stream(int32_t id);

  // nghttp2 callbacks (trampolines in the .cc file call these).
  int header(const nghttp2_frame* frame, const uint8_t* name, size_t name_length, const uint8_t* value,
             size_t value_length);
  int frameReceived(const nghttp2_frame* frame);
  int frameNotSent(const nghttp2_frame* frame);
  int dataChunk(int32_t stream_id, const uint8_t* data, size_t length);
  int streamClose(int32_t stream_id, uint32_t error_code);

  static void onRead(bufferevent*, void* self);
  static void onWrite(bufferevent*, void* self);
  static void onEvent(bufferevent*, short events, void* self);
  static void onConnectTimeout(evutil_socket_t, short, void* self);
  static void onFlush(evutil_socket_t, short, void* self);

  UpstreamH2Endpoint& endpoint_;
  bufferevent* bev_;
  event* connect_timer_;
  event* flush_event_;
  nghttp2_session* session_ = nullptr;
  std::map<int32_t, UpstreamH2Stream*> streams_;  // the streams exchanges still hold
  std::set<int32_t> open_ids_;                    // submitted and not closed by nghttp2 yet
  size_t reserved_ = 0;
  uint32_t capacity_ = 1;  // the upstream's SETTINGS_MAX_CONCURRENT_STREAMS, once known
  uint64_t streams_served_ = 0;
  std::chrono::steady_clock::time_point connect_started_;
  bool connected_ = false;
  bool settings_received_ = false;
  bool draining_ = false;
  bool closed_ = false;
};

// The HTTP/2 side of one h2c endpoint: its sessions (up to a few, another
// opened when the open ones are full) and the streams waiting for room.
class UpstreamH2Endpoint {
 public:
  UpstreamH2Endpoint(event_base* base, DeferredDeleteQueue& graveyard, metrics::MetricsWriter& metrics,
                     EndpointState& endpoint);
  ~UpstreamH2Endpoint();

  // A stream for one exchange, or null when no session can be started.
  // `fresh`: on a session opened for it, unless there are as many as allowed.
  UpstreamH2Stream* open(bool fresh);
  // The exchange is done with the stream (after its end, or to cancel it).
  void release(UpstreamH2Stream* stream);

  size_t idleSessions() const;
  EndpointState& state() { return endpoint_; }
  metrics::MetricsWriter& metrics() { return metrics_; }
  event_base* base() { return base_; }
  LoopClock& clock() { return clock_; }

 private:
  friend class UpstreamH2Stream;
  friend class UpstreamH2Session;

  UpstreamH2Session* sessionWithRoom(bool fresh);
  size_t usableSessions() const;
  // Another session may be opened: under the limit, and none still waiting
  // for its SETTINGS (which may well allow all the streams waiting).
  bool mayStartSession() const;
  UpstreamH2Session* startSession();
  // The stream has its head: submit it on its session, or wait for room.
  void place(UpstreamH2Stream& stream);
  // There may be room now (a stream closed, SETTINGS arrived, a session
  // went away): waiting streams go, on a new session if need be.
  void serveWaiting();
  void sessionClosed(UpstreamH2Session* session);
  void stopWaiting(UpstreamH2Stream& stream);

  event_base* base_;
  LoopClock& clock_;
  DeferredDeleteQueue& graveyard_;
  metrics::MetricsWriter& metrics_;
  EndpointState& endpoint_;
  std::map<UpstreamH2Session*, std::unique_ptr<UpstreamH2Session>> sessions_;
  std::map<UpstreamH2Stream*, std::unique_ptr<UpstreamH2Stream>> streams_;
  std::deque<UpstreamH2Stream*> waiting_;
};

}  // namespace strangler
