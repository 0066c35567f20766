// Settings of the supervisor, its workers and the CLI, read from STRANGLER_*
// environment variables (command-line flags override them by name).
#include "shared/config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "shared/json_writer.h"

namespace strangler {
namespace {

bool parseUnsigned(const std::string& text, uint64_t& value) {
  if (text.empty() || text.size() > 19) return false;
  value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  return true;
}

bool endsWith(const std::string& text, const std::string& suffix) {
  return text.size() > suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<std::string> splitList(const std::string& text) {
  std::vector<std::string> items;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    std::string item = text.substr(start, comma - start);
    size_t first = item.find_first_not_of(" \t");
    size_t last = item.find_last_not_of(" \t");
    if (first != std::string::npos) items.push_back(item.substr(first, last - first + 1));
    start = comma + 1;
  }
  return items;
}

// Reads one variable with `parse`; a present but malformed value is an error.
class Reader {
 public:
  Reader(const SettingLookup& lookup, std::string& error) : lookup_(lookup), error_(error) {}

  template <typename Parse>
  void read(const char* name, const char* expected, Parse parse) {
    if (!error_.empty()) return;
    std::optional<std::string> value = lookup_(name);
    if (!value) return;
    if (!parse(*value)) {
      error_ = std::string(name) + ": expected " + expected + ", got '" + *value + "'";
    }
  }

  bool failed() const { return !error_.empty(); }

 private:
  const SettingLookup& lookup_;
  std::string& error_;
};

int defaultWorkerCount() {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  return cpus > 0 ? static_cast<int>(cpus) : 1;
}

}  // namespace

std::string ListenAddress::text() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

bool Cidr::contains(const struct sockaddr* peer) const {
  const uint8_t* bytes = nullptr;
  uint8_t mapped[4];
  if (peer->sa_family == AF_INET && family == AF_INET) {
    bytes = reinterpret_cast<const uint8_t*>(
        &reinterpret_cast<const sockaddr_in*>(peer)->sin_addr);
  } else if (peer->sa_family == AF_INET6) {
    const auto* v6 = &reinterpret_cast<const sockaddr_in6*>(peer)->sin6_addr;
    if (family == AF_INET6) {
      bytes = v6->s6_addr;
    } else if (IN6_IS_ADDR_V4MAPPED(v6)) {
      memcpy(mapped, v6->s6_addr + 12, 4);
      bytes = mapped;
    }
  }
  if (!bytes) return false;

  int full_bytes = prefix_bits / 8;
  if (memcmp(bytes, address, full_bytes) != 0) return false;
  int rest = prefix_bits % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xFF << (8 - rest));
  return (bytes[full_bytes] & mask) == (address[full_bytes] & mask);
}

bool parseDurationMs(const std::string& text, int64_t& ms) {
  uint64_t number = 0;
  if (text == "0") {
    ms = 0;
    return true;
  }
  struct Unit {
    const char* suffix;
    uint64_t ms;
  };
  for (Unit unit : {Unit{"ms", 1}, Unit{"s", 1000}, Unit{"m", 60000}, Unit{"h", 3600000}}) {
    if (!endsWith(text, unit.suffix)) continue;
    // "ms" is tried before "m" and "s", so "5ms" is never read as five minutes.
    std::string digits = text.substr(0, text.size() - strlen(unit.suffix));
    if (!parseUnsigned(digits, number)) continue;
    if (number > static_cast<uint64_t>(INT64_MAX) / unit.ms) return false;
    ms = static_cast<int64_t>(number * unit.ms);
    return true;
  }
  return false;
}

bool parseSize(const std::string& text, uint64_t& bytes) {
  struct Unit {
    const char* suffix;
    uint64_t bytes;
  };
  for (Unit unit : {Unit{"KiB", 1ull << 10}, Unit{"MiB", 1ull << 20}, Unit{"GiB", 1ull << 30}}) {
    if (!endsWith(text, unit.suffix)) continue;
    uint64_t number = 0;
    if (!parseUnsigned(text.substr(0, text.size() - 3), number)) return false;
    if (number > UINT64_MAX / unit.bytes) return false;
    bytes = number * unit.bytes;
    return true;
  }
  return parseUnsigned(text, bytes);
}

bool parseListenAddress(const std::string& text, ListenAddress& address) {
  std::string host;
  std::string port;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return false;
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    in6_addr probe;
    if (inet_pton(AF_INET6, host.c_str(), &probe) != 1) return false;
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos) return false;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.empty()) host = "0.0.0.0";
    in_addr probe;
    if (inet_pton(AF_INET, host.c_str(), &probe) != 1) return false;
  }
  uint64_t number = 0;
  if (!parseUnsigned(port, number) || number > 65535) return false;
  address.host = host;
  address.port = static_cast<uint16_t>(number);
  return true;
}

bool parseCidr(const std::string& text, Cidr& cidr) {
  size_t slash = text.find('/');
  std::string host = text.substr(0, slash);
  if (inet_pton(AF_INET, host.c_str(), cidr.address) == 1) {
    cidr.family = AF_INET;
    cidr.prefix_bits = 32;
  } else if (inet_pton(AF_INET6, host.c_str(), cidr.address) == 1) {
    cidr.family = AF_INET6;
    cidr.prefix_bits = 128;
  } else {
    return false;
  }
  if (slash == std::string::npos) return true;

  uint64_t bits = 0;
  if (!parseUnsigned(text.substr(slash + 1), bits) ||
      bits > static_cast<uint64_t>(cidr.prefix_bits)) {
    return false;
  }
  cidr.prefix_bits = static_cast<int>(bits);
  return true;
}

std::string maskRedisUrl(const std::string& url) {
  const std::string scheme = "redis://";
  if (url.compare(0, scheme.size(), scheme) != 0) return url;
  // The last '@' ends the credentials, as the URL parser reads them: a
  // password may itself hold '@'.
  size_t at = url.rfind('@');
  if (at == std::string::npos || at < scheme.size()) return url;
  return scheme + "***" + url.substr(at);
}

SettingLookup environmentWith(std::map<std::string, std::string> overrides) {
  return [overrides = std::move(overrides)](const std::string& name) -> std::optional<std::string> {
    auto found = overrides.find(name);
    if (found != overrides.end()) return found->second;
    const char* value = getenv(name.c_str());
    if (!value) return std::nullopt;
    return std::string(value);
  };
}

bool loadConfig(const SettingLookup& lookup, Config& config, std::string& error) {
  error.clear();
  Reader reader(lookup, error);
  config.workers = defaultWorkerCount();
  parseListenAddress("0.0.0.0:8080", config.listen.emplace_back());
  parseListenAddress("127.0.0.1:9090", config.admin_listen);
  for (const char* range : {"127.0.0.0/8", "::1/128"}) parseCidr(range, config.trusted_proxies.emplace_back());

  reader.read("STRANGLER_LISTEN", "a comma list of HOST:PORT", [&](const std::string& v) {
    std::vector<ListenAddress> addresses;
    for (const std::string& item : splitList(v)) {
      if (!parseListenAddress(item, addresses.emplace_back())) return false;
    }
    if (addresses.empty()) return false;
    config.listen = addresses;
    return true;
  });
  reader.read("STRANGLER_ADMIN_LISTEN", "HOST:PORT", [&](const std::string& v) {
    return parseListenAddress(v, config.admin_listen);
  });
  reader.read("STRANGLER_WORKERS", "a whole number from 1 to 256", [&](const std::string& v) {
    uint64_t n = 0;
    if (!parseUnsigned(v, n) || n < 1 || n > 256) return false;
    config.workers = static_cast<int>(n);
    return true;
  });
  reader.read("STRANGLER_REDIS_URL", "redis://[:password@]host:port[/db] or unix:///path",
              [&](const std::string& v) {
                bool known = v.rfind("redis://", 0) == 0 || v.rfind("unix://", 0) == 0;
                if (!v.empty() && !known) return false;
                config.redis_url = v;
                return true;
              });
  reader.read("STRANGLER_REDIS_PREFIX", "a non-empty key prefix", [&](const std::string& v) {
    config.redis_prefix = v;
    return !v.empty();
  });
  reader.read("STRANGLER_RULES", "a file or folder path", [&](const std::string& v) {
    config.rules_path = v;
    return true;
  });
  reader.read("STRANGLER_DRAIN_TIMEOUT", "a duration such as 30s or 500ms", [&](const std::string& v) {
    return parseDurationMs(v, config.drain_timeout_ms);
  });
  reader.read("STRANGLER_RULES_CHECK_INTERVAL", "a duration of at least 10ms, such as 1s", [&](const std::string& v) {
    return parseDurationMs(v, config.rules_check_interval_ms) && config.rules_check_interval_ms >= 10;
  });
  reader.read("STRANGLER_SHUTDOWN_DELAY", "a duration such as 5s or 0s", [&](const std::string& v) {
    return parseDurationMs(v, config.shutdown_delay_ms);
  });
  reader.read("STRANGLER_JSONRPC_MAX_BODY", "a size such as 1MiB", [&](const std::string& v) {
    return parseSize(v, config.jsonrpc_max_body);
  });
  reader.read("STRANGLER_JSONRPC_MAX_BATCH", "a whole number from 1 to 100000", [&](const std::string& v) {
    uint64_t n = 0;
    if (!parseUnsigned(v, n) || n < 1 || n > 100000) return false;
    config.jsonrpc_max_batch = static_cast<int>(n);
    return true;
  });
  reader.read("STRANGLER_TRUSTED_PROXIES", "a comma list of CIDR ranges", [&](const std::string& v) {
    std::vector<Cidr> ranges;
    for (const std::string& item : splitList(v)) {
      if (!parseCidr(item, ranges.emplace_back())) return false;
    }
    config.trusted_proxies = ranges;
    return true;
  });
  reader.read("STRANGLER_MAX_HEADER_SIZE", "a size from 1KiB to 1MiB", [&](const std::string& v) {
    return parseSize(v, config.max_header_size) && config.max_header_size >= 1024 &&
           config.max_header_size <= (1 << 20);
  });
  reader.read("STRANGLER_MAX_HEADERS", "a whole number from 1 to 10000", [&](const std::string& v) {
    uint64_t n = 0;
    if (!parseUnsigned(v, n) || n < 1 || n > 10000) return false;
    config.max_headers = static_cast<int>(n);
    return true;
  });
  struct Timeout {
    const char* name;
    int64_t* target;
  };
  for (Timeout timeout : {Timeout{"STRANGLER_CLIENT_HEADER_TIMEOUT", &config.client_header_timeout_ms},
                          Timeout{"STRANGLER_CLIENT_BODY_TIMEOUT", &config.client_body_timeout_ms},
                          Timeout{"STRANGLER_KEEPALIVE_TIMEOUT", &config.keepalive_timeout_ms},
                          Timeout{"STRANGLER_CLIENT_SEND_TIMEOUT", &config.client_send_timeout_ms}}) {
    reader.read(timeout.name, "a duration from 1ms, such as 10s or 500ms", [&](const std::string& v) {
      return parseDurationMs(v, *timeout.target) && *timeout.target > 0;
    });
  }
  reader.read("STRANGLER_MAX_CONNECTIONS", "a whole number from 1 to 1000000", [&](const std::string& v) {
    uint64_t n = 0;
    if (!parseUnsigned(v, n) || n < 1 || n > 1000000) return false;
    config.max_connections = static_cast<int>(n);
    return true;
  });
  reader.read("STRANGLER_MAX_BODY", "a size such as 10MiB, or unlimited", [&](const std::string& v) {
    if (v == "unlimited") {
      config.max_body.reset();
      return true;
    }
    uint64_t bytes = 0;
    if (!parseSize(v, bytes)) return false;
    config.max_body = bytes;
    return true;
  });
  reader.read("STRANGLER_ENCODED_SLASHES", "reject, keep or decode", [&](const std::string& v) {
    if (v == "reject") config.encoded_slashes = EncodedSlashes::reject;
    else if (v == "keep") config.encoded_slashes = EncodedSlashes::keep;
    else if (v == "decode") config.encoded_slashes = EncodedSlashes::decode;
    else return false;
    return true;
  });
  reader.read("STRANGLER_H2_MAX_STREAMS", "a whole number from 1 to 10000", [&](const std::string& v) {
    uint64_t n = 0;
    if (!parseUnsigned(v, n) || n < 1 || n > 10000) return false;
    config.h2_max_streams = static_cast<int>(n);
    return true;
  });
  reader.read("STRANGLER_H2_MAX_RESETS", "a whole number from 1 to 100000", [&](const std::string& v) {
    uint64_t n = 0;
    if (!parseUnsigned(v, n) || n < 1 || n > 100000) return false;
    config.h2_max_resets = static_cast<int>(n);
    return true;
  });
  reader.read("STRANGLER_H2_MAX_CONTROL_FRAMES", "a whole number from 1 to 1000000", [&](const std::string& v) {
    uint64_t n = 0;
    if (!parseUnsigned(v, n) || n < 1 || n > 1000000) return false;
    config.h2_max_control_frames = static_cast<int>(n);
    return true;
  });
  reader.read("STRANGLER_RATE_LIMIT_RPS", "a whole number, 0 (block all) or -1 (off)",
              [&](const std::string& v) {
                if (v == "-1" || v == "off") {
                  config.rate_limit_rps = -1;
                  return true;
                }
                uint64_t n = 0;
                if (!parseUnsigned(v, n)) return false;
                config.rate_limit_rps = static_cast<int64_t>(n);
                return true;
              });
  reader.read("STRANGLER_RATE_LIMIT_FAILURE", "open or closed", [&](const std::string& v) {
    if (v == "open") config.rate_limit_failure = RateLimitFailure::open;
    else if (v == "closed") config.rate_limit_failure = RateLimitFailure::closed;
    else return false;
    return true;
  });
  reader.read("STRANGLER_ACCESS_LOG", "stdout, off or a file path", [&](const std::string& v) {
    if (v == "stdout") config.access_log = AccessLogTarget::stdout_stream;
    else if (v == "off") config.access_log = AccessLogTarget::off;
    else if (!v.empty()) {
      config.access_log = AccessLogTarget::file;
      config.access_log_path = v;
    } else return false;
    return true;
  });
  reader.read("STRANGLER_LOG_LEVEL", "debug, info, warn or error", [&](const std::string& v) {
    return plog::parseLevel(v, config.log_level);
  });
  reader.read("STRANGLER_DEBUG_HEADERS", "0 or 1", [&](const std::string& v) {
    if (v != "0" && v != "1") return false;
    config.debug_headers = v == "1";
    return true;
  });
  return !reader.failed();
}

std::string describeConfig(const Config& config) {
  std::string listen;
  for (const ListenAddress& address : config.listen) {
    if (!listen.empty()) listen += ',';
    listen += address.text();
  }
  const char* access_log = config.access_log == AccessLogTarget::off ? "off"
                           : config.access_log == AccessLogTarget::file
                               ? config.access_log_path.c_str()
                               : "stdout";
  JsonObjectWriter json;
  json.field("listen", listen)
      .field("admin_listen", config.admin_listen.text())
      .field("workers", config.workers)
      .field("redis_url", config.redis_url.empty() ? "private" : maskRedisUrl(config.redis_url))
      .field("redis_prefix", config.redis_prefix)
      .field("rules", config.rules_path)
      .field("drain_timeout_ms", config.drain_timeout_ms)
      .field("rules_check_interval_ms", config.rules_check_interval_ms)
      .field("shutdown_delay_ms", config.shutdown_delay_ms)
      .field("max_header_size", config.max_header_size)
      .field("max_body", config.max_body ? std::to_string(*config.max_body) : "unlimited")
      .field("rate_limit_rps", config.rate_limit_rps)
      .field("rate_limit_failure", config.rate_limit_failure == RateLimitFailure::open ? "open" : "closed")
      .field("access_log", access_log);
  return json.finish();
}

}  // namespace strangler
