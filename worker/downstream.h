// What an exchange needs from the downstream (client-side) codec, whatever
// the protocol: HTTP/1 connections implement it now, HTTP/2 streams later.
#pragma once

#include <event2/bufferevent.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "worker/deferred_delete.h"
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

  // The upstream accepted an upgrade (101): send `head` and then relay bytes
  // both ways. Takes ownership of `upstream`. False when this protocol
  // cannot tunnel (the caller then frees it).
  virtual bool startTunnel(const ResponseHead& head, bufferevent* upstream) = 0;

  // The exchange is over (response ended or aborted); called exactly once.
  virtual void exchangeFinished() = 0;
};

// A client connection of either protocol, as the worker manages it.
class DownstreamConnection : public Deletable {
 public:
  // Stop taking requests: close when idle, else once what is in flight ends.
  virtual void beginDrain() = 0;
  // The drain timeout ran out: end every exchange still open (each is
  // logged, with reason drain_timeout) and close.
  virtual void cut() = 0;
};

// Who the client is, as the exchange needs it for forwarding headers and logs.
struct ClientInfo {
  std::string address;  // numeric, without port
  bool trusted = false;  // a peer in STRANGLER_TRUSTED_PROXIES
};

}  // namespace strangler
