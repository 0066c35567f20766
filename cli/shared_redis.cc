// The Redis connection of the CLI commands.
#include <iostream>

#include "cli/commands.h"

namespace strangler {

std::unique_ptr<RedisConnection> openSharedRedis(const Config& config) {
  constexpr int kRedisTimeoutMs = 2000;
  if (config.redis_url.empty()) {
    std::cerr << "strangler: STRANGLER_REDIS_URL is unset; set it to the Redis the proxies share\n";
    return nullptr;
  }
  std::string error;
  auto redis = RedisConnection::open(config.redis_url, kRedisTimeoutMs, error);
  if (!redis) std::cerr << "strangler: " << error << "\n";
  return redis;
}

}  // namespace strangler
