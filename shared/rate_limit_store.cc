// The global rate limit in Redis: keys, scripts and blocking access.
#include "shared/rate_limit_store.h"

#include <algorithm>

#include "shared/process_log.h"

namespace strangler {
namespace {

// ARGV: prefix, tokens wanted, ms ahead of now, default limit, worker id.
// Returns {granted, remaining, limit, window, starts_in_ms, ends_in_ms, workers}.
//
// The window is picked by Redis' clock, so workers on hosts whose clocks
// disagree still share one window. Redis' microseconds are rounded so that a
// worker's view of the window lies inside the true one (the start up, the
// end down); in a window's last millisecond the lease is for the next one.
// TIME before writes needs effects replication, the default since Redis 5
// and switched on here for 3.2 and 4.
const char* const kLeaseScriptText = R"lua(
if redis.replicate_commands then redis.replicate_commands() end
local function parse_limit(text)
  if type(text) ~= 'string' then return nil end
  if text == 'off' or text == '-1' then return -1 end
  if #text <= 16 and string.match(text, '^%d+$') then
    local limit = tonumber(text)
    if limit <= 1e15 then return limit end
  end
  return nil
end
local prefix, wanted, ahead = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local limit = parse_limit(redis.call('GET', prefix .. 'limit:rps')) or tonumber(ARGV[4])
local clock = redis.call('TIME')
local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local second = math.floor((now_us + ahead * 1000) / 1000000)
if (second + 1) * 1000000 - now_us < 1000 then second = second + 1 end
local starts_in = math.max(0, math.ceil((second * 1000000 - now_us) / 1000))
local ends_in = math.floor(((second + 1) * 1000000 - now_us) / 1000)
if limit < 0 then return {0, 0, -1, second, starts_in, ends_in, 0} end
local window = prefix .. 'limit:window:' .. string.format('%d', second)
local used = tonumber(redis.call('GET', window) or '0')
local granted = math.min(wanted, math.max(0, limit - used))
if granted > 0 then
  redis.call('INCRBY', window, granted)
  redis.call('EXPIRE', window, 2)
end
local leasers = prefix .. 'limit:leasers:' .. string.format('%d', second)
local before = prefix .. 'limit:leasers:' .. string.format('%d', second - 1)
redis.call('SADD', leasers, ARGV[5])
redis.call('EXPIRE', leasers, 3)
local workers = math.max(redis.call('SCARD', leasers), redis.call('SCARD', before))
return {granted, math.max(0, limit - used - granted), limit, second, starts_in, ends_in, workers}
)lua";

// ARGV: prefix, the limit's text. The key and the event change together.
const char* const kSetScript = R"lua(
redis.call('SET', ARGV[1] .. 'limit:rps', ARGV[2])
redis.call('PUBLISH', ARGV[1] .. 'limit:events', ARGV[2])
return 1
)lua";

bool integerElement(const redisReply& reply, size_t index, int64_t& value) {
  const redisReply* element = reply.element[index];
  if (!element || element->type != REDIS_REPLY_INTEGER) return false;
  value = element->integer;
  return true;
}

}  // namespace

bool parseLimit(std::string_view text, int64_t& limit) {
  if (text == "off" || text == "-1") {
    limit = kLimitOff;
    return true;
  }
  if (text.empty() || text.size() > 16) return false;
  int64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  if (value > kMaxLimit) return false;
  limit = value;
  return true;
}

std::string formatLimit(int64_t limit) {
  return limit < 0 ? "off" : std::to_string(limit);
}

StoredLimit interpretLimitReply(const redisReply& reply, int64_t& limit) {
  if (reply.type == REDIS_REPLY_NIL) return StoredLimit::unset;
  if (reply.type != REDIS_REPLY_STRING) return StoredLimit::malformed;
  return parseLimit(std::string_view(reply.str, reply.len), limit) ? StoredLimit::set
                                                                   : StoredLimit::malformed;
}

const std::string& leaseScript() {
  static const std::string text = kLeaseScriptText;
  return text;
}

std::vector<std::string> leaseCommand(const std::string& sha, const std::string& prefix, int64_t tokens,
                                      int64_t ahead_ms, int64_t default_limit, const std::string& worker_id) {
  std::vector<std::string> arguments;
  arguments.reserve(8);
  if (sha.empty()) {
    arguments.insert(arguments.end(), {"EVAL", leaseScript()});
  } else {
    arguments.insert(arguments.end(), {"EVALSHA", sha});
  }
  arguments.insert(arguments.end(), {"0", prefix, std::to_string(tokens), std::to_string(ahead_ms),
                                     std::to_string(default_limit), worker_id});
  return arguments;
}

bool parseLeaseReply(const redisReply& reply, LeaseGrant& grant) {
  if (reply.type != REDIS_REPLY_ARRAY || reply.elements != 7) return false;
  int64_t* fields[] = {&grant.granted,      &grant.remaining,  &grant.limit,  &grant.window,
                       &grant.starts_in_ms, &grant.ends_in_ms, &grant.workers};
  for (size_t i = 0; i < 7; i++) {
    if (!integerElement(reply, i, *fields[i])) return false;
  }
  return grant.granted >= 0 && grant.ends_in_ms > 0;
}

bool RateLimitStore::read(int64_t& limit, StoredLimit& stored, std::string& error) {
  RedisReply reply = redis_.command({"GET", keys_.limit()}, error);
  if (!reply) return false;
  stored = interpretLimitReply(*reply, limit);
  return true;
}

bool RateLimitStore::set(int64_t limit, std::string& error) {
  return static_cast<bool>(
      redis_.command({"EVAL", kSetScript, "0", keys_.prefix, formatLimit(limit)}, error));
}

bool RateLimitStore::setDefault(int64_t limit, bool& written, std::string& error) {
  RedisReply reply = redis_.command({"SET", keys_.limit(), formatLimit(limit), "NX"}, error);
  if (!reply) return false;
  written = reply->type == REDIS_REPLY_STATUS;
  return true;
}

void writeDefaultLimit(RedisConnection& redis, const std::string& prefix, int64_t default_limit) {
  default_limit = std::min(default_limit, kMaxLimit);
  RateLimitStore store(redis, prefix);
  std::string key = LimitKeys(prefix).limit();
  bool written = false;
  int64_t limit = 0;
  StoredLimit stored = StoredLimit::unset;
  std::string error;
  if (!store.setDefault(default_limit, written, error) || !store.read(limit, stored, error)) {
    // Workers fall back to their own default, so the start goes on.
    plog::warn("rate limit default not written to Redis", {{"key", key}, {"error", error}});
    return;
  }
  if (written) {
    plog::info("rate limit default written to Redis", {{"key", key}, {"limit", formatLimit(default_limit)}});
  } else if (stored == StoredLimit::set) {
    plog::info("rate limit already set in Redis", {{"key", key}, {"limit", formatLimit(limit)}});
  } else {
    plog::warn("rate limit key holds no limit: each worker uses its default",
               {{"key", key}, {"default", formatLimit(default_limit)}});
  }
}

}  // namespace strangler
