// The access log: one JSON line per request, written with one write().
#include "worker/access_log.h"

#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "shared/json_writer.h"
#include "shared/process_log.h"

namespace strangler {

bool AccessLog::open(const Config& config, int worker_slot, std::string& error) {
  worker_slot_ = worker_slot;
  switch (config.access_log) {
    case AccessLogTarget::off:
      fd_ = -1;
      return true;
    case AccessLogTarget::stdout_stream:
      fd_ = STDOUT_FILENO;
      return true;
    case AccessLogTarget::file:
      fd_ = ::open(config.access_log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd_ < 0) {
        error = "cannot open access log " + config.access_log_path + ": " + strerror(errno);
        return false;
      }
      owns_fd_ = true;
      return true;
  }
  return true;
}

AccessLog::~AccessLog() {
  if (owns_fd_ && fd_ >= 0) close(fd_);
}

std::string AccessLog::render(const AccessRecord& record, size_t path_limit) const {
  bool truncated = record.path.size() > path_limit;
  JsonObjectWriter line;
  line.field("ts", plog::timestampNow())
      .field("request_id", record.request_id)
      .field("method", record.method)
      .field("path", truncated ? record.path.substr(0, path_limit) + "..." : record.path)
      .field("protocol", record.protocol)
      .field("status", record.status)
      .field("bytes_in", record.bytes_in)
      .field("bytes_out", record.bytes_out)
      .field("duration_ms", record.duration_ms)
      .field("route", record.route)
      .field("upstream", record.upstream)
      .field("endpoint", record.endpoint)
      .field("rules_version", record.rules_version)
      .field("client", record.client)
      .field("worker", worker_slot_);
  if (!record.error.empty()) line.field("error", record.error);
  if (!record.terminated_by.empty()) line.field("terminated_by", record.terminated_by);
  if (truncated) line.field("truncated", true);
  std::string text = line.finish();
  text += '\n';
  return text;
}

void AccessLog::write(const AccessRecord& record) {
  if (fd_ < 0) return;

  // A pipe write of at most PIPE_BUF bytes is atomic. The path is the only
  // field a client can make long, so it is cut (and marked) to fit.
  std::string text = render(record, record.path.size());
  if (text.size() > PIPE_BUF) {
    size_t excess = text.size() - PIPE_BUF;
    size_t limit = record.path.size() > excess + 64 ? record.path.size() - excess - 64 : 0;
    text = render(record, limit);
  }

  ssize_t written;
  do {
    written = ::write(fd_, text.data(), text.size());
  } while (written < 0 && errno == EINTR);
}

}  // namespace strangler
