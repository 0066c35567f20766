// Builds one JSON object as text, for log lines and small JSON answers.
#include "shared/json_writer.h"

#include <cstdio>

namespace strangler {
namespace {

// Length of the UTF-8 sequence starting at `text[at]`, or 0 when it is invalid.
size_t validUtf8Length(std::string_view text, size_t at) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  unsigned char lead = byte(at);
  size_t length = 0;
  uint32_t lowest = 0;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
    lowest = 0x80;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    lowest = 0x800;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    lowest = 0x10000;
  } else {
    return 0;
  }
  if (at + length > text.size()) return 0;

  uint32_t code = lead & (0x7F >> length);
  for (size_t i = 1; i < length; i++) {
    if ((byte(at + i) & 0xC0) != 0x80) return 0;
    code = (code << 6) | (byte(at + i) & 0x3F);
  }
  bool surrogate = code >= 0xD800 && code <= 0xDFFF;
  if (code < lowest || code > 0x10FFFF || surrogate) return 0;
  return length;
}

}  // namespace

void appendJsonEscaped(std::string& out, std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    // Most bytes are printable ASCII that stays as it is: taken a run at a time.
    size_t plain = i;
    while (plain < text.size()) {
      unsigned char b = static_cast<unsigned char>(text[plain]);
      if (b < 0x20 || b >= 0x7F || b == '"' || b == '\\') break;
      plain++;
    }
    if (plain > i) {
      out.append(text.data() + i, plain - i);
      i = plain;
      if (i == text.size()) break;
    }
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      size_t length = validUtf8Length(text, i);
      if (length == 0) {
        out += "\\ufffd";
        i++;
      } else {
        out.append(text.substr(i, length));
        i += length;
      }
      continue;
    }

    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7F) {
          char escaped[8];
          snprintf(escaped, sizeof escaped, "\\u%04x", c);
          out += escaped;
        } else {
          out += static_cast<char>(c);
        }
    }
    i++;
  }
}

JsonObjectWriter::JsonObjectWriter() { text_.reserve(256); text_ += '{'; }

void JsonObjectWriter::key(std::string_view name) {
  if (!first_) text_ += ',';
  first_ = false;
  text_ += '"';
  appendJsonEscaped(text_, name);
  text_ += "\":";
}

JsonObjectWriter& JsonObjectWriter::field(std::string_view name, std::string_view value) {
  key(name);
  text_ += '"';
  appendJsonEscaped(text_, value);
  text_ += '"';
  return *this;
}

JsonObjectWriter& JsonObjectWriter::field(std::string_view name, const char* value) {
  return field(name, std::string_view(value ? value : ""));
}

JsonObjectWriter& JsonObjectWriter::field(std::string_view name, int64_t value) {
  key(name);
  text_ += std::to_string(value);
  return *this;
}

JsonObjectWriter& JsonObjectWriter::field(std::string_view name, uint64_t value) {
  key(name);
  text_ += std::to_string(value);
  return *this;
}

JsonObjectWriter& JsonObjectWriter::field(std::string_view name, int value) {
  return field(name, static_cast<int64_t>(value));
}

JsonObjectWriter& JsonObjectWriter::field(std::string_view name, double value) {
  key(name);
  char number[32];
  snprintf(number, sizeof number, "%.3f", value);
  text_ += number;
  return *this;
}

JsonObjectWriter& JsonObjectWriter::field(std::string_view name, bool value) {
  key(name);
  text_ += value ? "true" : "false";
  return *this;
}

JsonObjectWriter& JsonObjectWriter::rawField(std::string_view name, std::string_view json) {
  key(name);
  text_.append(json);
  return *this;
}

std::string JsonObjectWriter::finish() {
  text_ += '}';
  return std::move(text_);
}

}  // namespace strangler
