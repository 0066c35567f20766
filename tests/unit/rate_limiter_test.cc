// The rate limiter's pure parts: limit text, the demand estimate, the lease
// ledger's arithmetic (windows, credit, batch sizes) and its settings.
#include "worker/rate_limiter.h"

#include <doctest/doctest.h>

#include <chrono>
#include <map>

#include "shared/config.h"
#include "shared/rate_limit_store.h"

using namespace strangler;
using std::chrono::milliseconds;

namespace {

const LimiterInstant kStart = LimiterClock::now();

LimiterInstant at(int64_t ms) {
  return kStart + milliseconds(ms);
}

// A grant for `window` as the lease script answers it.
LeaseGrant grantFor(int64_t window, int64_t granted, int64_t remaining, int64_t limit, int64_t ends_in_ms,
                    int64_t starts_in_ms = 0, int64_t workers = 1) {
  LeaseGrant grant;
  grant.window = window;
  grant.granted = granted;
  grant.remaining = remaining;
  grant.limit = limit;
  grant.ends_in_ms = ends_in_ms;
  grant.starts_in_ms = starts_in_ms;
  grant.workers = workers;
  return grant;
}

// Takes `count` single requests at `ms`; returns how many were admitted.
int takeMany(LeaseLedger& ledger, int count, int64_t ms, bool credit = true) {
  int admitted = 0;
  for (int i = 0; i < count; i++) admitted += ledger.take(1, at(ms), credit) == LeaseLedger::Verdict::admit;
  return admitted;
}

SettingLookup fixed(std::map<std::string, std::string> values) {
  return [values](const std::string& name) -> std::optional<std::string> {
    auto found = values.find(name);
    if (found == values.end()) return std::nullopt;
    return found->second;
  };
}

}  // namespace

TEST_CASE("limit text: whole numbers, 0, -1 and off") {
  int64_t limit = 7;
  CHECK(parseLimit("2000", limit));
  CHECK(limit == 2000);
  CHECK(parseLimit("0", limit));
  CHECK(limit == 0);
  CHECK(parseLimit("off", limit));
  CHECK(limit == kLimitOff);
  CHECK(parseLimit("-1", limit));
  CHECK(limit == kLimitOff);
  CHECK(parseLimit("1000000000000000", limit));
  for (const char* bad : {"", "-2", "1e6", " 5", "5 ", "OFF", "1000000000000001", "12345678901234567"}) {
    CHECK_MESSAGE(!parseLimit(bad, limit), bad);
  }
  CHECK(formatLimit(kLimitOff) == "off");
  CHECK(formatLimit(2000) == "2000");
}

TEST_CASE("STRANGLER_RATE_LIMIT_FAILURE is open or closed, open by default") {
  Config config;
  std::string error;
  REQUIRE(loadConfig(fixed({}), config, error));
  CHECK(config.rate_limit_failure == RateLimitFailure::open);
  REQUIRE(loadConfig(fixed({{"STRANGLER_RATE_LIMIT_FAILURE", "closed"}}), config, error));
  CHECK(config.rate_limit_failure == RateLimitFailure::closed);

  CHECK_FALSE(loadConfig(fixed({{"STRANGLER_RATE_LIMIT_FAILURE", "shut"}}), config, error));
  CHECK(error.find("STRANGLER_RATE_LIMIT_FAILURE") != std::string::npos);
  CHECK(error.find("open or closed") != std::string::npos);
}

TEST_CASE("the demand estimate converges to a steady rate and decays when it stops") {
  RateEstimator estimator(milliseconds(500));
  for (int ms = 0; ms < 3000; ms++) estimator.record(2, at(ms));  // 2000 per second
  CHECK(estimator.perSecond(at(3000)) == doctest::Approx(2000).epsilon(0.02));
  CHECK(estimator.perSecond(at(5000)) < 50);
}

TEST_CASE("limit 0 refuses everything and off admits everything, with no lease") {
  LeaseLedger blocked(1, 0);
  CHECK(blocked.take(1, at(0), true) == LeaseLedger::Verdict::over_limit);
  CHECK(blocked.leaseWanted(at(0)) == 0);

  LeaseLedger open(1, kLimitOff);
  CHECK(takeMany(open, 1000, 0) == 1000);
  CHECK(open.leaseWanted(at(0)) == 0);
  CHECK_FALSE(open.preLeaseAt());
}

TEST_CASE("tokens are used within their window and lapse when it ends") {
  LeaseLedger ledger(1, 1000);
  ledger.granted(grantFor(100, 50, 950, 1000, 400), at(0), at(1));
  CHECK(ledger.inHand(at(1)) == 50);
  CHECK(takeMany(ledger, 30, 10) == 30);
  CHECK(ledger.inHand(at(10)) == 20);

  // The window's end is counted from the send: 400 ms after it.
  CHECK(ledger.inHand(at(399)) == 20);
  CHECK(ledger.inHand(at(400)) == 0);
  CHECK(ledger.lapsed() == 20);
}

TEST_CASE("a window known to be used up refuses until it ends") {
  LeaseLedger ledger(1, 100);
  ledger.granted(grantFor(100, 10, 0, 100, 500), at(0), at(1));
  CHECK(takeMany(ledger, 10, 5) == 10);
  CHECK(ledger.take(1, at(6), true) == LeaseLedger::Verdict::over_limit);
  CHECK(ledger.leaseWanted(at(6)) == 0);
  CHECK(ledger.debt() == 0);
  // The next window is another matter.
  CHECK(ledger.take(1, at(501), true) == LeaseLedger::Verdict::admit);
  CHECK(ledger.debt() == 1);
}

TEST_CASE("credit bridges a lease on its way, is capped, and is paid from the next tokens") {
  // Share 10000 per worker: credit of 50.
  LeaseLedger ledger(2, 20000);
  CHECK(ledger.creditCap() == 50);
  CHECK(takeMany(ledger, 60, 0) == 50);
  CHECK(ledger.take(1, at(0), true) == LeaseLedger::Verdict::unknown);
  CHECK(ledger.debt() == 50);
  CHECK(ledger.leaseWanted(at(0)) >= 51);

  ledger.granted(grantFor(7, 80, 19920, 20000, 900), at(0), at(1));
  CHECK(ledger.debt() == 0);
  CHECK(ledger.inHand(at(2)) == 30);

  // Without credit (Redis unreachable) an empty hand decides nothing.
  LeaseLedger failing(1, 20000);
  CHECK(failing.take(1, at(0), false) == LeaseLedger::Verdict::unknown);
}

TEST_CASE("debt a used-up window cannot pay is written off, not carried") {
  LeaseLedger ledger(1, 1000);
  CHECK(ledger.creditCap() == 5);
  CHECK(takeMany(ledger, 5, 0) == 5);
  ledger.granted(grantFor(9, 2, 0, 1000, 900), at(0), at(1));
  CHECK(ledger.debt() == 0);
  CHECK(ledger.writtenOff() == 3);
  CHECK(ledger.take(1, at(2), true) == LeaseLedger::Verdict::over_limit);
}

TEST_CASE("batches follow a tenth of a second of demand, capped by the share of the limit") {
  LeaseLedger ledger(4, 2000);
  CHECK(ledger.batchSize(at(0)) == 1);
  // 3000 requests a second for 4 s: a batch of 300, under the share of 2000 / 4.
  for (int ms = 0; ms < 4000; ms++) ledger.take(3, at(ms), false);
  CHECK(ledger.batchSize(at(4000)) == 300);
  ledger.setLimit(800);
  CHECK(ledger.batchSize(at(4000)) == 200);

  // More workers seen in Redis shrink the share.
  ledger.granted(grantFor(3, 0, 0, 800, 500, 0, 8), at(4000), at(4000));
  CHECK(ledger.workers() == 8);
  CHECK(ledger.batchSize(at(4000)) == 100);
}

TEST_CASE("a lease is due when half the batch is used") {
  LeaseLedger ledger(1, 100000);
  for (int ms = 0; ms < 1000; ms++) ledger.take(1, at(ms), false);  // 1000 per second
  int64_t batch = ledger.batchSize(at(1000));
  CHECK(batch == doctest::Approx(86).epsilon(0.05));  // still converging after 1 s
  ledger.granted(grantFor(50, batch, 99000, 100000, 1000), at(1000), at(1000));
  CHECK(ledger.leaseWanted(at(1000)) == 0);
  takeMany(ledger, static_cast<int>(batch) / 2 + 1, 1001);
  CHECK(ledger.leaseWanted(at(1001)) >= batch);
}

TEST_CASE("near a window's end a lease asks only for what the rest of the window needs") {
  LeaseLedger ledger(1, 100000);
  for (int ms = 0; ms < 1000; ms++) ledger.take(1, at(ms), false);
  // Enough for all but the last 10 of the next 980 requests.
  ledger.granted(grantFor(50, 990, 99000, 100000, 1000), at(1000), at(1000));
  CHECK(takeMany(ledger, 1, 1000) == 1);
  for (int ms = 1001; ms < 1980; ms++) ledger.take(1, at(ms), true);
  CHECK(ledger.inHand(at(1980)) == 10);
  CHECK(ledger.batchSize(at(1980)) > 90);
  // 20 ms before the end, about 20 requests are still to come.
  int64_t wanted = ledger.leaseWanted(at(1980));
  CHECK(wanted >= 15);
  CHECK(wanted <= 25);
}

TEST_CASE("a JSON-RPC batch takes one token per call, and the next lease asks for a whole batch") {
  LeaseLedger ledger(1, 1000);
  CHECK(ledger.creditCap() == 5);
  CHECK(ledger.take(8, at(0), true) == LeaseLedger::Verdict::unknown);
  CHECK(ledger.leaseWanted(at(0)) >= 8);
  ledger.granted(grantFor(3, 8, 992, 1000, 900), at(0), at(1));
  CHECK(ledger.take(8, at(2), true) == LeaseLedger::Verdict::admit);
  CHECK(ledger.inHand(at(2)) == 0);
  // Seen recently, a batch is pre-leased for the next window too.
  CHECK(ledger.preLeaseWanted(at(870)) >= 8);
  CHECK(ledger.preLeaseWanted(at(6000)) == 0);
}

TEST_CASE("the next window is leased ahead, becomes usable when the current one ends, never before") {
  LeaseLedger ledger(1, 100000);
  for (int ms = 0; ms < 1000; ms++) ledger.take(1, at(ms), false);
  ledger.granted(grantFor(10, 100, 99000, 100000, 500), at(1000), at(1000));
  REQUIRE(ledger.preLeaseAt());
  CHECK(*ledger.preLeaseAt() == at(1470));
  CHECK(ledger.preLeaseWanted(at(1470)) > 0);

  // Sent at 1470 when Redis' window 10 had 30 ms to go; answered at 1472.
  ledger.granted(grantFor(11, 90, 99000, 100000, 1030, 30), at(1470), at(1472));
  takeMany(ledger, 100, 1480);
  CHECK(ledger.inHand(at(1480)) == 0);  // window 10's tokens are used up; 11's wait
  CHECK(ledger.inHand(at(1502)) == 90);
  CHECK(*ledger.preLeaseAt() == at(2470));
}

TEST_CASE("a lower limit drops the tokens in hand; a higher one keeps them and reopens the window") {
  LeaseLedger ledger(1, 1000);
  ledger.granted(grantFor(5, 10, 0, 1000, 900), at(0), at(0));
  ledger.setLimit(2000);
  CHECK(ledger.inHand(at(1)) == 10);
  CHECK(takeMany(ledger, 10, 1) == 10);
  CHECK(ledger.take(1, at(1), true) == LeaseLedger::Verdict::admit);  // reopened: credit again

  ledger.granted(grantFor(5, 10, 1000, 2000, 900), at(1), at(1));
  ledger.setLimit(500);
  CHECK(ledger.inHand(at(2)) == 0);
  CHECK(ledger.debt() == 0);
}

TEST_CASE("the lease script's reply is read field by field") {
  redisReply fields[7];
  redisReply* pointers[7];
  int64_t values[7] = {40, 60, 100, 1796399795, 0, 700, 3};
  for (int i = 0; i < 7; i++) {
    fields[i] = {};
    fields[i].type = REDIS_REPLY_INTEGER;
    fields[i].integer = values[i];
    pointers[i] = &fields[i];
  }
  redisReply array = {};
  array.type = REDIS_REPLY_ARRAY;
  array.elements = 7;
  array.element = pointers;

  LeaseGrant grant;
  REQUIRE(parseLeaseReply(array, grant));
  CHECK(grant.granted == 40);
  CHECK(grant.remaining == 60);
  CHECK(grant.limit == 100);
  CHECK(grant.window == 1796399795);
  CHECK(grant.ends_in_ms == 700);
  CHECK(grant.workers == 3);

  fields[2].type = REDIS_REPLY_STRING;
  CHECK_FALSE(parseLeaseReply(array, grant));
  array.elements = 6;
  CHECK_FALSE(parseLeaseReply(array, grant));
}
