// HTTP/2 at the frame level: the limits and abuse defences of the downstream
// codec, driven by tests/support/h2_frames.py (Debian's python3-h2), with a
// recording upstream that shows which requests reached it and how they ended.
#include <doctest/doctest.h>

#include <curl/curl.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "tests/integration/harness.h"

using namespace harness;

namespace {

// The recording upstream starts first: the rules name its URL.
struct FramesStack {
  explicit FramesStack(Env env = {})
      : recorder({kPython, supportScript("recording_upstream.py")}),
        echo_stack({"echo"}, rules(recorder), proxyOptions(1, std::move(env))),
        proxy(echo_stack.proxy) {}

  static std::string rules(const ListeningPeer& recorder) {
    return R"({"upstreams": {"recorder": ")" + recorder.url() + R"(", "echo": "{echo}"}, "routes": [
        {"name": "echo", "priority": 10, "match": {"path": {"prefix": "/echo/"}}, "upstream": "echo"},
        {"name": "recorded", "priority": -100, "match": {}, "upstream": "recorder"}]})";
  }

  // Runs one scenario of h2_frames.py against the proxy and returns its account.
  Json::Value frames(const std::string& scenario, const std::string& arguments = "") {
    return parseJson(
        runSupportClient("h2_frames.py", scenario + " " + std::to_string(proxy.port()) + " " + arguments));
  }

  // What the recording upstream got, one entry per request.
  Json::Value records() {
    Client client;
    return client.get(recorder.url() + "/__record").json();
  }

  // A normal request on a new connection still gets its answer.
  bool responsive() {
    Client client;
    Response response = client.requestHttp2("GET", proxy.url("/echo/after"));
    return response.status == 200 && response.json()["upstream"] == "echo";
  }

  long workerRssKb() {
    std::vector<pid_t> workers = proxy.workerPids();
    REQUIRE(workers.size() == 1);
    std::ifstream status("/proc/" + std::to_string(workers[0]) + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.compare(0, 6, "VmRSS:") == 0) return atol(line.c_str() + 6);
    }
    return -1;
  }

  ListeningPeer recorder;
  EchoStack echo_stack;
  Proxy& proxy;
};

std::string abuseSeries(const std::string& reason) {
  return "strangler_h2_abusive_connections_total{reason=\"" + reason + "\"}";
}

// The frames of `account` of one type.
std::vector<Json::Value> framesOf(const Json::Value& account, const std::string& type) {
  std::vector<Json::Value> found;
  for (const Json::Value& frame : account["frames"]) {
    if (frame["type"] == type) found.push_back(frame);
  }
  return found;
}

// The one GOAWAY of `account`, which must end it.
Json::Value onlyGoaway(const Json::Value& account) {
  std::vector<Json::Value> goaways = framesOf(account, "GOAWAY");
  REQUIRE(goaways.size() == 1);
  CHECK(account["frames"][account["frames"].size() - 1] == goaways[0]);
  CHECK(account["closed"].asBool());
  return goaways[0];
}

// Waits (bounded) until every request the recorder saw has ended, answered or aborted.
Json::Value settledRecords(FramesStack& stack) {
  Json::Value records;
  auto settled = [&] {
    records = stack.records();
    bool all_ended = true;
    for (const Json::Value& record : records) {
      all_ended = all_ended && (record["answered"].asBool() || record["aborted"].asBool());
    }
    return all_ended;
  };
  waitUntil(settled, 3000 * kTimeScale, "the recorded requests to end", 50);
  return records;
}

constexpr int kEnhanceYourCalm = 11;
constexpr int kProtocolError = 1;
constexpr int kRefusedStream = 7;
constexpr int kCancel = 8;
constexpr long kRssGrowthBoundKb = 16 * 1024;

}  // namespace

TEST_CASE("rapid reset: past STRANGLER_H2_MAX_RESETS cancelled streams the connection gets GOAWAY "
          "ENHANCE_YOUR_CALM and the cancelled upstream requests are aborted") {
  FramesStack stack(Env{{"STRANGLER_H2_MAX_RESETS", "50"}});
  long rss_before = stack.workerRssKb();

  // Ten streams reach the upstream before they are cancelled; then streams
  // are opened and cancelled at once. The 51st cancellation (stream 101) ends it.
  Json::Value account = stack.frames("rapid_reset", "--count 2000 --open-first 10 --path /hold/20000/r --recorder " +
                                                        stack.recorder.url());
  Json::Value goaway = onlyGoaway(account);
  CHECK(goaway["error_code"] == kEnhanceYourCalm);
  CHECK(goaway["last_stream_id"] == 101);
  CHECK(account["sent"].asInt() < 2000);
  CHECK(framesOf(account, "HEADERS").empty());

  Json::Value records = settledRecords(stack);
  REQUIRE(records.size() >= 10);
  for (const Json::Value& record : records) {
    CHECK(record["path"] == "/hold/20000/r");
    CHECK(record["aborted"] == true);
    CHECK(record["answered"] == false);
  }

  CHECK(metric(stack.proxy.metrics(), abuseSeries("rapid_reset")) == 1);
  CHECK(metric(stack.proxy.metrics(), abuseSeries("header_flood")) == 0);
  CHECK(stack.proxy.processLogHas(R"("msg":"HTTP/2 connection closed for abuse")"));
  CHECK(stack.proxy.processLogHas(R"("reason":"rapid_reset")"));
  CHECK(stack.responsive());
  long rss_after = stack.workerRssKb();
  MESSAGE("worker RSS before " << rss_before << " kB, after a rapid reset " << rss_after << " kB");
  if (!kSanitized) CHECK(rss_after - rss_before < kRssGrowthBoundKb);
}

TEST_CASE("a stream the client resets mid-upload aborts its upstream request") {
  FramesStack stack;
  Json::Value account = stack.frames("upload_then_reset", "--path /upload --total 1000000 --count 100000 --recorder " +
                                                              stack.recorder.url());
  CHECK(account["upstream_had_all"] == true);
  CHECK(account["frames"].empty());
  CHECK(account["closed"] == false);

  Json::Value records = settledRecords(stack);
  REQUIRE(records.size() == 1);
  CHECK(records[0]["path"] == "/upload");
  CHECK(records[0]["body_bytes"] == 100000);
  CHECK(records[0]["body_complete"] == false);
  CHECK(records[0]["aborted"] == true);
  CHECK(records[0]["answered"] == false);
  // One cancellation is no abuse.
  CHECK(metric(stack.proxy.metrics(), abuseSeries("rapid_reset")) == 0);
}

TEST_CASE("a CONTINUATION flood gets GOAWAY ENHANCE_YOUR_CALM, by frame count and by block size") {
  FramesStack stack;
  long rss_before = stack.workerRssKb();

  // Small frames: the ninth CONTINUATION is one too many.
  Json::Value small = stack.frames("continuation_flood", "--count 20000 --frame-bytes 100");
  Json::Value goaway = onlyGoaway(small);
  CHECK(goaway["error_code"] == kEnhanceYourCalm);
  CHECK(goaway["last_stream_id"] == 1);
  CHECK(framesOf(small, "HEADERS").empty());

  // Large frames: the block outgrows STRANGLER_MAX_HEADER_SIZE (64 KiB) + 16 KiB first.
  Json::Value large = stack.frames("continuation_flood", "--count 6 --frame-bytes 16000");
  CHECK(onlyGoaway(large)["error_code"] == kEnhanceYourCalm);
  Json::Value fewer = stack.frames("continuation_flood", "--count 4 --frame-bytes 16000");
  CHECK(framesOf(fewer, "GOAWAY").empty());  // 80 KB so far: still waiting for END_HEADERS

  CHECK(stack.records().empty());
  CHECK(metric(stack.proxy.metrics(), abuseSeries("header_flood")) == 2);
  CHECK(stack.proxy.processLogHas(R"("reason":"header_flood")"));
  CHECK(stack.responsive());
  long rss_after = stack.workerRssKb();
  MESSAGE("worker RSS before " << rss_before << " kB, after CONTINUATION floods " << rss_after << " kB");
  if (!kSanitized) CHECK(rss_after - rss_before < kRssGrowthBoundKb);
}

TEST_CASE("PING and SETTINGS floods get GOAWAY ENHANCE_YOUR_CALM past STRANGLER_H2_MAX_CONTROL_FRAMES") {
  FramesStack stack(Env{{"STRANGLER_H2_MAX_CONTROL_FRAMES", "200"}});
  long rss_before = stack.workerRssKb();

  // The preface's SETTINGS counts too: 199 PINGs are answered, the 200th is refused.
  Json::Value pings = stack.frames("ping_flood", "--count 5000");
  Json::Value goaway = onlyGoaway(pings);
  CHECK(goaway["error_code"] == kEnhanceYourCalm);
  CHECK(goaway["last_stream_id"] == 0);
  CHECK(pings["acks"]["PING"] == 199);

  Json::Value settings = stack.frames("settings_flood", "--count 5000");
  CHECK(onlyGoaway(settings)["error_code"] == kEnhanceYourCalm);
  CHECK(settings["acks"]["SETTINGS"] == 200);  // the preface's and 199 of the flood

  CHECK(metric(stack.proxy.metrics(), abuseSeries("control_flood")) == 2);
  CHECK(stack.proxy.processLogHas(R"("reason":"control_flood")"));
  CHECK(stack.responsive());
  long rss_after = stack.workerRssKb();
  if (!kSanitized) CHECK(rss_after - rss_before < kRssGrowthBoundKb);
}

TEST_CASE("HEADERS on a stream id below one already used is a connection PROTOCOL_ERROR") {
  FramesStack stack;
  Json::Value account = stack.frames("stream_id_backwards", "--path /first");
  Json::Value goaway = onlyGoaway(account);
  CHECK(goaway["error_code"] == kProtocolError);
  CHECK(goaway["last_stream_id"] == 5);
  for (const Json::Value& frame : account["frames"]) CHECK(frame["stream"] != 3);
  // Stream 5 alone reached the upstream.
  Json::Value records = settledRecords(stack);
  REQUIRE(records.size() <= 1);
  if (records.size() == 1) CHECK(records[0]["path"] == "/first");
  CHECK(stack.responsive());
}

TEST_CASE("connection-specific header fields are a stream PROTOCOL_ERROR and nothing is forwarded") {
  FramesStack stack;
  for (const char* field : {"connection:keep-alive", "keep-alive:timeout=5", "proxy-connection:keep-alive",
                            "transfer-encoding:chunked", "upgrade:websocket", "te:gzip"}) {
    CAPTURE(field);
    Json::Value account = stack.frames("request", std::string("--path /refused --field ") + field);
    std::vector<Json::Value> resets = framesOf(account, "RSTSTREAM");
    REQUIRE(resets.size() == 1);
    CHECK(resets[0]["stream"] == 1);
    CHECK(resets[0]["error_code"] == kProtocolError);
    CHECK(framesOf(account, "HEADERS").empty());
    CHECK(account["closed"] == false);
  }
  CHECK(stack.records().empty());

  // "te: trailers" is the one TE allowed (RFC 9113 8.2.2).
  Json::Value allowed = stack.frames("request", "--path /allowed --field te:trailers");
  std::vector<Json::Value> heads = framesOf(allowed, "HEADERS");
  REQUIRE(heads.size() == 1);
  CHECK(heads[0]["status"] == "200");
  Json::Value records = stack.records();
  REQUIRE(records.size() == 1);
  CHECK(records[0]["path"] == "/allowed");
}

TEST_CASE("header lists over STRANGLER_MAX_HEADER_SIZE or STRANGLER_MAX_HEADERS get 431 without routing") {
  FramesStack stack(Env{{"STRANGLER_MAX_HEADER_SIZE", "8KiB"}});
  Json::Value big = stack.frames("request", "--path /big --field x-big:" + std::string(9000, 'b'));
  std::vector<Json::Value> heads = framesOf(big, "HEADERS");
  REQUIRE(heads.size() == 1);
  CHECK(heads[0]["status"] == "431");

  Json::Value many = stack.frames("request", "--path /many --fields 101");
  heads = framesOf(many, "HEADERS");
  REQUIRE(heads.size() == 1);
  CHECK(heads[0]["status"] == "431");
  CHECK(stack.records().empty());

  Json::Value fits = stack.frames("request", "--path /fits --fields 99 --field x-big:" + std::string(2000, 'b'));
  heads = framesOf(fits, "HEADERS");
  REQUIRE(heads.size() == 1);
  CHECK(heads[0]["status"] == "200");
  Json::Value records = stack.records();
  REQUIRE(records.size() == 1);
  CHECK(records[0]["path"] == "/fits");
}

TEST_CASE("a stream over STRANGLER_H2_MAX_STREAMS ends the connection, as nghttp2 does") {
  FramesStack stack(Env{{"STRANGLER_H2_MAX_STREAMS", "10"}});
  // The client has acknowledged the limit, so the eleventh stream (21) is a
  // connection error in nghttp2, not a refused stream.
  Json::Value account = stack.frames("many_streams", "--count 11 --path /hold/3000/s");
  Json::Value goaway = onlyGoaway(account);
  CHECK(goaway["error_code"] == kProtocolError);
  CHECK(goaway["last_stream_id"] == 19);
  Json::Value records = settledRecords(stack);
  CHECK(records.size() <= 10);
  for (const Json::Value& record : records) CHECK(record["aborted"] == true);

  // Ten at once are fine.
  Json::Value ten = stack.frames("many_streams", "--count 10 --path /hold/200/s");
  CHECK(framesOf(ten, "HEADERS").size() == 10);
  CHECK(framesOf(ten, "GOAWAY").empty());
}

TEST_CASE("an h2c upgrade with a request body is answered on stream 1 with the body forwarded exactly") {
  FramesStack stack;
  const size_t size = 50000;
  Json::Value account = stack.frames("upgrade_with_body", "--path /echo/upgrade --body-bytes " + std::to_string(size));
  CHECK(account["http1_status"] == "HTTP/1.1 101 Switching Protocols");
  std::vector<Json::Value> heads = framesOf(account, "HEADERS");
  REQUIRE(heads.size() == 1);
  CHECK(heads[0]["stream"] == 1);
  CHECK(heads[0]["status"] == "200");
  Json::Value echo = parseJson(account["bodies"]["1"].asString());
  CHECK(echo["upstream"] == "echo");
  CHECK(echo["method"] == "POST");
  CHECK(echo["target"] == "/echo/upgrade");
  std::string body;
  for (size_t i = 0; i < size; i++) body += static_cast<char>('a' + (i * 7) % 26);
  CHECK(echo["body_bytes"].asUInt64() == size);
  CHECK(echo["body_fnv1a64"] == fnvHex(fnv1a64(body)));
  for (const std::string& line : receivedHeaders(echo)) {
    CHECK(line.find("Upgrade") == std::string::npos);
    CHECK(line.find("HTTP2-Settings") == std::string::npos);
  }
}

TEST_CASE("an idle HTTP/2 connection gets a shutdown notice, then GOAWAY NO_ERROR, after "
          "STRANGLER_KEEPALIVE_TIMEOUT") {
  FramesStack stack(Env{{"STRANGLER_KEEPALIVE_TIMEOUT", "400ms"}});
  Json::Value account = stack.frames("request", "--path /echo/idle --linger 3");
  std::vector<Json::Value> heads = framesOf(account, "HEADERS");
  REQUIRE(heads.size() == 1);
  CHECK(heads[0]["status"] == "200");

  // A request the client sent as the timer fired is still taken: the notice
  // names no last stream (2^31-1), the final GOAWAY the last one taken.
  std::vector<Json::Value> goaways = framesOf(account, "GOAWAY");
  REQUIRE(goaways.size() == 2);
  CHECK(goaways[0]["error_code"] == 0);
  CHECK(goaways[0]["last_stream_id"] == 2147483647);
  CHECK(goaways[1]["error_code"] == 0);
  CHECK(goaways[1]["last_stream_id"] == 1);
  CHECK(account["frames"][account["frames"].size() - 1] == goaways[1]);
  CHECK(account["closed"].asBool());
}

TEST_CASE("curl's Upgrade: h2c with a POST body: the body reaches the upstream on stream 1; with Expect, "
          "HTTP/1.1 answers") {
  FramesStack stack;
  std::string body;
  for (int i = 0; i < 40000; i++) body += static_cast<char>('a' + (i * 11) % 26);

  Client client;
  Response upgraded = client.requestHttp2("POST", stack.proxy.url("/echo/curl"), {{"Content-Type", "text/plain"}},
                                          body, true);
  REQUIRE(upgraded.status == 200);
  CHECK(client.httpVersion() == CURL_HTTP_VERSION_2_0);
  Json::Value echo = upgraded.json();
  CHECK(echo["body_bytes"].asUInt64() == body.size());
  CHECK(echo["body_fnv1a64"] == fnvHex(fnv1a64(body)));

  // The client would wait for 100 Continue before its body; the proxy keeps HTTP/1.1.
  Client waiting;
  Response kept = waiting.requestHttp2("POST", stack.proxy.url("/echo/expect"),
                                       {{"Content-Type", "text/plain"}, {"Expect", "100-continue"}}, body, true);
  REQUIRE(kept.status == 200);
  CHECK(waiting.httpVersion() == CURL_HTTP_VERSION_1_1);
  CHECK(kept.json()["body_bytes"].asUInt64() == body.size());
  CHECK(kept.json()["body_fnv1a64"] == fnvHex(fnv1a64(body)));
}

namespace {

// The header and body timeouts short, so that the tests can wait them out.
Env shortTimeouts() {
  return Env{{"STRANGLER_CLIENT_HEADER_TIMEOUT", "300ms"}, {"STRANGLER_CLIENT_BODY_TIMEOUT", "300ms"}};
}

// The access log line of the request for `path`; null when there is none.
Json::Value accessLineFor(const std::vector<Json::Value>& lines, const std::string& path) {
  for (const Json::Value& line : lines) {
    if (line["path"] == path) return line;
  }
  return Json::Value();
}

}  // namespace

TEST_CASE("a stalled HTTP/2 request body gets 408 on its stream after STRANGLER_CLIENT_BODY_TIMEOUT, "
          "and a parallel stream is served") {
  FramesStack stack(shortTimeouts());
  Json::Value account = stack.frames("stalled_body", "--path /stalled --total 10 --other /hold/800/parallel");

  std::vector<Json::Value> heads = framesOf(account, "HEADERS");
  REQUIRE(heads.size() == 2);
  CHECK(heads[0]["stream"] == 1);
  CHECK(heads[0]["status"] == "408");
  CHECK(heads[0]["at"].asDouble() > 0.25);
  CHECK(heads[0]["at"].asDouble() < 0.3 + 1.0 * kTimeScale);
  Json::Value fields = heads[0]["fields"];
  CHECK(fields.size() == 3);
  CHECK(fields[0] == ":status");
  CHECK(fields[1] == "content-type");
  CHECK(fields[2] == "content-length");
  Json::Value refusal = parseJson(account["bodies"]["1"].asString());
  CHECK(refusal["error"] == "the request body stalled");
  // Once the 408 has left, the client is told to stop sending the body.
  std::vector<Json::Value> resets = framesOf(account, "RSTSTREAM");
  REQUIRE(resets.size() == 1);
  CHECK(resets[0]["stream"] == 1);
  CHECK(resets[0]["error_code"] == 0);

  // The other stream went on and got its answer from the recorder.
  CHECK(heads[1]["stream"] == 3);
  CHECK(heads[1]["status"] == "200");
  Json::Value answer = parseJson(account["bodies"]["3"].asString());
  CHECK(answer["path"] == "/hold/800/parallel");
  CHECK(framesOf(account, "GOAWAY").empty());
  CHECK(account["closed"] == false);

  // The upstream saw the stalled request cut mid-body, the other one answered.
  Json::Value records = settledRecords(stack);
  REQUIRE(records.size() == 2);
  CHECK(records[0]["path"] == "/stalled");
  CHECK(records[0]["body_bytes"] == 3);
  CHECK(records[0]["body_complete"] == false);
  CHECK(records[0]["aborted"] == true);
  CHECK(records[1]["path"] == "/hold/800/parallel");
  CHECK(records[1]["answered"] == true);

  // The next request through the proxy reaches the same upstream.
  Json::Value after = stack.frames("request", "--path /after-stall");
  heads = framesOf(after, "HEADERS");
  REQUIRE(heads.size() == 1);
  CHECK(heads[0]["status"] == "200");
  CHECK(parseJson(after["bodies"]["1"].asString())["path"] == "/after-stall");
  CHECK(stack.responsive());

  // Logged and counted as HTTP/1's 408 is.
  Json::Value line = accessLineFor(stack.proxy.awaitAccessLog(4), "/stalled");
  CHECK(line["status"] == 408);
  CHECK(line["protocol"] == "HTTP/2");
  CHECK(line["method"] == "POST");
  CHECK(line["error"] == "client_body_timeout");
  CHECK(line["terminated_by"] == "proxy");
  CHECK(line["termination"] == "proxy_headers");
  CHECK(line["route"] == "recorded");
  CHECK(line["bytes_in"] == 3);
  CHECK(metric(stack.proxy.metrics(),
               R"(strangler_requests_total{route="recorded",upstream="recorder",code="408"})") == 1);
}

TEST_CASE("a stalled HTTP/2 request body whose response has started is reset with CANCEL") {
  FramesStack stack(shortTimeouts());
  // The recorder answers /early/ before it reads the body.
  Json::Value account =
      stack.frames("stalled_body", "--path /early/stalled --total 10 --other /hold/100/other");
  std::vector<Json::Value> heads = framesOf(account, "HEADERS");
  REQUIRE(heads.size() == 2);
  CHECK(heads[0]["stream"] == 1);
  CHECK(heads[0]["status"] == "200");
  CHECK(heads[1]["stream"] == 3);
  CHECK(heads[1]["status"] == "200");
  CHECK(account["bodies"]["1"] == "early\n");
  std::vector<Json::Value> resets = framesOf(account, "RSTSTREAM");
  REQUIRE(resets.size() == 1);
  CHECK(resets[0]["stream"] == 1);
  CHECK(resets[0]["error_code"] == kCancel);
  CHECK(resets[0]["at"].asDouble() > 0.25);

  Json::Value records = settledRecords(stack);
  REQUIRE(records.size() == 2);
  CHECK(records[0]["path"] == "/early/stalled");
  CHECK(records[0]["body_bytes"] == 3);
  CHECK(records[0]["aborted"] == true);
  CHECK(records[1]["answered"] == true);

  Json::Value line = accessLineFor(stack.proxy.awaitAccessLog(2), "/early/stalled");
  CHECK(line["status"] == 200);
  CHECK(line["error"] == "client_body_timeout");
  CHECK(line["terminated_by"] == "client");
  CHECK(line["termination"] == "client_body");
}

TEST_CASE("an HTTP/2 request body that trickles in faster than STRANGLER_CLIENT_BODY_TIMEOUT is not cut") {
  FramesStack stack(shortTimeouts());
  // Eight bytes a tenth of a second apart: 0.8 s in all, against a 0.3 s timeout.
  Json::Value account = stack.frames("trickled_body", "--path /trickle --total 8 --interval 0.1");
  CHECK(account["sent"] == 8);
  std::vector<Json::Value> heads = framesOf(account, "HEADERS");
  REQUIRE(heads.size() == 1);
  CHECK(heads[0]["status"] == "200");
  CHECK(framesOf(account, "RSTSTREAM").empty());
  Json::Value answer = parseJson(account["bodies"]["1"].asString());
  CHECK(answer["path"] == "/trickle");
  CHECK(answer["body_bytes"] == 8);

  Json::Value records = settledRecords(stack);
  REQUIRE(records.size() == 1);
  CHECK(records[0]["body_bytes"] == 8);
  CHECK(records[0]["body_complete"] == true);
  CHECK(records[0]["answered"] == true);
  Json::Value line = accessLineFor(stack.proxy.awaitAccessLog(1), "/trickle");
  CHECK(line["status"] == 200);
  CHECK(line["termination"] == "ok");
}

TEST_CASE("an HTTP/2 header block left open, or a preface without SETTINGS, gets GOAWAY after "
          "STRANGLER_CLIENT_HEADER_TIMEOUT") {
  FramesStack stack(shortTimeouts());
  Json::Value account = stack.frames("open_header_block", "--path /echo/before-block");
  std::vector<Json::Value> heads = framesOf(account, "HEADERS");
  REQUIRE(heads.size() == 1);
  CHECK(heads[0]["status"] == "200");
  // Stream 1 was taken; stream 3, whose block never ended, was not.
  Json::Value goaway = onlyGoaway(account);
  CHECK(goaway["error_code"] == 0);
  CHECK(goaway["last_stream_id"] == 1);
  double waited = goaway["at"].asDouble() - account["block_opened"].asDouble();
  CHECK(waited > 0.25);
  CHECK(waited < 0.3 + 1.0 * kTimeScale);

  Json::Value preface = stack.frames("preface_only");
  Json::Value refused = onlyGoaway(preface);
  CHECK(refused["error_code"] == 0);
  CHECK(refused["last_stream_id"] == 0);
  CHECK(refused["at"].asDouble() > 0.25);
  CHECK(refused["at"].asDouble() < 0.3 + 1.0 * kTimeScale);

  CHECK(stack.proxy.waitForProcessLog(R"("detail":"a header block was left unfinished")", 2000));
  CHECK(stack.proxy.processLogHas(R"("detail":"the connection preface did not arrive in time")"));
  CHECK(stack.proxy.processLogHas(R"("msg":"HTTP/2 connection timed out")"));
  CHECK(stack.proxy.processLogHas(R"("reason":"client_header_timeout")"));
  CHECK(stack.records().empty());
  CHECK(stack.responsive());
}

TEST_CASE("a header block nghttp2 refuses does not hold the header timeout open") {
  Env env = shortTimeouts();
  env["STRANGLER_H2_MAX_STREAMS"] = "1";
  FramesStack stack(env);
  // Stream 3 is refused at once; stream 1's answer takes longer than the header timeout.
  Json::Value account = stack.frames("refused_then_quiet", "--path /hold/800/first");
  std::vector<Json::Value> resets = framesOf(account, "RSTSTREAM");
  REQUIRE(resets.size() == 1);
  CHECK(resets[0]["stream"] == 3);
  CHECK(resets[0]["error_code"] == kRefusedStream);
  std::vector<Json::Value> heads = framesOf(account, "HEADERS");
  REQUIRE(heads.size() == 1);
  CHECK(heads[0]["stream"] == 1);
  CHECK(heads[0]["status"] == "200");
  CHECK(framesOf(account, "GOAWAY").empty());
}
