// The worker's side of the global rate limit: tokens leased from Redis in
// batches ahead of need, so that each request is decided locally, without a
// Redis round trip; the limit followed through pub/sub and a periodic
// re-read; and a circuit around Redis that fails open or closed. The design
// and its error bounds are in docs/RATE_LIMITING.md.
#pragma once

#include <event2/event.h>
#include <hiredis/async.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "shared/config.h"
#include "shared/metrics.h"
#include "shared/rate_limit_store.h"
#include "shared/redis_client.h"
#include "worker/loop_clock.h"

namespace strangler {

using LimiterClock = std::chrono::steady_clock;
using LimiterInstant = LimiterClock::time_point;

// A demand rate from counts that decay exponentially with `time_constant`:
// at a steady rate r the estimate converges to r.
class RateEstimator {
 public:
  explicit RateEstimator(std::chrono::milliseconds time_constant) : tau_s_(time_constant.count() / 1000.0) {}

  void record(double count, LimiterInstant now);
  double perSecond(LimiterInstant now) const;

 private:
  double decayedAt(LimiterInstant now) const;

  double tau_s_;
  double value_ = 0;
  LimiterInstant last_{};
};

// The arithmetic of leasing, with no I/O: the tokens in hand for each window,
// requests admitted on credit while a lease is on its way, and the size and
// timing of the next lease. Windows are Unix seconds of Redis' clock; their
// local start and end are estimated so that tokens are never used outside
// their window (see docs/RATE_LIMITING.md).
class LeaseLedger {
 public:
  enum class Verdict {
    admit,
    over_limit,  // the limit is 0, or the window is known to be used up
    unknown,     // no tokens in hand and no credit left: nothing is known
  };

  LeaseLedger(int local_workers, int64_t limit);

  // A higher limit keeps the tokens in hand; any other change drops them,
  // since they were leased under a limit that no longer holds.
  void setLimit(int64_t limit);
  int64_t limit() const { return limit_; }

  // Decides `count` requests arriving at `now`. With `allow_credit`, an empty
  // hand admits up to creditCap() requests to be paid from the next tokens.
  Verdict take(uint32_t count, LimiterInstant now, bool allow_credit);

  // Tokens a lease for the current window should ask for now (the debt
  // included), or 0 when none is due.
  int64_t leaseWanted(LimiterInstant now);
  // When the lease for the next window is due, if one is.
  std::optional<LimiterInstant> preLeaseAt() const;
  // Tokens that lease should ask for; 0 when this worker is too quiet to need one.
  int64_t preLeaseWanted(LimiterInstant now) const;

  // Books the answer of a lease sent at `sent` and answered at `received`.
  void granted(const LeaseGrant& grant, LimiterInstant sent, LimiterInstant received);

  // About 1/10 s of this worker's demand, at least the largest request of the
  // last few seconds (a JSON-RPC batch) and 1, at most its share of the limit.
  int64_t batchSize(LimiterInstant now) const;
  // At most this many requests are admitted on credit: 1/200 of this worker's share.
  int64_t creditCap() const;
  int64_t workers() const;

  // Tokens usable at `now`, the debt, and counts for tests and logs.
  int64_t inHand(LimiterInstant now);
  int64_t debt() const { return debt_; }
  uint64_t lapsed() const { return lapsed_; }
  uint64_t writtenOff() const { return written_off_; }

 private:
  struct Stock {
    int64_t window = 0;
    int64_t tokens = 0;
    bool exhausted = false;  // Redis has no more tokens for this window
    LimiterInstant start;    // estimated locally, never before the window's true start
    LimiterInstant end;      // never after its true end
  };

  void roll(LimiterInstant now);
  Stock* current(LimiterInstant now);
  Stock& stockFor(int64_t window, LimiterInstant start, LimiterInstant end);
  void settle(Stock& stock);
  int64_t largestRecent(LimiterInstant now) const;

  int local_workers_;
  int64_t limit_;
  int64_t workers_seen_ = 0;
  RateEstimator demand_;
  int64_t largest_ = 1;
  LimiterInstant largest_seen_{};
  std::vector<Stock> stocks_;  // by window, oldest first; at most a few
  int64_t debt_ = 0;
  uint64_t lapsed_ = 0;
  uint64_t written_off_ = 0;
};

// One worker's limiter. It owns two hiredis async contexts on the worker's
// loop (commands, and a subscriber for limit events) and lets go of a
// context in its disconnect callback, where hiredis frees it.
class RateLimiter {
 public:
  // Indexes metrics::kRateLimiterStates.
  enum class State { ok = 0, failing_open = 1, failing_closed = 2 };

  // How a refused request is answered.
  struct Refusal {
    int status;
    const char* reason_token;
    const char* message;
  };

  RateLimiter(event_base* base, const Config& config, metrics::MetricsWriter& metrics);
  ~RateLimiter();
  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // Reads the limit with a blocking call, so that the first request already
  // obeys it, then opens the asynchronous session. Never fails: without
  // Redis the limiter starts in its failure mode and keeps retrying.
  void start();

  // Admits `count` requests now (one per request, one per call of a JSON-RPC
  // batch) or refuses them; refusal() then says how to answer. Never waits.
  bool admit(uint32_t count);
  const Refusal& refusal() const { return *refusal_; }
  State state() const { return state_; }

 private:
  // The Redis session: connect, commands, failure and the circuit.
  void connect();
  redisAsyncContext* openContext(std::string& error);
  bool send(redisAsyncContext* context, redisCallbackFn* callback, const std::vector<std::string>& arguments);
  bool sendCommand(redisCallbackFn* callback, const std::vector<std::string>& arguments);
  void sendLease(int64_t tokens, int64_t ahead_ms);
  void maybeLease(LimiterInstant now);
  void refreshLimit();
  void replyArrived();
  void armCommandTimer();
  void commandLate();
  void armPreLease(LimiterInstant now);
  void forget(const redisAsyncContext* context);
  void fail(const std::string& why);
  void tearDown();
  void enterState(State state, const std::string& why);
  void applyLimit(int64_t limit, const char* source);
  void applyStored(StoredLimit stored, int64_t limit, const char* source);
  State failureState() const;
  bool refuse(const Refusal& refusal);

  // What hiredis reports, by context.
  void handleConnect(const redisAsyncContext* context, int status);
  void handleDisconnect(const redisAsyncContext* context);
  void handleSetupReply(redisAsyncContext* context, const redisReply* reply);
  void handleScriptLoaded(redisAsyncContext* context, const redisReply* reply);
  void handleLimitReply(redisAsyncContext* context, const redisReply* reply);
  void handleLeaseReply(redisAsyncContext* context, const redisReply* reply);
  void handleEvent(redisAsyncContext* context, const redisReply* reply);

  static void onConnect(const redisAsyncContext* context, int status);
  static void onDisconnect(const redisAsyncContext* context, int status);
  static void onSetupReply(redisAsyncContext* context, void* reply, void* self);
  static void onScriptLoaded(redisAsyncContext* context, void* reply, void* self);
  static void onLimitReply(redisAsyncContext* context, void* reply, void* self);
  static void onLeaseReply(redisAsyncContext* context, void* reply, void* self);
  static void onEvent(redisAsyncContext* context, void* reply, void* self);
  static void onConnectTimeout(evutil_socket_t, short, void* self);
  static void onCommandTimeout(evutil_socket_t, short, void* self);
  static void onReconnect(evutil_socket_t, short, void* self);
  static void onRefresh(evutil_socket_t, short, void* self);
  static void onPreLease(evutil_socket_t, short, void* self);
  static void onTearDown(evutil_socket_t, short, void* self);

  event_base* base_;
  LoopClock& clock_;
  std::string redis_url_;
  RedisAddress address_;
  LimitKeys keys_;
  int64_t default_limit_;
  RateLimitFailure failure_mode_;
  metrics::MetricsWriter& metrics_;
  std::string worker_id_;
  LeaseLedger ledger_;
  State state_ = State::ok;
  const Refusal* refusal_;

  // Both are owned by hiredis once connecting; null when there is none.
  redisAsyncContext* command_ = nullptr;
  redisAsyncContext* subscriber_ = nullptr;
  int connects_pending_ = 0;
  bool command_connected_ = false;
  int outstanding_ = 0;  // commands on command_ awaiting a reply
  bool late_ = false;    // the oldest of them is past the command timeout
  std::string script_sha_;
  bool lease_in_flight_ = false;
  int64_t lease_tokens_ = 0;
  int64_t lease_ahead_ms_ = 0;
  LimiterInstant lease_sent_;
  bool limit_read_in_flight_ = false;
  bool limit_reread_ = false;  // an event came while a read was in flight: read once more
  bool malformed_warned_ = false;
  bool failing_ = false;  // a teardown is scheduled
  std::string failure_;
  std::chrono::milliseconds backoff_;

  event* connect_timer_ = nullptr;
  event* command_timer_ = nullptr;
  event* reconnect_timer_ = nullptr;
  event* refresh_timer_ = nullptr;
  event* prelease_timer_ = nullptr;
  event* teardown_event_ = nullptr;
};

}  // namespace strangler
