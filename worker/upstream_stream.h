// What an exchange holds of an upstream, whatever the upstream speaks: one
// request and its response, on an HTTP/1.1 connection of its own or on one
// stream of a shared HTTP/2 session. Each codec frames the request itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "worker/http_message.h"

namespace strangler {

struct EndpointState;
class UpstreamConnection;
class UpstreamStream;

// Why an upstream exchange failed, as the stable token logs and metrics use.
enum class UpstreamFailure {
  connect_refused,   // refused or unreachable while connecting
  connect_timeout,
  reset,             // closed or reset before a complete response
  response_timeout,  // silent for longer than the upstream's timeout_ms
  bad_response,      // not parseable as HTTP/1.1, or an HTTP/2 protocol error
  refused,           // an HTTP/2 upstream refused the stream unprocessed (REFUSED_STREAM, GOAWAY)
};

const char* failureToken(UpstreamFailure failure);

// The request an exchange sends upstream, before any protocol's framing.
struct UpstreamRequest {
  std::string method;
  std::string target;  // origin form: path and query
  // End-to-end fields in the order they go out, Host among them (HTTP/2
  // makes it :authority). Connection and Upgrade appear only for a WebSocket
  // handshake, which only HTTP/1 can carry.
  HeaderList headers;
  // The body: `content_length` bytes, or with `length_unknown` whatever
  // comes until the request ends; neither means no body.
  std::optional<uint64_t> content_length;
  bool length_unknown = false;
  // The client said `TE: trailers`. HTTP/2 upstreams get it (gRPC servers
  // require it); HTTP/1 upstreams never see TE, a hop-by-hop field.
  bool trailers_accepted = false;

  bool hasBody() const { return length_unknown || (content_length && *content_length > 0); }
};

// One field of a head, as views into strings someone else holds.
using FieldView = std::pair<std::string_view, std::string_view>;

// The same request as views: into the exchange's request, its route, and
// the few values made for this request, which live here. Nothing is copied
// before a codec writes the head, which it must do before this goes; it can
// be neither copied nor moved, since its views may point into itself.
struct UpstreamHeadView {
  UpstreamHeadView() = default;
  // Views of a request that holds its own strings.
  explicit UpstreamHeadView(const UpstreamRequest& request);
  UpstreamHeadView(const UpstreamHeadView&) = delete;
  UpstreamHeadView& operator=(const UpstreamHeadView&) = delete;

  std::string_view method;
  std::string_view path;
  std::string_view query;  // without the '?'; none when empty
  std::vector<FieldView> fields;
  std::optional<uint64_t> content_length;
  bool length_unknown = false;
  bool trailers_accepted = false;

  // Values made for this request that the views above may point into.
  std::string made_path;
  std::string made_forwarded_for;
  std::string made_forwarded;
  std::string made_host;

  // A copy that holds its own strings, for a codec that keeps the fields.
  UpstreamRequest copy() const;
  // Empty again, keeping the room of the vector and strings for the next head.
  void clear();
};

// What an upstream stream tells the exchange using it.
class UpstreamObserver {
 public:
  virtual ~UpstreamObserver() = default;
  virtual void onInformational(const ResponseHead& head) = 0;  // 1xx other than 101
  virtual void onResponseHead(ResponseHead& head, bool has_body) = 0;
  virtual void onResponseBody(const char* data, size_t length) = 0;
  // The stream is detached by now: the observer must hand it back with
  // UpstreamPool::release (reusable only when `upstream_keeps_alive` and the
  // whole request was sent) or UpstreamPool::discard.
  virtual void onResponseEnd(UpstreamStream* stream, const HeaderList& trailers, bool upstream_keeps_alive) = 0;
  // The stream is already discarded.
  virtual void onUpstreamFailure(UpstreamFailure failure, bool anything_received) = 0;
  virtual void onUpstreamWritable() = 0;  // the request backlog fell below the low mark
  // A 101 Switching Protocols (HTTP/1 only): the observer may take the
  // socket for a tunnel with releaseForTunnel(), and must hand the
  // connection to discard().
  virtual void onUpgrade(UpstreamConnection* connection, const ResponseHead& head) = 0;
};

class UpstreamStream {
 public:
  // Hands the stream to an exchange for one request and its response.
  virtual void attach(UpstreamObserver* observer, bool response_has_no_body) = 0;

  // The request, in order: the head once, body bytes as they come (de-framed),
  // then the end with the trailers (which HTTP/1 sends only in chunked form).
  virtual void sendHead(const UpstreamRequest& request) = 0;
  // The head as views; by default copied into an UpstreamRequest first.
  virtual void sendHeadView(const UpstreamHeadView& head) { sendHead(head.copy()); }
  virtual void sendBody(const char* data, size_t length) = 0;
  virtual void sendEnd(const HeaderList& trailers) = 0;

  // Request bytes accepted but not yet written to the socket.
  virtual size_t backlog() const = 0;
  // Off: the exchange takes no more response body for now.
  virtual void setReading(bool reading) = 0;
  // Carried on a connection that served an exchange before this one.
  virtual bool reused() const = 0;
  virtual EndpointState& endpoint() = 0;

 protected:
  ~UpstreamStream() = default;
};

}  // namespace strangler
