// The `strangler limit ...` commands: read and change the global rate limit
// that every proxy on the same Redis and prefix applies.
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "shared/rate_limit_store.h"
#include "shared/redis_client.h"

namespace strangler {
namespace {

const char* const kLimitUsage =
    "usage: strangler limit get\n"
    "       strangler limit set RPS    a whole number of requests per second, 0 (refuse all), -1 or off\n";

int usage() {
  std::cerr << kLimitUsage;
  return 2;
}

int get(const Config& config) {
  auto redis = openSharedRedis(config);
  if (!redis) return 1;
  int64_t limit = 0;
  StoredLimit stored = StoredLimit::unset;
  std::string error;
  if (!RateLimitStore(*redis, config.redis_prefix).read(limit, stored, error)) {
    std::cerr << "strangler: " << error << "\n";
    return 1;
  }
  std::string key = LimitKeys(config.redis_prefix).limit();
  if (stored == StoredLimit::set) {
    std::cout << formatLimit(limit) << "\n";
    return 0;
  }
  // Proxies then apply their own STRANGLER_RATE_LIMIT_RPS, so say so.
  std::cout << "unset\n";
  std::cerr << key << (stored == StoredLimit::unset ? " is unset" : " holds no limit")
            << ": each proxy applies its STRANGLER_RATE_LIMIT_RPS\n";
  return 0;
}

int set(const Config& config, const std::string& text) {
  int64_t limit = 0;
  if (!parseLimit(text, limit)) {
    std::cerr << "strangler: expected a whole number of requests per second up to " << kMaxLimit
              << ", 0 (refuse all), -1 or off; got '" << text << "'\n";
    return 2;
  }
  auto redis = openSharedRedis(config);
  if (!redis) return 1;
  std::string error;
  if (!RateLimitStore(*redis, config.redis_prefix).set(limit, error)) {
    std::cerr << "strangler: " << error << "\n";
    return 1;
  }
  std::cout << formatLimit(limit) << "\n";
  return 0;
}

}  // namespace

int runLimitCommand(const Config& config, const std::vector<std::string>& arguments) {
  if (arguments.size() == 1 && arguments[0] == "get") return get(config);
  if (arguments.size() == 2 && arguments[0] == "set") return set(config, arguments[1]);
  return usage();
}

}  // namespace strangler
