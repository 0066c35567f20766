// The worker's side of the global rate limit: leasing, credit, the circuit.
#include "worker/rate_limiter.h"

#include <arpa/inet.h>
#include <hiredis/adapters/libevent.h>
#include <netdb.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

#include "shared/process_log.h"
#include "shared/timeval.h"

namespace strangler {
namespace {

using std::chrono::milliseconds;

// Redis on the same network answers in well under a millisecond. On a busy
// host a lease answer was measured taking up to about 30 ms, so a command is
// late after 50 ms: the limiter fails open or closed from then on, keeping
// the connection, and is back at the first answer. After a second of silence
// the connection is dropped and the circuit takes over.
constexpr milliseconds kConnectTimeout{20};
constexpr milliseconds kCommandTimeout{50};
constexpr milliseconds kSilenceLimit{1000};
// The blocking read of the limit at the worker's start.
constexpr int kStartTimeoutMs = 500;
// The circuit: after a failure, the next attempt waits this long, doubling.
constexpr milliseconds kFirstBackoff{1000};
constexpr milliseconds kMaxBackoff{30000};
// The limit is read again this often, in case an event was missed.
constexpr milliseconds kRefreshInterval{1000};

// A batch covers this much of the worker's recent demand.
constexpr double kLeaseSpanSeconds = 0.1;
constexpr milliseconds kDemandTimeConstant{500};
// A batch is never smaller than the largest request seen this recently.
constexpr milliseconds kLargestMemory{5000};
// The next window's lease leaves this long before the current window ends,
// asking for the window that holds the moment kPreLeaseAheadMs from Redis' now.
constexpr milliseconds kPreLeaseLead{30};
constexpr int64_t kPreLeaseAheadMs = 500;
// Credit is at most this fraction of the worker's share of the limit.
constexpr int64_t kCreditDivisor = 200;
constexpr size_t kMaxStocks = 4;

const RateLimiter::Refusal kOverLimit = {429, "rate_limited",
                                         "over the global rate limit; retry in a second"};
const RateLimiter::Refusal kUnavailable = {503, "rate_limiter_unavailable",
                                           "the rate limiter cannot reach Redis and fails closed"};

double seconds(LimiterClock::duration duration) {
  return std::chrono::duration<double>(duration).count();
}

std::string randomId() {
  uint64_t bits = 0;
  if (getrandom(&bits, sizeof bits, 0) != sizeof bits) {
    bits = static_cast<uint64_t>(getpid()) << 32 ^
           static_cast<uint64_t>(LimiterClock::now().time_since_epoch().count());
  }
  char text[17];
  snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(bits));
  return text;
}

// hiredis resolves a host name with a blocking getaddrinfo on every connect,
// which would stall the worker's loop; the name is resolved once, at start.
void resolveHost(RedisAddress& address) {
  if (address.unix_socket) return;
  unsigned char probe[sizeof(in6_addr)];
  if (inet_pton(AF_INET, address.host.c_str(), probe) == 1) return;
  if (inet_pton(AF_INET6, address.host.c_str(), probe) == 1) return;
  addrinfo hints = {};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(address.host.c_str(), nullptr, &hints, &found) != 0 || !found) return;
  char text[INET6_ADDRSTRLEN];
  if (getnameinfo(found->ai_addr, found->ai_addrlen, text, sizeof text, nullptr, 0, NI_NUMERICHOST) == 0) {
    address.host = text;
  }
  freeaddrinfo(found);
}

std::string replyText(const redisReply* reply) {
  if (!reply) return "no reply";
  if (reply->type == REDIS_REPLY_ERROR || reply->type == REDIS_REPLY_STRING)
    return std::string(reply->str, reply->len);
  return "unexpected reply";
}

}  // namespace

void RateEstimator::record(double count, LimiterInstant now) {
  value_ = decayedAt(now) + count;
  last_ = now;
}

double RateEstimator::perSecond(LimiterInstant now) const {
  return decayedAt(now) / tau_s_;
}

double RateEstimator::decayedAt(LimiterInstant now) const {
  if (value_ == 0) return 0;
  double elapsed = seconds(now - last_);
  return elapsed <= 0 ? value_ : value_ * std::exp(-elapsed / tau_s_);
}

LeaseLedger::LeaseLedger(int local_workers, int64_t limit)
    : local_workers_(std::max(1, local_workers)), limit_(limit), demand_(kDemandTimeConstant) {}

void LeaseLedger::setLimit(int64_t limit) {
  if (limit == limit_) return;
  if (limit_ >= 0 && limit > limit_) {
    // The windows have room again.
    for (Stock& stock : stocks_) stock.exhausted = false;
  } else {
    stocks_.clear();
    debt_ = 0;
  }
  limit_ = limit;
}

int64_t LeaseLedger::workers() const {
  return std::max<int64_t>({1, local_workers_, workers_seen_});
}

int64_t LeaseLedger::largestRecent(LimiterInstant now) const {
  return now - largest_seen_ <= kLargestMemory ? largest_ : 1;
}

int64_t LeaseLedger::batchSize(LimiterInstant now) const {
  int64_t share = std::max<int64_t>(1, limit_ / workers());
  int64_t wanted = std::llround(demand_.perSecond(now) * kLeaseSpanSeconds);
  return std::clamp<int64_t>(std::max(wanted, largestRecent(now)), 1, share);
}

int64_t LeaseLedger::creditCap() const {
  if (limit_ <= 0) return 0;
  return std::max<int64_t>(1, limit_ / workers() / kCreditDivisor);
}

void LeaseLedger::roll(LimiterInstant now) {
  while (!stocks_.empty() && stocks_.front().end <= now) {
    lapsed_ += static_cast<uint64_t>(stocks_.front().tokens);
    stocks_.erase(stocks_.begin());
  }
}

LeaseLedger::Stock* LeaseLedger::current(LimiterInstant now) {
  roll(now);
  if (stocks_.empty() || stocks_.front().start > now) return nullptr;
  return &stocks_.front();
}

int64_t LeaseLedger::inHand(LimiterInstant now) {
  Stock* stock = current(now);
  return stock ? stock->tokens : 0;
}

void LeaseLedger::settle(Stock& stock) {
  int64_t paid = std::min(stock.tokens, debt_);
  stock.tokens -= paid;
  debt_ -= paid;
  // Nothing more comes for this window: what is still owed was admitted over the limit.
  if (debt_ > 0 && stock.exhausted) {
    written_off_ += static_cast<uint64_t>(debt_);
    debt_ = 0;
  }
}

LeaseLedger::Verdict LeaseLedger::take(uint32_t count, LimiterInstant now, bool allow_credit) {
  demand_.record(count, now);
  if (count >= largestRecent(now)) {
    largest_ = count;
    largest_seen_ = now;
  }
  if (limit_ < 0) return Verdict::admit;
  if (limit_ == 0) return Verdict::over_limit;

  Stock* stock = current(now);
  if (stock) settle(*stock);
  int64_t in_hand = stock ? stock->tokens : 0;
  if (in_hand >= count) {
    stock->tokens -= count;
    return Verdict::admit;
  }
  if (stock && stock->exhausted) return Verdict::over_limit;

  // A lease is on its way, and the window may well have room.
  if (allow_credit && in_hand + creditCap() - debt_ >= count) {
    debt_ += count - in_hand;
    if (stock) stock->tokens = 0;
    return Verdict::admit;
  }
  return Verdict::unknown;
}

int64_t LeaseLedger::leaseWanted(LimiterInstant now) {
  if (limit_ <= 0) return 0;
  Stock* stock = current(now);
  if (stock && stock->exhausted) return 0;

  int64_t batch = batchSize(now);
  int64_t in_hand = stock ? stock->tokens : 0;
  if (debt_ == 0 && in_hand > batch / 2) return 0;
  if (stock) {
    // Tokens still in hand when the window ends lapse: ask only for what is left of it.
    double left = demand_.perSecond(now) * seconds(stock->end - now);
    batch = std::min(batch, std::max<int64_t>(1, static_cast<int64_t>(std::ceil(left))));
  }
  return debt_ + batch;
}

std::optional<LimiterInstant> LeaseLedger::preLeaseAt() const {
  if (limit_ <= 0 || stocks_.empty()) return std::nullopt;
  return stocks_.back().end - kPreLeaseLead;
}

int64_t LeaseLedger::preLeaseWanted(LimiterInstant now) const {
  if (limit_ <= 0) return 0;
  int64_t share = std::max<int64_t>(1, limit_ / workers());
  int64_t wanted = std::llround(demand_.perSecond(now) * kLeaseSpanSeconds);
  // A worker that has seen batches holds enough for one, however quiet.
  if (largestRecent(now) > 1) wanted = std::max(wanted, largestRecent(now));
  return std::min(share, wanted);
}

void LeaseLedger::granted(const LeaseGrant& grant, LimiterInstant sent, LimiterInstant received) {
  setLimit(grant.limit);
  if (grant.workers > 0) workers_seen_ = grant.workers;
  if (limit_ <= 0) return;

  // The script ran between sending and receiving: a start counted from the
  // receipt and an end counted from the send both fall inside the window.
  Stock& stock = stockFor(grant.window, received + milliseconds(grant.starts_in_ms),
                          sent + milliseconds(grant.ends_in_ms));
  stock.tokens += grant.granted;
  stock.exhausted = grant.remaining == 0;
  if (stock.start <= received) settle(stock);
}

LeaseLedger::Stock& LeaseLedger::stockFor(int64_t window, LimiterInstant start, LimiterInstant end) {
  auto at = std::find_if(stocks_.begin(), stocks_.end(), [&](const Stock& s) { return s.window >= window; });
  if (at != stocks_.end() && at->window == window) {
    at->start = std::min(at->start, start);
    at->end = std::min(at->end, end);
    return *at;
  }
  if (stocks_.size() >= kMaxStocks) {
    // Only when Redis' clock jumps: the oldest window is the least useful.
    stocks_.erase(stocks_.begin());
    at = std::find_if(stocks_.begin(), stocks_.end(), [&](const Stock& s) { return s.window >= window; });
  }
  return *stocks_.insert(at, Stock{window, 0, false, start, end});
}

RateLimiter::RateLimiter(event_base* base, const Config& config, metrics::MetricsWriter& metrics)
    : base_(base),
      clock_(LoopClock::of(base)),
      redis_url_(config.redis_url),
      keys_(config.redis_prefix),
      default_limit_(std::min(config.rate_limit_rps, kMaxLimit)),
      failure_mode_(config.rate_limit_failure),
      metrics_(metrics),
      worker_id_(randomId()),
      ledger_(config.workers, default_limit_),
      refusal_(&kOverLimit),
      backoff_(kFirstBackoff) {
  connect_timer_ = evtimer_new(base_, &RateLimiter::onConnectTimeout, this);
  command_timer_ = evtimer_new(base_, &RateLimiter::onCommandTimeout, this);
  reconnect_timer_ = evtimer_new(base_, &RateLimiter::onReconnect, this);
  refresh_timer_ = event_new(base_, -1, EV_PERSIST, &RateLimiter::onRefresh, this);
  prelease_timer_ = evtimer_new(base_, &RateLimiter::onPreLease, this);
  teardown_event_ = event_new(base_, -1, 0, &RateLimiter::onTearDown, this);
}

RateLimiter::~RateLimiter() {
  redisAsyncContext* contexts[] = {command_, subscriber_};
  command_ = nullptr;
  subscriber_ = nullptr;
  for (redisAsyncContext* context : contexts) {
    if (context) redisAsyncFree(context);
  }
  for (event* e :
       {connect_timer_, command_timer_, reconnect_timer_, refresh_timer_, prelease_timer_, teardown_event_}) {
    if (e) event_free(e);
  }
}

void RateLimiter::start() {
  metrics_.setRateLimiterState(static_cast<size_t>(state_));
  timeval refresh = toTimeval(kRefreshInterval);
  event_add(refresh_timer_, &refresh);

  std::string error;
  int64_t limit = default_limit_;
  StoredLimit stored = StoredLimit::unset;
  bool read = false;
  if (parseRedisUrl(redis_url_, address_)) {
    resolveHost(address_);
    std::unique_ptr<RedisConnection> redis = RedisConnection::open(redis_url_, kStartTimeoutMs, error);
    read = redis && RateLimitStore(*redis, keys_.prefix).read(limit, stored, error);
  } else {
    error = "malformed Redis URL";
  }
  if (!read) {
    fail(error);
    return;
  }
  applyStored(stored, limit, "start");
  plog::debug("rate limiter started", {{"limit", formatLimit(ledger_.limit())}, {"worker_id", worker_id_}});
  connect();
}

bool RateLimiter::admit(uint32_t count) {
  // The loop's time: a decision needs no clock finer than the event loop's pass.
  LimiterInstant now = clock_.now();
  bool healthy = state_ == State::ok;
  LeaseLedger::Verdict verdict = ledger_.take(std::max<uint32_t>(count, 1), now, healthy);
  if (healthy) maybeLease(now);
  if (verdict == LeaseLedger::Verdict::admit) return true;
  if (verdict == LeaseLedger::Verdict::over_limit) return refuse(kOverLimit);

  // No tokens, no credit left and no answer yet: with Redis answering, this
  // worker is short of tokens because the window is nearly used up; with
  // Redis unreachable, the failure mode decides.
  if (healthy) return refuse(kOverLimit);
  return failure_mode_ == RateLimitFailure::open || refuse(kUnavailable);
}

bool RateLimiter::refuse(const Refusal& refusal) {
  refusal_ = &refusal;
  if (refusal.status == 429) metrics_.rateLimited();
  return false;
}

RateLimiter::State RateLimiter::failureState() const {
  return failure_mode_ == RateLimitFailure::open ? State::failing_open : State::failing_closed;
}

void RateLimiter::enterState(State state, const std::string& why) {
  metrics_.setRateLimiterState(static_cast<size_t>(state));
  if (state == state_) return;
  state_ = state;
  if (state == State::ok) {
    backoff_ = kFirstBackoff;
    plog::info("rate limiter: Redis reachable again, leasing tokens",
               {{"redis_url", maskRedisUrl(redis_url_)}});
    return;
  }
  plog::warn(state == State::failing_open ? "rate limiter: Redis unreachable, failing open"
                                          : "rate limiter: Redis unreachable, failing closed",
             {{"redis_url", maskRedisUrl(redis_url_)},
              {"error", why},
              {"retry_in_ms", static_cast<long long>(backoff_.count())}});
}

void RateLimiter::applyLimit(int64_t limit, const char* source) {
  int64_t before = ledger_.limit();
  ledger_.setLimit(limit);
  if (before == limit) return;
  plog::info("rate limit changed",
             {{"from", formatLimit(before)}, {"to", formatLimit(limit)}, {"source", source}});
}

void RateLimiter::applyStored(StoredLimit stored, int64_t limit, const char* source) {
  if (stored == StoredLimit::malformed && !malformed_warned_) {
    plog::warn("rate limit key holds no limit: using the default",
               {{"key", keys_.limit()}, {"default", formatLimit(default_limit_)}});
  }
  malformed_warned_ = stored == StoredLimit::malformed;
  applyLimit(stored == StoredLimit::set ? limit : default_limit_, source);
}

void RateLimiter::connect() {
  std::string error;
  command_ = openContext(error);
  if (command_) subscriber_ = openContext(error);
  if (!command_ || !subscriber_) {
    fail(error);
    return;
  }
  connects_pending_ = 2;
  timeval timeout = toTimeval(kConnectTimeout);
  evtimer_add(connect_timer_, &timeout);

  // hiredis queues these until the connection is up.
  if (!address_.password.empty()) {
    send(command_, &RateLimiter::onSetupReply, {"AUTH", address_.password});
    send(subscriber_, &RateLimiter::onSetupReply, {"AUTH", address_.password});
  }
  if (address_.db != 0) send(command_, &RateLimiter::onSetupReply, {"SELECT", std::to_string(address_.db)});
  send(command_, &RateLimiter::onScriptLoaded, {"SCRIPT", "LOAD", leaseScript()});
  // An event published while this worker was not subscribed is lost: read the limit.
  refreshLimit();
  send(subscriber_, &RateLimiter::onEvent, {"SUBSCRIBE", keys_.events()});
}

redisAsyncContext* RateLimiter::openContext(std::string& error) {
  redisAsyncContext* context = address_.unix_socket ? redisAsyncConnectUnix(address_.host.c_str())
                                                    : redisAsyncConnect(address_.host.c_str(), address_.port);
  if (!context || context->err) {
    error = std::string("cannot connect to Redis: ") + (context ? context->errstr : "out of memory");
    if (context) redisAsyncFree(context);
    return nullptr;
  }
  context->data = this;
  redisLibeventAttach(context, base_);
  redisAsyncSetConnectCallback(context, &RateLimiter::onConnect);
  redisAsyncSetDisconnectCallback(context, &RateLimiter::onDisconnect);
  return context;
}

bool RateLimiter::send(redisAsyncContext* context, redisCallbackFn* callback,
                       const std::vector<std::string>& arguments) {
  std::vector<const char*> pointers;
  std::vector<size_t> lengths;
  for (const std::string& argument : arguments) {
    pointers.push_back(argument.data());
    lengths.push_back(argument.size());
  }
  if (redisAsyncCommandArgv(context, callback, this, static_cast<int>(arguments.size()), pointers.data(),
                            lengths.data()) != REDIS_OK) {
    fail("a Redis command could not be queued");
    return false;
  }
  if (context == command_ && ++outstanding_ == 1 && command_connected_) armCommandTimer();
  return true;
}

void RateLimiter::commandLate() {
  if (late_) {
    fail("Redis did not answer for " + std::to_string(kSilenceLimit.count()) + " ms");
    return;
  }
  // A late answer is still good news: the connection stays for a while.
  late_ = true;
  enterState(failureState(),
             "Redis did not answer within " + std::to_string(kCommandTimeout.count()) + " ms");
  timeval silence = toTimeval(kSilenceLimit - kCommandTimeout);
  evtimer_add(command_timer_, &silence);
}

void RateLimiter::armCommandTimer() {
  timeval timeout = toTimeval(kCommandTimeout);
  evtimer_add(command_timer_, &timeout);
}

void RateLimiter::replyArrived() {
  late_ = false;
  outstanding_ = std::max(0, outstanding_ - 1);
  // Any answer shows Redis is alive; the timer now waits for the next one.
  if (outstanding_ > 0 && command_connected_)
    armCommandTimer();
  else
    evtimer_del(command_timer_);
}

void RateLimiter::sendLease(int64_t tokens, int64_t ahead_ms) {
  lease_tokens_ = tokens;
  lease_ahead_ms_ = ahead_ms;
  lease_sent_ = LimiterClock::now();
  lease_in_flight_ =
      send(command_, &RateLimiter::onLeaseReply,
           leaseCommand(script_sha_, keys_.prefix, tokens, ahead_ms, default_limit_, worker_id_));
}

void RateLimiter::maybeLease(LimiterInstant now) {
  if (!command_connected_ || lease_in_flight_ || failing_) return;
  if (int64_t wanted = ledger_.leaseWanted(now)) {
    sendLease(wanted, 0);
    return;
  }
  std::optional<LimiterInstant> due = ledger_.preLeaseAt();
  if (!due || *due > now) return;
  if (int64_t wanted = ledger_.preLeaseWanted(now)) sendLease(wanted, kPreLeaseAheadMs);
}

void RateLimiter::armPreLease(LimiterInstant now) {
  std::optional<LimiterInstant> due = ledger_.preLeaseAt();
  if (!due) return;
  timeval delay = toTimeval(*due - now);
  evtimer_add(prelease_timer_, &delay);
}

void RateLimiter::refreshLimit() {
  if (!command_ || failing_) return;
  if (limit_read_in_flight_) {
    limit_reread_ = true;
    return;
  }
  limit_read_in_flight_ = send(command_, &RateLimiter::onLimitReply, {"GET", keys_.limit()});
}

void RateLimiter::fail(const std::string& why) {
  if (failing_) return;
  failing_ = true;
  failure_ = why;
  // Contexts are freed outside their own callbacks.
  event_active(teardown_event_, EV_TIMEOUT, 1);
}

void RateLimiter::forget(const redisAsyncContext* context) {
  if (context == command_) {
    command_ = nullptr;
    command_connected_ = false;
  }
  if (context == subscriber_) subscriber_ = nullptr;
}

void RateLimiter::tearDown() {
  failing_ = false;
  redisAsyncContext* contexts[] = {command_, subscriber_};
  command_ = nullptr;
  subscriber_ = nullptr;
  command_connected_ = false;
  connects_pending_ = 0;
  outstanding_ = 0;
  lease_in_flight_ = false;
  limit_read_in_flight_ = false;
  limit_reread_ = false;
  late_ = false;
  for (event* timer : {connect_timer_, command_timer_, prelease_timer_}) evtimer_del(timer);
  // Their pending callbacks run during the free, find no context of ours and return.
  for (redisAsyncContext* context : contexts) {
    if (context) redisAsyncFree(context);
  }

  enterState(failureState(), failure_);
  timeval delay = toTimeval(backoff_);
  evtimer_add(reconnect_timer_, &delay);
  backoff_ = std::min(backoff_ * 2, kMaxBackoff);
}

void RateLimiter::handleConnect(const redisAsyncContext* context, int status) {
  if (context != command_ && context != subscriber_) return;
  if (status != REDIS_OK) {
    std::string why = std::string("cannot connect to Redis: ") + context->errstr;
    // hiredis frees the context when this callback returns.
    forget(context);
    fail(why);
    return;
  }
  if (context == command_) {
    command_connected_ = true;
    if (outstanding_ > 0) armCommandTimer();
  }
  if (--connects_pending_ == 0) evtimer_del(connect_timer_);
}

void RateLimiter::handleDisconnect(const redisAsyncContext* context) {
  if (context != command_ && context != subscriber_) return;
  std::string why = std::string("lost the Redis connection: ") + (context->err ? context->errstr : "closed");
  // hiredis frees the context when this callback returns.
  forget(context);
  fail(why);
}

void RateLimiter::handleSetupReply(redisAsyncContext* context, const redisReply* reply) {
  if (context != command_ && context != subscriber_) return;
  if (context == command_) replyArrived();
  if (!reply || reply->type == REDIS_REPLY_ERROR)
    fail("Redis refused the session's setup: " + replyText(reply));
}

void RateLimiter::handleScriptLoaded(redisAsyncContext* context, const redisReply* reply) {
  if (context != command_) return;
  replyArrived();
  if (!reply) {
    fail("lost the Redis connection");
    return;
  }
  // Without the digest (SCRIPT may be forbidden), leases send the script itself.
  if (reply->type == REDIS_REPLY_STRING) script_sha_.assign(reply->str, reply->len);
  if (reply->type != REDIS_REPLY_ERROR) enterState(State::ok, "");
}

void RateLimiter::handleLimitReply(redisAsyncContext* context, const redisReply* reply) {
  if (context != command_) return;
  replyArrived();
  limit_read_in_flight_ = false;
  if (!reply || reply->type == REDIS_REPLY_ERROR) {
    fail("reading the limit failed: " + replyText(reply));
    return;
  }
  int64_t limit = 0;
  StoredLimit stored = interpretLimitReply(*reply, limit);
  applyStored(stored, limit, "redis");
  enterState(State::ok, "");
  if (limit_reread_) {
    limit_reread_ = false;
    refreshLimit();
  }
  maybeLease(LimiterClock::now());
}

void RateLimiter::handleLeaseReply(redisAsyncContext* context, const redisReply* reply) {
  if (context != command_) return;
  replyArrived();
  if (reply && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
    // The script cache was emptied (SCRIPT FLUSH): this lease sends the script
    // itself, which caches it again under the same digest for the next ones.
    lease_in_flight_ =
        send(command_, &RateLimiter::onLeaseReply,
             leaseCommand("", keys_.prefix, lease_tokens_, lease_ahead_ms_, default_limit_, worker_id_));
    return;
  }
  lease_in_flight_ = false;
  LeaseGrant grant;
  if (!reply || reply->type == REDIS_REPLY_ERROR || !parseLeaseReply(*reply, grant)) {
    fail("the lease script failed: " + replyText(reply));
    return;
  }

  LimiterInstant now = LimiterClock::now();
  applyLimit(grant.limit, "lease");
  ledger_.granted(grant, lease_sent_, now);
  enterState(State::ok, "");
  armPreLease(now);
  maybeLease(now);
}

void RateLimiter::handleEvent(redisAsyncContext* context, const redisReply* reply) {
  if (context != subscriber_) return;
  if (!reply || reply->type == REDIS_REPLY_ERROR) {
    fail("the limit subscription failed: " + replyText(reply));
    return;
  }
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) return;
  const redisReply* kind = reply->element[0];
  const redisReply* payload = reply->element[2];
  if (kind->type != REDIS_REPLY_STRING || std::string(kind->str, kind->len) != "message") return;

  int64_t limit = 0;
  if (payload->type == REDIS_REPLY_STRING && parseLimit(std::string(payload->str, payload->len), limit)) {
    applyLimit(limit, "event");
  }
  // The key is the truth: a lease answered before the change may still bring the old limit.
  refreshLimit();
}

void RateLimiter::onConnect(const redisAsyncContext* context, int status) {
  static_cast<RateLimiter*>(context->data)->handleConnect(context, status);
}

void RateLimiter::onDisconnect(const redisAsyncContext* context, int) {
  static_cast<RateLimiter*>(context->data)->handleDisconnect(context);
}

void RateLimiter::onSetupReply(redisAsyncContext* context, void* reply, void* self) {
  static_cast<RateLimiter*>(self)->handleSetupReply(context, static_cast<redisReply*>(reply));
}

void RateLimiter::onScriptLoaded(redisAsyncContext* context, void* reply, void* self) {
  static_cast<RateLimiter*>(self)->handleScriptLoaded(context, static_cast<redisReply*>(reply));
}

void RateLimiter::onLimitReply(redisAsyncContext* context, void* reply, void* self) {
  static_cast<RateLimiter*>(self)->handleLimitReply(context, static_cast<redisReply*>(reply));
}

void RateLimiter::onLeaseReply(redisAsyncContext* context, void* reply, void* self) {
  static_cast<RateLimiter*>(self)->handleLeaseReply(context, static_cast<redisReply*>(reply));
}

void RateLimiter::onEvent(redisAsyncContext* context, void* reply, void* self) {
  static_cast<RateLimiter*>(self)->handleEvent(context, static_cast<redisReply*>(reply));
}

void RateLimiter::onConnectTimeout(evutil_socket_t, short, void* self) {
  static_cast<RateLimiter*>(self)->fail("no connection to Redis within " +
                                        std::to_string(kConnectTimeout.count()) + " ms");
}

void RateLimiter::onCommandTimeout(evutil_socket_t, short, void* self) {
  static_cast<RateLimiter*>(self)->commandLate();
}

void RateLimiter::onReconnect(evutil_socket_t, short, void* self) {
  static_cast<RateLimiter*>(self)->connect();
}

void RateLimiter::onRefresh(evutil_socket_t, short, void* self) {
  static_cast<RateLimiter*>(self)->refreshLimit();
}

void RateLimiter::onPreLease(evutil_socket_t, short, void* self) {
  static_cast<RateLimiter*>(self)->maybeLease(LimiterClock::now());
}

void RateLimiter::onTearDown(evutil_socket_t, short, void* self) {
  static_cast<RateLimiter*>(self)->tearDown();
}

}  // namespace strangler
