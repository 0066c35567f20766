// A byte-level check of an HTTP/1 message head, before llhttp.
#include "worker/http1_head_scanner.h"

#include <cctype>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

// How many bytes from `data` on are neither NUL, CR nor LF: the run of a
// line that needs no look, byte by byte.
size_t ordinaryRun(const char* data, size_t length) {
  size_t i = 0;
#if defined(__SSE2__)
  const __m128i nul = _mm_setzero_si128();
  const __m128i cr = _mm_set1_epi8('\r');
  const __m128i lf = _mm_set1_epi8('\n');
  for (; i + 16 <= length; i += 16) {
    __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + i));
    __m128i special = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(bytes, nul), _mm_cmpeq_epi8(bytes, cr)),
                                   _mm_cmpeq_epi8(bytes, lf));
    int mask = _mm_movemask_epi8(special);
    if (mask != 0) return i + static_cast<size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
  }
#else
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHighs = 0x8080808080808080ULL;
  for (; i + 8 <= length; i += 8) {
    uint64_t word;
    memcpy(&word, data + i, sizeof word);
    uint64_t cr = word ^ (kOnes * '\r');
    uint64_t lf = word ^ (kOnes * '\n');
    uint64_t found = ((word - kOnes) & ~word) | ((cr - kOnes) & ~cr) | ((lf - kOnes) & ~lf);
    if (found & kHighs) break;
  }
#endif
  for (; i < length; i++) {
    char c = data[i];
    if (c == '\0' || c == '\r' || c == '\n') break;
  }
  return i;
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
    if (state_ == State::done) {
      head_length = i;
      return Verdict::head_complete;
    }
    if (!after_cr_ && (state_ == State::in_field || state_ == State::start_line)) {
      // Inside a line, only NUL, CR and LF matter (and the size limit): the
      // bytes up to the next of them are taken at once.
      size_t run = ordinaryRun(data + i, length - i);
      if (run > 0) {
        if (head_bytes_ + run > max_head_bytes_) {
          return state_ == State::start_line && kind_ == Kind::request
                     ? refuse(414, "target_too_long", "the request line is over the limit")
                     : refuse(431, "headers_too_large", "the header section is over the limit");
        }
        head_bytes_ += run;
        if (state_ == State::start_line) start_line_.append(data + i, run);
        i += run;
        if (i == length) break;
      }
    }
    unsigned char c = static_cast<unsigned char>(data[i]);
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
