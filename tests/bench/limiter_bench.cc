// limiter_bench: the worker's rate limiter client, unchanged, in many
// simulated workers against a real Redis, and what it costs. Not a test: it
// prints a markdown table per second and checks the limiter's targets:
// Redis commands under 1% of admitted, a decision p99 under 1 us, and
// admitted never more than 1% above the limit.
//
// Each simulated worker is one RateLimiter, the class a worker links, with
// its own MetricsWriter, on an event_base shared by the workers of one
// thread, exactly as in a worker: its hiredis contexts, lease replies, limit
// events and timers all run on that loop. A thread offers its share of the
// load in chunks of a few decisions (admit(1) calls) to one worker after
// another, between turns of its loop.
//
// Per Unix second (CLOCK_REALTIME, the clock Redis' TIME and so the lease
// windows follow on this host) it reports the decisions offered and
// admitted, the Redis commands the workers sent (INFO commandstats deltas),
// and the time of one decision: every admit() call is timed, by reading
// CLOCK_MONOTONIC after each call and taking the difference to the read
// before it, so each figure includes one clock read and a histogram update
// (the "timing floor", measured before the run and printed with the table).
//
// usage: limiter_bench --redis URL --limit N [--workers 64] [--threads 1]
//          [--offered 2000000 | --offered 0 (as fast as the threads can)]
//          [--duration 10] [--warmup 2] [--chunk 32] [--prefix P] [--title T]
#include <event2/event.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "shared/config.h"
#include "shared/metrics.h"
#include "shared/process_log.h"
#include "shared/rate_limit_store.h"
#include "shared/redis_client.h"
#include "worker/rate_limiter.h"

using namespace strangler;

namespace {

struct Options {
  std::string redis_url;
  std::string prefix;
  std::string title;
  int64_t limit = -2;
  int workers = 64;
  int threads = 1;
  double offered = 2000000;  // decisions per second in all; 0: as many as the threads can
  int duration = 10;
  int warmup = 2;
  int chunk = 32;
};

int64_t nowNs(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Nanoseconds: exact below 1024, then 64 buckets per power of two.
constexpr int kExact = 1024;
constexpr int kSub = 64;
constexpr int kBuckets = kExact + (64 - 10) * kSub;

inline int bucketOf(uint64_t ns) {
  if (ns < static_cast<uint64_t>(kExact)) return static_cast<int>(ns);
  int bits = 63 - __builtin_clzll(ns);
  return kExact + (bits - 10) * kSub + static_cast<int>((ns >> (bits - 6)) & (kSub - 1));
}

uint64_t bucketUpper(int bucket) {
  if (bucket < kExact) return static_cast<uint64_t>(bucket);
  int k = bucket - kExact;
  int bits = k / kSub + 10;
  uint64_t sub = static_cast<uint64_t>(k % kSub);
  return ((kSub + sub + 1) << (bits - 6)) - 1;
}

struct Histogram {
  std::vector<uint64_t> counts = std::vector<uint64_t>(kBuckets);
  uint64_t total = 0;
  uint64_t max = 0;

  inline void add(uint64_t ns) {
    counts[bucketOf(ns)]++;
    total++;
    if (ns > max) max = ns;
  }
  void merge(const Histogram& other) {
    for (int i = 0; i < kBuckets; i++) counts[i] += other.counts[i];
    total += other.total;
    max = std::max(max, other.max);
  }
  void clear() {
    std::fill(counts.begin(), counts.end(), 0);
    total = 0;
    max = 0;
  }
  // The smallest value at or above which lies no more than 1 - q of the samples.
  uint64_t percentile(double q) const {
    if (total == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total)));
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; i++) {
      seen += counts[i];
      if (seen >= rank) return std::min(bucketUpper(i), max);
    }
    return max;
  }
};

// What one thread saw in one Unix second.
struct SecondStats {
  int64_t second = 0;
  uint64_t offered = 0;
  uint64_t admitted = 0;
  uint64_t refused_429 = 0;
  uint64_t refused_other = 0;  // 503: failing closed (never expected here)
  uint64_t refused_edge = 0;   // refusals within 50 ms of the second's start or end
  uint64_t failing_open = 0;   // admitted by a limiter failing open (Redis late or unreachable)
  Histogram latency;

  void merge(const SecondStats& other) {
    offered += other.offered;
    admitted += other.admitted;
    refused_429 += other.refused_429;
    refused_other += other.refused_other;
    refused_edge += other.refused_edge;
    failing_open += other.failing_open;
    latency.merge(other.latency);
  }
};

std::atomic<bool> g_stop{false};

class LoadThread {
 public:
  LoadThread(const Options& options, int workers)
      : options_(options), workers_(workers), rate_(options.offered / options.threads) {}

  void run() {
    base_ = event_base_new();
    Config config;
    config.redis_url = options_.redis_url;
    config.redis_prefix = options_.prefix;
    config.workers = options_.workers;
    config.rate_limit_rps = options_.limit;
    config.rate_limit_failure = RateLimitFailure::open;
    for (int i = 0; i < workers_; i++) {
      metrics_.push_back(std::make_unique<metrics::MetricsWriter>());
      limiters_.push_back(std::make_unique<RateLimiter>(base_, config, *metrics_.back()));
      limiters_.back()->start();
      // A worker's loop runs as soon as its limiter has started; here the
      // next worker's blocking start would otherwise hold this one's connect
      // past its 20 ms timeout.
      timeval settle = {0, 2000};
      event_base_loopexit(base_, &settle);
      event_base_dispatch(base_);
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_ = true;
    }
    ready_cv_.notify_all();

    start_ns_ = nowNs(CLOCK_MONOTONIC);
    if (rate_ > 0) {
      event* tick = event_new(base_, -1, EV_PERSIST, &LoadThread::onTick, this);
      timeval every = {0, 1000};
      event_add(tick, &every);
      event_base_dispatch(base_);
      event_free(tick);
    } else {
      while (!g_stop.load(std::memory_order_relaxed)) {
        for (size_t i = 0; i < limiters_.size(); i++) runChunk(*limiters_[i], options_.chunk);
        event_base_loop(base_, EVLOOP_NONBLOCK);
      }
    }
    rollover(0);
    limiters_.clear();
    metrics_.clear();
    event_base_free(base_);
  }

  void waitReady() {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_cv_.wait(lock, [&] { return ready_; });
  }

  std::vector<SecondStats> takeDone() {
    std::lock_guard<std::mutex> lock(mutex_);
    return std::move(done_);
  }
  uint64_t skipped() const { return skipped_; }

 private:
  static void onTick(evutil_socket_t, short, void* self) { static_cast<LoadThread*>(self)->tick(); }

  // Offers what is due by now at the thread's rate. A thread that was kept
  // from running (other load on the machine) does not catch up by more than
  // 20 ms of load at once; what it skips is not offered, and is counted.
  void tick() {
    if (g_stop.load(std::memory_order_relaxed)) {
      event_base_loopbreak(base_);
      return;
    }
    double elapsed = static_cast<double>(nowNs(CLOCK_MONOTONIC) - start_ns_) / 1e9;
    uint64_t due = static_cast<uint64_t>(elapsed * rate_);
    uint64_t backlog = static_cast<uint64_t>(rate_ * 0.02) + static_cast<uint64_t>(options_.chunk);
    if (due > scheduled_ + backlog) {
      skipped_ += due - scheduled_ - backlog;
      scheduled_ = due - backlog;
    }
    while (scheduled_ < due) {
      int count = static_cast<int>(std::min<uint64_t>(options_.chunk, due - scheduled_));
      runChunk(*limiters_[next_], count);
      next_ = (next_ + 1) % limiters_.size();
      scheduled_ += static_cast<uint64_t>(count);
    }
  }

  void runChunk(RateLimiter& limiter, int count) {
    int64_t real = nowNs(CLOCK_REALTIME);
    int64_t second = real / 1000000000;
    if (second != current_.second) rollover(second);
    SecondStats& stats = current_;
    uint64_t refused_before = stats.refused_429 + stats.refused_other;
    uint64_t admitted_before = stats.admitted;
    bool failing = limiter.state() != RateLimiter::State::ok;
    int64_t before = nowNs(CLOCK_MONOTONIC);
    for (int i = 0; i < count; i++) {
      bool admitted = limiter.admit(1);
      int64_t after = nowNs(CLOCK_MONOTONIC);
      stats.latency.add(static_cast<uint64_t>(after - before));
      before = after;
      if (admitted)
        stats.admitted++;
      else if (limiter.refusal().status == 429)
        stats.refused_429++;
      else
        stats.refused_other++;
    }
    stats.offered += static_cast<uint64_t>(count);
    if (failing || limiter.state() != RateLimiter::State::ok)
      stats.failing_open += stats.admitted - admitted_before;
    int64_t into = real % 1000000000;
    if (into < 50000000 || into >= 950000000)
      stats.refused_edge += stats.refused_429 + stats.refused_other - refused_before;
  }

  void rollover(int64_t second) {
    if (current_.second != 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      done_.push_back(current_);
    }
    current_ = SecondStats();
    current_.second = second;
  }

  const Options& options_;
  int workers_;
  double rate_;
  event_base* base_ = nullptr;
  std::vector<std::unique_ptr<metrics::MetricsWriter>> metrics_;
  std::vector<std::unique_ptr<RateLimiter>> limiters_;
  int64_t start_ns_ = 0;
  uint64_t scheduled_ = 0;
  uint64_t skipped_ = 0;
  size_t next_ = 0;
  SecondStats current_;

  std::mutex mutex_;
  std::condition_variable ready_cv_;
  bool ready_ = false;
  std::vector<SecondStats> done_;
};

// INFO cpu commandstats at one moment.
struct RedisSnapshot {
  std::map<std::string, uint64_t> calls;  // by command
  std::map<std::string, uint64_t> usec;
  double cpu_s = 0;  // used_cpu_user + used_cpu_sys
  int64_t at_ns = 0;
  int64_t granted_before = -1;  // tokens Redis granted for the second that just ended
};

bool snapshot(RedisConnection& redis, RedisSnapshot& shot, std::string& error) {
  shot.at_ns = nowNs(CLOCK_MONOTONIC);
  RedisReply reply = redis.command({"INFO", "cpu", "commandstats"}, error);
  if (!reply || reply->type != REDIS_REPLY_STRING) {
    if (error.empty()) error = "INFO gave no text";
    return false;
  }
  std::istringstream lines(std::string(reply->str, reply->len));
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.rfind("cmdstat_", 0) == 0) {
      size_t colon = line.find(':');
      std::string name = line.substr(8, colon - 8);
      unsigned long long calls = 0, usec = 0;
      if (sscanf(line.c_str() + colon + 1, "calls=%llu,usec=%llu", &calls, &usec) == 2) {
        shot.calls[name] = calls;
        shot.usec[name] = usec;
      }
    } else if (line.rfind("used_cpu_user:", 0) == 0 || line.rfind("used_cpu_sys:", 0) == 0) {
      shot.cpu_s += atof(line.c_str() + line.find(':') + 1);
    }
  }
  return true;
}

// The Redis commands of one second, from two snapshots.
struct RedisSecond {
  uint64_t client = 0;     // commands the limiters sent (leases, reads of the limit, ...)
  uint64_t leases = 0;     // EVALSHA and EVAL
  uint64_t all_calls = 0;  // every call commandstats counts, those inside the lease script included
  uint64_t lease_usec = 0;
  double cpu_percent = 0;
};

// commandstats also counts the calls a script makes. The lease script calls
// TIME once, and GET twice when the limit is on (once when it is off); the
// other calls named here are made only by the script. INFO and MGET are this
// tool's own.
RedisSecond redisDelta(const RedisSnapshot& a, const RedisSnapshot& b, int64_t limit) {
  auto delta = [&](const std::string& name) -> uint64_t {
    auto in_b = b.calls.find(name);
    if (in_b == b.calls.end()) return 0;
    auto in_a = a.calls.find(name);
    return in_b->second - (in_a == a.calls.end() ? 0 : in_a->second);
  };
  auto usecDelta = [&](const std::string& name) -> uint64_t {
    auto in_b = b.usec.find(name);
    if (in_b == b.usec.end()) return 0;
    auto in_a = a.usec.find(name);
    return in_b->second - (in_a == a.usec.end() ? 0 : in_a->second);
  };
  RedisSecond result;
  uint64_t script_only = 0;
  for (const auto& [name, calls] : b.calls) {
    if (name == "info" || name == "mget") continue;
    uint64_t d = delta(name);
    result.all_calls += d;
    if (name == "time" || name == "incrby" || name == "expire" || name == "sadd" || name == "scard")
      script_only += d;
  }
  uint64_t script_gets = delta("time") * (limit < 0 ? 1 : 2);
  result.client = result.all_calls - script_only - std::min(script_gets, delta("get"));
  result.leases = delta("evalsha") + delta("eval");
  result.lease_usec = usecDelta("evalsha") + usecDelta("eval");
  double wall = static_cast<double>(b.at_ns - a.at_ns) / 1e9;
  result.cpu_percent = wall > 0 ? 100.0 * (b.cpu_s - a.cpu_s) / wall : 0;
  return result;
}

void sleepUntilRealtime(int64_t ns) {
  for (;;) {
    int64_t left = ns - nowNs(CLOCK_REALTIME);
    if (left <= 0) return;
    timespec pause = {static_cast<time_t>(left / 1000000000), static_cast<long>(left % 1000000000)};
    nanosleep(&pause, nullptr);
  }
}

// What the measurement itself costs: the same loop with no decision in it.
Histogram timingFloor() {
  Histogram floor;
  for (int round = 0; round < 1000; round++) {
    int64_t before = nowNs(CLOCK_MONOTONIC);
    for (int i = 0; i < 1000; i++) {
      int64_t after = nowNs(CLOCK_MONOTONIC);
      floor.add(static_cast<uint64_t>(after - before));
      before = after;
    }
  }
  return floor;
}

std::string thousands(uint64_t value) {
  std::string digits = std::to_string(value);
  std::string out;
  int count = 0;
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    if (count && count % 3 == 0) out.insert(out.begin(), ',');
    out.insert(out.begin(), *it);
    count++;
  }
  return out;
}

std::string clockText(int64_t second) {
  time_t t = static_cast<time_t>(second);
  tm parts;
  gmtime_r(&t, &parts);
  char text[16];
  strftime(text, sizeof text, "%H:%M:%S", &parts);
  return text;
}

void usage() {
  fprintf(stderr,
          "usage: limiter_bench --redis URL --limit N [--workers 64] [--threads 1] [--offered 2000000|0]\n"
          "                     [--duration 10] [--warmup 2] [--chunk 32] [--prefix P] [--title T]\n");
  exit(2);
}

Options parseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; i++) {
    std::string flag = argv[i];
    if (i + 1 >= argc) usage();
    std::string value = argv[++i];
    if (flag == "--redis")
      options.redis_url = value;
    else if (flag == "--limit")
      options.limit = std::atoll(value.c_str());
    else if (flag == "--workers")
      options.workers = std::atoi(value.c_str());
    else if (flag == "--threads")
      options.threads = std::atoi(value.c_str());
    else if (flag == "--offered")
      options.offered = std::atof(value.c_str());
    else if (flag == "--duration")
      options.duration = std::atoi(value.c_str());
    else if (flag == "--warmup")
      options.warmup = std::atoi(value.c_str());
    else if (flag == "--chunk")
      options.chunk = std::atoi(value.c_str());
    else if (flag == "--prefix")
      options.prefix = value;
    else if (flag == "--title")
      options.title = value;
    else
      usage();
  }
  if (options.redis_url.empty() || options.limit < 0 || options.workers < 1 || options.threads < 1 ||
      options.threads > options.workers || options.offered < 0 || options.duration < 1 ||
      options.warmup < 0 || options.chunk < 1)
    usage();
  if (options.prefix.empty()) options.prefix = "limiterbench" + std::to_string(getpid()) + ":";
  return options;
}

// Everything one run measured, by Unix second.
struct Measured {
  int64_t first = 0;  // the first and last second reported
  int64_t last = 0;
  std::map<int64_t, SecondStats> seconds;
  std::map<int64_t, RedisSnapshot> shots;  // taken at the start of each second
  Histogram floor;
  double cpu_seconds = 0;  // this process, over the reported seconds
  uint64_t skipped = 0;
};

double cpuSeconds(const rusage& usage) {
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

// Redis' figures at the start of each second from `first` to `last + 1`,
// with the tokens granted for the second that just ended.
bool watchRedis(const Options& options, RedisConnection& redis, Measured& measured, std::string& error) {
  rusage usage;
  for (int64_t second = measured.first; second <= measured.last + 1; second++) {
    sleepUntilRealtime(second * 1000000000 + 2000000);
    RedisSnapshot shot;
    if (!snapshot(redis, shot, error)) return false;
    RedisReply granted = redis.command({"MGET", LimitKeys(options.prefix).window(second - 1)}, error);
    if (granted && granted->type == REDIS_REPLY_ARRAY && granted->elements == 1 &&
        granted->element[0]->type == REDIS_REPLY_STRING)
      shot.granted_before = std::atoll(granted->element[0]->str);
    measured.shots[second] = shot;
    getrusage(RUSAGE_SELF, &usage);
    if (second == measured.first) measured.cpu_seconds = -cpuSeconds(usage);
  }
  measured.cpu_seconds += cpuSeconds(usage);
  return true;
}

bool measure(const Options& options, RedisConnection& redis, Measured& measured, std::string& error) {
  measured.floor = timingFloor();

  std::vector<std::unique_ptr<LoadThread>> loads;
  for (int t = 0; t < options.threads; t++) {
    int workers = options.workers / options.threads + (t < options.workers % options.threads ? 1 : 0);
    loads.push_back(std::make_unique<LoadThread>(options, workers));
  }
  std::vector<std::thread> threads;
  for (auto& load : loads) threads.emplace_back([&load] { load->run(); });
  for (auto& load : loads) load->waitReady();

  measured.first = nowNs(CLOCK_REALTIME) / 1000000000 + 1 + options.warmup;
  measured.last = measured.first + options.duration - 1;
  bool watched = watchRedis(options, redis, measured, error);
  // Stopped after the threads saw the next second, so the last one is complete.
  if (watched) sleepUntilRealtime((measured.last + 1) * 1000000000 + 50000000);
  g_stop = true;
  for (auto& thread : threads) thread.join();

  for (auto& load : loads) {
    for (SecondStats& stats : load->takeDone()) {
      SecondStats& into = measured.seconds[stats.second];
      into.second = stats.second;
      into.merge(stats);
    }
    measured.skipped += load->skipped();
  }
  return watched;
}

void printRow(const std::string& name, const SecondStats& stats, double limit, const std::string& granted,
              const RedisSecond& redis, double per) {
  auto rate = [&](uint64_t count) { return thousands(static_cast<uint64_t>(std::llround(count / per))); };
  printf(
      "| %s | %s | %s | %.4f | %s | %s | %s | %s | %s | %.3f%% | %s ns | %s ns | %s ns | %s ns | %.1f%% |\n",
      name.c_str(), rate(stats.offered).c_str(), rate(stats.admitted).c_str(), stats.admitted / per / limit,
      rate(stats.failing_open).c_str(), rate(stats.refused_429 + stats.refused_other).c_str(),
      granted.c_str(), rate(redis.client).c_str(), rate(redis.leases).c_str(),
      stats.admitted ? 100.0 * redis.client / stats.admitted : 0.0,
      thousands(stats.latency.percentile(0.5)).c_str(), thousands(stats.latency.percentile(0.99)).c_str(),
      thousands(stats.latency.percentile(0.999)).c_str(), thousands(stats.latency.max).c_str(),
      redis.cpu_percent);
}

void printReport(const Options& options, const Measured& measured) {
  const double limit = static_cast<double>(options.limit);
  printf("### %s\n\n", options.title.empty() ? "limiter_bench" : options.title.c_str());
  std::string offered =
      options.offered > 0 ? thousands(static_cast<uint64_t>(options.offered)) + " decisions/s offered, paced"
                          : "as many decisions/s as the threads can make";
  printf(
      "Limit %s/s; %d simulated workers (RateLimiter instances) on %d thread(s); %s, %d at a time to each "
      "worker in turn. Seconds are Unix seconds; the partial one the run starts in and the %d after it are "
      "warm-up, left out.\n\n",
      thousands(static_cast<uint64_t>(options.limit)).c_str(), options.workers, options.threads,
      offered.c_str(), options.chunk, options.warmup);
  printf(
      "| second (UTC) | offered | admitted | admitted / limit | of which failing open | refused | granted by "
      "Redis | Redis commands "
      "| "
      "of which leases | commands / admitted | decision p50 | p99 | p99.9 | max | Redis CPU |\n");
  printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");

  SecondStats total;
  RedisSecond redis_total;
  double highest = 0, lowest = 1e18, worst_commands = 0;
  uint64_t worst_p99 = 0;
  int failing_seconds = 0;
  for (int64_t second = measured.first; second <= measured.last; second++) {
    const SecondStats& stats = measured.seconds.count(second) ? measured.seconds.at(second) : SecondStats();
    RedisSecond redis = redisDelta(measured.shots.at(second), measured.shots.at(second + 1), options.limit);
    int64_t granted = measured.shots.at(second + 1).granted_before;
    printRow(clockText(second), stats, limit, granted >= 0 ? thousands(static_cast<uint64_t>(granted)) : "-",
             redis, 1);

    highest = std::max(highest, stats.admitted / limit);
    lowest = std::min(lowest, stats.admitted / limit);
    if (stats.admitted) worst_commands = std::max(worst_commands, 100.0 * redis.client / stats.admitted);
    worst_p99 = std::max(worst_p99, stats.latency.percentile(0.99));
    failing_seconds += stats.failing_open > 0;
    total.merge(stats);
    redis_total.client += redis.client;
    redis_total.leases += redis.leases;
    redis_total.all_calls += redis.all_calls;
    redis_total.lease_usec += redis.lease_usec;
    redis_total.cpu_percent += redis.cpu_percent / options.duration;
  }
  double seconds = options.duration;
  printRow("**per second, " + std::to_string(options.duration) + " s**", total, limit, "", redis_total,
           seconds);

  uint64_t in_scripts = redis_total.all_calls - (redis_total.client - redis_total.leases);
  printf(
      "\n- Redis: %s calls/s in all, counting those the lease script makes (%.1f per lease, the EVALSHA "
      "included; %.1f us of Redis time per lease).\n",
      thousands(static_cast<uint64_t>(redis_total.all_calls / seconds)).c_str(),
      redis_total.leases ? static_cast<double>(in_scripts) / redis_total.leases : 0.0,
      redis_total.leases ? static_cast<double>(redis_total.lease_usec) / redis_total.leases : 0.0);
  printf(
      "- Decision time: every admit(1) timed by a CLOCK_MONOTONIC read after it, against the read after the "
      "one before; the timing floor (the same loop with no call in it) is p50 %s ns, p99 %s ns, included in "
      "the figures above.\n",
      thousands(measured.floor.percentile(0.5)).c_str(), thousands(measured.floor.percentile(0.99)).c_str());
  printf(
      "- This tool used %.0f%% of one CPU over the reported seconds. Admitted while failing open (a limiter "
      "whose Redis was more than 50 ms late): %s, in %d of the seconds; refused with 503: %s.\n",
      100.0 * measured.cpu_seconds / seconds, thousands(total.failing_open).c_str(), failing_seconds,
      thousands(total.refused_other).c_str());
  if (options.offered > 0) {
    printf(
        "- Offered %.4f of the paced rate; %s decisions skipped because a thread fell more than 20 ms "
        "behind.\n",
        total.offered / seconds / options.offered, thousands(measured.skipped).c_str());
  }

  double commands = total.admitted ? 100.0 * redis_total.client / total.admitted : 0.0;
  printf("\nTargets:\n\n");
  printf(
      "- Redis commands per second under 1%% of admitted: %s (at most %.3f%% in a second, %.3f%% over the "
      "run)\n",
      worst_commands < 1.0 ? "met" : "NOT met", worst_commands, commands);
  printf("- Decision p99 under 1 us: %s (at most %s ns in a second, %s ns over the run)\n",
         worst_p99 < 1000 ? "met" : "NOT met", thousands(worst_p99).c_str(),
         thousands(total.latency.percentile(0.99)).c_str());
  printf("- Admitted never above the limit by more than 1%%: %s (at most %.4f of the limit in a second",
         highest <= 1.01 ? "met" : "NOT met", highest);
  if (total.offered > total.admitted * 1.05) printf(", at least %.4f", lowest);
  printf(")\n");
  if (total.offered / seconds < limit) {
    uint64_t refused = total.refused_429 + total.refused_other;
    printf(
        "- Offered below the limit: %s of %s decisions refused (%.4f%%), %s of them within 50 ms of the "
        "start or end of a second\n",
        thousands(refused).c_str(), thousands(total.offered).c_str(),
        total.offered ? 100.0 * refused / total.offered : 0.0, thousands(total.refused_edge).c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options options = parseOptions(argc, argv);
  plog::setup("limiter_bench", plog::Level::warn);

  std::string error;
  std::unique_ptr<RedisConnection> redis = RedisConnection::open(options.redis_url, 2000, error);
  if (!redis) {
    fprintf(stderr, "limiter_bench: %s\n", error.c_str());
    return 1;
  }
  // What `strangler limit set N` does: the key and the event.
  if (!RateLimitStore(*redis, options.prefix).set(options.limit, error)) {
    fprintf(stderr, "limiter_bench: setting the limit: %s\n", error.c_str());
    return 1;
  }

  Measured measured;
  if (!measure(options, *redis, measured, error)) {
    fprintf(stderr, "limiter_bench: reading Redis' figures: %s\n", error.c_str());
    return 1;
  }
  printReport(options, measured);
  return 0;
}
