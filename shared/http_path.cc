// Normalisation of request paths and parsing of query strings.
#include "shared/http_path.h"

#include <cctype>

namespace strangler {
namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool isUnreserved(unsigned char c) {
  return std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

// Bytes RFC 3986 allows in a path besides escapes: unreserved, sub-delims, ':' and '@'.
bool isPathByte(unsigned char c) {
  if (isUnreserved(c) || c == '/') return true;
  switch (c) {
    case '!': case '$': case '&': case '\'': case '(': case ')': case '*':
    case '+': case ',': case ';': case '=': case ':': case '@':
      return true;
    default:
      return false;
  }
}

// isPathByte for every byte, looked up rather than worked out on the hot path.
struct PathByteTable {
  bool allowed[256];

  PathByteTable() {
    for (int c = 0; c < 256; c++) allowed[c] = isPathByte(static_cast<unsigned char>(c));
  }
};

// A path normalisation leaves as it is: path bytes only, no escape, no
// repeated slash and no "." or ".." segment. Most paths are like that.
bool isNormalPath(std::string_view raw) {
  static const PathByteTable table;
  size_t segment_start = 1;
  for (size_t i = 1; i <= raw.size(); i++) {
    if (i < raw.size() && raw[i] != '/') {
      if (!table.allowed[static_cast<unsigned char>(raw[i])]) return false;
      continue;
    }
    std::string_view segment = raw.substr(segment_start, i - segment_start);
    bool empty_inside = segment.empty() && i < raw.size();
    if (empty_inside || segment == "." || segment == "..") return false;
    segment_start = i + 1;
  }
  return true;
}

// RFC 3986 section 5.2.4, on a path that starts with '/' and has no empty segments.
std::string removeDotSegments(const std::string& path) {
  std::vector<std::string_view> segments;
  std::string_view rest(path);
  bool ends_with_directory = false;
  size_t position = 1;
  while (position <= rest.size()) {
    size_t slash = rest.find('/', position);
    if (slash == std::string_view::npos) slash = rest.size();
    std::string_view segment = rest.substr(position, slash - position);
    bool last = slash == rest.size();
    if (segment == "..") {
      if (!segments.empty()) segments.pop_back();
      ends_with_directory = last;
    } else if (segment == ".") {
      ends_with_directory = last;
    } else {
      segments.push_back(segment);
      ends_with_directory = false;
    }
    position = slash + 1;
  }

  std::string result;
  for (std::string_view segment : segments) {
    result += '/';
    result.append(segment);
  }
  if (result.empty() || ends_with_directory) result += '/';
  return result;
}

}  // namespace

bool percentDecode(std::string_view text, std::string& decoded, bool plus_is_space) {
  decoded.clear();
  decoded.reserve(text.size());
  for (size_t i = 0; i < text.size(); i++) {
    char c = text[i];
    if (c == '+' && plus_is_space) {
      decoded += ' ';
    } else if (c == '%') {
      if (i + 2 >= text.size()) return false;
      int high = hexValue(text[i + 1]);
      int low = hexValue(text[i + 2]);
      if (high < 0 || low < 0) return false;
      decoded += static_cast<char>(high * 16 + low);
      i += 2;
    } else {
      decoded += c;
    }
  }
  return true;
}

PathVerdict normalizePath(std::string_view raw, EncodedSlashes policy, std::string& storage,
                          std::string_view& normalized) {
  if (!raw.empty() && raw[0] == '/' && isNormalPath(raw)) {
    normalized = raw;
    return PathVerdict::ok;
  }
  PathVerdict verdict = normalizePath(raw, policy, storage);
  normalized = storage;
  return verdict;
}

PathVerdict normalizePath(std::string_view raw, EncodedSlashes policy, std::string& normalized) {
  if (raw.empty() || raw[0] != '/') return PathVerdict::malformed;
  if (isNormalPath(raw)) {
    normalized.assign(raw);
    return PathVerdict::ok;
  }

  static const char hex_digits[] = "0123456789ABCDEF";
  std::string decoded;
  decoded.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); i++) {
    unsigned char c = static_cast<unsigned char>(raw[i]);
    if (c != '%') {
      if (!isPathByte(c)) return PathVerdict::malformed;
      // Repeated slashes are merged as they are copied.
      if (c == '/' && !decoded.empty() && decoded.back() == '/') continue;
      decoded += static_cast<char>(c);
      continue;
    }

    if (i + 2 >= raw.size()) return PathVerdict::malformed;
    int high = hexValue(raw[i + 1]);
    int low = hexValue(raw[i + 2]);
    if (high < 0 || low < 0) return PathVerdict::malformed;
    unsigned char byte = static_cast<unsigned char>(high * 16 + low);
    i += 2;

    bool dangerous = byte == '/' || byte == '\\' || byte == 0;
    if (dangerous && policy == EncodedSlashes::reject) return PathVerdict::encoded_slash;
    if (dangerous && policy == EncodedSlashes::decode) {
      if (byte == 0) return PathVerdict::encoded_slash;
      if (byte == '/' && !decoded.empty() && decoded.back() == '/') continue;
      decoded += static_cast<char>(byte);
      continue;
    }
    if (isUnreserved(byte)) {
      decoded += static_cast<char>(byte);
    } else {
      decoded += '%';
      decoded += hex_digits[byte >> 4];
      decoded += hex_digits[byte & 0xF];
    }
  }

  normalized = removeDotSegments(decoded);
  return PathVerdict::ok;
}

bool splitRequestTarget(std::string_view target, std::string& authority, std::string_view& path,
                        std::string_view& query) {
  std::string_view rest = target;
  authority.clear();
  // An absolute-form target with no path but a query ("http://h?q") has the path "/".
  bool root_path = false;
  if (rest.compare(0, 7, "http://") == 0 || rest.compare(0, 8, "https://") == 0) {
    size_t start = rest.find("://") + 3;
    size_t end = rest.find_first_of("/?", start);
    authority = rest.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (authority.empty() || authority.find('@') != std::string::npos) return false;
    rest = end == std::string_view::npos ? std::string_view("/") : rest.substr(end);
    root_path = rest[0] == '?';
  }
  if (!root_path && (rest.empty() || rest[0] != '/')) return false;
  if (rest.find('#') != std::string_view::npos) return false;
  size_t question = rest.find('?');
  path = root_path ? std::string_view("/") : rest.substr(0, question);
  query = question == std::string_view::npos ? std::string_view() : rest.substr(question + 1);
  return true;
}

std::vector<std::pair<std::string, std::string>> parseQuery(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> pairs;
  size_t start = 0;
  while (start <= query.size()) {
    size_t amp = query.find('&', start);
    if (amp == std::string_view::npos) amp = query.size();
    std::string_view item = query.substr(start, amp - start);
    start = amp + 1;
    if (item.empty()) continue;

    size_t equals = item.find('=');
    std::string name;
    std::string value;
    std::string_view raw_value = equals == std::string_view::npos ? "" : item.substr(equals + 1);
    // A parameter with a malformed escape is kept as written rather than dropped.
    if (!percentDecode(item.substr(0, equals), name, true)) name = std::string(item.substr(0, equals));
    if (!percentDecode(raw_value, value, true)) value = std::string(raw_value);
    pairs.emplace_back(std::move(name), std::move(value));
  }
  return pairs;
}

}  // namespace strangler
