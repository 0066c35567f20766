// The `strangler rules ...` commands.
#include <strings.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <sstream>

#include <json/json.h>

#include "cli/commands.h"
#include "shared/http_path.h"
#include "shared/redis_client.h"
#include "shared/router.h"
#include "shared/rules.h"
#include "shared/rules_store.h"

namespace strangler {
namespace {

constexpr int kRedisTimeoutMs = 2000;

const char* const kRulesUsage =
    "usage: strangler rules validate PATH\n"
    "       strangler rules push PATH\n"
    "       strangler rules show [VERSION]\n"
    "       strangler rules history\n"
    "       strangler rules rollback VERSION\n"
    "       strangler rules explain [--rules PATH] METHOD URL [-H 'Name: value']...\n";

int usage() {
  std::cerr << kRulesUsage;
  return 2;
}

std::unique_ptr<RedisConnection> openRedis(const Config& config) {
  if (config.redis_url.empty()) {
    std::cerr << "strangler: STRANGLER_REDIS_URL is unset; set it to the Redis the proxies share\n";
    return nullptr;
  }
  std::string error;
  auto redis = RedisConnection::open(config.redis_url, kRedisTimeoutMs, error);
  if (!redis) std::cerr << "strangler: " << error << "\n";
  return redis;
}

bool parseVersionArgument(const std::string& text, uint64_t& version) {
  char* end = nullptr;
  version = strtoull(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || version == 0) {
    std::cerr << "strangler: expected a version number, got '" << text << "'\n";
    return false;
  }
  return true;
}

LoadResult loadAndReport(const std::string& path) {
  LoadResult loaded = loadRulesFromPath(path);
  for (const std::string& message : loaded.errors) std::cerr << message << "\n";
  return loaded;
}

int validate(const std::vector<std::string>& arguments) {
  if (arguments.size() != 2) return usage();
  LoadResult loaded = loadAndReport(arguments[1]);
  if (!loaded.ruleset) return 1;
  std::cout << arguments[1] << ": ok, " << loaded.ruleset->upstreams.size() << " upstreams, "
            << loaded.ruleset->routes.size() << " routes\n";
  return 0;
}

int push(const Config& config, const std::vector<std::string>& arguments) {
  if (arguments.size() != 2) return usage();
  LoadResult loaded = loadAndReport(arguments[1]);
  if (!loaded.ruleset) return 1;
  auto redis = openRedis(config);
  if (!redis) return 1;

  PushResult pushed;
  std::string error;
  if (!RulesStore(*redis, config.redis_prefix).push(loaded.document, pushed, error)) {
    std::cerr << "strangler: " << error << "\n";
    return 1;
  }
  std::cout << pushed.version << "\n";
  if (!pushed.created) std::cerr << "identical to version " << pushed.version << ": no new version made\n";
  return 0;
}

int show(const Config& config, const std::vector<std::string>& arguments) {
  if (arguments.size() > 2) return usage();
  auto redis = openRedis(config);
  if (!redis) return 1;
  RulesStore store(*redis, config.redis_prefix);
  std::string error;
  uint64_t version = 0;
  if (arguments.size() == 2) {
    if (!parseVersionArgument(arguments[1], version)) return 2;
  } else if (!store.activeVersion(version, error) || version == 0) {
    std::cerr << "strangler: " << (error.empty() ? "no active version" : error) << "\n";
    return 1;
  }

  std::string document;
  if (!store.document(version, document, error)) {
    std::cerr << "strangler: " << error << "\n";
    return 1;
  }
  Json::Value parsed;
  Json::CharReaderBuilder reader;
  std::string parse_errors;
  std::istringstream input(document);
  if (!Json::parseFromStream(reader, input, &parsed, &parse_errors)) {
    std::cout << document << "\n";
    return 0;
  }
  Json::StreamWriterBuilder writer;
  writer["indentation"] = "  ";
  std::cout << Json::writeString(writer, parsed) << "\n";
  return 0;
}

int history(const Config& config) {
  auto redis = openRedis(config);
  if (!redis) return 1;
  RulesStore store(*redis, config.redis_prefix);
  std::vector<uint64_t> versions;
  uint64_t active = 0;
  std::string error;
  if (!store.history(versions, error) || !store.activeVersion(active, error)) {
    std::cerr << "strangler: " << error << "\n";
    return 1;
  }
  for (uint64_t version : versions) std::cout << version << (version == active ? " active" : "") << "\n";
  return 0;
}

int rollback(const Config& config, const std::vector<std::string>& arguments) {
  if (arguments.size() != 2) return usage();
  uint64_t version = 0;
  if (!parseVersionArgument(arguments[1], version)) return 2;
  auto redis = openRedis(config);
  if (!redis) return 1;
  std::string error;
  if (!RulesStore(*redis, config.redis_prefix).activate(version, error)) {
    std::cerr << "strangler: " << error << "\n";
    return 1;
  }
  std::cout << version << "\n";
  return 0;
}

// Splits "http://host/path?query" or "/path?query" for explain.
void splitUrl(const std::string& url, std::string& host, std::string& path, std::string& query) {
  std::string rest = url;
  size_t scheme = rest.find("://");
  if (scheme != std::string::npos) {
    size_t slash = rest.find_first_of("/?", scheme + 3);
    host = rest.substr(scheme + 3, slash == std::string::npos ? std::string::npos : slash - scheme - 3);
    rest = slash == std::string::npos ? "/" : rest.substr(slash);
  }
  size_t question = rest.find('?');
  path = rest.substr(0, question);
  query = question == std::string::npos ? "" : rest.substr(question + 1);
}

int explain(const Config& config, const std::vector<std::string>& arguments) {
  std::string rules_path = config.rules_path;
  std::vector<std::string> positional;
  HeaderList headers;
  for (size_t i = 1; i < arguments.size(); i++) {
    if (arguments[i] == "--rules" && i + 1 < arguments.size()) {
      rules_path = arguments[++i];
    } else if (arguments[i] == "-H" && i + 1 < arguments.size()) {
      std::string header = arguments[++i];
      size_t colon = header.find(':');
      if (colon == std::string::npos) return usage();
      size_t value_start = header.find_first_not_of(' ', colon + 1);
      headers.emplace_back(header.substr(0, colon), value_start == std::string::npos ? "" : header.substr(value_start));
    } else {
      positional.push_back(arguments[i]);
    }
  }
  if (positional.size() != 2 || rules_path.empty()) {
    if (rules_path.empty()) std::cerr << "strangler: give --rules PATH or set STRANGLER_RULES\n";
    return usage();
  }

  LoadResult loaded = loadAndReport(rules_path);
  if (!loaded.ruleset) return 1;
  std::shared_ptr<const Ruleset> ruleset(std::move(loaded.ruleset));
  Router router(ruleset, 0);

  std::string host;
  std::string raw_path;
  std::string query;
  splitUrl(positional[1], host, raw_path, query);
  for (const auto& [name, value] : headers) {
    if (name.size() == 4 && strncasecmp(name.c_str(), "host", 4) == 0) host = value;
  }
  std::string path;
  if (normalizePath(raw_path, config.encoded_slashes, path) != PathVerdict::ok) {
    std::cout << "400: the path '" << raw_path << "' is refused before routing\n";
    return 1;
  }

  RequestFacts facts;
  facts.method = positional[0];
  facts.path = path;
  facts.host = host;
  facts.query = query;
  facts.headers = &headers;
  for (const Route& route : ruleset->routes) {
    std::string failed = router.firstFailedCondition(route, facts);
    if (failed.empty()) {
      std::cout << "route " << route.name << " -> "
                << (route.respond ? "respond " + std::to_string(route.respond->status) : "upstream " + route.upstream)
                << "\n";
      return 0;
    }
    std::cout << "  skipped " << route.name << " (priority " << route.priority << "): " << failed
              << " does not match\n";
  }
  std::cout << "no route: 404\n";
  return 1;
}

}  // namespace

int runRulesCommand(const Config& config, const std::vector<std::string>& arguments) {
  if (arguments.empty()) return usage();
  const std::string& verb = arguments[0];
  if (verb == "validate") return validate(arguments);
  if (verb == "push") return push(config, arguments);
  if (verb == "show") return show(config, arguments);
  if (verb == "history") return history(config);
  if (verb == "rollback") return rollback(config, arguments);
  if (verb == "explain") return explain(config, arguments);
  return usage();
}

}  // namespace strangler
