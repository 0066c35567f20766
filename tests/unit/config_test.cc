// Configuration from the environment: defaults, parsing and error messages.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <map>

#include "shared/config.h"

using namespace strangler;

namespace {

SettingLookup fixed(std::map<std::string, std::string> values) {
  return [values](const std::string& name) -> std::optional<std::string> {
    auto found = values.find(name);
    if (found == values.end()) return std::nullopt;
    return found->second;
  };
}

std::string loadError(std::map<std::string, std::string> values) {
  Config config;
  std::string error;
  CHECK_FALSE(loadConfig(fixed(std::move(values)), config, error));
  return error;
}

}  // namespace

TEST_CASE("defaults follow the design table") {
  Config config;
  std::string error;
  REQUIRE(loadConfig(fixed({}), config, error));
  REQUIRE(config.listen.size() == 1);
  CHECK(config.listen[0].text() == "0.0.0.0:8080");
  CHECK(config.admin_listen.text() == "127.0.0.1:9090");
  CHECK(config.workers >= 1);
  CHECK(config.redis_url.empty());
  CHECK(config.redis_prefix == "strangler:");
  CHECK(config.drain_timeout_ms == 30000);
  CHECK(config.rules_check_interval_ms == 1000);
  CHECK(config.shutdown_delay_ms == 0);
  CHECK(config.jsonrpc_max_body == 1024 * 1024);
  CHECK(config.jsonrpc_max_batch == 100);
  CHECK(config.max_header_size == 64 * 1024);
  CHECK_FALSE(config.max_body.has_value());
  CHECK(config.encoded_slashes == EncodedSlashes::reject);
  CHECK(config.h2_max_streams == 100);
  CHECK(config.h2_max_resets == 100);
  CHECK(config.h2_max_control_frames == 1000);
  CHECK(config.rate_limit_rps == 1000000);
  CHECK(config.access_log == AccessLogTarget::stdout_stream);
  CHECK(config.log_level == plog::Level::info);
  CHECK_FALSE(config.debug_headers);
  CHECK(config.trusted_proxies.size() == 2);
}

TEST_CASE("every variable is read") {
  Config config;
  std::string error;
  REQUIRE(loadConfig(fixed({{"STRANGLER_LISTEN", "127.0.0.1:1, [::1]:2"},
                            {"STRANGLER_ADMIN_LISTEN", "127.0.0.1:3"},
                            {"STRANGLER_WORKERS", "4"},
                            {"STRANGLER_REDIS_URL", "redis://:secret@127.0.0.1:6390/2"},
                            {"STRANGLER_REDIS_PREFIX", "p:"},
                            {"STRANGLER_RULES", "/etc/rules"},
                            {"STRANGLER_DRAIN_TIMEOUT", "250ms"},
                            {"STRANGLER_RULES_CHECK_INTERVAL", "1h"},
                            {"STRANGLER_SHUTDOWN_DELAY", "2m"},
                            {"STRANGLER_JSONRPC_MAX_BODY", "2MiB"},
                            {"STRANGLER_JSONRPC_MAX_BATCH", "7"},
                            {"STRANGLER_TRUSTED_PROXIES", ""},
                            {"STRANGLER_MAX_HEADER_SIZE", "8KiB"},
                            {"STRANGLER_MAX_BODY", "10MiB"},
                            {"STRANGLER_ENCODED_SLASHES", "decode"},
                            {"STRANGLER_H2_MAX_STREAMS", "50"},
                            {"STRANGLER_H2_MAX_RESETS", "20"},
                            {"STRANGLER_H2_MAX_CONTROL_FRAMES", "300"},
                            {"STRANGLER_RATE_LIMIT_RPS", "off"},
                            {"STRANGLER_ACCESS_LOG", "/tmp/access.log"},
                            {"STRANGLER_LOG_LEVEL", "debug"},
                            {"STRANGLER_DEBUG_HEADERS", "1"}}),
                     config, error));
  CHECK(error.empty());
  REQUIRE(config.listen.size() == 2);
  CHECK(config.listen[0].text() == "127.0.0.1:1");
  CHECK(config.listen[1].text() == "[::1]:2");
  CHECK(config.workers == 4);
  CHECK(config.redis_prefix == "p:");
  CHECK(config.rules_path == "/etc/rules");
  CHECK(config.drain_timeout_ms == 250);
  CHECK(config.rules_check_interval_ms == 3600000);
  CHECK(config.shutdown_delay_ms == 120000);
  CHECK(config.jsonrpc_max_body == 2 * 1024 * 1024);
  CHECK(config.jsonrpc_max_batch == 7);
  CHECK(config.trusted_proxies.empty());
  CHECK(config.max_header_size == 8192);
  CHECK(config.max_body == 10u * 1024 * 1024);
  CHECK(config.encoded_slashes == EncodedSlashes::decode);
  CHECK(config.h2_max_streams == 50);
  CHECK(config.h2_max_resets == 20);
  CHECK(config.h2_max_control_frames == 300);
  CHECK(config.rate_limit_rps == -1);
  CHECK(config.access_log == AccessLogTarget::file);
  CHECK(config.access_log_path == "/tmp/access.log");
  CHECK(config.log_level == plog::Level::debug);
  CHECK(config.debug_headers);
  CHECK(maskRedisUrl(config.redis_url) == "redis://***@127.0.0.1:6390/2");
  CHECK(maskRedisUrl("redis://:p@ss@host:1") == "redis://***@host:1");
  CHECK(maskRedisUrl("redis://host:1") == "redis://host:1");
}

TEST_CASE("a malformed value names the variable and what it expects") {
  CHECK(loadError({{"STRANGLER_WORKERS", "zero"}}) ==
        "STRANGLER_WORKERS: expected a whole number from 1 to 256, got 'zero'");
  CHECK(loadError({{"STRANGLER_WORKERS", "0"}}).rfind("STRANGLER_WORKERS:", 0) == 0);
  CHECK(loadError({{"STRANGLER_LISTEN", "localhost:80"}}) ==
        "STRANGLER_LISTEN: expected a comma list of HOST:PORT, got 'localhost:80'");
  CHECK(loadError({{"STRANGLER_LISTEN", "127.0.0.1:70000"}}).rfind("STRANGLER_LISTEN:", 0) == 0);
  CHECK(loadError({{"STRANGLER_RULES_CHECK_INTERVAL", "5ms"}}) ==
        "STRANGLER_RULES_CHECK_INTERVAL: expected a duration of at least 10ms, such as 1s, got '5ms'");
  CHECK(loadError({{"STRANGLER_DRAIN_TIMEOUT", "30"}}) ==
        "STRANGLER_DRAIN_TIMEOUT: expected a duration such as 30s or 500ms, got '30'");
  CHECK(loadError({{"STRANGLER_MAX_HEADER_SIZE", "64KB"}}).rfind("STRANGLER_MAX_HEADER_SIZE:", 0) == 0);
  CHECK(loadError({{"STRANGLER_REDIS_URL", "http://x"}}).rfind("STRANGLER_REDIS_URL:", 0) == 0);
  CHECK(loadError({{"STRANGLER_ENCODED_SLASHES", "allow"}}) ==
        "STRANGLER_ENCODED_SLASHES: expected reject, keep or decode, got 'allow'");
  CHECK(loadError({{"STRANGLER_TRUSTED_PROXIES", "10.0.0.0/33"}}).rfind("STRANGLER_TRUSTED_PROXIES:", 0) == 0);
  CHECK(loadError({{"STRANGLER_LOG_LEVEL", "verbose"}}).rfind("STRANGLER_LOG_LEVEL:", 0) == 0);
  CHECK(loadError({{"STRANGLER_DEBUG_HEADERS", "yes"}}).rfind("STRANGLER_DEBUG_HEADERS:", 0) == 0);
}

TEST_CASE("the first malformed variable is the one reported") {
  CHECK(loadError({{"STRANGLER_WORKERS", "x"}, {"STRANGLER_LOG_LEVEL", "y"}}).rfind("STRANGLER_WORKERS", 0) == 0);
}

TEST_CASE("durations and sizes") {
  int64_t ms = 0;
  CHECK((parseDurationMs("0", ms) && ms == 0));
  CHECK((parseDurationMs("5ms", ms) && ms == 5));
  CHECK((parseDurationMs("5s", ms) && ms == 5000));
  CHECK((parseDurationMs("5m", ms) && ms == 300000));
  CHECK((parseDurationMs("1h", ms) && ms == 3600000));
  CHECK_FALSE(parseDurationMs("", ms));
  CHECK_FALSE(parseDurationMs("s", ms));
  CHECK_FALSE(parseDurationMs("-1s", ms));
  CHECK_FALSE(parseDurationMs("1.5s", ms));
  CHECK_FALSE(parseDurationMs("10", ms));

  uint64_t bytes = 0;
  CHECK((parseSize("512", bytes) && bytes == 512));
  CHECK((parseSize("64KiB", bytes) && bytes == 65536));
  CHECK((parseSize("1MiB", bytes) && bytes == 1048576));
  CHECK((parseSize("2GiB", bytes) && bytes == 2147483648ull));
  CHECK_FALSE(parseSize("1MB", bytes));
  CHECK_FALSE(parseSize("KiB", bytes));
  CHECK_FALSE(parseSize("99999999999999999999", bytes));
}

TEST_CASE("trusted proxy ranges match peers") {
  Cidr loopback;
  REQUIRE(parseCidr("127.0.0.0/8", loopback));
  sockaddr_in peer = {};
  peer.sin_family = AF_INET;
  inet_pton(AF_INET, "127.1.2.3", &peer.sin_addr);
  CHECK(loopback.contains(reinterpret_cast<sockaddr*>(&peer)));
  inet_pton(AF_INET, "128.0.0.1", &peer.sin_addr);
  CHECK_FALSE(loopback.contains(reinterpret_cast<sockaddr*>(&peer)));

  Cidr narrow;
  REQUIRE(parseCidr("10.1.2.128/25", narrow));
  inet_pton(AF_INET, "10.1.2.200", &peer.sin_addr);
  CHECK(narrow.contains(reinterpret_cast<sockaddr*>(&peer)));
  inet_pton(AF_INET, "10.1.2.127", &peer.sin_addr);
  CHECK_FALSE(narrow.contains(reinterpret_cast<sockaddr*>(&peer)));

  sockaddr_in6 mapped = {};
  mapped.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "::ffff:127.0.0.1", &mapped.sin6_addr);
  CHECK(loopback.contains(reinterpret_cast<sockaddr*>(&mapped)));
}
