// What an exchange needs from the downstream (client-side) codec, whatever
// the protocol: HTTP/1 connections implement it now, HTTP/2 streams later.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "worker/http_message.h"

namespace strangler {

class DownstreamSink {
 public:
  virtual ~DownstreamSink() = default;

  virtual void sendInformational(const ResponseHead& head) = 0;
  // `has_body` false: the response has no body at all (HEAD, 204, 304).
  virtual void sendResponseHead(const ResponseHead& head, bool has_body) = 0;
  virtual void sendResponseBody(const char* data, size_t length) = 0;
  virtual void sendResponseEnd(const HeaderList& trailers) = 0;
  // The response cannot be completed: the client must see it cut short.
  virtual void abortResponse() = 0;

  // Response bytes written but not yet taken by the client.
  virtual size_t responseBacklog() const = 0;
  virtual void pauseRequestBody(bool paused) = 0;

  // The exchange is over (response ended or aborted); called exactly once.
  virtual void exchangeFinished() = 0;
};

// Who the client is, as the exchange needs it for forwarding headers and logs.
struct ClientInfo {
  std::string address;  // numeric, without port
  bool trusted = false;  // a peer in STRANGLER_TRUSTED_PROXIES
};

}  // namespace strangler
