// The request an exchange sends upstream, as strings of its own or as views.
#include "worker/upstream_stream.h"

namespace strangler {

UpstreamHeadView::UpstreamHeadView(const UpstreamRequest& request)
    : method(request.method),
      path(request.target),
      content_length(request.content_length),
      length_unknown(request.length_unknown),
      trailers_accepted(request.trailers_accepted) {
  fields.reserve(request.headers.size());
  for (const auto& [name, value] : request.headers) fields.emplace_back(name, value);
}

void UpstreamHeadView::clear() {
  method = {};
  path = {};
  query = {};
  fields.clear();
  content_length.reset();
  length_unknown = false;
  trailers_accepted = false;
  made_path.clear();
  made_forwarded_for.clear();
  made_forwarded.clear();
  made_host.clear();
}

UpstreamRequest UpstreamHeadView::copy() const {
  UpstreamRequest request;
  request.method = method;
  request.target = path;
  if (!query.empty()) {
    request.target += '?';
    request.target += query;
  }
  request.headers.reserve(fields.size());
  for (const auto& [name, value] : fields) request.headers.emplace_back(name, value);
  request.content_length = content_length;
  request.length_unknown = length_unknown;
  request.trailers_accepted = trailers_accepted;
  return request;
}

}  // namespace strangler
