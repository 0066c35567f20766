// Protocol-neutral request and response heads, and the header rules both
// HTTP/1 directions share (hop-by-hop fields, status reasons).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/ascii.h"
#include "shared/rules.h"

namespace strangler {

// Downstream request as the codec parsed it.
struct RequestHead {
  std::string method;
  std::string target;  // as received: origin form, or absolute form
  int version_major = 1;
  int version_minor = 1;
  HeaderList headers;
  bool chunked = false;
  std::optional<uint64_t> content_length;  // with chunked false and no value: no body
  bool keep_alive = true;

  bool hasBody() const { return chunked || (content_length && *content_length > 0); }
};

struct ResponseHead {
  int status = 200;
  std::string reason;
  HeaderList headers;  // end-to-end fields only; framing is the codec's business
  // An X-Request-Id the proxy adds after `headers` when not empty: a view of
  // the exchange's id, so that no field is copied for it.
  std::string_view request_id;
  std::optional<uint64_t> content_length;
  bool keep_alive = true;  // the upstream connection may be reused
  bool close_downstream = false;  // the client connection closes after this answer (a 400)
};

// Values of every `name` field, in order.
const std::string* findHeader(const HeaderList& headers, std::string_view name);
size_t countHeader(const HeaderList& headers, std::string_view name);
void removeHeader(HeaderList& headers, std::string_view name);
void setHeader(HeaderList& headers, std::string_view name, std::string value);

// True for the fields that describe one connection (RFC 9110 7.6.1), plus
// the framing fields the proxy always writes itself.
bool isHopByHop(std::string_view name);

// The fields the Connection headers name, less those a client may not
// remove that way; views into the Connection values.
std::vector<std::string_view> connectionNamedFields(const HeaderList& headers);
// Whether a field stays off the next hop: hop-by-hop, or one of `named`.
bool isConnectionField(std::string_view name, const std::vector<std::string_view>& named);
// Removes hop-by-hop fields and every field named in a Connection header.
void removeConnectionFields(HeaderList& headers);

// Whether a comma list header holds `token` (case-insensitive).
bool headerHasToken(const HeaderList& headers, std::string_view name, std::string_view token);

const char* reasonPhrase(int status);

}  // namespace strangler
