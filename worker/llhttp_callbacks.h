// llhttp's settings for one of the project's HTTP/1 codecs: each C callback
// is a trampoline that casts the parser's user pointer to the codec and calls
// one member function. A codec that parses responses (kParsesResponses)
// takes the status text, one that parses requests the target.
#pragma once

#include <llhttp.h>

namespace strangler {

template <typename Codec>
struct LlhttpCallbacks {
  static Codec* of(llhttp_t* parser) { return static_cast<Codec*>(parser->data); }

  static const llhttp_settings_t* settings() {
    static const llhttp_settings_t value = [] {
      llhttp_settings_t s;
      llhttp_settings_init(&s);
      s.on_message_begin = [](llhttp_t* p) { return of(p)->beginMessage(); };
      if constexpr (Codec::kParsesResponses) {
        s.on_status = [](llhttp_t* p, const char* at, size_t n) { return of(p)->appendStatus(at, n); };
      } else {
        s.on_url = [](llhttp_t* p, const char* at, size_t n) { return of(p)->appendUrl(at, n); };
      }
      s.on_header_field = [](llhttp_t* p, const char* at, size_t n) { return of(p)->appendHeaderName(at, n); };
      s.on_header_value = [](llhttp_t* p, const char* at, size_t n) { return of(p)->appendHeaderValue(at, n); };
      s.on_header_value_complete = [](llhttp_t* p) { return of(p)->completeHeaderValue(); };
      s.on_headers_complete = [](llhttp_t* p) { return of(p)->completeHeaders(); };
      s.on_body = [](llhttp_t* p, const char* at, size_t n) { return of(p)->appendBody(at, n); };
      s.on_message_complete = [](llhttp_t* p) { return of(p)->completeMessage(); };
      return s;
    }();
    return &value;
  }
};

}  // namespace strangler
