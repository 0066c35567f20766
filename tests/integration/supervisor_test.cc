// The supervisor: start-up checks, Redis versions, worker replacement,
// reload and graceful stop, with the real binary.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <set>
#include <thread>

#include "tests/integration/harness.h"

using namespace harness;

namespace {

const std::vector<std::string> kUpstreams = {"monolith", "new-service"};

// /api/v2/ (or `api_prefix`) to the new service, anything else to the monolith.
std::string rulesFor(const std::string& api_prefix = "/api/v2/") {
  return R"({"upstreams": {"monolith": "{monolith}", "new-service": "{new-service}"}, "routes": [
      {"name": "api", "priority": 10, "match": {"path": {"prefix": ")" + api_prefix + R"("}}, "upstream": "new-service"},
      {"name": "legacy", "priority": -100, "match": {}, "upstream": "monolith"}]})";
}

// Runs `strangler serve` to its end.
CommandResult serveToExit(const Env& env) { return runStrangler({"serve"}, env, 10000); }

// Waits until a request for `path`, each on a new connection, is answered by `upstream`.
bool waitUntilServedBy(const Proxy& proxy, const std::string& path, const std::string& upstream) {
  auto served = [&] {
    Client client;
    Response response = client.get(proxy.url(path));
    return response.status == 200 && response.json()["upstream"] == upstream;
  };
  return waitUntil(served, 5000, path + " to reach " + upstream, 10);
}

// The inodes of the sockets process `pid` holds open.
std::set<std::string> socketInodes(pid_t pid) {
  std::set<std::string> inodes;
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  for (int fd = 0; fd < 4096; fd++) {
    char target[256];
    ssize_t length = readlink((dir + "/" + std::to_string(fd)).c_str(), target, sizeof target - 1);
    if (length <= 0) continue;
    std::string link(target, static_cast<size_t>(length));
    if (link.rfind("socket:", 0) == 0) inodes.insert(link);
  }
  return inodes;
}

}  // namespace

TEST_CASE("a malformed setting stops the start, naming the variable") {
  CommandResult result = serveToExit({{"STRANGLER_WORKERS", "many"}});
  CHECK(result.exit_code == 2);
  CHECK(result.err ==
        "strangler: configuration error: STRANGLER_WORKERS: expected a whole number from 1 to 256, got "
        "'many'\n");
}

TEST_CASE("invalid rules stop the start with file, line and column") {
  std::string dir = tempDir();
  std::ofstream(dir + "/rules.json") << "{\n  \"routes\": [{\"name\": \"x\", \"match\": {\"paht\": \"/\"}, \"upstream\": \"u\"}]\n}\n";
  RedisServer redis;
  CommandResult result = serveToExit({{"STRANGLER_RULES", dir + "/rules.json"},
                                      {"STRANGLER_REDIS_URL", redis.url()},
                                      {"STRANGLER_LISTEN", "127.0.0.1:" + std::to_string(freePort())}});
  CHECK(result.exit_code == 1);
  CHECK(result.err.find(dir + "/rules.json:2:46: unknown key 'paht' in match") != std::string::npos);
}

TEST_CASE("no Redis reachable: a clear error at once, not a hang") {
  auto start = std::chrono::steady_clock::now();
  CommandResult result =
      serveToExit({{"STRANGLER_REDIS_URL", "redis://127.0.0.1:" + std::to_string(freePort())},
                   {"STRANGLER_LISTEN", "127.0.0.1:" + std::to_string(freePort())}});
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(result.exit_code == 1);
  CHECK(result.err.find("cannot start: Redis unreachable") != std::string::npos);
  CHECK(result.err.find("Connection refused") != std::string::npos);
  CHECK(seconds < 5);
}

TEST_CASE("rules are stored in Redis as versions; identical content makes no new version") {
  RedisServer redis;
  EchoUpstream monolith("monolith");
  EchoUpstream fresh("new-service");
  ProxyOptions options;
  options.rules_json = fillInUrls(rulesFor(), {&monolith, &fresh});
  std::string prefix;
  {
    Proxy proxy(&redis, options);
    prefix = proxy.prefix();
    CHECK(redis.cli({"GET", prefix + "rules:active"}) == "1");
    std::string stored = redis.cli({"GET", prefix + "rules:v:1"});
    Json::Value document = parseJson(stored);
    CHECK(document["routes"].size() == 2);
    CHECK(document["upstreams"]["monolith"] == monolith.url());

    Client client;
    Response admin = client.get(proxy.adminUrl("/rules"));
    CHECK(admin.json()["version"] == 1);
    CHECK(admin.json()["rules"] == document);
  }
  // A second start with the same rules and prefix keeps version 1.
  options.env["STRANGLER_REDIS_PREFIX"] = prefix;
  Proxy again(&redis, options);
  CHECK(redis.cli({"GET", prefix + "rules:active"}) == "1");
  CHECK(redis.cli({"LLEN", prefix + "rules:history"}) == "1");
}

TEST_CASE("with STRANGLER_REDIS_URL unset a private redis-server serves, and goes at exit") {
  EchoUpstream monolith("monolith");
  EchoUpstream fresh("new-service");
  ProxyOptions options;
  options.rules_json = fillInUrls(rulesFor(), {&monolith, &fresh});
  options.private_redis = true;
  std::string socket_folder;
  {
    Proxy proxy(nullptr, options);
    Client client;
    CHECK(client.get(proxy.url("/api/v2/x")).json()["upstream"] == "new-service");
    std::string log = proxy.processLog();
    size_t at = log.find("\"socket\":\"");
    REQUIRE(at != std::string::npos);
    std::string socket = log.substr(at + 10, log.find('"', at + 10) - at - 10);
    socket_folder = socket.substr(0, socket.rfind('/'));
    CHECK(access(socket.c_str(), F_OK) == 0);
    proxy.process().signal(SIGTERM);
    std::optional<int> status = proxy.process().waitExit(10000);
    REQUIRE(status);
    CHECK(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
  }
  CHECK(access(socket_folder.c_str(), F_OK) != 0);
}

TEST_CASE("a worker killed with SIGKILL is replaced within a second; only a request it held is lost") {
  EchoStack stack(kUpstreams, rulesFor(), proxyOptions(2));

  std::vector<pid_t> before = stack.proxy.workerPids();
  REQUIRE(before.size() == 2);

  std::atomic<bool> running{true};
  std::atomic<int> answered{0};
  std::atomic<int> failed{0};
  std::thread load([&] {
    for (int i = 0; i < 2000 && running; i++) {
      Client client;  // a new connection each time, spread over both slots
      Response response = client.get(stack.proxy.url("/legacy"));
      (response.status == 200 ? answered : failed)++;
      sleepMs(2);
    }
  });
  sleepMs(200);
  kill(before[0], SIGKILL);
  CHECK(stack.proxy.waitForReplacement(before[0], 2, 1000 * kTimeScale));
  sleepMs(300);
  running = false;
  load.join();
  MESSAGE("answered " << answered.load() << ", failed " << failed.load());
  CHECK(answered.load() > 50);
  // The client sends one request at a time, so at most one was on the killed
  // worker: it dies with it. Every other one, including connections waiting
  // in the slot's accept queue, is answered by the survivor or the replacement.
  CHECK(failed.load() <= 1);
  CHECK(stack.proxy.processLogHas("\"msg\":\"worker died\""));
  CHECK(stack.proxy.processLogHas("\"status\":\"signal SIGKILL\""));
}

TEST_CASE("a worker shares no socket with its supervisor but its slot's listening socket") {
  EchoStack stack(kUpstreams, rulesFor(), proxyOptions(2));
  std::vector<pid_t> workers = stack.proxy.workerPids();
  REQUIRE(workers.size() == 2);

  // The supervisor's Redis connections, its admin listener and the other
  // slots' sockets would all show up here if a worker inherited them.
  std::set<std::string> supervisor_sockets = socketInodes(stack.proxy.process().pid());
  std::set<std::string> first_shared;
  for (pid_t worker : workers) {
    std::set<std::string> shared;
    for (const std::string& inode : socketInodes(worker)) {
      if (supervisor_sockets.count(inode)) shared.insert(inode);
    }
    CHECK(shared.size() == 1);
    if (first_shared.empty()) first_shared = shared;
    else CHECK(shared != first_shared);
  }
}

TEST_CASE("SIGTERM: requests in flight finish, then everything exits 0") {
  EchoStack stack(kUpstreams, rulesFor(), proxyOptions(2));
  std::vector<pid_t> workers = stack.proxy.workerPids();

  Response slow;
  std::thread in_flight([&] {
    Client client;
    slow = client.get(stack.proxy.url("/__echo/delay/800"));
  });
  sleepMs(200);
  stack.proxy.process().signal(SIGTERM);

  sleepMs(100);
  Client late;
  CHECK(late.get(stack.proxy.adminUrl("/readyz")).status == 503);

  in_flight.join();
  CHECK(slow.status == 200);
  CHECK(slow.json()["upstream"] == "monolith");
  std::optional<int> status = stack.proxy.process().waitExit(10000);
  REQUIRE(status);
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
  for (pid_t worker : workers) CHECK(kill(worker, 0) != 0);
}

TEST_CASE("SIGHUP loads changed rules as a new version; invalid rules leave the running one") {
  EchoStack stack(kUpstreams, rulesFor());
  Client client;
  CHECK(client.get(stack.proxy.url("/api/v3/x")).json()["upstream"] == "monolith");

  stack.writeRules(rulesFor("/api/v3/"));
  stack.proxy.process().signal(SIGHUP);
  CHECK(waitUntilServedBy(stack.proxy, "/api/v3/x", "new-service"));
  CHECK(stack.redis.cli({"GET", stack.proxy.prefix() + "rules:active"}) == "2");

  writeFile(stack.proxy.rulesPath(), "{\"routes\": [");
  stack.proxy.process().signal(SIGHUP);
  sleepMs(300);
  CHECK(stack.redis.cli({"GET", stack.proxy.prefix() + "rules:active"}) == "2");
  CHECK(stack.proxy.processLogHas("reload refused: the running version stays"));
  Client after;
  CHECK(after.get(stack.proxy.url("/api/v3/x")).json()["upstream"] == "new-service");
}

TEST_CASE("SIGHUPs in quick succession coalesce into one rollout to the newest files") {
  EchoStack stack(kUpstreams, rulesFor());
  auto versions = [&] {
    return std::stoi(stack.redis.cli({"LLEN", stack.proxy.prefix() + "rules:history"}));
  };

  // Each SIGHUP restarts a 10 ms wait for the next. A busy machine may let
  // more than that pass between two of them: that attempt proves nothing,
  // and another is made.
  bool concluded = false;
  for (int attempt = 0; attempt < 5 && !concluded; attempt++) {
    int before = versions();
    std::string last_prefix;
    auto last_signal = std::chrono::steady_clock::now();
    auto longest_gap = std::chrono::steady_clock::duration::zero();
    for (int edit = 0; edit < 3; edit++) {
      // Long enough for a supervisor that did not wait to reload in between.
      if (edit > 0) sleepMs(3);
      last_prefix = "/api/v" + std::to_string(10 + attempt * 3 + edit) + "/";
      stack.writeRules(rulesFor(last_prefix));
      stack.proxy.process().signal(SIGHUP);
      auto now = std::chrono::steady_clock::now();
      if (edit > 0) longest_gap = std::max(longest_gap, now - last_signal);
      last_signal = now;
    }

    REQUIRE(waitUntilServedBy(stack.proxy, last_prefix + "x", "new-service"));
    sleepMs(200);
    if (longest_gap > std::chrono::milliseconds(8)) {
      MESSAGE("SIGHUPs " << std::chrono::duration_cast<std::chrono::microseconds>(longest_gap).count()
                         << " us apart: this attempt proves nothing");
      continue;
    }
    // One new version, holding the last edit; the first two were never read.
    CHECK(versions() == before + 1);
    CHECK(stack.redis.cli({"GET", stack.proxy.prefix() + "rules:active"}) == std::to_string(before + 1));
    concluded = true;
  }
  CHECK(concluded);
}

TEST_CASE("a crashing worker prints a JSON line and a backtrace, and is replaced") {
  EchoStack stack(kUpstreams, rulesFor());
  stack.proxy.process().expectCrashReport();
  std::vector<pid_t> before = stack.proxy.workerPids();
  REQUIRE(before.size() == 1);

  kill(before[0], SIGSEGV);
  REQUIRE(stack.proxy.waitForReplacement(before[0], 1, 3000 * kTimeScale));
  Client client;
  CHECK(client.get(stack.proxy.url("/after-crash")).json()["upstream"] == "monolith");

  std::string log = stack.proxy.processLog();
  std::string crash_line = "{\"level\":\"fatal\",\"msg\":\"crashed\",\"signal\":11,\"signal_name\":\"SEGV\",\"pid\":" +
                           std::to_string(before[0]) + ",\"role\":\"worker\"";
  CHECK(log.find(crash_line) != std::string::npos);
  // backtrace_symbols_fd writes one "binary(function+offset) [address]" line per frame.
  CHECK(log.find("strangler(") != std::string::npos);
  CHECK(log.find("\"status\":\"signal SIGSEGV\"") != std::string::npos);
}

TEST_CASE("4 workers, 100,000 requests: one whole JSON access line each") {
  EchoStack stack(kUpstreams, rulesFor(), proxyOptions(4));

  std::string output =
      runCommand("h2load --h1 -n 100000 -c 32 -t 2 " + stack.proxy.url("/api/v2/many") + " 2>&1");
  CHECK(output.find("100000 succeeded, 0 failed") != std::string::npos);

  stack.proxy.process().signal(SIGTERM);
  REQUIRE(stack.proxy.process().waitExit(20000 * kTimeScale));
  std::vector<Json::Value> lines = stack.proxy.accessLog();  // throws on any line that is not JSON
  CHECK(lines.size() == 100000);
  std::set<std::string> ids;
  std::set<int> workers;
  for (const Json::Value& line : lines) {
    ids.insert(line["request_id"].asString());
    workers.insert(line["worker"].asInt());
  }
  CHECK(ids.size() == 100000);
  CHECK(workers.size() == 4);
}
