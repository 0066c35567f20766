// Versioned rulesets in Redis.
#include "shared/rules_store.h"

#include <cstdlib>

namespace strangler {
namespace {

// KEYS: none (all keys derive from the prefix in ARGV[1], so the script can
// be shared by any prefix); ARGV[1] prefix, ARGV[2] document.
// Returns {version, created, activated}.
const char* const kPushScript = R"lua(
local prefix, document = ARGV[1], ARGV[2]
local digest_key = prefix .. 'rules:digest:' .. redis.sha1hex(document)
local version = redis.call('GET', digest_key)
local created = 0
if not version then
  version = tostring(redis.call('INCR', prefix .. 'rules:seq'))
  redis.call('SET', prefix .. 'rules:v:' .. version, document)
  redis.call('SET', digest_key, version)
  redis.call('RPUSH', prefix .. 'rules:history', version)
  created = 1
end
local previous = redis.call('GET', prefix .. 'rules:active')
local activated = 0
if previous ~= version then
  redis.call('SET', prefix .. 'rules:active', version)
  redis.call('PUBLISH', prefix .. 'rules:events', version)
  activated = 1
end
return {tonumber(version), created, activated}
)lua";

const char* const kActivateScript = R"lua(
local prefix, version = ARGV[1], ARGV[2]
if redis.call('EXISTS', prefix .. 'rules:v:' .. version) == 0 then
  return redis.error_reply('no ruleset version ' .. version)
end
if redis.call('GET', prefix .. 'rules:active') ~= version then
  redis.call('SET', prefix .. 'rules:active', version)
  redis.call('PUBLISH', prefix .. 'rules:events', version)
end
return 1
)lua";

bool parseVersion(const char* text, size_t length, uint64_t& version) {
  std::string digits(text, length);
  char* end = nullptr;
  version = strtoull(digits.c_str(), &end, 10);
  return !digits.empty() && *end == '\0';
}

}  // namespace

bool RulesStore::push(const std::string& document, PushResult& result, std::string& error) {
  RedisReply reply = redis_.command({"EVAL", kPushScript, "0", keys_.prefix, document}, error);
  if (!reply) return false;
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
    error = "unexpected reply to the rules push script";
    return false;
  }
  result.version = static_cast<uint64_t>(reply->element[0]->integer);
  result.created = reply->element[1]->integer == 1;
  result.activated = reply->element[2]->integer == 1;
  return true;
}

bool RulesStore::activeVersion(uint64_t& version, std::string& error) {
  RedisReply reply = redis_.command({"GET", keys_.active()}, error);
  if (!reply) return false;
  version = 0;
  if (reply->type == REDIS_REPLY_NIL) return true;
  if (reply->type != REDIS_REPLY_STRING || !parseVersion(reply->str, reply->len, version)) {
    error = keys_.active() + " holds no version number";
    return false;
  }
  return true;
}

bool RulesStore::document(uint64_t version, std::string& document, std::string& error) {
  RedisReply reply = redis_.command({"GET", keys_.version(version)}, error);
  if (!reply) return false;
  if (reply->type != REDIS_REPLY_STRING) {
    error = "no ruleset version " + std::to_string(version) + " in Redis (" + keys_.version(version) + ")";
    return false;
  }
  document.assign(reply->str, reply->len);
  return true;
}

bool RulesStore::history(std::vector<uint64_t>& versions, std::string& error) {
  RedisReply reply = redis_.command({"LRANGE", keys_.history(), "0", "-1"}, error);
  if (!reply) return false;
  versions.clear();
  for (size_t i = 0; i < reply->elements; i++) {
    uint64_t version = 0;
    if (parseVersion(reply->element[i]->str, reply->element[i]->len, version)) versions.push_back(version);
  }
  return true;
}

bool RulesStore::activate(uint64_t version, std::string& error) {
  return static_cast<bool>(
      redis_.command({"EVAL", kActivateScript, "0", keys_.prefix, std::to_string(version)}, error));
}

}  // namespace strangler
