// The HTTP/1 request parser of the downstream codec.
#include "worker/http1_request_parser.h"

namespace strangler {
namespace {


std::vector<std::string> codingsOf(const HeaderList& headers) {
  std::vector<std::string> codings;
  for (const auto& [name, value] : headers) {
    if (!equalsIgnoreCase(name, "transfer-encoding")) continue;
    size_t start = 0;
    while (start <= value.size()) {
      size_t comma = value.find(',', start);
      if (comma == std::string::npos) comma = value.size();
      std::string coding = value.substr(start, comma - start);
      size_t first = coding.find_first_not_of(" \t");
      size_t last = coding.find_last_not_of(" \t");
      codings.push_back(first == std::string::npos ? "" : coding.substr(first, last - first + 1));
      start = comma + 1;
    }
  }
  return codings;
}

}  // namespace

Http1RequestParser::Http1RequestParser(Handler& handler, Limits limits)
    : handler_(&handler),
      limits_(limits),
      scanner_(Http1HeadScanner::Kind::request, limits.max_header_size, limits.max_headers) {
  llhttp_init(&parser_, HTTP_REQUEST, LlhttpCallbacks<Http1RequestParser>::settings());
  parser_.data = this;
}

Http1RequestParser::Status Http1RequestParser::refuse(int status, const char* token, std::string message) {
  refused_ = true;
  refusal_.status = status;
  refusal_.token = token;
  refusal_.message = std::move(message);
  return Status::refused;
}

Http1RequestParser::Status Http1RequestParser::execute(const char* data, size_t length, size_t& consumed) {
  consumed = 0;
  if (refused_) return Status::refused;

  // The raw head check runs first, so a refused head reaches neither llhttp nor an upstream.
  if (scanner_.inHead()) {
    size_t head_length = 0;
    Http1HeadScanner::Verdict verdict = scanner_.scan(data, length, head_length);
    if (verdict == Http1HeadScanner::Verdict::refused) {
      return refuse(scanner_.status(), scanner_.token(), scanner_.reason());
    }
  }

  llhttp_errno_t status = llhttp_execute(&parser_, data, length);
  if (refused_) return Status::refused;
  switch (status) {
    case HPE_OK:
      consumed = length;
      return Status::need_more;
    case HPE_PAUSED:
      consumed = static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
      return Status::message_done;
    case HPE_PAUSED_UPGRADE:
      // Reached when parsing goes on after an upgrade request that was not
      // turned into a tunnel: the connection stays HTTP/1.
      consumed = static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
      llhttp_resume_after_upgrade(&parser_);
      return Status::need_more;
    case HPE_CLOSED_CONNECTION:
      // Bytes after a request that closes the connection are not a request.
      consumed = length;
      return Status::need_more;
    default: {
      bool in_body = headers_done_ && in_message_;
      return refuse(400, in_body ? "bad_request_body" : "bad_request", llhttp_get_error_reason(&parser_));
    }
  }
}

void Http1RequestParser::reset(Handler& handler) {
  handler_ = &handler;
  llhttp_init(&parser_, HTTP_REQUEST, LlhttpCallbacks<Http1RequestParser>::settings());
  parser_.data = this;
  scanner_.reset();
  refusal_ = Refusal();
  refused_ = false;
  head_ = RequestHead();
  trailers_.clear();
  fields_ = HeaderCollector();
  in_message_ = false;
  headers_done_ = false;
  body_bytes_ = 0;
}

void Http1RequestParser::resume() {
  scanner_.reset();
  llhttp_resume(&parser_);
}

int Http1RequestParser::beginMessage() {
  in_message_ = true;
  headers_done_ = false;
  // The last head went to its exchange whole: room for a usual number of fields at once.
  head_ = RequestHead();
  head_.headers.reserve(12);
  trailers_.clear();
  fields_ = HeaderCollector();
  body_bytes_ = 0;
  return 0;
}

int Http1RequestParser::appendUrl(const char* at, size_t length) {
  head_.target.append(at, length);
  return 0;
}

int Http1RequestParser::appendHeaderName(const char* at, size_t length) {
  if (fields_.inValue()) completeHeaderValue();
  fields_.appendName(at, length);
  return 0;
}

int Http1RequestParser::appendHeaderValue(const char* at, size_t length) {
  fields_.appendValue(at, length);
  return 0;
}

int Http1RequestParser::completeHeaderValue() {
  fields_.finish(headers_done_ ? trailers_ : head_.headers);
  return 0;
}

bool Http1RequestParser::validateHead() {
  if (parser_.http_major != 1 || parser_.http_minor > 1) {
    refuse(505, "http_version_not_supported",
           "only HTTP/1.0 and HTTP/1.1 are served here (HTTP/2: send the connection preface)");
    return false;
  }
  if (parser_.method == HTTP_CONNECT) {
    refuse(405, "connect_not_supported", "this is a reverse proxy: CONNECT is not supported");
    return false;
  }
  size_t hosts = countHeader(head_.headers, "host");
  if (hosts > 1 || (hosts == 0 && parser_.http_minor == 1)) {
    refuse(400, "bad_host", hosts > 1 ? "more than one Host header" : "an HTTP/1.1 request needs a Host header");
    return false;
  }
  for (const auto& field : head_.headers) {
    if (field.first.empty()) {
      refuse(400, "bad_header", "a header field has an empty name");
      return false;
    }
  }

  if (parser_.flags & F_TRANSFER_ENCODING) {
    std::vector<std::string> codings = codingsOf(head_.headers);
    if (parser_.http_minor == 0) {
      refuse(400, "bad_transfer_encoding", "Transfer-Encoding is not allowed in HTTP/1.0");
      return false;
    }
    if (codings.empty() || !equalsIgnoreCase(codings.back(), "chunked")) {
      refuse(400, "bad_transfer_encoding", "Transfer-Encoding must end in chunked");
      return false;
    }
    if (codings.size() > 1) {
      refuse(501, "unsupported_transfer_coding", "only the chunked transfer coding is supported");
      return false;
    }
  }

  if ((parser_.flags & F_CONTENT_LENGTH) && limits_.max_body && parser_.content_length > *limits_.max_body) {
    refuse(413, "body_too_large", "the request body is over the limit");
    return false;
  }
  return true;
}

int Http1RequestParser::completeHeaders() {
  if (fields_.inValue()) completeHeaderValue();
  headers_done_ = true;
  head_.version_major = parser_.http_major;
  head_.version_minor = parser_.http_minor;
  if (parser_.method <= HTTP_SOURCE) head_.method = llhttp_method_name(static_cast<llhttp_method_t>(parser_.method));
  if (!validateHead()) return HPE_USER;

  head_.chunked = (parser_.flags & F_CHUNKED) != 0;
  if (parser_.flags & F_CONTENT_LENGTH) head_.content_length = parser_.content_length;
  head_.keep_alive = llhttp_should_keep_alive(&parser_) != 0;
  handler_->onRequestHead(head_);
  return refused_ ? HPE_USER : 0;
}

int Http1RequestParser::appendBody(const char* at, size_t length) {
  body_bytes_ += length;
  if (limits_.max_body && body_bytes_ > *limits_.max_body) {
    refuse(413, "body_too_large", "the request body is over the limit");
    return HPE_USER;
  }
  handler_->onRequestBody(at, length);
  return 0;
}

int Http1RequestParser::completeMessage() {
  in_message_ = false;
  handler_->onRequestEnd(trailers_);
  // Pause: the next pipelined request is parsed only once this one is answered.
  return HPE_PAUSED;
}

}  // namespace strangler
