// Rollouts: every request is routed by exactly one ruleset version, kept-alive
// clients keep their connection across rollouts (handed to the new worker),
// and pushes from anywhere reach every supervisor sharing the Redis.
#include <doctest/doctest.h>

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include <atomic>
#include <fstream>
#include <thread>

#include "tests/integration/harness.h"

using namespace harness;

namespace {

// Version A sends /x to the monolith, version B to the new service.
std::string rulesSending(const std::string& upstream, const EchoUpstream& monolith, const EchoUpstream& fresh) {
  return R"({"upstreams": {"monolith": ")" + monolith.url() + R"(", "new-service": ")" + fresh.url() +
         R"("}, "routes": [{"name": "to-)" + upstream + R"(", "match": {}, "upstream": ")" + upstream + R"("}]})";
}

std::string activeVersion(const Proxy& proxy) {
  Client client;
  return client.get(proxy.adminUrl("/rules")).json()["version"].asString();
}

// Waits until every slot serves `version` and the old workers were told to drain.
bool waitForVersion(const Proxy& proxy, const std::string& version, int timeout_ms = 10000) {
  for (int waited = 0; waited < timeout_ms; waited += 20) {
    Client client;
    if (activeVersion(proxy) == version && client.get(proxy.adminUrl("/readyz")).status == 200) {
      sleepMs(200);  // the drain order, and the handover of idle connections, follow readiness
      return true;
    }
    sleepMs(20);
  }
  return false;
}

void writeRules(const Proxy& proxy, const std::string& rules) {
  std::ofstream(proxy.rulesPath(), std::ios::trunc) << rules;
}

}  // namespace

TEST_CASE("a kept-alive client keeps its connection across rollouts; each request uses the version then active") {
  RedisServer redis;
  EchoUpstream monolith("monolith");
  EchoUpstream fresh("new-service");
  ProxyOptions options;
  options.rules_json = rulesSending("monolith", monolith, fresh);
  options.workers = 2;
  options.env["STRANGLER_DEBUG_HEADERS"] = "1";
  Proxy proxy(&redis, options);

  Client client;
  std::vector<std::string> versions;
  std::vector<std::string> upstreams;
  long new_connections = 0;
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 5; i++) {
      Response response = client.get(proxy.url("/x"));
      REQUIRE(response.status == 200);
      new_connections += response.connects;
      versions.push_back(*response.header("X-Strangler-Rules-Version"));
      upstreams.push_back(response.json()["upstream"].asString());
    }
    if (round == 2) break;
    writeRules(proxy, rulesSending(round == 0 ? "new-service" : "monolith", monolith, fresh));
    proxy.process().signal(SIGHUP);
    // The third round's rules equal the first's: version 1 is active again.
    REQUIRE(waitForVersion(proxy, round == 0 ? "2" : "1"));
  }

  CHECK(new_connections == 1);
  for (int i = 0; i < 15; i++) {
    CAPTURE(i);
    CHECK(versions[static_cast<size_t>(i)] == (i / 5 == 1 ? "2" : "1"));
    CHECK(upstreams[static_cast<size_t>(i)] == (i / 5 == 1 ? "new-service" : "monolith"));
  }
  CHECK(proxy.processLogHas("\"connections_handed_out\":1"));
}

TEST_CASE("a slow request accepted under the old version finishes there; new requests use the new one") {
  RedisServer redis;
  EchoUpstream monolith("monolith");
  EchoUpstream fresh("new-service");
  ProxyOptions options;
  options.rules_json = rulesSending("monolith", monolith, fresh);
  Proxy proxy(&redis, options);

  Response slow;
  std::thread in_flight([&] {
    Client client;
    slow = client.get(proxy.url("/__echo/delay/1500"));
  });
  sleepMs(200);
  writeRules(proxy, rulesSending("new-service", monolith, fresh));
  proxy.process().signal(SIGHUP);
  REQUIRE(waitForVersion(proxy, "2"));

  Client after;
  CHECK(after.get(proxy.url("/after")).json()["upstream"] == "new-service");
  in_flight.join();
  REQUIRE(slow.status == 200);
  CHECK(slow.json()["upstream"] == "monolith");

  std::vector<Json::Value> lines = proxy.accessLog();
  for (const Json::Value& line : lines) {
    bool old = line["path"] == "/__echo/delay/1500";
    CHECK(line["rules_version"] == (old ? 1 : 2));
  }
}

TEST_CASE("a push from the CLI rolls out on every supervisor sharing the Redis") {
  RedisServer redis;
  EchoUpstream monolith("monolith");
  EchoUpstream fresh("new-service");
  ProxyOptions first_options;
  first_options.rules_json = rulesSending("monolith", monolith, fresh);
  Proxy first(&redis, first_options);

  ProxyOptions second_options;
  second_options.rules_json = first_options.rules_json;
  second_options.env["STRANGLER_REDIS_PREFIX"] = first.prefix();
  Proxy second(&redis, second_options);
  CHECK(activeVersion(second) == "1");

  std::string dir = tempDir();
  std::ofstream(dir + "/rules.json") << rulesSending("new-service", monolith, fresh);
  Process push;
  push.start({buildDir() + "/strangler", "rules", "push", dir + "/rules.json"},
             {{"STRANGLER_REDIS_URL", redis.url()}, {"STRANGLER_REDIS_PREFIX", first.prefix()}}, dir + "/out",
             dir + "/err");
  std::optional<int> status = push.waitExit(5000);
  REQUIRE(status);
  CHECK(WEXITSTATUS(*status) == 0);

  CHECK(waitForVersion(first, "2", 3000));
  CHECK(waitForVersion(second, "2", 3000));
  Client a;
  Client b;
  CHECK(a.get(first.url("/x")).json()["upstream"] == "new-service");
  CHECK(b.get(second.url("/x")).json()["upstream"] == "new-service");
}

TEST_CASE("SIGTERM with 20 slow requests in flight: all 20 complete with 200, exit 0") {
  RedisServer redis;
  EchoUpstream monolith("monolith");
  EchoUpstream fresh("new-service");
  ProxyOptions options;
  options.rules_json = rulesSending("monolith", monolith, fresh);
  options.workers = 2;
  Proxy proxy(&redis, options);

  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 20; i++) {
    clients.emplace_back([&] {
      Client client;
      if (client.get(proxy.url("/__echo/delay/1000")).status == 200) ok++;
    });
  }
  sleepMs(300);
  proxy.process().signal(SIGTERM);
  for (std::thread& client : clients) client.join();
  CHECK(ok.load() == 20);
  std::optional<int> status = proxy.process().waitExit(10000);
  REQUIRE(status);
  CHECK(WEXITSTATUS(*status) == 0);
}

TEST_CASE("systemd is told READY, RELOADING and STOPPING through NOTIFY_SOCKET") {
  std::string dir = tempDir();
  std::string socket_path = dir + "/notify.sock";
  int listener = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  strncpy(address.sun_path, socket_path.c_str(), sizeof address.sun_path - 1);
  REQUIRE(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  auto nextMessage = [&](int timeout_ms) {
    pollfd wait = {listener, POLLIN, 0};
    if (poll(&wait, 1, timeout_ms) <= 0) return std::string("<none>");
    char buffer[4096];
    ssize_t count = recv(listener, buffer, sizeof buffer, 0);
    return std::string(buffer, count > 0 ? static_cast<size_t>(count) : 0);
  };

  RedisServer redis;
  EchoUpstream monolith("monolith");
  EchoUpstream fresh("new-service");
  ProxyOptions options;
  options.rules_json = rulesSending("monolith", monolith, fresh);
  options.env["NOTIFY_SOCKET"] = socket_path;
  Proxy proxy(&redis, options);
  CHECK(nextMessage(5000) == "READY=1\nSTATUS=serving rules version 1");

  writeRules(proxy, rulesSending("new-service", monolith, fresh));
  proxy.process().signal(SIGHUP);
  std::string reloading = nextMessage(5000);
  CHECK(reloading.rfind("RELOADING=1\nMONOTONIC_USEC=", 0) == 0);
  CHECK(reloading.find("\nSTATUS=rolling out rules version 2") != std::string::npos);
  CHECK(nextMessage(5000) == "READY=1\nSTATUS=serving rules version 2");

  proxy.process().signal(SIGTERM);
  CHECK(nextMessage(5000) == "STOPPING=1\nSTATUS=draining");
  close(listener);
}
