// The process log: JSON lines on stderr with ts, level, msg, pid and role.
#include "shared/process_log.h"

#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>

namespace strangler::plog {
namespace {

struct State {
  std::string role = "strangler";
  Level level = Level::info;
};

State& state() {
  static State instance;
  return instance;
}

const char* levelName(Level level) {
  switch (level) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
  }
  return "info";
}

std::string quoted(std::string_view text) {
  std::string json = "\"";
  appendJsonEscaped(json, text);
  json += '"';
  return json;
}

}  // namespace

bool parseLevel(std::string_view text, Level& level) {
  for (Level candidate : {Level::debug, Level::info, Level::warn, Level::error}) {
    if (text == levelName(candidate)) {
      level = candidate;
      return true;
    }
  }
  return false;
}

void setup(std::string role, Level level) {
  state().role = std::move(role);
  state().level = level;
}

bool enabled(Level level) { return level >= state().level; }

Field::Field(std::string_view k, std::string_view v) : key(k), json(quoted(v)) {}
Field::Field(std::string_view k, const char* v) : key(k), json(quoted(v ? v : "")) {}
Field::Field(std::string_view k, const std::string& v) : key(k), json(quoted(v)) {}
Field::Field(std::string_view k, long long v) : key(k), json(std::to_string(v)) {}
Field::Field(std::string_view k, unsigned long long v) : key(k), json(std::to_string(v)) {}
Field::Field(std::string_view k, long v) : key(k), json(std::to_string(v)) {}
Field::Field(std::string_view k, unsigned long v) : key(k), json(std::to_string(v)) {}
Field::Field(std::string_view k, int v) : key(k), json(std::to_string(v)) {}
Field::Field(std::string_view k, unsigned v) : key(k), json(std::to_string(v)) {}
Field::Field(std::string_view k, bool v) : key(k), json(v ? "true" : "false") {}

Field Field::rawJson(std::string_view k, std::string json) {
  Field field(k, "");
  field.json = std::move(json);
  return field;
}

std::string timestampNow() {
  struct timeval now;
  gettimeofday(&now, nullptr);
  struct tm utc;
  gmtime_r(&now.tv_sec, &utc);
  char text[40];
  size_t length = strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  snprintf(text + length, sizeof text - length, ".%03dZ", static_cast<int>(now.tv_usec / 1000));
  return text;
}

void write(Level level, std::string_view msg, std::initializer_list<Field> fields) {
  JsonObjectWriter line;
  line.field("ts", timestampNow())
      .field("level", levelName(level))
      .field("msg", msg)
      .field("pid", static_cast<int64_t>(getpid()))
      .field("role", state().role);
  for (const Field& extra : fields) line.rawField(extra.key, extra.json);
  std::string text = line.finish();
  text += '\n';

  // One write per line, so lines of several processes sharing stderr never mix.
  ssize_t ignored = ::write(STDERR_FILENO, text.data(), text.size());
  (void)ignored;
}

}  // namespace strangler::plog
