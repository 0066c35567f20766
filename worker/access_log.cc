// The access log: one JSON line per request, written in batches of whole lines.
#include "worker/access_log.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "shared/json_writer.h"
#include "shared/process_log.h"

namespace strangler {
namespace {

// Appends plog::timestampNow()'s "2026-12-04T17:18:57.123Z", with the part
// up to the seconds formatted once a second rather than for every line.
void appendTimestamp(std::string& out) {
  static time_t cached_second = -1;
  static char cached[24];
  timeval now;
  gettimeofday(&now, nullptr);
  if (now.tv_sec != cached_second) {
    struct tm utc;
    gmtime_r(&now.tv_sec, &utc);
    if (strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &utc) == 0) {
      out += plog::timestampNow();
      return;
    }
    cached_second = now.tv_sec;
  }
  int milliseconds = static_cast<int>(now.tv_usec / 1000);
  out += cached;
  char fraction[5] = {'.', static_cast<char>('0' + milliseconds / 100), static_cast<char>('0' + milliseconds / 10 % 10),
                      static_cast<char>('0' + milliseconds % 10), 'Z'};
  out.append(fraction, sizeof fraction);
}

// The line's JSON object, written as JsonObjectWriter would write it, without
// escaping the fixed field names again for every line.
class Line {
 public:
  explicit Line(std::string& out) : out_(out) {}

  void name(const char* key) {
    out_ += first_ ? "{\"" : ",\"";
    first_ = false;
    out_ += key;
    out_ += "\":";
  }
  void text(const char* key, std::string_view value) {
    name(key);
    out_ += '"';
    appendJsonEscaped(out_, value);
    out_ += '"';
  }
  void number(const char* key, uint64_t value, bool negative = false) {
    name(key);
    char digits[24];
    size_t count = 0;
    do {
      digits[count++] = static_cast<char>('0' + value % 10);
      value /= 10;
    } while (value != 0);
    if (negative) out_ += '-';
    while (count > 0) out_ += digits[--count];
  }
  void signedNumber(const char* key, int64_t value) {
    if (value < 0) number(key, static_cast<uint64_t>(-(value + 1)) + 1, true);
    else number(key, static_cast<uint64_t>(value));
  }
  void milliseconds(const char* key, double value) {
    name(key);
    char number[32];
    snprintf(number, sizeof number, "%.3f", value);
    out_ += number;
  }
  void finish() { out_ += first_ ? "{}" : "}"; }

 private:
  std::string& out_;
  bool first_ = true;
};

}  // namespace

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
  std::string cut;
  if (truncated) cut = std::string(record.path.substr(0, path_limit)) + "...";
  std::string text;
  text.reserve(448 + std::min(record.path.size(), path_limit));
  Line line(text);
  line.name("ts");
  text += '"';
  appendTimestamp(text);
  text += '"';
  line.text("request_id", record.request_id);
  line.text("method", record.method);
  line.text("path", truncated ? std::string_view(cut) : std::string_view(record.path));
  line.text("protocol", record.protocol);
  line.signedNumber("status", record.status);
  line.number("bytes_in", record.bytes_in);
  line.number("bytes_out", record.bytes_out);
  line.milliseconds("duration_ms", record.duration_ms);
  line.text("route", record.route);
  line.text("upstream", record.upstream);
  line.text("endpoint", record.endpoint);
  line.number("rules_version", record.rules_version);
  line.text("client", record.client);
  line.signedNumber("worker", worker_slot_);
  if (!record.jsonrpc_method.empty()) line.text("jsonrpc_method", record.jsonrpc_method);
  if (!record.error.empty()) line.text("error", record.error);
  if (!record.terminated_by.empty()) line.text("terminated_by", record.terminated_by);
  line.text("termination", record.termination);
  if (truncated) {
    line.name("truncated");
    text += "true";
  }
  line.finish();
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
