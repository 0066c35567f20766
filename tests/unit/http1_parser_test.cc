// The HTTP/1 request parser without a network: what it delivers for valid
// bytes, split at every point, and what it refuses.
#include <doctest/doctest.h>

#include "worker/http1_request_parser.h"

using namespace strangler;

namespace {

// Records what the parser delivers.
struct Recorder : Http1RequestParser::Handler {
  void onRequestHead(RequestHead& head) override { heads.push_back(head); }
  void onRequestBody(const char* data, size_t length) override { bodies.back().append(data, length); }
  void onRequestEnd(const HeaderList& received) override {
    trailers.push_back(received);
    ends++;
  }

  std::vector<RequestHead> heads;
  std::vector<std::string> bodies{""};
  std::vector<HeaderList> trailers;
  int ends = 0;
};

struct Outcome {
  Recorder recorder;
  bool refused = false;
  Http1RequestParser::Refusal refusal;
};

// Feeds `bytes` in pieces of `piece` bytes, resuming after each request.
Outcome parse(const std::string& bytes, size_t piece = 0, Http1RequestParser::Limits limits = {}) {
  Outcome outcome;
  Http1RequestParser parser(outcome.recorder, limits);
  std::string pending;
  size_t fed = 0;
  if (piece == 0) piece = bytes.size();
  while (fed < bytes.size() || !pending.empty()) {
    if (fed < bytes.size()) {
      pending += bytes.substr(fed, piece);
      fed += piece;
    }
    size_t consumed = 0;
    auto status = parser.execute(pending.data(), pending.size(), consumed);
    pending.erase(0, consumed);
    if (status == Http1RequestParser::Status::refused) {
      outcome.refused = true;
      outcome.refusal = parser.refusal();
      return outcome;
    }
    if (status == Http1RequestParser::Status::message_done) {
      parser.resume();
      outcome.recorder.bodies.emplace_back();
      continue;
    }
    if (fed >= bytes.size() && consumed == 0) break;
  }
  return outcome;
}

const std::string kPipeline =
    "POST /upload?x=1 HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
    "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 9\r\n\r\n"
    "GET /two HTTP/1.1\r\nHost: a.test\r\nX-Dup: 1\r\nX-Dup: 2\r\n\r\n"
    "PUT /three HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc";

}  // namespace

TEST_CASE("a pipeline parses the same whatever the read boundaries") {
  for (size_t piece : {size_t(0), size_t(1), size_t(2), size_t(3), size_t(7), size_t(64)}) {
    Outcome outcome = parse(kPipeline, piece);
    CAPTURE(piece);
    REQUIRE_FALSE(outcome.refused);
    REQUIRE(outcome.recorder.heads.size() == 3);
    REQUIRE(outcome.recorder.ends == 3);
    const auto& heads = outcome.recorder.heads;
    CHECK(heads[0].method == "POST");
    CHECK(heads[0].target == "/upload?x=1");
    CHECK(heads[0].chunked);
    CHECK(outcome.recorder.bodies[0] == "hello world");
    CHECK(outcome.recorder.trailers[0] == HeaderList{{"X-Sum", "9"}});
    CHECK(heads[1].method == "GET");
    CHECK(heads[1].headers == HeaderList{{"Host", "a.test"}, {"X-Dup", "1"}, {"X-Dup", "2"}});
    CHECK_FALSE(heads[1].hasBody());
    CHECK(heads[2].version_minor == 0);
    CHECK(heads[2].content_length == 3u);
    CHECK_FALSE(heads[2].keep_alive);
    CHECK(outcome.recorder.bodies[2] == "abc");
  }
}

TEST_CASE("trailing whitespace of a value is trimmed, leading too") {
  Outcome outcome = parse("GET / HTTP/1.1\r\nHost: a\r\nX-A:  v w \t\r\n\r\n");
  REQUIRE(outcome.recorder.heads.size() == 1);
  CHECK(outcome.recorder.heads[0].headers[1].second == "v w");
}

TEST_CASE("refusals carry their status and token, before any head is delivered") {
  struct Case {
    std::string bytes;
    int status;
    const char* token;
  };
  const Case cases[] = {
      {"GET / HTTP/1.1\r\nX: a\r\n b\r\nHost: a\r\n\r\n", 400, "bad_request"},
      {"GET / HTTP/1.1\nHost: a\r\n\r\n", 400, "bad_request"},
      {"GET / HTTP/1.1\r\nHost: a\r\n\n", 400, "bad_request"},
      {"GET / HTTP/1.1\r\nHost: a\rX\r\n\r\n", 400, "bad_request"},
      {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad_request"},
      {"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, "bad_request"},
      {"GET / ICE/1.0\r\nHost: a\r\n\r\n", 400, "bad_request"},
      {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "http_version_not_supported"},
      {"GET / HTTP/1.1\r\n\r\n", 400, "bad_host"},
      {"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400, "bad_host"},
      {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "bad_request"},
      {"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405, "connect_not_supported"},
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "bad_request"},
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "bad_request"},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "bad_transfer_encoding"},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, "unsupported_transfer_coding"},
      {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "bad_transfer_encoding"},
  };
  for (const Case& c : cases) {
    for (size_t piece : {size_t(0), size_t(1)}) {
      Outcome outcome = parse(c.bytes, piece);
      CAPTURE(c.bytes);
      CAPTURE(piece);
      CHECK(outcome.refused);
      CHECK(outcome.refusal.status == c.status);
      CHECK(std::string(outcome.refusal.token) == c.token);
      CHECK(outcome.recorder.heads.empty());
    }
  }
}

TEST_CASE("a malformed body is refused after its head was delivered") {
  Outcome outcome = parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n");
  CHECK(outcome.refused);
  CHECK(std::string(outcome.refusal.token) == "bad_request_body");
  CHECK(outcome.recorder.heads.size() == 1);
  CHECK(outcome.recorder.ends == 0);
}

TEST_CASE("limits: head size, field count, body size") {
  Http1RequestParser::Limits limits;
  limits.max_header_size = 1024;
  limits.max_headers = 3;
  limits.max_body = 10;
  CHECK(parse("GET /" + std::string(2000, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n", 0, limits).refusal.status == 414);
  CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(2000, 'a') + "\r\n\r\n", 0, limits).refusal.status == 431);
  Outcome many = parse("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 0, limits);
  CHECK(many.refusal.status == 431);
  CHECK(std::string(many.refusal.token) == "too_many_headers");
  CHECK(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", 0, limits).refusal.status == 413);
  Outcome chunked = parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n", 0, limits);
  CHECK(chunked.refusal.status == 413);
}

TEST_CASE("empty lines before a request are ignored; bytes after Connection: close are not a request") {
  Outcome outcome = parse("\r\n\r\nGET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n");
  CHECK_FALSE(outcome.refused);
  REQUIRE(outcome.recorder.heads.size() == 1);
  CHECK(outcome.recorder.heads[0].target == "/a");
  CHECK_FALSE(outcome.recorder.heads[0].keep_alive);
}
