// The process log: JSON lines on stderr with ts, level, msg, pid and role.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shared/json_writer.h"

namespace strangler::plog {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

// Parses "debug", "info", "warn" or "error"; false for anything else.
bool parseLevel(std::string_view text, Level& level);

// Sets the role ("supervisor", "worker", "cli") and level for this process.
void setup(std::string role, Level level);

bool enabled(Level level);

// One extra key of a log line, already rendered as JSON.
struct Field {
  Field(std::string_view key, std::string_view value);
  Field(std::string_view key, const char* value);
  Field(std::string_view key, const std::string& value);
  Field(std::string_view key, long long value);
  Field(std::string_view key, unsigned long long value);
  Field(std::string_view key, long value);
  Field(std::string_view key, unsigned long value);
  Field(std::string_view key, int value);
  Field(std::string_view key, unsigned value);
  Field(std::string_view key, bool value);

  // A value that is already JSON text (an object, say), inserted as it is.
  static Field rawJson(std::string_view key, std::string json);

  std::string key;
  std::string json;
};

void write(Level level, std::string_view msg, std::initializer_list<Field> fields = {});

inline void debug(std::string_view msg, std::initializer_list<Field> fields = {}) {
  if (enabled(Level::debug)) write(Level::debug, msg, fields);
}
inline void info(std::string_view msg, std::initializer_list<Field> fields = {}) {
  if (enabled(Level::info)) write(Level::info, msg, fields);
}
inline void warn(std::string_view msg, std::initializer_list<Field> fields = {}) {
  if (enabled(Level::warn)) write(Level::warn, msg, fields);
}
inline void error(std::string_view msg, std::initializer_list<Field> fields = {}) {
  write(Level::error, msg, fields);
}

// RFC 3339 UTC timestamp with milliseconds, e.g. 2026-12-04T14:46:33.123Z.
std::string timestampNow();

}  // namespace strangler::plog
