// Settings of the supervisor, its workers and the CLI, read from STRANGLER_*
// environment variables (command-line flags override them by name).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "shared/process_log.h"

namespace strangler {

struct ListenAddress {
  std::string host;  // numeric IPv4 or IPv6 address, without brackets
  uint16_t port = 0;

  std::string text() const;  // "127.0.0.1:8080" or "[::1]:8080"
};

struct Cidr {
  int family = 0;  // AF_INET or AF_INET6
  uint8_t address[16] = {};
  int prefix_bits = 0;

  bool contains(const struct sockaddr* peer) const;
};

enum class EncodedSlashes { reject, keep, decode };
enum class AccessLogTarget { stdout_stream, off, file };
// What the rate limiter does while Redis is unreachable: admit, or refuse with 503.
enum class RateLimitFailure { open, closed };

struct Config {
  std::vector<ListenAddress> listen;
  ListenAddress admin_listen;
  int workers = 1;
  std::string redis_url;  // empty: start a private redis-server
  std::string redis_prefix = "strangler:";
  std::string rules_path;  // empty: follow the active version in Redis
  int64_t drain_timeout_ms = 30000;
  // How often the supervisor reads the active version, besides following the
  // rules channel: the fallback for messages missed while disconnected.
  int64_t rules_check_interval_ms = 1000;
  int64_t shutdown_delay_ms = 0;
  uint64_t jsonrpc_max_body = 1 << 20;
  int jsonrpc_max_batch = 100;
  std::vector<Cidr> trusted_proxies;
  uint64_t max_header_size = 64 << 10;
  int max_headers = 100;
  std::optional<uint64_t> max_body;  // empty: unlimited
  int64_t client_header_timeout_ms = 10000;  // whole request head (slow loris)
  int64_t client_body_timeout_ms = 60000;    // silence while a request body is due
  int64_t keepalive_timeout_ms = 75000;      // idle between requests
  int64_t client_send_timeout_ms = 60000;    // a client taking no response bytes
  int max_connections = 10000;               // per worker
  EncodedSlashes encoded_slashes = EncodedSlashes::reject;
  int h2_max_streams = 100;
  // HTTP/2 abuse budgets, each per connection and per 10-second window:
  // streams the client cancels while the proxy works on them (rapid reset),
  // and PING, SETTINGS, PRIORITY and empty DATA frames (control floods).
  int h2_max_resets = 100;
  int h2_max_control_frames = 1000;
  int64_t rate_limit_rps = 1000000;
  RateLimitFailure rate_limit_failure = RateLimitFailure::open;
  AccessLogTarget access_log = AccessLogTarget::stdout_stream;
  std::string access_log_path;
  plog::Level log_level = plog::Level::info;
  bool debug_headers = false;
};

// Where a setting comes from: a variable name gives its value, or nothing.
using SettingLookup = std::function<std::optional<std::string>(const std::string& name)>;

// The process environment, with `overrides` (from flags) taking precedence.
SettingLookup environmentWith(std::map<std::string, std::string> overrides = {});

// Reads every setting; on a malformed value returns false and sets `error` to
// a message naming the variable and what it expects.
bool loadConfig(const SettingLookup& lookup, Config& config, std::string& error);

// The settings in effect, as log fields (the Redis password masked).
std::string describeConfig(const Config& config);

// Parsers shared with the CLI and tests. Each returns false on malformed text.
bool parseDurationMs(const std::string& text, int64_t& ms);  // "250ms", "30s", "2m", "0"
bool parseSize(const std::string& text, uint64_t& bytes);    // "512", "64KiB", "1MiB", "1GiB"
bool parseListenAddress(const std::string& text, ListenAddress& address);
bool parseCidr(const std::string& text, Cidr& cidr);

// The password of a redis:// URL replaced by "***".
std::string maskRedisUrl(const std::string& url);

}  // namespace strangler
