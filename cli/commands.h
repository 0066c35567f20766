// The `strangler rules ...` commands: validate, push, show, history,
// rollback, explain and test, run from the command line against the same
// environment as the supervisor.
#pragma once

#include <string>
#include <vector>

#include "shared/config.h"
#include "shared/redis_client.h"

namespace strangler {

// The Redis the proxies share (STRANGLER_REDIS_URL), or null after an error
// on stderr: unset, or unreachable within two seconds.
std::unique_ptr<RedisConnection> openSharedRedis(const Config& config);

// Runs `strangler rules ARGS...`; returns the process exit code.
int runRulesCommand(const Config& config, const std::vector<std::string>& arguments);

// Runs `strangler limit get|set ...`; returns the process exit code.
int runLimitCommand(const Config& config, const std::vector<std::string>& arguments);

}  // namespace strangler
