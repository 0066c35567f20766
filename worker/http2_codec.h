// What the two HTTP/2 codecs on nghttp2 share: the client side's server
// session (http2_connection) and the upstream side's client sessions
// (upstream_h2_session) are made, fed with frames and asked for frames the
// same way.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shared/rules.h"

namespace strangler::http2 {

// nghttp2 is asked for more frames while less than this is queued on the
// socket, and again once the kernel has taken all but kOutputLowWatermark.
constexpr size_t kOutputHighWatermark = 256 * 1024;
constexpr size_t kOutputLowWatermark = 64 * 1024;

enum class Role { server, client };

// A session whose frames are taken with nghttp2_session_mem_send (its send
// callback refuses) and whose windows open only as the codec says
// (nghttp2_session_consume): both codecs pass bytes on only as fast as the
// other side takes them. `setCallbacks` installs the codec's callbacks and
// `setOptions` any options of its own. Null when nghttp2 could not make it.
nghttp2_session* newSession(Role role, void* user, void (*setCallbacks)(nghttp2_session_callbacks*),
                            void (*setOptions)(nghttp2_option*));

// The first SETTINGS, and the connection's receive window.
void submitSettings(nghttp2_session* session, const std::vector<nghttp2_settings_entry>& settings,
                    int32_t connection_window);

// Moves the frames nghttp2 has ready to `output` (anything with
// wantsMore() and append(const char*, size_t)) for as long as it wants
// more. Returns 0, or nghttp2's error.
template <typename Output>
int collectFrames(nghttp2_session* session, Output& output) {
  while (output.wantsMore()) {
    const uint8_t* data = nullptr;
    ssize_t length = nghttp2_session_mem_send(session, &data);
    if (length < 0) return static_cast<int>(length);
    if (length == 0) break;
    output.append(reinterpret_cast<const char*>(data), static_cast<size_t>(length));
  }
  return 0;
}

// A value new in every message (the proxy's x-request-id) is sent without
// indexing: in the peer's HPACK table it would only push out entries that
// are used again, and nghttp2 would compare it with every earlier one of the
// same name.
bool isNewEveryMessage(std::string_view lowercase_name);

// Header fields for one nghttp2 submit call, which copies them: values point
// at the strings they come from, and names with capitals are lowered into
// one buffer. One list serves every call of the worker (it is
// single-threaded and no submit call re-enters), so its memory is reused
// from message to message.
class OutgoingFields {
 public:
  // The list, emptied, with room for `headers` and two more fields.
  static OutgoingFields& start(const HeaderList& headers);

  void add(std::string_view name, std::string_view value);

  const nghttp2_nv* data() const { return fields_.data(); }
  size_t size() const { return fields_.size(); }

 private:
  std::vector<nghttp2_nv> fields_;
  std::string lowered_;
};

}  // namespace strangler::http2
