// The access log: one JSON line per request, written in batches of whole lines.
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
  flush();
  if (owns_fd_ && fd_ >= 0) close(fd_);
}

void AccessLog::attach(event_base* base) {
  flush_event_ = evtimer_new(base, &AccessLog::onFlush, this);
  event_priority_set(flush_event_, 0);
}

void AccessLog::detach() {
  flush();
  if (flush_event_) event_free(flush_event_);
  flush_event_ = nullptr;
}

void AccessLog::onFlush(evutil_socket_t, short, void* self) { static_cast<AccessLog*>(self)->flush(); }

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
  if (!record.jsonrpc_method.empty()) line.field("jsonrpc_method", record.jsonrpc_method);
  if (!record.error.empty()) line.field("error", record.error);
  if (!record.terminated_by.empty()) line.field("terminated_by", record.terminated_by);
  line.field("termination", record.termination);
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

  if (buffer_.size() + text.size() > PIPE_BUF) flush();
  buffer_ += text;
  if (!flush_event_) {
    flush();
    return;
  }
  // A zero timeout fires after the events already due in this loop pass, so
  // the lines of one busy pass leave together.
  if (!evtimer_pending(flush_event_, nullptr)) {
    timeval now = {0, 0};
    evtimer_add(flush_event_, &now);
  }
}

void AccessLog::flush() {
  if (buffer_.empty() || fd_ < 0) return;
  ssize_t written;
  do {
    written = ::write(fd_, buffer_.data(), buffer_.size());
  } while (written < 0 && errno == EINTR);
  buffer_.clear();
}

}  // namespace strangler
