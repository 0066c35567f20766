// One request and its response: routing, local answers, upstream exchange.
#include "worker/exchange.h"

#include <event2/bufferevent.h>

#include <algorithm>

#include "shared/http_path.h"
#include "shared/json_writer.h"
#include "worker/rate_limiter.h"
#include "worker/upstream_pool.h"
#include "worker/worker.h"

namespace strangler {
namespace {

// Response bytes queued toward the client before the upstream is paused.
constexpr size_t kDownstreamHighWatermark = 256 * 1024;
constexpr size_t kUpstreamHighWatermark = 256 * 1024;
// Times a request refused unprocessed by an HTTP/2 upstream is sent again.
constexpr int kMaxRefusals = 2;
// The fields the proxy adds to a forwarded request: X-Forwarded-For, -Proto
// and -Host, X-Real-IP, Forwarded, X-Request-Id, Host, Connection, Upgrade.
constexpr size_t kProxyFieldsAtMost = 9;

// The fields that say who the client is, which only a trusted peer may send on.
const char* const kForwardingFields[] = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
                                         "x-real-ip", "forwarded"};

bool isForwardingField(std::string_view name) {
  // By length first, as for the hop-by-hop fields: this runs for every field of an untrusted peer.
  switch (name.size()) {
    case 9: return equalsIgnoreCase(name, "x-real-ip") || equalsIgnoreCase(name, "forwarded");
    case 15: return equalsIgnoreCase(name, "x-forwarded-for");
    case 16: return equalsIgnoreCase(name, "x-forwarded-host");
    case 17: return equalsIgnoreCase(name, "x-forwarded-proto");
    default: return false;
  }
}

bool removedByRoute(const Rewrite& rewrite, std::string_view name) {
  return std::any_of(rewrite.remove_headers.begin(), rewrite.remove_headers.end(),
                     [&](const std::string& removed) { return equalsIgnoreCase(name, removed); });
}

void removeField(std::vector<FieldView>& fields, std::string_view name) {
  fields.erase(std::remove_if(fields.begin(), fields.end(),
                              [&](const FieldView& field) { return equalsIgnoreCase(field.first, name); }),
               fields.end());
}

// The fields the forwarding step adds or extends, as the fields so far have them.
struct ForwardingFields {
  const FieldView* forwarded_for = nullptr;  // the first X-Forwarded-For
  const FieldView* forwarded = nullptr;      // the first Forwarded
  bool forwarded_proto = false;
  bool forwarded_host = false;
  bool real_ip = false;
  bool request_id = false;
  bool host = false;
};

// One pass, by length first: most fields are none of these.
ForwardingFields findForwardingFields(const std::vector<FieldView>& fields) {
  ForwardingFields found;
  for (const FieldView& field : fields) {
    std::string_view name = field.first;
    switch (name.size()) {
      case 4: found.host = found.host || equalsIgnoreCase(name, "host"); break;
      case 9:
        if (equalsIgnoreCase(name, "forwarded")) {
          if (!found.forwarded) found.forwarded = &field;
        } else {
          found.real_ip = found.real_ip || equalsIgnoreCase(name, "x-real-ip");
        }
        break;
      case 12: found.request_id = found.request_id || equalsIgnoreCase(name, "x-request-id"); break;
      case 15:
        if (!found.forwarded_for && equalsIgnoreCase(name, "x-forwarded-for")) found.forwarded_for = &field;
        break;
      case 16:
        found.forwarded_host = found.forwarded_host || equalsIgnoreCase(name, "x-forwarded-host");
        break;
      case 17:
        found.forwarded_proto = found.forwarded_proto || equalsIgnoreCase(name, "x-forwarded-proto");
        break;
      default: break;
    }
  }
  return found;
}

// Every earlier field of that name goes; the new one comes last.
void setField(std::vector<FieldView>& fields, std::string_view name, std::string_view value) {
  removeField(fields, name);
  fields.emplace_back(name, value);
}

std::string protocolName(const RequestHead& request) {
  if (request.version_major == 2) return "HTTP/2";
  // The usual ones without formatting numbers.
  if (request.version_major == 1 && request.version_minor == 1) return "HTTP/1.1";
  if (request.version_major == 1 && request.version_minor == 0) return "HTTP/1.0";
  return "HTTP/" + std::to_string(request.version_major) + "." + std::to_string(request.version_minor);
}

// The access log's termination token: who ended the exchange ("" when it
// ended normally) and how far it had got.
const char* terminationToken(const std::string& ended_by, const std::string& error, bool response_started) {
  if (ended_by.empty()) return "ok";
  if (error == "upstream_connect_refused" || error == "upstream_connect_timeout") return "upstream_connect";
  // Local answers come before any response byte; one for an upstream failure
  // (502, 504) was the upstream's doing.
  if (ended_by == "proxy") {
    if (error == "drain_timeout") return response_started ? "proxy_body" : "proxy_headers";
    if (error.compare(0, 9, "upstream_") == 0) return "upstream_headers";
    return error == "no_endpoint" ? "proxy_connect" : "proxy_headers";
  }
  if (ended_by == "upstream") return response_started ? "upstream_body" : "upstream_headers";
  return response_started ? "client_body" : "client_headers";
}

}  // namespace

Exchange::Exchange(Worker& worker, DownstreamSink& downstream, RequestHead request, const ClientInfo& client)
    : worker_(worker),
      downstream_(downstream),
      request_(std::move(request)),
      client_(client),
      router_(worker.router()),
      started_(worker.clock().now()) {
  record_.request_id = std::string_view(own_request_id_, worker.nextRequestId(own_request_id_));
  record_.method = request_.method;
  record_.protocol = protocolName(request_);
  record_.client = client_.address;
  record_.rules_version = router_->version();
  worker_.metrics().exchangeStarted();
  const std::string* client_id = findHeader(request_.headers, "x-request-id");
  if (client_id && !client_id->empty() && client_id->size() <= 200) client_request_id_ = *client_id;
  trailers_accepted_ = headerHasToken(request_.headers, "te", "trailers");
}

Exchange::~Exchange() {
  if (upstream_) worker_.pools().discard(upstream_);
}

void Exchange::start() {
  if (!routeRequest()) return;
  // The body decides the route once it has been read: see routeByBody().
  if (inspecting_) return;
  if (!admitByRateLimit()) return;
  proceed();
}

void Exchange::proceed() {
  if (route_->respond) {
    respondWithRoute(*route_->respond);
    return;
  }
  if (!connectUpstream(false)) {
    respondLocally(503, "no_endpoint", "no endpoint of upstream '" + route_->upstream + "' is available");
  }
}

void Exchange::reject(int status, const char* reason_token, const std::string& message) {
  record_.path = std::string_view(request_.target).substr(0, request_.target.find('?'));
  respondLocally(status, reason_token, message);
}

void Exchange::refuseRequestBody(int status, const char* reason_token, const std::string& message) {
  if (finished_) return;
  inspecting_ = false;
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
  std::string_view raw_path;
  if (!splitRequestTarget(request_.target, authority, raw_path, query_)) {
    record_.path = request_.target;
    respondLocally(400, "bad_request_target", "the request target is not a valid origin or absolute form");
    return false;
  }
  PathVerdict verdict = normalizePath(raw_path, worker_.config().encoded_slashes, normalized_path_, path_);
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
  if (!authority.empty()) setHeader(request_.headers, "Host", authority);

  HeadRoute head = router_->routeHead(requestFacts());
  head_route_ = head.route;
  bool inspectable = request_.hasBody() &&
                     !(request_.content_length && *request_.content_length > worker_.config().jsonrpc_max_body);
  if (head.needs_body && inspectable) {
    beginInspection();
    return true;
  }
  route_ = head.route;
  if (!route_) {
    respondLocally(404, "no_route", "no route matches this request");
    return false;
  }
  record_.route = route_->name;
  upgrade_requested_ = route_->websocket && headerHasToken(request_.headers, "upgrade", "websocket") &&
                       headerHasToken(request_.headers, "connection", "upgrade");
  return true;
}

RequestFacts Exchange::requestFacts() const {
  RequestFacts facts;
  facts.method = request_.method;
  facts.path = path_;
  facts.host = host_;
  facts.query = query_;
  facts.headers = &request_.headers;
  return facts;
}

bool Exchange::connectUpstream(bool fresh) {
  connect_attempts_++;
  record_.upstream = route_->upstream;
  upstream_ = worker_.pools().acquire(route_->upstream, fresh);
  if (!upstream_) return false;
  record_.endpoint = upstream_->endpoint().endpoint_text;

  bool no_response_body = request_.method == "HEAD";
  upstream_->attach(this, no_response_body);
  UpstreamHeadView& head = worker_.upstreamHead();
  upstreamHead(*route_, upstream_->endpoint().endpoint, std::nullopt, head);
  upstream_->sendHeadView(head);
  // An inspected body is sent again on a new connection after a failed connect.
  if (!held_.empty()) forwardBody(held_.data(), held_.size());
  if (request_complete_) upstream_->sendEnd(request_trailers_);
  return true;
}

void Exchange::upstreamHead(const Route& route, const Endpoint& endpoint, std::optional<size_t> part_length,
                            UpstreamHeadView& head) const {
  head.method = part_length ? std::string_view("POST") : std::string_view(request_.method);
  upstreamPath(route.rewrite, endpoint, head);
  head.query = query_;
  head.trailers_accepted = trailers_accepted_ && !part_length;

  // Room for every field at once: the client's, the route's and the proxy's own.
  head.fields.reserve(request_.headers.size() + route.rewrite.set_headers.size() + kProxyFieldsAtMost);
  // The body is in hand already: the client was told to send it, or it was read whole.
  bool drop_expect = part_length || continue_sent_;
  keepClientFields(route.rewrite, drop_expect, head.fields);
  addForwardingFields(endpoint, upgrade_requested_ && !part_length, head);

  if (part_length) head.content_length = *part_length;
  else if (request_.chunked) head.length_unknown = true;
  else if (request_.content_length) head.content_length = *request_.content_length;
}

void Exchange::upstreamPath(const Rewrite& rewrite, const Endpoint& endpoint, UpstreamHeadView& head) const {
  bool strips = !rewrite.strip_prefix.empty() &&
                path_.compare(0, rewrite.strip_prefix.size(), rewrite.strip_prefix) == 0;
  if (!strips && rewrite.add_prefix.empty() && endpoint.path_prefix.empty()) {
    head.path = path_;
    return;
  }

  std::string path(path_);
  if (strips) {
    path = path.substr(rewrite.strip_prefix.size());
    if (path.empty() || path[0] != '/') path = "/" + path;
  }
  if (!rewrite.add_prefix.empty()) {
    std::string prefix = rewrite.add_prefix;
    if (prefix.back() == '/' && path[0] == '/') prefix.pop_back();
    path = prefix + path;
  }
  head.made_path = endpoint.path_prefix + path;
  head.path = head.made_path;
}

void Exchange::keepClientFields(const Rewrite& rewrite, bool drop_expect,
                                std::vector<FieldView>& fields) const {
  std::vector<std::string_view> named = connectionNamedFields(request_.headers);
  for (const auto& [name, value] : request_.headers) {
    if (isConnectionField(name, named) || removedByRoute(rewrite, name)) continue;
    if (drop_expect && equalsIgnoreCase(name, "expect")) continue;
    // A client cannot forge its address, unless it is a trusted peer.
    if (!client_.trusted && isForwardingField(name)) continue;
    fields.emplace_back(name, value);
  }

  for (const auto& [name, value] : rewrite.set_headers) setField(fields, name, value);
  if (rewrite.set_headers.empty()) return;
  // What the route sets is filtered as the client's fields were.
  if (drop_expect) removeField(fields, "expect");
  if (!client_.trusted) {
    for (const char* name : kForwardingFields) removeField(fields, name);
  }
}

void Exchange::addForwardingFields(const Endpoint& endpoint, bool upgrade, UpstreamHeadView& head) const {
  std::vector<FieldView>& fields = head.fields;
  ForwardingFields found = findForwardingFields(fields);

  // A trusted peer's chains are kept and appended to.
  std::string_view chain = client_.address;
  if (found.forwarded_for) {
    head.made_forwarded_for.append(found.forwarded_for->second).append(", ").append(client_.address);
    chain = head.made_forwarded_for;
  }
  std::string& element = head.made_forwarded;
  if (found.forwarded) element.append(found.forwarded->second).append(", ");
  bool ipv6 = client_.address.find(':') != std::string::npos;
  element.append(ipv6 ? "for=\"[" : "for=").append(client_.address).append(ipv6 ? "]\"" : "");
  if (!found.forwarded) element.append(";proto=http");

  // Both are written anew, after the other fields.
  if (found.forwarded_for) removeField(fields, "x-forwarded-for");
  if (found.forwarded) removeField(fields, "forwarded");
  fields.emplace_back("X-Forwarded-For", chain);
  if (!found.forwarded_proto) fields.emplace_back("X-Forwarded-Proto", "http");
  if (!found.forwarded_host && !host_.empty()) fields.emplace_back("X-Forwarded-Host", host_);
  if (!found.real_ip) fields.emplace_back("X-Real-IP", client_.address);
  fields.emplace_back("Forwarded", element);
  if (!found.request_id) fields.emplace_back("X-Request-Id", requestId());
  if (!found.host) {
    if (host_.empty()) head.made_host = endpoint.text();
    fields.emplace_back("Host", host_.empty() ? std::string_view(head.made_host) : std::string_view(host_));
  }
  if (upgrade) {
    fields.emplace_back("Connection", "Upgrade");
    fields.emplace_back("Upgrade", "websocket");
  }
}

void Exchange::requestBody(const char* data, size_t length) {
  record_.bytes_in += length;
  if (inspecting_) {
    inspectBody(data, length);
    return;
  }
  if (!upstream_ || finished_ || length == 0) return;
  forwardBody(data, length);
}

void Exchange::forwardBody(const char* data, size_t length) {
  upstream_->sendBody(data, length);
  if (upstream_->backlog() > kUpstreamHighWatermark) downstream_.pauseRequestBody(true);
}

void Exchange::requestEnd(const HeaderList& trailers) {
  for (const auto& [name, value] : trailers) {
    // Fields that frame or route a message have no place in a trailer section.
    if (isHopByHop(name) || equalsIgnoreCase(name, "host")) continue;
    request_trailers_.emplace_back(name, value);
  }
  request_complete_ = true;
  if (inspecting_) {
    // Routing connects now, and a connect made after the end sends the end itself.
    inspecting_ = false;
    routeByBody();
    return;
  }
  if (upstream_ && !finished_) upstream_->sendEnd(request_trailers_);
}

void Exchange::onUpstreamWritable() {
  if (upstream_ && upstream_->backlog() <= kUpstreamHighWatermark) downstream_.pauseRequestBody(false);
}

void Exchange::downstreamWritable() {
  if (upstream_ && downstream_.responseBacklog() <= kDownstreamHighWatermark) upstream_->setReading(true);
}

void Exchange::onInformational(const ResponseHead& head) {
  // 100 Continue and 103 Early Hints mean nothing to an HTTP/1.0 client.
  if (request_.version_major >= 2 || request_.version_minor >= 1) downstream_.sendInformational(head);
}

void Exchange::onResponseHead(ResponseHead& head, bool has_body) {
  // No connect is retried now, so an inspected body need not be kept.
  held_ = {};
  std::string().swap(body_);
  jsonrpc_body_.reset();
  response_started_ = true;
  response_has_body_ = has_body;
  record_.status = head.status;
  if (!findHeader(head.headers, "x-request-id")) head.request_id = requestId();
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

void Exchange::onResponseEnd(UpstreamStream* stream, const HeaderList& trailers, bool upstream_keeps_alive) {
  upstream_ = nullptr;
  worker_.pools().release(stream, upstream_keeps_alive && request_complete_);
  downstream_.sendResponseEnd(trailers);
  finish("");
}

void Exchange::onUpgrade(UpstreamConnection* connection, const ResponseHead& head) {
  if (!upgrade_requested_) {
    // A 101 nobody asked for: the upstream is not speaking HTTP to us.
    onUpstreamFailure(UpstreamFailure::bad_response, true);
    return;
  }
  upstream_ = nullptr;
  bufferevent* tunnel = connection->releaseForTunnel();
  worker_.pools().discard(connection);
  response_started_ = true;
  record_.status = head.status;
  if (!downstream_.startTunnel(head, tunnel)) {
    bufferevent_free(tunnel);
    record_.error = "tunnel_not_supported";
    downstream_.abortResponse();
    finish("proxy");
    return;
  }
  finish("");
}

void Exchange::onUpstreamFailure(UpstreamFailure failure, bool anything_received) {
  bool was_reused = upstream_ && upstream_->reused();
  UpstreamStream* failed = upstream_;
  upstream_ = nullptr;

  // Nothing reached an endpoint that could not be connected to: another
  // endpoint of the same upstream may take the request.
  bool connect_failed = failure == UpstreamFailure::connect_refused || failure == UpstreamFailure::connect_timeout;
  if (connect_failed && failed) worker_.pools().markFailed(failed->endpoint());
  // Body bytes already streamed into the failed connection cannot be sent
  // again, unless they are all held (an inspected body).
  bool body_resendable = record_.bytes_in <= held_.size();
  if (connect_failed && body_resendable && connect_attempts_ < worker_.pools().endpointCount(route_->upstream)) {
    if (connectUpstream(true)) return;
  }

  // A kept-alive connection may have been closed by the upstream just as the
  // request went out; a request without a body is safe to send once more.
  bool retryable = was_reused && !anything_received && !response_started_ && !request_.hasBody() && !retried_;
  if (retryable) {
    retried_ = true;
    if (connectUpstream(true)) return;
  }

  // An HTTP/2 upstream that refused a stream (or left it out of its GOAWAY)
  // did not process it: any method may go again, on another session.
  bool refused = failure == UpstreamFailure::refused && !anything_received && body_resendable;
  if (refused && refusals_ < kMaxRefusals) {
    refusals_++;
    if (connectUpstream(false)) return;
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

void Exchange::cutByProxy(const char* reason_token) {
  if (finished_) return;
  if (upstream_) {
    worker_.pools().discard(upstream_);
    upstream_ = nullptr;
  }
  record_.error = reason_token;
  finish("proxy");
}

void Exchange::downstreamAborted() {
  if (finished_) return;
  if (upstream_) {
    worker_.pools().discard(upstream_);
    upstream_ = nullptr;
  }
  if (split_) split_->cancel();
  if (record_.error.empty()) record_.error = "client_aborted";
  finish("client");
}

bool Exchange::admitByRateLimit() {
  bool batch = jsonrpc_body_ && jsonrpc_body_->kind() == JsonRpcBody::Kind::batch;
  size_t calls = batch ? std::max<size_t>(jsonrpc_body_->calls().size(), 1) : 1;
  RateLimiter& limiter = worker_.rateLimiter();
  if (limiter.admit(static_cast<uint32_t>(calls))) return true;
  const RateLimiter::Refusal& refusal = limiter.refusal();
  respondLocally(refusal.status, refusal.reason_token, refusal.message, {{"Retry-After", "1"}});
  return false;
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
  // After a malformed request the connection's state cannot be trusted.
  head.close_downstream = status == 400;
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
  record_.termination = terminationToken(terminated_by, record_.error, response_started_);
  record_.duration_ms = std::chrono::duration<double, std::milli>(worker_.clock().now() - started_).count();
  countInMetrics();
  worker_.accessLog().write(record_);
  downstream_.exchangeFinished();
}

void Exchange::countInMetrics() {
  metrics::MetricsWriter& metrics = worker_.metrics();
  // The series of a route's own names is remembered by the worker; others
  // (a split batch names every route it took) are looked up by name.
  bool own_names = route_ && record_.route == route_->name &&
                   (record_.upstream.empty() || record_.upstream == route_->upstream);
  size_t series = own_names ? worker_.routeSeries(*router_, *route_, !record_.upstream.empty())
                            : metrics.routeSeriesId(record_.route, record_.upstream);
  metrics.exchangeFinished(series, record_.upstream, record_.status, record_.duration_ms, record_.error);
}

void Exchange::beginInspection() {
  inspecting_ = true;
  // A client waiting for 100 Continue would wait for an upstream that is not chosen yet.
  if (request_.version_minor >= 1 && headerHasToken(request_.headers, "expect", "100-continue")) {
    ResponseHead head;
    head.status = 100;
    head.reason = reasonPhrase(100);
    downstream_.sendInformational(head);
    continue_sent_ = true;
  }
}

void Exchange::inspectBody(const char* data, size_t length) {
  if (finished_) return;
  body_.append(data, length);
  if (body_.size() <= worker_.config().jsonrpc_max_body) return;

  // Over the limit: every jsonrpc condition is false; what was read goes on ahead of the rest.
  inspecting_ = false;
  goOnWhole(head_route_, body_);
}

void Exchange::routeByBody() {
  jsonrpc_body_ = std::make_unique<JsonRpcBody>(std::move(body_));
  std::string().swap(body_);
  JsonRpcPlan plan = planJsonRpc(*router_, requestFacts(), head_route_, *jsonrpc_body_,
                                 static_cast<size_t>(worker_.config().jsonrpc_max_batch));
  record_.jsonrpc_method = plan.methods;

  if (plan.action == JsonRpcPlan::Action::answer) {
    record_.error = plan.reason;
    sendJson(200, plan.answer);
    finish("proxy");
    return;
  }
  if (plan.action == JsonRpcPlan::Action::whole) {
    goOnWhole(plan.route, jsonrpc_body_->text());
    return;
  }

  if (!admitByRateLimit()) return;
  split_ = std::make_unique<JsonRpcSplit>(worker_.base(), worker_.pools(), *this, *jsonrpc_body_,
                                          plan.element_routes, worker_.config().jsonrpc_max_body);
  record_.route = split_->routeNames();
  record_.upstream = split_->upstreamNames();
  split_->start();
}

void Exchange::goOnWhole(const Route* route, std::string_view held) {
  route_ = route;
  if (!route_) {
    respondLocally(404, "no_route", "no route matches this request");
    return;
  }
  record_.route = route_->name;
  held_ = held;
  if (!admitByRateLimit()) return;
  proceed();
}

void Exchange::sendPartHead(const Route& route, UpstreamStream& stream, size_t length) {
  UpstreamHeadView& head = worker_.upstreamHead();
  upstreamHead(route, stream.endpoint().endpoint, length, head);
  stream.sendHeadView(head);
}

void Exchange::onSplitAnswered(const std::string& answer, const std::string& error) {
  if (finished_) return;
  if (!error.empty()) record_.error = error;
  sendJson(answer.empty() ? 204 : 200, answer);
  finish("");
}

// A JSON answer composed by the proxy; with an empty body, a 204.
void Exchange::sendJson(int status, const std::string& body) {
  ResponseHead head;
  head.status = status;
  head.reason = reasonPhrase(status);
  if (!body.empty()) {
    head.headers.emplace_back("Content-Type", "application/json");
    head.content_length = body.size();
  }
  head.request_id = requestId();
  record_.status = status;
  response_started_ = true;

  bool has_body = !body.empty() && request_.method != "HEAD";
  downstream_.sendResponseHead(head, has_body);
  if (has_body) {
    record_.bytes_out += body.size();
    downstream_.sendResponseBody(body.data(), body.size());
  }
  downstream_.sendResponseEnd({});
}

}  // namespace strangler
