// The global rate limit in Redis: the limit every proxy on one Redis and
// prefix shares, the per-second windows workers lease tokens from, and the
// blocking reads and writes of the CLI, the supervisor and a worker's start.
//
// Keys, under the configured prefix P (docs/RATE_LIMITING.md):
//   P limit:rps               the limit: a whole number of requests per second,
//                             0 (refuse everything) or -1 / off (no limit)
//   P limit:window:SECOND     tokens granted for that Unix second (Redis' clock)
//   P limit:leasers:SECOND    ids of the workers that leased for that second
// Channel P limit:events      the new limit, published by `strangler limit set`
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shared/redis_client.h"

namespace strangler {

constexpr int64_t kLimitOff = -1;
// The largest limit: Lua numbers are doubles, exact for whole numbers up to 2^53.
constexpr int64_t kMaxLimit = 1000000000000000;

struct LimitKeys {
  explicit LimitKeys(std::string prefix) : prefix(std::move(prefix)) {}

  std::string limit() const { return prefix + "limit:rps"; }
  std::string events() const { return prefix + "limit:events"; }
  std::string window(int64_t second) const { return prefix + "limit:window:" + std::to_string(second); }

  std::string prefix;
};

// Reads a limit as written in Redis or on the command line: a whole number
// up to kMaxLimit, "0", "-1" or "off". False for anything else.
bool parseLimit(std::string_view text, int64_t& limit);
// The text stored for `limit`: the number, or "off" for kLimitOff.
std::string formatLimit(int64_t limit);

enum class StoredLimit { unset, set, malformed };

// What a GET of the limit key answered (a nil or string reply).
StoredLimit interpretLimitReply(const redisReply& reply, int64_t& limit);

// The answer of the lease script: tokens granted for one window, and what
// the worker needs to know about that window.
struct LeaseGrant {
  int64_t granted = 0;
  int64_t remaining = 0;     // tokens left in the window after this grant
  int64_t limit = 0;         // the limit the script applied (kLimitOff: none, so nothing granted)
  int64_t window = 0;        // the Unix second (Redis' clock) the tokens belong to
  int64_t starts_in_ms = 0;  // from the script's moment to the window's start; 0 once started
  int64_t ends_in_ms = 0;    // from the script's moment to the window's end
  int64_t workers = 0;       // distinct workers that leased in this window or the one before
};

// The lease script itself, for EVAL and SCRIPT LOAD.
const std::string& leaseScript();

// The arguments of one lease: EVALSHA with `sha` when given, EVAL otherwise.
// The script grants at most `tokens` for the window holding the moment
// `ahead_ms` after Redis' now, never more than the limit in a window; an
// unset limit key counts as `default_limit`.
std::vector<std::string> leaseCommand(const std::string& sha, const std::string& prefix, int64_t tokens,
                                      int64_t ahead_ms, int64_t default_limit, const std::string& worker_id);

// Reads the script's reply; false when it is not what the script returns.
bool parseLeaseReply(const redisReply& reply, LeaseGrant& grant);

// Blocking access for the CLI, the supervisor and a worker's start.
class RateLimitStore {
 public:
  RateLimitStore(RedisConnection& redis, std::string prefix) : redis_(redis), keys_(std::move(prefix)) {}

  bool read(int64_t& limit, StoredLimit& stored, std::string& error);
  // Stores `limit` and publishes it to every worker, in one script.
  bool set(int64_t limit, std::string& error);
  // Stores `limit` only when no limit is set (SET NX); `written` says whether it was.
  bool setDefault(int64_t limit, bool& written, std::string& error);

 private:
  RedisConnection& redis_;
  LimitKeys keys_;
};

// The supervisor's start: writes its default limit unless Redis holds one,
// and logs which limit is in force.
void writeDefaultLimit(RedisConnection& redis, const std::string& prefix, int64_t default_limit);

}  // namespace strangler
