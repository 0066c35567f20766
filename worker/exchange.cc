// One request and its response: routing, local answers, upstream exchange.
#include "worker/exchange.h"

#include <cstdio>

#include "shared/http_path.h"
#include "shared/json_writer.h"
#include "worker/upstream_pool.h"
#include "worker/worker.h"

namespace strangler {
namespace {

// Response bytes queued toward the client before the upstream is paused.
constexpr size_t kDownstreamHighWatermark = 256 * 1024;
constexpr size_t kUpstreamHighWatermark = 256 * 1024;

std::string protocolName(const RequestHead& request) {
  return "HTTP/" + std::to_string(request.version_major) + "." + std::to_string(request.version_minor);
}

// Splits an origin-form or absolute-form target into authority, path and query.
bool splitTarget(const std::string& target, std::string& authority, std::string& path, std::string& query) {
  std::string rest = target;
  if (rest.compare(0, 7, "http://") == 0 || rest.compare(0, 8, "https://") == 0) {
    size_t start = rest.find("://") + 3;
    size_t end = rest.find_first_of("/?", start);
    authority = rest.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (authority.empty() || authority.find('@') != std::string::npos) return false;
    rest = end == std::string::npos ? "/" : rest.substr(end);
    if (rest[0] == '?') rest = "/" + rest;
  }
  if (rest.empty() || rest[0] != '/' || rest.find('#') != std::string::npos) return false;
  size_t question = rest.find('?');
  path = rest.substr(0, question);
  query = question == std::string::npos ? "" : rest.substr(question + 1);
  return true;
}

void appendHeader(std::string& out, const std::string& name, const std::string& value) {
  out += name;
  out += ": ";
  out += value;
  out += "\r\n";
}

}  // namespace

Exchange::Exchange(Worker& worker, DownstreamSink& downstream, RequestHead request, const ClientInfo& client)
    : worker_(worker),
      downstream_(downstream),
      request_(std::move(request)),
      client_(client),
      router_(worker.router()),
      started_(std::chrono::steady_clock::now()) {
  record_.request_id = worker.nextRequestId();
  record_.method = request_.method;
  record_.protocol = protocolName(request_);
  record_.client = client_.address;
  record_.rules_version = router_->version();
}

Exchange::~Exchange() {
  if (upstream_) worker_.pools().discard(upstream_);
}

void Exchange::start() {
  if (!routeRequest()) return;
  if (route_->respond) {
    respondWithRoute(*route_->respond);
    return;
  }
  if (!connectUpstream(false)) {
    respondLocally(503, "no_endpoint", "no endpoint of upstream '" + route_->upstream + "' is available");
  }
}

void Exchange::reject(int status, const char* reason_token, const std::string& message) {
  record_.path = request_.target.substr(0, request_.target.find('?'));
  respondLocally(status, reason_token, message);
}

void Exchange::refuseRequestBody(int status, const char* reason_token, const std::string& message) {
  if (finished_) return;
  if (upstream_) {
    worker_.pools().discard(upstream_);
    upstream_ = nullptr;
  }
  if (!response_started_) {
    respondLocally(status, reason_token, message);
    return;
  }
  record_.error = reason_token;
  downstream_.abortResponse();
  finish("client");
}

bool Exchange::routeRequest() {
  std::string authority;
  std::string raw_path;
  if (!splitTarget(request_.target, authority, raw_path, query_)) {
    record_.path = request_.target;
    respondLocally(400, "bad_request_target", "the request target is not a valid origin or absolute form");
    return false;
  }
  PathVerdict verdict = normalizePath(raw_path, worker_.config().encoded_slashes, path_);
  record_.path = verdict == PathVerdict::ok ? path_ : raw_path;
  if (verdict == PathVerdict::malformed) {
    respondLocally(400, "bad_request_path", "the request path is malformed");
    return false;
  }
  if (verdict == PathVerdict::encoded_slash) {
    respondLocally(400, "encoded_slash", "the path holds an encoded slash, backslash or NUL");
    return false;
  }

  // An absolute-form target names the host itself (RFC 9112 3.2.2).
  const std::string* host_header = findHeader(request_.headers, "host");
  host_ = !authority.empty() ? authority : host_header ? *host_header : "";

  RequestFacts facts;
  facts.method = request_.method;
  facts.path = path_;
  facts.host = host_;
  facts.query = query_;
  facts.headers = &request_.headers;
  route_ = router_->route(facts);
  if (!route_) {
    respondLocally(404, "no_route", "no route matches this request");
    return false;
  }
  record_.route = route_->name;
  return true;
}

bool Exchange::connectUpstream(bool fresh) {
  record_.upstream = route_->upstream;
  upstream_ = worker_.pools().acquire(route_->upstream, fresh);
  if (!upstream_) return false;
  record_.endpoint = upstream_->endpoint().endpoint.text();

  bool no_response_body = request_.method == "HEAD";
  upstream_->attach(this, no_response_body);
  std::string head = upstreamRequestHead();
  upstream_->send(head.data(), head.size());
  return true;
}

std::string Exchange::upstreamRequestHead() const {
  const Rewrite& rewrite = route_->rewrite;
  std::string path = path_;
  if (!rewrite.strip_prefix.empty() && path.compare(0, rewrite.strip_prefix.size(), rewrite.strip_prefix) == 0) {
    path = path.substr(rewrite.strip_prefix.size());
    if (path.empty() || path[0] != '/') path = "/" + path;
  }
  if (!rewrite.add_prefix.empty()) {
    std::string prefix = rewrite.add_prefix;
    if (prefix.back() == '/' && path[0] == '/') prefix.pop_back();
    path = prefix + path;
  }
  path = upstream_->endpoint().endpoint.path_prefix + path;

  std::string head;
  head.reserve(512);
  head += request_.method;
  head += ' ';
  head += path;
  if (!query_.empty()) {
    head += '?';
    head += query_;
  }
  head += " HTTP/1.1\r\n";

  HeaderList headers = request_.headers;
  removeConnectionFields(headers);
  for (const std::string& name : rewrite.remove_headers) removeHeader(headers, name);
  for (const auto& [name, value] : rewrite.set_headers) setHeader(headers, name, value);

  // Forwarding headers: a trusted peer's are kept and appended to; anyone
  // else's are replaced, so a client cannot forge its address.
  if (!client_.trusted) {
    for (const char* name : {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip", "forwarded"}) {
      removeHeader(headers, name);
    }
  }
  const std::string* forwarded_for = findHeader(headers, "x-forwarded-for");
  std::string chain = forwarded_for ? *forwarded_for + ", " + client_.address : client_.address;
  setHeader(headers, "X-Forwarded-For", chain);
  if (!findHeader(headers, "x-forwarded-proto")) headers.emplace_back("X-Forwarded-Proto", "http");
  if (!findHeader(headers, "x-request-id")) headers.emplace_back("X-Request-Id", record_.request_id);
  if (!findHeader(headers, "host")) headers.emplace_back("Host", host_.empty() ? upstream_->endpoint().endpoint.text() : host_);

  for (const auto& [name, value] : headers) appendHeader(head, name, value);
  if (request_.chunked) head += "Transfer-Encoding: chunked\r\n";
  else if (request_.content_length) head += "Content-Length: " + std::to_string(*request_.content_length) + "\r\n";
  head += "\r\n";
  return head;
}

void Exchange::requestBody(const char* data, size_t length) {
  record_.bytes_in += length;
  if (!upstream_ || finished_ || length == 0) return;

  if (request_.chunked) {
    char size_line[24];
    int size_length = snprintf(size_line, sizeof size_line, "%zx\r\n", length);
    upstream_->send(size_line, static_cast<size_t>(size_length));
    upstream_->send(data, length);
    upstream_->send("\r\n", 2);
  } else {
    upstream_->send(data, length);
  }
  if (upstream_->backlog() > kUpstreamHighWatermark) downstream_.pauseRequestBody(true);
}

void Exchange::requestEnd(const HeaderList& trailers) {
  request_complete_ = true;
  if (!upstream_ || finished_ || !request_.chunked) return;

  std::string last = "0\r\n";
  for (const auto& [name, value] : trailers) {
    // Fields that frame or route a message have no place in a trailer section.
    if (isHopByHop(name) || equalsIgnoreCase(name, "host")) continue;
    appendHeader(last, name, value);
  }
  last += "\r\n";
  upstream_->send(last.data(), last.size());
}

void Exchange::onUpstreamWritable() {
  if (upstream_ && upstream_->backlog() <= kUpstreamHighWatermark) downstream_.pauseRequestBody(false);
}

void Exchange::downstreamWritable() {
  if (upstream_ && downstream_.responseBacklog() <= kDownstreamHighWatermark) upstream_->setReading(true);
}

void Exchange::onInformational(const ResponseHead& head) {
  // 100 Continue and 103 Early Hints mean nothing to an HTTP/1.0 client.
  if (request_.version_minor >= 1) downstream_.sendInformational(head);
}

void Exchange::onResponseHead(ResponseHead& head, bool has_body) {
  response_started_ = true;
  response_has_body_ = has_body;
  record_.status = head.status;
  if (worker_.config().debug_headers) {
    head.headers.emplace_back("X-Strangler-Route", route_->name);
    head.headers.emplace_back("X-Strangler-Rules-Version", std::to_string(router_->version()));
  }
  downstream_.sendResponseHead(head, has_body);
}

void Exchange::onResponseBody(const char* data, size_t length) {
  record_.bytes_out += length;
  downstream_.sendResponseBody(data, length);
  if (upstream_ && downstream_.responseBacklog() > kDownstreamHighWatermark) upstream_->setReading(false);
}

void Exchange::onResponseEnd(UpstreamConnection* connection, const HeaderList& trailers,
                             bool upstream_keeps_alive) {
  upstream_ = nullptr;
  worker_.pools().release(connection, upstream_keeps_alive && request_complete_);
  downstream_.sendResponseEnd(trailers);
  finish("");
}

void Exchange::onUpstreamFailure(UpstreamFailure failure, bool anything_received) {
  bool was_reused = upstream_ && upstream_->reused();
  upstream_ = nullptr;

  // A kept-alive connection may have been closed by the upstream just as the
  // request went out; a request without a body is safe to send once more.
  bool retryable = was_reused && !anything_received && !response_started_ && !request_.hasBody() && !retried_;
  if (retryable) {
    retried_ = true;
    if (connectUpstream(true)) return;
  }

  record_.error = failureToken(failure);
  if (response_started_) {
    record_.terminated_by = "upstream";
    downstream_.abortResponse();
    finish("upstream");
    return;
  }
  bool timeout = failure == UpstreamFailure::connect_timeout || failure == UpstreamFailure::response_timeout;
  std::string message = "upstream '" + route_->upstream + "' " +
                        (timeout ? "timed out" : failure == UpstreamFailure::bad_response
                                                     ? "sent a malformed response"
                                                     : "refused or reset the connection");
  respondLocally(timeout ? 504 : 502, failureToken(failure), message);
}

void Exchange::downstreamAborted() {
  if (finished_) return;
  if (upstream_) {
    worker_.pools().discard(upstream_);
    upstream_ = nullptr;
  }
  if (record_.error.empty()) record_.error = "client_aborted";
  finish("client");
}

void Exchange::respondLocally(int status, const char* reason_token, const std::string& message,
                              const HeaderList& extra_headers) {
  if (record_.error.empty()) record_.error = reason_token;
  JsonObjectWriter json;
  json.field("error", message).field("request_id", record_.request_id);
  std::string body = json.finish();
  body += '\n';

  ResponseHead head;
  head.status = status;
  head.reason = reasonPhrase(status);
  head.headers = extra_headers;
  head.headers.emplace_back("Content-Type", "application/json");
  head.content_length = body.size();
  record_.status = status;
  response_started_ = true;

  bool has_body = request_.method != "HEAD";
  downstream_.sendResponseHead(head, has_body);
  if (has_body) {
    record_.bytes_out += body.size();
    downstream_.sendResponseBody(body.data(), body.size());
  }
  downstream_.sendResponseEnd({});
  finish("proxy");
}

void Exchange::respondWithRoute(const Respond& respond) {
  ResponseHead head;
  head.status = respond.status;
  head.reason = reasonPhrase(respond.status);
  head.headers = respond.headers;
  bool body_allowed = respond.status != 204 && respond.status != 304;
  head.content_length = body_allowed ? respond.body.size() : 0;
  record_.status = respond.status;
  response_started_ = true;

  bool has_body = body_allowed && request_.method != "HEAD";
  downstream_.sendResponseHead(head, has_body);
  if (has_body && !respond.body.empty()) {
    record_.bytes_out += respond.body.size();
    downstream_.sendResponseBody(respond.body.data(), respond.body.size());
  }
  downstream_.sendResponseEnd({});
  finish("");
}

void Exchange::finish(const char* terminated_by) {
  if (finished_) return;
  finished_ = true;
  if (record_.terminated_by.empty() && terminated_by[0] != '\0') record_.terminated_by = terminated_by;
  record_.duration_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started_).count();
  worker_.accessLog().write(record_);
  downstream_.exchangeFinished();
}

}  // namespace strangler
