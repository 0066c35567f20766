// What the two HTTP/2 codecs on nghttp2 share.
#include "worker/http2_codec.h"

#include <algorithm>
#include <memory>

namespace strangler::http2 {
namespace {

ssize_t refuseSend(nghttp2_session*, const uint8_t*, size_t, int, void*) {
  return NGHTTP2_ERR_CALLBACK_FAILURE;
}

bool isUpper(char c) {
  return c >= 'A' && c <= 'Z';
}

uint8_t* bytesOf(const char* text) {
  return reinterpret_cast<uint8_t*>(const_cast<char*>(text));
}

}  // namespace

nghttp2_session* newSession(Role role, void* user, void (*setCallbacks)(nghttp2_session_callbacks*),
                            void (*setOptions)(nghttp2_option*)) {
  nghttp2_session_callbacks* raw_callbacks = nullptr;
  if (nghttp2_session_callbacks_new(&raw_callbacks) != 0) return nullptr;
  std::unique_ptr<nghttp2_session_callbacks, decltype(&nghttp2_session_callbacks_del)> callbacks(
      raw_callbacks, &nghttp2_session_callbacks_del);
  nghttp2_session_callbacks_set_send_callback(callbacks.get(), refuseSend);
  setCallbacks(callbacks.get());

  nghttp2_option* raw_options = nullptr;
  if (nghttp2_option_new(&raw_options) != 0) return nullptr;
  std::unique_ptr<nghttp2_option, decltype(&nghttp2_option_del)> options(raw_options, &nghttp2_option_del);
  nghttp2_option_set_no_auto_window_update(options.get(), 1);
  setOptions(options.get());

  nghttp2_session* session = nullptr;
  int status = role == Role::server
                   ? nghttp2_session_server_new2(&session, callbacks.get(), user, options.get())
                   : nghttp2_session_client_new2(&session, callbacks.get(), user, options.get());
  return status == 0 ? session : nullptr;
}

void submitSettings(nghttp2_session* session, const std::vector<nghttp2_settings_entry>& settings,
                    int32_t connection_window) {
  nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, settings.data(), settings.size());
  nghttp2_session_set_local_window_size(session, NGHTTP2_FLAG_NONE, 0, connection_window);
}

bool isNewEveryMessage(std::string_view lowercase_name) {
  return lowercase_name == "x-request-id";
}

OutgoingFields& OutgoingFields::start(const HeaderList& headers) {
  static OutgoingFields fields;
  size_t name_bytes = 0;
  for (const auto& field : headers) name_bytes += field.first.size();
  fields.fields_.clear();
  fields.fields_.reserve(headers.size() + 3);  // and :status, content-length, x-request-id
  fields.lowered_.clear();
  // Names are lowered into this buffer: it must not move while it fills.
  fields.lowered_.reserve(name_bytes);
  return fields;
}

void OutgoingFields::add(std::string_view name, std::string_view value) {
  const char* stored = name.data();
  if (std::any_of(name.begin(), name.end(), isUpper)) {
    size_t at = lowered_.size();
    lowered_.append(name);
    char* lowered = lowered_.data() + at;
    for (size_t i = 0; i < name.size(); i++) {
      if (isUpper(lowered[i])) lowered[i] = static_cast<char>(lowered[i] + ('a' - 'A'));
    }
    stored = lowered;
  }
  uint8_t flags = isNewEveryMessage({stored, name.size()}) ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE;
  fields_.push_back({bytesOf(stored), bytesOf(value.data()), name.size(), value.size(), flags});
}

}  // namespace strangler::http2
