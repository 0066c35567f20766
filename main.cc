// The strangler command: `serve` (the supervisor, the default), `rules ...`
// and the internal `worker` entry point the supervisor execs.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <cxxopts.hpp>

#include "cli/commands.h"
#include "shared/config.h"
#include "shared/crash_handler.h"
#include "shared/process_log.h"
#include "supervisor/supervisor.h"
#include "worker/worker.h"

namespace {

using strangler::Config;

// Flags of `serve`, each standing for the environment variable it overrides.
struct FlagSpec {
  const char* flag;
  const char* variable;
  const char* help;
};

const FlagSpec kServeFlags[] = {
    {"listen", "STRANGLER_LISTEN", "proxy addresses, a comma list of HOST:PORT"},
    {"admin-listen", "STRANGLER_ADMIN_LISTEN", "admin HTTP address"},
    {"workers", "STRANGLER_WORKERS", "worker processes"},
    {"redis-url", "STRANGLER_REDIS_URL", "redis://[:password@]host:port[/db] or unix:///path"},
    {"redis-prefix", "STRANGLER_REDIS_PREFIX", "prefix of every Redis key and channel"},
    {"rules", "STRANGLER_RULES", "rules file or folder loaded into Redis"},
    {"drain-timeout", "STRANGLER_DRAIN_TIMEOUT", "longest wait for in-flight requests"},
    {"shutdown-delay", "STRANGLER_SHUTDOWN_DELAY", "time between failing readiness and draining"},
    {"access-log", "STRANGLER_ACCESS_LOG", "stdout, off or a file path"},
    {"log-level", "STRANGLER_LOG_LEVEL", "debug, info, warn or error"},
};

const char* const kUsage =
    "usage: strangler [serve] [--listen ADDR] [--workers N] [--rules PATH] [...]\n"
    "       strangler rules validate|push|show|history|rollback|explain|test ...\n"
    "       strangler limit get|set RPS\n"
    "       strangler --help | --version\n"
    "Settings come from STRANGLER_* environment variables; flags override them.\n";

// Parses `serve` flags into environment overrides (so workers see them too).
bool parseServeFlags(int argc, char** argv, std::map<std::string, std::string>& overrides) {
  cxxopts::Options options("strangler serve", "Run the Strangler supervisor and its workers.");
  for (const FlagSpec& spec : kServeFlags) {
    options.add_options()(spec.flag, std::string(spec.help) + " (" + spec.variable + ")", cxxopts::value<std::string>());
  }
  options.add_options()("h,help", "show this help");
  try {
    auto result = options.parse(argc, argv);
    if (result.count("help")) {
      std::cout << options.help() << "\n";
      exit(0);
    }
    if (!result.unmatched().empty()) {
      std::cerr << "strangler: unexpected argument '" << result.unmatched().front() << "'\n" << kUsage;
      return false;
    }
    for (const FlagSpec& spec : kServeFlags) {
      if (result.count(spec.flag)) overrides[spec.variable] = result[spec.flag].as<std::string>();
    }
  } catch (const cxxopts::exceptions::exception& error) {
    std::cerr << "strangler: " << error.what() << "\n" << kUsage;
    return false;
  }
  return true;
}

bool loadConfigOrExplain(const std::map<std::string, std::string>& overrides, Config& config) {
  std::string error;
  if (strangler::loadConfig(strangler::environmentWith(overrides), config, error)) return true;
  std::cerr << "strangler: configuration error: " << error << "\n";
  return false;
}

int serve(int argc, char** argv) {
  std::map<std::string, std::string> overrides;
  if (!parseServeFlags(argc, argv, overrides)) return 2;
  for (const auto& [name, value] : overrides) setenv(name.c_str(), value.c_str(), 1);

  Config config;
  if (!loadConfigOrExplain({}, config)) return 2;
  strangler::plog::setup("supervisor", config.log_level);
  strangler::installCrashHandler("supervisor");
  strangler::Supervisor supervisor(std::move(config));
  return supervisor.run();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return serve(argc, argv);
  std::string command = argv[1];

  if (command == "worker") return strangler::runWorker(argc, argv);
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (command == "--version" || command == "version") {
    std::cout << "strangler 0.1.0\n";
    return 0;
  }
  if (command == "rules") {
    Config config;
    if (!loadConfigOrExplain({}, config)) return 2;
    strangler::plog::setup("cli", config.log_level);
    return strangler::runRulesCommand(config, std::vector<std::string>(argv + 2, argv + argc));
  }
  if (command == "limit") {
    Config config;
    if (!loadConfigOrExplain({}, config)) return 2;
    strangler::plog::setup("cli", config.log_level);
    return strangler::runLimitCommand(config, std::vector<std::string>(argv + 2, argv + argc));
  }
  if (command == "serve") return serve(argc - 1, argv + 1);
  if (command[0] == '-') return serve(argc, argv);

  std::cerr << "strangler: unknown command '" << command << "'\n" << kUsage;
  return 2;
}
