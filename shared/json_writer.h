// Builds one JSON object as text, for log lines and small JSON answers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace strangler {

// Appends `text` to `out` as the inside of a JSON string: quotes, backslashes
// and control bytes are escaped; invalid UTF-8 bytes become U+FFFD so that a
// hostile header value can never break the line it is logged on.
void appendJsonEscaped(std::string& out, std::string_view text);

// Writes a flat JSON object field by field: `{"a":1,"b":"x"}`.
class JsonObjectWriter {
 public:
  JsonObjectWriter();

  JsonObjectWriter& field(std::string_view key, std::string_view value);
  JsonObjectWriter& field(std::string_view key, const char* value);
  JsonObjectWriter& field(std::string_view key, int64_t value);
  JsonObjectWriter& field(std::string_view key, uint64_t value);
  JsonObjectWriter& field(std::string_view key, int value);
  JsonObjectWriter& field(std::string_view key, double value);
  JsonObjectWriter& field(std::string_view key, bool value);
  // Inserts `json` as it is: the caller promises it is valid JSON.
  JsonObjectWriter& rawField(std::string_view key, std::string_view json);

  // Closes the object and returns its text.
  std::string finish();

 private:
  void key(std::string_view name);

  std::string text_;
  bool first_ = true;
};

}  // namespace strangler
