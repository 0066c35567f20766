// Protocol-neutral request and response heads, and shared header rules.
#include "worker/http_message.h"

#include <strings.h>

#include <algorithm>
#include <vector>

namespace strangler {
namespace {

// Calls `visit` with each non-empty item of a comma list, trimmed; stops
// early when it returns true. Returns whether one did.
template <typename Visit>
bool anyToken(std::string_view list, Visit visit) {
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string_view::npos) comma = list.size();
    std::string_view token = list.substr(start, comma - start);
    while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) token.remove_prefix(1);
    while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
    if (!token.empty() && visit(token)) return true;
    start = comma + 1;
  }
  return false;
}

}  // namespace

const std::string* findHeader(const HeaderList& headers, std::string_view name) {
  for (const auto& field : headers) {
    if (equalsIgnoreCase(field.first, name)) return &field.second;
  }
  return nullptr;
}

size_t countHeader(const HeaderList& headers, std::string_view name) {
  return static_cast<size_t>(std::count_if(headers.begin(), headers.end(), [&](const auto& field) {
    return equalsIgnoreCase(field.first, name);
  }));
}

void removeHeader(HeaderList& headers, std::string_view name) {
  headers.erase(std::remove_if(headers.begin(), headers.end(),
                               [&](const auto& field) { return equalsIgnoreCase(field.first, name); }),
                headers.end());
}

void setHeader(HeaderList& headers, std::string_view name, std::string value) {
  removeHeader(headers, name);
  headers.emplace_back(std::string(name), std::move(value));
}

bool isHopByHop(std::string_view name) {
  // Called for every field of every message: by length first, then at most
  // two comparisons.
  switch (name.size()) {
    case 2: return equalsIgnoreCase(name, "te");
    case 7: return equalsIgnoreCase(name, "trailer") || equalsIgnoreCase(name, "upgrade");
    case 10: return equalsIgnoreCase(name, "connection") || equalsIgnoreCase(name, "keep-alive");
    case 14: return equalsIgnoreCase(name, "content-length");
    case 16: return equalsIgnoreCase(name, "proxy-connection");
    case 17: return equalsIgnoreCase(name, "transfer-encoding");
    case 18: return equalsIgnoreCase(name, "proxy-authenticate");
    case 19: return equalsIgnoreCase(name, "proxy-authorization");
    default: return false;
  }
}

namespace {

// End-to-end fields a Connection header must not be able to remove: a
// client could otherwise strip what the proxy or a backend relies on.
bool isProtectedFromConnection(std::string_view name) {
  static const char* const fields[] = {
      "host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip", "forwarded",
      "x-request-id", "authorization", "cookie", "content-type", "date",
  };
  return std::any_of(std::begin(fields), std::end(fields),
                     [&](const char* field) { return equalsIgnoreCase(name, field); });
}

}  // namespace

std::vector<std::string_view> connectionNamedFields(const HeaderList& headers) {
  std::vector<std::string_view> named;
  for (const auto& [name, value] : headers) {
    if (!equalsIgnoreCase(name, "connection")) continue;
    anyToken(value, [&](std::string_view token) {
      if (!isProtectedFromConnection(token)) named.push_back(token);
      return false;
    });
  }
  return named;
}

bool isConnectionField(std::string_view name, const std::vector<std::string_view>& named) {
  if (isHopByHop(name)) return true;
  return std::any_of(named.begin(), named.end(),
                     [&](std::string_view token) { return equalsIgnoreCase(name, token); });
}

void removeConnectionFields(HeaderList& headers) {
  // Copied: the erase below moves the Connection values the views point into.
  std::vector<std::string> named;
  for (std::string_view token : connectionNamedFields(headers)) named.emplace_back(token);
  std::vector<std::string_view> named_views(named.begin(), named.end());
  auto removed = [&](const auto& field) { return isConnectionField(field.first, named_views); };
  headers.erase(std::remove_if(headers.begin(), headers.end(), removed), headers.end());
}

bool headerHasToken(const HeaderList& headers, std::string_view name, std::string_view token) {
  for (const auto& field : headers) {
    if (!equalsIgnoreCase(field.first, name)) continue;
    auto matches = [&](std::string_view item) { return equalsIgnoreCase(item, token); };
    if (anyToken(field.second, matches)) return true;
  }
  return false;
}

const char* reasonPhrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 410: return "Gone";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 421: return "Misdirected Request";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return status < 200 ? "Informational" : status < 300 ? "OK" : status < 400 ? "Redirect"
                    : status < 500 ? "Client Error" : "Server Error";
  }
}

}  // namespace strangler
