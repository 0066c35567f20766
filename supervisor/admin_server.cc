// The supervisor's admin HTTP server.
#include "supervisor/admin_server.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include <cstring>

namespace strangler {
namespace {

void reply(evhttp_request* request, int status, const char* reason, const char* type, const std::string& body) {
  evhttp_add_header(evhttp_request_get_output_headers(request), "Content-Type", type);
  evbuffer* out = evbuffer_new();
  if (evhttp_request_get_command(request) != EVHTTP_REQ_HEAD) evbuffer_add(out, body.data(), body.size());
  evhttp_send_reply(request, status, reason, out);
  evbuffer_free(out);
}

}  // namespace

AdminServer::AdminServer(event_base* base, AdminState state) : http_(evhttp_new(base)), state_(std::move(state)) {
  evhttp_set_allowed_methods(http_, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                        EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS);
  evhttp_set_gencb(http_, &AdminServer::onRequest, this);
  evhttp_set_timeout(http_, 10);
}

AdminServer::~AdminServer() { evhttp_free(http_); }

bool AdminServer::listen(const ListenAddress& address, std::string& error) {
  if (evhttp_bind_socket(http_, address.host.c_str(), address.port) != 0) {
    error = "cannot listen on admin address " + address.text();
    return false;
  }
  return true;
}

void AdminServer::onRequest(evhttp_request* request, void* self) { static_cast<AdminServer*>(self)->handle(request); }

void AdminServer::handle(evhttp_request* request) {
  evhttp_cmd_type method = evhttp_request_get_command(request);
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(request);
  const char* raw_path = uri ? evhttp_uri_get_path(uri) : nullptr;
  std::string path = raw_path ? raw_path : "";

  bool known = path == "/healthz" || path == "/readyz" || path == "/rules" || path == "/metrics";
  if (!known) {
    reply(request, 404, "Not Found", "application/json", "{\"error\":\"no such admin endpoint\"}\n");
    return;
  }
  if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
    evhttp_add_header(evhttp_request_get_output_headers(request), "Allow", "GET, HEAD");
    reply(request, 405, "Method Not Allowed", "application/json", "{\"error\":\"only GET and HEAD\"}\n");
    return;
  }

  if (path == "/healthz") {
    reply(request, 200, "OK", "text/plain", "ok\n");
  } else if (path == "/readyz") {
    std::string reason = state_.not_ready_reason();
    std::string note = reason.empty() && state_.ready_note ? state_.ready_note() : "";
    if (reason.empty()) reply(request, 200, "OK", "text/plain", note.empty() ? "ready\n" : "ready; " + note + "\n");
    else reply(request, 503, "Service Unavailable", "text/plain", "not ready: " + reason + "\n");
  } else if (path == "/rules") {
    reply(request, 200, "OK", "application/json", state_.rules_json());
  } else {
    reply(request, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", state_.metrics_text());
  }
}

}  // namespace strangler
