// Case folding for protocol text: field names, tokens, and paths that rules
// match without case. HTTP defines these case rules over ASCII only, so
// there is no locale here and no library call per byte.
#pragma once

#include <string>
#include <string_view>

namespace strangler {

inline char asciiLower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c;
}

inline bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++) {
    if (asciiLower(a[i]) != asciiLower(b[i])) return false;
  }
  return true;
}

inline std::string asciiLowercase(std::string_view text) {
  std::string lower(text);
  for (char& c : lower) c = asciiLower(c);
  return lower;
}

}  // namespace strangler
