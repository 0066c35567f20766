// Versioned rulesets in Redis: immutable versions, an active pointer that
// moves atomically, and an event on every activation.
//
// Keys, under the configured prefix P:
//   P rules:seq            last version number handed out
//   P rules:v:N            the canonical JSON document of version N (immutable)
//   P rules:digest:SHA1    the version holding a document with this digest
//   P rules:history        list of versions, oldest first
//   P rules:active         the active version
// Channel P rules:events   a version number, published when it becomes active
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "shared/redis_client.h"

namespace strangler {

struct RulesKeys {
  explicit RulesKeys(std::string prefix) : prefix(std::move(prefix)) {}

  std::string version(uint64_t number) const { return prefix + "rules:v:" + std::to_string(number); }
  std::string active() const { return prefix + "rules:active"; }
  std::string history() const { return prefix + "rules:history"; }
  std::string events() const { return prefix + "rules:events"; }

  std::string prefix;
};

struct PushResult {
  uint64_t version = 0;
  bool created = false;    // false: identical content already had this version
  bool activated = false;  // false: it was already the active version
};

class RulesStore {
 public:
  RulesStore(RedisConnection& redis, std::string prefix) : redis_(redis), keys_(std::move(prefix)) {}

  // Stores `document` (unless identical content has a version already) and
  // makes it active, in one atomic script, then publishes the event.
  bool push(const std::string& document, PushResult& result, std::string& error);

  // The active version, or 0 when none is set.
  bool activeVersion(uint64_t& version, std::string& error);
  bool document(uint64_t version, std::string& document, std::string& error);
  bool history(std::vector<uint64_t>& versions, std::string& error);

  // Makes an existing version active again.
  bool activate(uint64_t version, std::string& error);

 private:
  RedisConnection& redis_;
  RulesKeys keys_;
};

}  // namespace strangler
