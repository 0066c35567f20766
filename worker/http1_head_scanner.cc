// A byte-level check of an HTTP/1 message head, before llhttp.
#include "worker/http1_head_scanner.h"

#include <cctype>

namespace strangler {
namespace {

bool isTokenChar(unsigned char c) {
  if (std::isalnum(c)) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

bool isVersion(const std::string& text, size_t at) {
  return text.size() >= at + 8 && text.compare(at, 5, "HTTP/") == 0 && std::isdigit(static_cast<unsigned char>(text[at + 5])) &&
         text[at + 6] == '.' && std::isdigit(static_cast<unsigned char>(text[at + 7]));
}

}  // namespace

Http1HeadScanner::Http1HeadScanner(Kind kind, size_t max_head_bytes, size_t max_fields)
    : kind_(kind), max_head_bytes_(max_head_bytes), max_fields_(max_fields) {}

void Http1HeadScanner::reset() {
  state_ = State::before_start;
  after_cr_ = false;
  head_bytes_ = 0;
  fields_ = 0;
  start_line_.clear();
}

Http1HeadScanner::Verdict Http1HeadScanner::refuse(int status, const char* token, const char* reason) {
  status_ = status;
  token_ = token;
  reason_ = reason;
  return Verdict::refused;
}

bool Http1HeadScanner::startLineValid() const {
  const std::string& line = start_line_;
  if (kind_ == Kind::response) {
    // HTTP/d.d SP ddd [SP reason]; some servers omit the space after the code.
    if (!isVersion(line, 0) || line.size() < 12 || line[8] != ' ') return false;
    for (size_t i = 9; i < 12; i++) {
      if (!std::isdigit(static_cast<unsigned char>(line[i]))) return false;
    }
    return line.size() == 12 || line[12] == ' ';
  }

  size_t first = line.find(' ');
  if (first == std::string::npos || first == 0) return false;
  for (size_t i = 0; i < first; i++) {
    if (!isTokenChar(static_cast<unsigned char>(line[i]))) return false;
  }
  size_t second = line.find(' ', first + 1);
  if (second == std::string::npos || second == first + 1) return false;
  return line.size() == second + 9 && isVersion(line, second + 1);
}

Http1HeadScanner::Verdict Http1HeadScanner::scan(const char* data, size_t length, size_t& head_length) {
  for (size_t i = 0; i < length; i++) {
    unsigned char c = static_cast<unsigned char>(data[i]);
    if (state_ == State::done) {
      head_length = i;
      return Verdict::head_complete;
    }
    if (++head_bytes_ > max_head_bytes_) {
      bool in_start = state_ == State::start_line || state_ == State::before_start;
      return in_start && kind_ == Kind::request
                 ? refuse(414, "target_too_long", "the request line is over the limit")
                 : refuse(431, "headers_too_large", "the header section is over the limit");
    }
    if (c == 0) return refuse(400, "bad_request", "NUL in the message head");

    if (after_cr_) {
      after_cr_ = false;
      if (c != '\n') return refuse(400, "bad_request", "a CR not followed by LF in the message head");
      if (state_ == State::start_line) {
        if (!startLineValid()) {
          return refuse(400, "bad_request",
                        kind_ == Kind::request ? "the request line is not METHOD SP target SP HTTP/x.y"
                                               : "the status line is not HTTP/x.y SP code SP reason");
        }
        state_ = State::line_start;
      } else if (state_ == State::before_start) {
        // An empty line before the request line is ignored (RFC 9112 2.2).
      } else if (state_ == State::line_start) {
        state_ = State::done;
      } else {
        state_ = State::line_start;
      }
      continue;
    }

    if (c == '\r') {
      after_cr_ = true;
      continue;
    }
    if (c == '\n') return refuse(400, "bad_request", "a bare LF line end in the message head");

    switch (state_) {
      case State::before_start:
        state_ = State::start_line;
        start_line_ += static_cast<char>(c);
        break;
      case State::start_line:
        start_line_ += static_cast<char>(c);
        break;
      case State::line_start:
        if (c == ' ' || c == '\t') return refuse(400, "bad_request", "an obs-fold continuation line in the message head");
        if (++fields_ > max_fields_) return refuse(431, "too_many_headers", "too many header fields");
        state_ = State::in_field;
        break;
      case State::in_field:
      case State::done:
        break;
    }
  }
  if (state_ == State::done) {
    head_length = length;
    return Verdict::head_complete;
  }
  return Verdict::more;
}

}  // namespace strangler
