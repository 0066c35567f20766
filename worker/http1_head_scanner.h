// A byte-level check of an HTTP/1 message head, run on the raw bytes before
// llhttp sees them. It refuses what llhttp 8.1 lets through even in strict
// mode: bare LF line ends (after the start line and at the end of the head),
// bare CR, obs-fold continuation lines, NUL, and start lines that are not
// exactly `METHOD SP target SP HTTP/d.d` (or `HTTP/d.d SP ddd [SP reason]`).
//
// Policy on bare LF: refused in both directions (RFC 9112 2.2 allows
// accepting it, but then the proxy and a backend that does not could
// disagree on where a head ends).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace strangler {

class Http1HeadScanner {
 public:
  enum class Kind { request, response };
  enum class Verdict { more, head_complete, refused };

  Http1HeadScanner(Kind kind, size_t max_head_bytes, size_t max_fields);

  // Scans `data` from the start of a message (or where the last call left
  // off). On head_complete, `head_length` is the offset in `data` just past
  // the empty line. On refused, `reason()` says why.
  Verdict scan(const char* data, size_t length, size_t& head_length);

  // Ready for the next message's head.
  void reset();

  bool inHead() const { return state_ != State::done; }
  bool started() const { return state_ != State::before_start; }
  const char* reason() const { return reason_; }
  // The status the refusal should get: 400, or 414 / 431 for a size limit.
  int status() const { return status_; }
  const char* token() const { return token_; }

 private:
  enum class State { before_start, start_line, line_start, in_field, done };

  Verdict refuse(int status, const char* token, const char* reason);
  bool startLineValid() const;

  Kind kind_;
  size_t max_head_bytes_;
  size_t max_fields_;

  State state_ = State::before_start;
  bool after_cr_ = false;
  size_t head_bytes_ = 0;
  size_t fields_ = 0;
  std::string start_line_;

  int status_ = 400;
  const char* token_ = "";
  const char* reason_ = "";
};

}  // namespace strangler
