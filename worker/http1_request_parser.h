// The HTTP/1 request parser of the downstream codec, free of any event loop:
// llhttp (strict build) behind a byte-level head check, plus the checks
// llhttp leaves to its user (Host, Transfer-Encoding, versions, limits). It
// delivers each valid request as a head, body pieces and an end, and pauses
// after each request so that pipelined requests are taken one at a time.
#pragma once

#include <llhttp.h>

#include <cstdint>
#include <optional>
#include <string>

#include "worker/http1_head_scanner.h"
#include "worker/header_collector.h"
#include "worker/llhttp_callbacks.h"
#include "worker/http_message.h"

namespace strangler {

class Http1RequestParser {
 public:
  struct Limits {
    uint64_t max_header_size = 64 << 10;
    size_t max_headers = 100;
    std::optional<uint64_t> max_body;
  };

  // Why a request was refused: the status to answer and a stable token.
  struct Refusal {
    int status = 400;
    const char* token = "bad_request";
    std::string message;
  };

  class Handler {
   public:
    virtual ~Handler() = default;
    virtual void onRequestHead(RequestHead& head) = 0;
    virtual void onRequestBody(const char* data, size_t length) = 0;
    virtual void onRequestEnd(const HeaderList& trailers) = 0;
  };

  enum class Status {
    need_more,     // every byte was used; feed more
    message_done,  // paused after a complete request; call resume() for the next
    refused,       // see refusal(); the connection must close after answering
  };

  Http1RequestParser(Handler& handler, Limits limits);

  // Parses from `data`; `consumed` is set to the bytes used.
  Status execute(const char* data, size_t length, size_t& consumed);
  void resume();
  // As if new, for another connection (a parser is reused rather than made
  // for each request).
  void reset(Handler& handler);

  const Refusal& refusal() const { return refusal_; }
  // True while part of a request has been read: a drain must not cut it.
  bool midMessage() const { return in_message_ || scanner_.started(); }
  bool headComplete() const { return headers_done_; }
  // Method, target and version as far as they were parsed, for logging a refusal.
  const RequestHead& head() const { return head_; }

 private:
  template <typename> friend struct LlhttpCallbacks;
  static constexpr bool kParsesResponses = false;
  int beginMessage();
  int appendUrl(const char* at, size_t length);
  int appendHeaderName(const char* at, size_t length);
  int appendHeaderValue(const char* at, size_t length);
  int completeHeaderValue();
  int completeHeaders();
  int appendBody(const char* at, size_t length);
  int completeMessage();

  Status refuse(int status, const char* token, std::string message);
  bool validateHead();

  Handler* handler_;
  Limits limits_;
  llhttp_t parser_;
  Http1HeadScanner scanner_;
  Refusal refusal_;
  bool refused_ = false;

  RequestHead head_;
  HeaderList trailers_;
  HeaderCollector fields_;
  bool in_message_ = false;
  bool headers_done_ = false;
  uint64_t body_bytes_ = 0;
};

}  // namespace strangler
