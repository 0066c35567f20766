// `strangler rules test` and `strangler rules explain -d`, run as the real
// binary: the shipped example cases pass against the shipped rules, and a
// failing case is listed with what it got instead.
#include <doctest/doctest.h>

#include "tests/integration/harness.h"

using namespace harness;

namespace {

std::string writeTemp(const std::string& name, const std::string& text) {
  std::string path = tempDir() + "/" + name;
  writeFile(path, text);
  return path;
}

const std::string kSource = STRANGLER_SOURCE_DIR;

}  // namespace

TEST_CASE("the example cases in conf/rules.test.json pass against conf/rules.json") {
  CommandResult result =
      runStrangler({"rules", "test", "--rules", kSource + "/conf/rules.json", kSource + "/conf/rules.test.json"});
  CHECK(result.err == "");
  CHECK(result.out == "11 cases, 11 passed, 0 failed\n");
  CHECK(result.exit_code == 0);
}

TEST_CASE("rules test lists each case that routes elsewhere, with what it got") {
  std::string cases = writeTemp("cases.json", R"([
    {"name": "ok", "request": {"url": "/legacy/x"}, "expect": {"upstream": "monolith"}},
    {"name": "wrong route", "request": {"url": "/legacy/x"}, "expect": {"route": "new-service-api"}},
    {"name": "wrong status", "request": {"method": "HEAD", "url": "/legacy/reports/1"}, "expect": {"status": 404}},
    {"name": "split", "request": {"url": "/rpc", "body": [{"jsonrpc": "2.0", "method": "orders.list", "id": 1},
                                                         {"jsonrpc": "2.0", "method": "x", "id": 2}]},
     "expect": {"route": "monolith"}}
  ])");
  CommandResult result = runStrangler({"rules", "test", "--rules", kSource + "/conf/rules.json", cases});
  CHECK(result.exit_code == 1);
  CHECK(result.out ==
        "FAIL wrong route: GET /legacy/x: expected route new-service-api, got route monolith -> upstream monolith\n"
        "FAIL wrong status: HEAD /legacy/reports/1: expected status 404, got route retired-reports -> respond 410\n"
        "FAIL split: POST /rpc: expected route monolith, got split: route new-service-rpc -> upstream new-service "
        "(element 0); route monolith -> upstream monolith (element 1)\n"
        "4 cases, 1 passed, 3 failed\n");

  std::string malformed = writeTemp("bad.json", R"([{"name": "x", "request": {"url": "/"}, "expect": {"rout": "a"}}])");
  CommandResult refused = runStrangler({"rules", "test", "--rules", kSource + "/conf/rules.json", malformed});
  CHECK(refused.exit_code == 2);
  CHECK(refused.err == malformed + ": case 0.expect: unknown key 'rout' (expected one of: route, upstream, status, "
                                   "calls)\n");
}

TEST_CASE("rules explain -d shows how the body was read and what each call picks") {
  CommandResult single = runStrangler({"rules", "explain", "--rules", kSource + "/conf/rules.json", "POST", "/rpc",
                                       "-d", R"({"jsonrpc":"2.0","method":"orders.create","id":7})"});
  CHECK(single.exit_code == 0);
  CHECK(single.out ==
        "body: a JSON-RPC call, method orders.create, id 7\n"
        "  skipped new-service-api (priority 10): path does not match\n"
        "  skipped new-service-canary (priority 10): headers.x-backend does not match\n"
        "route new-service-rpc -> upstream new-service\n");

  CommandResult batch = runStrangler({"rules", "explain", "--rules", kSource + "/conf/rules.json", "POST", "/rpc",
                                      "-d", R"([{"jsonrpc":"2.0","method":"orders.list","id":1},5])"});
  CHECK(batch.exit_code == 0);
  CHECK(batch.out ==
        "body: a JSON-RPC batch of 2 elements\n"
        "call 0 (method orders.list, id 1):\n"
        "    skipped new-service-api (priority 10): path does not match\n"
        "    skipped new-service-canary (priority 10): headers.x-backend does not match\n"
        "  -> route new-service-rpc -> upstream new-service\n"
        "element 1: not a valid call, so it goes where the body would go uninspected\n"
        "split: route new-service-rpc -> upstream new-service (element 0); the proxy answers element 1\n");

  CommandResult not_rpc = runStrangler(
      {"rules", "explain", "--rules", kSource + "/conf/rules.json", "POST", "/rpc", "-d", "plain text"});
  CHECK(not_rpc.out ==
        "body: not a JSON-RPC 2.0 request: every jsonrpc condition is false\n"
        "  skipped new-service-api (priority 10): path does not match\n"
        "  skipped new-service-canary (priority 10): headers.x-backend does not match\n"
        "  skipped new-service-rpc (priority 10): jsonrpc does not match\n"
        "  skipped retired-reports (priority 5): path does not match\n"
        "route monolith -> upstream monolith\n");
}
