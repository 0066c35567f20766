// The supervisor: rules into Redis, sockets, worker generations, signals.
#include "supervisor/supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include <json/json.h>

#include "shared/control_channel.h"
#include "shared/json_writer.h"
#include "shared/process_log.h"
#include "shared/rate_limit_store.h"
#include "shared/redis_client.h"
#include "shared/rules.h"
#include "shared/rules_store.h"
#include "shared/timeval.h"
#include "supervisor/systemd_notify.h"

namespace strangler {
namespace {

constexpr int kRedisTimeoutMs = 2000;
// How often the active version in Redis is re-read, for pushes made elsewhere.
// SIGHUPs closer together than this become one reload.
constexpr int kReloadCoalesceMs = 10;
// Extra time past the drain timeout before unresponsive workers are killed.
constexpr int kStopGraceMs = 5000;
// Metrics regions per worker slot: the serving worker, the one it replaces,
// and room for older ones still draining (an HTTP/2 connection keeps its
// worker half a second past the drain order) when rollouts come quickly.
constexpr size_t kMetricsRegionsPerSlot = 8;
// A worker that stays up this long after ready ends its slot's crash loop.
constexpr int64_t kStableRunUs = 5'000'000;
// Unasked exits of a rollout's new workers, all slots together, before the
// version is given up. One is forgiven (a worker killed by something else);
// a version that cannot start at all kills one per slot at once.
constexpr int kRolloutExitsAllowed = 2;

std::string joinNumbers(const std::vector<int>& numbers) {
  std::string text;
  for (int number : numbers) text += (text.empty() ? "" : ",") + std::to_string(number);
  return text;
}

// Restart back-off: at once, then 100 ms doubling up to 5 s for a crash loop.
int64_t restartDelayMs(int consecutive_failures) {
  if (consecutive_failures <= 1) return 0;
  int64_t delay = 100;
  for (int i = 2; i < consecutive_failures && delay < 5000; i++) delay *= 2;
  return delay < 5000 ? delay : 5000;
}

int64_t monotonicUs() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1'000'000 + now.tv_nsec / 1000;
}

std::string describeExit(int status) {
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const char* name = sigabbrev_np(WTERMSIG(status));
    return std::string("signal SIG") + (name ? name : std::to_string(WTERMSIG(status)).c_str());
  }
  return "status " + std::to_string(status);
}

}  // namespace

Supervisor::Supervisor(Config config) : config_(std::move(config)) {}

Supervisor::~Supervisor() {
  for (auto& [pid, worker] : workers_) {
    if (worker->control_event) event_free(worker->control_event);
    if (worker->control_fd >= 0) close(worker->control_fd);
  }
  for (Slot& slot : slots_) {
    if (slot.restart_timer) event_free(slot.restart_timer);
  }
  for (event* signal_event : signal_events_) event_free(signal_event);
  for (event* timer : {poll_timer_, shutdown_delay_timer_, stop_deadline_timer_, reload_timer_}) {
    if (timer) event_free(timer);
  }
  admin_.reset();
  rules_events_.reset();
  if (base_) event_base_free(base_);
}

bool Supervisor::connectRedis(std::string& error) {
  if (config_.redis_url.empty()) {
    if (!embedded_redis_.start(error)) return false;
    config_.redis_url = embedded_redis_.url();
    // Workers read the same variable, so they reach the same private server.
    setenv("STRANGLER_REDIS_URL", config_.redis_url.c_str(), 1);
  }
  redis_ = RedisConnection::open(config_.redis_url, kRedisTimeoutMs, error);
  if (!redis_) return false;
  plog::info("connected to Redis", {{"redis_url", maskRedisUrl(config_.redis_url)}});
  return true;
}

bool Supervisor::publishRulesFromDisk(std::string& error) {
  LoadResult loaded = loadRulesFromPath(config_.rules_path);
  if (!loaded.ruleset) {
    for (const std::string& message : loaded.errors) {
      plog::error("invalid rules", {{"rules", config_.rules_path}, {"error", message}});
    }
    error = "the rules in " + config_.rules_path + " are invalid (" + std::to_string(loaded.errors.size()) +
            " error" + (loaded.errors.size() == 1 ? "" : "s") + "; first: " + loaded.errors.front() + ")";
    return false;
  }

  RulesStore store(*redis_, config_.redis_prefix);
  PushResult pushed;
  if (!store.push(loaded.document, pushed, error)) return false;
  plog::info("rules loaded into Redis", {{"rules", config_.rules_path}, {"rules_version", pushed.version},
                                         {"new_version", pushed.created}, {"activated", pushed.activated},
                                         {"routes", static_cast<unsigned long>(loaded.ruleset->routes.size())}});
  return true;
}

bool Supervisor::fetchActiveVersion(uint64_t& version, std::string& error) {
  if (!redis_) {
    redis_ = RedisConnection::open(config_.redis_url, 500, error);
    if (!redis_) {
      noteRedisLost(error);
      return false;
    }
    if (redis_lost_) plog::info("reconnected to Redis", {{"redis_url", maskRedisUrl(config_.redis_url)}});
    redis_lost_ = false;
  }
  RulesStore store(*redis_, config_.redis_prefix);
  if (store.activeVersion(version, error)) return true;
  // Reconnect on the next call: the connection may be broken.
  redis_.reset();
  noteRedisLost(error);
  return false;
}

void Supervisor::noteRedisLost(const std::string& error) {
  if (redis_lost_) return;
  redis_lost_ = true;
  plog::warn("lost the Redis connection", {{"redis_url", maskRedisUrl(config_.redis_url)}, {"error", error}});
}

int Supervisor::run() {
  signal(SIGPIPE, SIG_IGN);
  char path[4096];
  ssize_t length = readlink("/proc/self/exe", path, sizeof path - 1);
  executable_ = length > 0 ? std::string(path, static_cast<size_t>(length)) : "strangler";

  base_ = event_base_new();
  plog::info("supervisor starting", {plog::Field::rawJson("config", describeConfig(config_))});

  std::string error;
  if (!connectRedis(error)) {
    plog::error("cannot start: Redis unreachable", {{"error", error}});
    return 1;
  }
  // One limit for every proxy on this Redis: ours only when none is set there.
  writeDefaultLimit(*redis_, config_.redis_prefix, config_.rate_limit_rps);
  if (!config_.rules_path.empty() && !publishRulesFromDisk(error)) {
    plog::error("cannot start: rules not loaded", {{"error", error}});
    return 1;
  }
  if (!fetchActiveVersion(active_version_, error) || active_version_ == 0) {
    plog::error("cannot start: no active ruleset",
                {{"error", error.empty() ? "Redis holds no active version and STRANGLER_RULES is unset" : error}});
    return 1;
  }
  serving_version_ = active_version_;
  if (!listeners_.open(config_.listen, config_.workers, error)) {
    plog::error("cannot start: listen failed", {{"error", error}});
    return 1;
  }

  if (!metrics_.create(kMetricsRegionsPerSlot * static_cast<size_t>(config_.workers), error)) {
    plog::error("cannot start: no metrics segment", {{"error", error}});
    return 1;
  }

  AdminState admin_state;
  admin_state.not_ready_reason = [this] { return notReadyReason(); };
  admin_state.ready_note = [this] { return readinessNote(); };
  admin_state.rules_json = [this] { return rulesJson(); };
  admin_state.metrics_text = [this] { return metricsText(); };
  admin_ = std::make_unique<AdminServer>(base_, admin_state);
  if (!admin_->listen(config_.admin_listen, error)) {
    plog::error("cannot start: admin listen failed", {{"error", error}});
    return 1;
  }

  for (int signal_number : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) {
    event* signal_event = evsignal_new(base_, signal_number, &Supervisor::onSignal, this);
    event_add(signal_event, nullptr);
    signal_events_.push_back(signal_event);
  }

  slots_.resize(static_cast<size_t>(config_.workers));
  for (int i = 0; i < config_.workers; i++) {
    Slot& slot = slots_[static_cast<size_t>(i)];
    slot.owner = this;
    slot.index = i;
    slot.restart_timer = evtimer_new(base_, &Supervisor::onRestartTimer, &slot);
    spawnWorker(i, active_version_);
  }

  poll_timer_ = event_new(base_, -1, EV_PERSIST, &Supervisor::onPollTimer, this);
  timeval poll_interval = millisecondsToTimeval(config_.rules_check_interval_ms);
  event_add(poll_timer_, &poll_interval);
  RedisAddress redis_address;
  parseRedisUrl(config_.redis_url, redis_address);
  rules_events_ = std::make_unique<RulesEventSubscriber>(base_, redis_address, RulesKeys(config_.redis_prefix).events(),
                                                         [this] { followActiveVersion(); });
  rules_events_->start();
  shutdown_delay_timer_ = evtimer_new(base_, &Supervisor::onShutdownDelay, this);
  reload_timer_ = evtimer_new(base_, &Supervisor::onReloadTimer, this);
  stop_deadline_timer_ = evtimer_new(base_, &Supervisor::onStopDeadline, this);

  event_base_dispatch(base_);

  listeners_.closeAll();
  embedded_redis_.stop();
  plog::info("supervisor stopped", {{"exit_code", exit_code_}});
  return exit_code_;
}

bool Supervisor::spawnWorker(int slot_index, uint64_t version) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    plog::error("socketpair for a worker failed", {{"slot", slot_index}, {"error", strerror(errno)}});
    scheduleRestart(slot_index);
    return false;
  }
  const std::vector<int>& listen_fds = listeners_.slot(slot_index);
  int metrics_region = metrics_.acquire();
  if (metrics_region < 0) {
    plog::warn("no free metrics region: the new worker's counters are not reported", {{"slot", slot_index}});
  }
  std::vector<std::string> arguments = {"strangler", "worker", "--slot", std::to_string(slot_index),
                                        "--rules-version", std::to_string(version),
                                        "--listen-fds", joinNumbers(listen_fds),
                                        "--control-fd", std::to_string(pair[1])};
  if (metrics_region >= 0) {
    arguments.insert(arguments.end(), {"--metrics-fd", std::to_string(metrics_.fd()), "--metrics-region",
                                       std::to_string(metrics_region)});
  }
  std::vector<char*> argv;
  for (std::string& argument : arguments) argv.push_back(argument.data());
  argv.push_back(nullptr);

  pid_t pid = fork();
  if (pid < 0) {
    plog::error("fork of a worker failed", {{"slot", slot_index}, {"error", strerror(errno)}});
    close(pair[0]);
    close(pair[1]);
    metrics_.release(metrics_region, retired_metrics_);
    scheduleRestart(slot_index);
    return false;
  }
  if (pid == 0) {
    // Only this slot's sockets, its end of the control pair and the metrics
    // segment cross the exec.
    for (int fd : listen_fds) fcntl(fd, F_SETFD, 0);
    fcntl(pair[1], F_SETFD, 0);
    if (metrics_region >= 0) fcntl(metrics_.fd(), F_SETFD, 0);
    execv(executable_.c_str(), argv.data());
    _exit(127);
  }

  close(pair[1]);
  evutil_make_socket_nonblocking(pair[0]);
  auto worker = std::make_unique<WorkerProcess>();
  worker->owner = this;
  worker->pid = pid;
  worker->slot = slot_index;
  worker->rules_version = version;
  worker->control_fd = pair[0];
  worker->metrics_region = metrics_region;
  worker->control_event = event_new(base_, pair[0], EV_READ | EV_PERSIST, &Supervisor::onControl, worker.get());
  event_add(worker->control_event, nullptr);
  workers_[pid] = std::move(worker);

  Slot& slot = slots_[static_cast<size_t>(slot_index)];
  if (slot.current > 0 && slot.previous <= 0) slot.previous = slot.current;
  else if (slot.current > 0) {
    // A rollout overtaken by another: the half-started worker is dropped.
    auto stale = workers_.find(slot.current);
    if (stale != workers_.end()) drainWorker(*stale->second);
  }
  slot.current = pid;
  plog::info("worker started", {{"slot", slot_index}, {"worker_pid", static_cast<int>(pid)}, {"rules_version", version}});
  return true;
}

void Supervisor::onControl(evutil_socket_t, short, void* context) {
  auto* worker = static_cast<WorkerProcess*>(context);
  worker->owner->handleWorkerMessage(*worker);
}

void Supervisor::handleWorkerMessage(WorkerProcess& worker) {
  while (true) {
    std::string message;
    int passed_fd = -1;
    ControlReceive received = receiveControlMessage(worker.control_fd, message, passed_fd);
    if (received == ControlReceive::nothing_yet) return;
    if (received == ControlReceive::closed) {
      // The worker is gone or going; its exit is handled when it is reaped.
      event_del(worker.control_event);
      return;
    }
    if (message.rfind("handover\n", 0) == 0 && passed_fd >= 0) {
      forwardHandover(worker, message, passed_fd);
    } else if (message.rfind("ready ", 0) == 0) {
      onWorkerReady(worker);
    } else if (message.rfind("failed ", 0) == 0) {
      size_t newline = message.find('\n');
      std::string reason = newline == std::string::npos ? "" : message.substr(newline + 1);
      onWorkerFailedToLoad(worker, reason.empty() ? "no reason given" : reason);
    } else {
      plog::warn("unknown message from a worker",
                 {{"worker_pid", static_cast<int>(worker.pid)}, {"message", message.substr(0, 64)}});
    }
    if (passed_fd >= 0) close(passed_fd);
  }
}

void Supervisor::forwardHandover(const WorkerProcess& from, const std::string& message, int fd) {
  // An idle connection of a draining worker goes to the worker now serving its slot.
  Slot& slot = slots_[static_cast<size_t>(from.slot)];
  auto target = workers_.find(slot.current);
  bool deliverable = target != workers_.end() && target->second->ready && !target->second->draining &&
                     target->second->pid != from.pid;
  if (deliverable && sendControlMessage(target->second->control_fd, message, fd)) {
    connections_handed_over_++;
    return;
  }
  // Nobody to take it: closing the last copy closes the idle connection.
  plog::warn("handover not delivered: connection closed", {{"slot", from.slot}});
}

void Supervisor::onWorkerReady(WorkerProcess& worker) {
  worker.ready = true;
  worker.ready_at_us = monotonicUs();
  // A worker of an overtaken or abandoned rollout is being drained already.
  if (slots_[static_cast<size_t>(worker.slot)].current != worker.pid) return;
  if (generationReady()) completeGeneration();
}

void Supervisor::onWorkerFailedToLoad(WorkerProcess& worker, const std::string& reason) {
  worker.load_error = reason;
  const Slot& slot = slots_[static_cast<size_t>(worker.slot)];
  // Loading is the same in every new worker: one that cannot load the
  // version ends the rollout. Outside a rollout the slot just backs off.
  if (rolling_out_ && worker.rules_version == active_version_ && slot.current == worker.pid) {
    abandonRollout("a worker of slot " + std::to_string(worker.slot) + " cannot load version " +
                   std::to_string(worker.rules_version) + ": " + reason);
  }
}

bool Supervisor::generationReady() const {
  for (const Slot& slot : slots_) {
    auto found = workers_.find(slot.current);
    if (found == workers_.end() || !found->second->ready || found->second->rules_version != active_version_) {
      return false;
    }
  }
  return !slots_.empty();
}

void Supervisor::completeGeneration() {
  // The generation switches as a whole: no old worker drains before every
  // new one is ready, so an abandoned rollout leaves the old one complete.
  for (Slot& slot : slots_) {
    auto previous = workers_.find(slot.previous);
    if (previous != workers_.end()) drainWorker(*previous->second);
    slot.previous = -1;
  }
  serving_version_ = active_version_;
  bool rolled_out = rolling_out_;
  rolling_out_ = false;
  std::string status = "serving rules version " + std::to_string(active_version_);
  if (phase_ == Phase::starting) {
    phase_ = Phase::running;
    plog::info("supervisor ready", {{"workers", config_.workers}, {"rules_version", active_version_}});
    systemd::ready(status);
  } else if (rolled_out) {
    last_rollout_us_ = static_cast<uint64_t>(monotonicUs() - rollout_started_us_);
    rollouts_complete_++;
    failed_version_ = 0;
    failed_reason_.clear();
    plog::info("rollout complete", {{"rules_version", active_version_}, {"workers", config_.workers},
                                    {"duration_us", static_cast<unsigned long>(last_rollout_us_)}});
    systemd::ready(status);
  }
}

void Supervisor::abandonRollout(const std::string& reason) {
  uint64_t version = active_version_;
  rolling_out_ = false;
  active_version_ = serving_version_;
  failed_version_ = version;
  failed_reason_ = reason;
  rollouts_failed_++;
  plog::error("rollout abandoned: the running version stays",
              {{"rules_version", version}, {"serving_version", serving_version_}, {"error", reason}});

  for (Slot& slot : slots_) {
    evtimer_del(slot.restart_timer);
    slot.restart_due_us = 0;
    // The exits belonged to the version given up, not to this slot's worker.
    slot.consecutive_failures = 0;
    pid_t incoming = slot.current;
    slot.current = slot.previous;
    slot.previous = -1;
    // Connections a ready new worker took go back to the old one.
    auto found = workers_.find(incoming);
    if (found != workers_.end()) drainWorker(*found->second);
    if (slot.current <= 0) scheduleRestart(slot.index);
  }
  systemd::ready("serving rules version " + std::to_string(serving_version_) + "; version " +
                 std::to_string(version) + " failed to load");
}

void Supervisor::drainWorker(WorkerProcess& worker) {
  if (worker.draining) return;
  worker.draining = true;
  // One that could not load its version is exiting by itself.
  if (!worker.load_error.empty()) return;
  // In a rollout the slot has a ready successor: idle connections go to it.
  const Slot& slot = slots_[static_cast<size_t>(worker.slot)];
  auto successor = workers_.find(slot.current);
  bool hand_over = phase_ != Phase::stopping && successor != workers_.end() && successor->second->ready &&
                   successor->second->pid != worker.pid;
  if (!sendControlMessage(worker.control_fd, hand_over ? "drain handover" : "drain")) {
    // The control socket is gone: the worker sees EOF and drains by itself.
    plog::warn("drain order not delivered", {{"worker_pid", static_cast<int>(worker.pid)}, {"error", strerror(errno)}});
  }
}

void Supervisor::reapChildren() {
  int status = 0;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    if (pid == embedded_redis_.pid()) {
      embedded_redis_.markExited();
      plog::error("private redis-server exited", {{"status", describeExit(status)}});
      continue;
    }
    onWorkerExit(pid, status);
  }
}

void Supervisor::onWorkerExit(pid_t pid, int status) {
  auto found = workers_.find(pid);
  if (found == workers_.end()) return;
  // What it said last (why it could not load, say) may still wait unread.
  handleWorkerMessage(*found->second);
  std::unique_ptr<WorkerProcess> worker = std::move(found->second);
  workers_.erase(found);
  event_free(worker->control_event);
  close(worker->control_fd);
  // It can write no more, so its counters move to the retired totals now.
  metrics_.release(worker->metrics_region, retired_metrics_);

  Slot& slot = slots_[static_cast<size_t>(worker->slot)];
  bool expected = worker->draining || phase_ == Phase::stopping;
  if (expected) {
    plog::info("worker exited", {{"slot", worker->slot}, {"worker_pid", static_cast<int>(pid)}, {"status", describeExit(status)}});
  } else {
    plog::error("worker died", {{"slot", worker->slot}, {"worker_pid", static_cast<int>(pid)},
                                {"rules_version", worker->rules_version}, {"status", describeExit(status)},
                                {"was_ready", worker->ready}});
  }

  if (slot.previous == pid) slot.previous = -1;
  if (slot.current == pid) {
    slot.current = -1;
    if (phase_ != Phase::stopping) onUnaskedExit(slot, *worker, status);
  }
  finishIfStopped();
}

void Supervisor::onUnaskedExit(Slot& slot, const WorkerProcess& worker, int status) {
  bool stayed_up = worker.ready && monotonicUs() - worker.ready_at_us >= kStableRunUs;
  slot.consecutive_failures = stayed_up ? 1 : slot.consecutive_failures + 1;
  slot.last_failure = worker.load_error.empty() ? describeExit(status) : worker.load_error;
  worker_restarts_++;
  if (rolling_out_ && worker.rules_version == active_version_ && ++rollout_exits_ > kRolloutExitsAllowed) {
    abandonRollout("workers of version " + std::to_string(worker.rules_version) + " exited " +
                   std::to_string(rollout_exits_) + " times before the new generation was ready (last: " +
                   slot.last_failure + ")");
    return;
  }
  scheduleRestart(slot.index);
}

void Supervisor::scheduleRestart(int slot_index) {
  Slot& slot = slots_[static_cast<size_t>(slot_index)];
  int64_t delay_ms = restartDelayMs(slot.consecutive_failures);
  slot.restart_due_us = monotonicUs() + delay_ms * 1000;
  timeval delay = millisecondsToTimeval(delay_ms);
  evtimer_add(slot.restart_timer, &delay);
}

void Supervisor::onRestartTimer(evutil_socket_t, short, void* context) {
  auto* slot = static_cast<Slot*>(context);
  Supervisor* self = slot->owner;
  slot->restart_due_us = 0;
  if (self->phase_ == Phase::stopping || slot->current > 0) return;
  self->spawnWorker(slot->index, self->active_version_);
}

void Supervisor::onSignal(evutil_socket_t signal_number, short, void* self) {
  auto* supervisor = static_cast<Supervisor*>(self);
  switch (signal_number) {
    case SIGCHLD: supervisor->reapChildren(); break;
    case SIGHUP: {
      // SIGHUPs in quick succession coalesce into one reload of the newest files.
      if (!evtimer_pending(supervisor->reload_timer_, nullptr)) supervisor->reload_requested_us_ = monotonicUs();
      timeval delay = millisecondsToTimeval(kReloadCoalesceMs);
      evtimer_add(supervisor->reload_timer_, &delay);
      break;
    }
    case SIGTERM: supervisor->beginStop("SIGTERM"); break;
    case SIGINT: supervisor->beginStop("SIGINT"); break;
    default: break;
  }
}

void Supervisor::reload() {
  if (phase_ == Phase::stopping) return;
  plog::info("reload requested", {{"rules", config_.rules_path}});
  std::string error;
  if (!config_.rules_path.empty() && !publishRulesFromDisk(error)) {
    reload_requested_us_ = 0;
    reloads_failed_++;
    plog::error("reload refused: the running version stays", {{"rules_version", active_version_}, {"error", error}});
    return;
  }
  // A SIGHUP also tries again a version that failed to load.
  bool rolled_out = false;
  if (checkActiveVersion(rolled_out, true)) {
    reloads_ok_++;
  } else {
    reloads_failed_++;
    plog::error("reload refused: the running version stays",
                {{"rules_version", active_version_}, {"error", "cannot read the active rules version"}});
  }
  reload_requested_us_ = 0;
}

bool Supervisor::checkActiveVersion(bool& rolled_out, bool retry_failed) {
  uint64_t version = 0;
  std::string error;
  rolled_out = false;
  // A failure is logged once, as the Redis connection changing state: the
  // periodic check would otherwise repeat it every interval.
  if (!fetchActiveVersion(version, error)) return false;
  if (version == 0 || version == active_version_) {
    // Rolled back to the version served: nothing has failed any more.
    if (version == serving_version_ && !rolling_out_) failed_version_ = 0;
    return true;
  }
  // A version given up stays given up: trying it again on every check would
  // fork workers that fail, once a second, for as long as it is active.
  if (version == failed_version_ && !retry_failed) return true;
  rolled_out = true;
  rollOut(version);
  return true;
}

void Supervisor::rollOut(uint64_t version) {
  plog::info("rolling out", {{"from_version", active_version_}, {"to_version", version}});
  systemd::reloading("rolling out rules version " + std::to_string(version));
  rolling_out_ = true;
  active_version_ = version;
  rollout_exits_ = 0;
  rollout_started_us_ = reload_requested_us_ > 0 ? reload_requested_us_ : monotonicUs();
  for (int i = 0; i < config_.workers; i++) {
    Slot& slot = slots_[static_cast<size_t>(i)];
    evtimer_del(slot.restart_timer);
    spawnWorker(i, version);
  }
}

void Supervisor::onPollTimer(evutil_socket_t, short, void* self) {
  static_cast<Supervisor*>(self)->followActiveVersion();
}

void Supervisor::followActiveVersion() {
  if (phase_ == Phase::stopping) return;
  bool rolled_out = false;
  if (checkActiveVersion(rolled_out, false) && rolled_out) reloads_ok_++;
}

void Supervisor::onReloadTimer(evutil_socket_t, short, void* self) { static_cast<Supervisor*>(self)->reload(); }

void Supervisor::beginStop(const char* why) {
  if (phase_ == Phase::stopping) {
    // A second stop signal during the drain: stop at once.
    plog::warn("second stop signal: killing workers now", {{"signal", why}});
    for (auto& [pid, worker] : workers_) kill(pid, SIGKILL);
    exit_code_ = 1;
    return;
  }
  phase_ = Phase::stopping;
  systemd::stopping();
  plog::info("stopping", {{"signal", why}, {"shutdown_delay_ms", config_.shutdown_delay_ms},
                          {"drain_timeout_ms", config_.drain_timeout_ms}});
  // Readiness fails from now on; load balancers get this long to notice.
  timeval delay = millisecondsToTimeval(config_.shutdown_delay_ms);
  evtimer_add(shutdown_delay_timer_, &delay);
}

void Supervisor::onShutdownDelay(evutil_socket_t, short, void* self) {
  static_cast<Supervisor*>(self)->closeListenersAndDrain();
}

void Supervisor::closeListenersAndDrain() {
  for (auto& [pid, worker] : workers_) drainWorker(*worker);
  timeval deadline = millisecondsToTimeval(config_.drain_timeout_ms + kStopGraceMs);
  evtimer_add(stop_deadline_timer_, &deadline);
  finishIfStopped();
}

void Supervisor::onStopDeadline(evutil_socket_t, short, void* self) {
  auto* supervisor = static_cast<Supervisor*>(self);
  for (auto& [pid, worker] : supervisor->workers_) {
    plog::error("worker did not stop in time: killed", {{"worker_pid", static_cast<int>(pid)}});
    kill(pid, SIGKILL);
  }
  supervisor->exit_code_ = 1;
}

void Supervisor::finishIfStopped() {
  if (phase_ == Phase::stopping && workers_.empty()) event_base_loopexit(base_, nullptr);
}

std::string Supervisor::notReadyReason() const {
  if (phase_ == Phase::stopping) return "stopping";
  if (slots_.empty()) return "starting";
  for (const Slot& slot : slots_) {
    std::string reason = slotNotReadyReason(slot);
    if (!reason.empty()) return reason;
  }
  return "";
}

std::string Supervisor::slotNotReadyReason(const Slot& slot) const {
  // During a rollout the old worker serves its slot until the whole new generation is ready.
  pid_t serving = rolling_out_ && slot.previous > 0 ? slot.previous : slot.current;
  auto found = workers_.find(serving);
  if (found != workers_.end() && found->second->ready) return "";

  std::string reason = "slot " + std::to_string(slot.index);
  if (found == workers_.end()) reason += " has no worker";
  else reason += " is starting version " + std::to_string(found->second->rules_version);
  int failures = failuresInARow(slot);
  if (failures == 0) return reason;
  reason += "; its workers exited " + std::to_string(failures) + " times in a row, last: " + slot.last_failure;
  if (slot.restart_due_us > 0) {
    int64_t wait_ms = std::max<int64_t>(0, (slot.restart_due_us - monotonicUs()) / 1000);
    reason += "; next start in " + std::to_string(wait_ms) + " ms";
  }
  return reason;
}

int Supervisor::failuresInARow(const Slot& slot) const {
  auto found = workers_.find(slot.current);
  bool stayed_up = found != workers_.end() && found->second->ready &&
                   monotonicUs() - found->second->ready_at_us >= kStableRunUs;
  return stayed_up ? 0 : slot.consecutive_failures;
}

std::string Supervisor::readinessNote() const {
  if (failed_version_ == 0) return "";
  return "version " + std::to_string(failed_version_) + " failed to load, version " +
         std::to_string(serving_version_) + " stays: " + failed_reason_;
}

std::string Supervisor::rulesJson() {
  std::string document;
  std::string error;
  std::string version = std::to_string(serving_version_);
  std::string extra;
  if (rolling_out_) extra += ",\"rolling_out\":" + std::to_string(active_version_);
  if (failed_version_ != 0) {
    extra += ",\"failed\":" + JsonObjectWriter().field("version", failed_version_).field("error", failed_reason_).finish();
  }
  if (!redis_) redis_ = RedisConnection::open(config_.redis_url, 500, error);
  if (!redis_ || !RulesStore(*redis_, config_.redis_prefix).document(serving_version_, document, error)) {
    redis_.reset();
    return "{\"version\":" + version + extra + ",\"error\":\"ruleset unavailable\"}\n";
  }
  return "{\"version\":" + version + extra + ",\"rules\":" + document + "}\n";
}

std::string Supervisor::metricsText() {
  metrics::MetricsTotals totals = retired_metrics_;
  metrics_.addLive(totals);
  metrics::SupervisorStats stats;
  stats.rules_version = serving_version_;
  stats.rollouts_complete = rollouts_complete_;
  stats.rollouts_abandoned = rollouts_failed_;
  stats.failed_version = failed_version_;
  stats.last_rollout_us = last_rollout_us_;
  int64_t now = monotonicUs();
  for (const Slot& slot : slots_) {
    stats.slot_failures.push_back(static_cast<uint64_t>(failuresInARow(slot)));
    stats.slot_backoff_us.push_back(slot.restart_due_us > now ? static_cast<uint64_t>(slot.restart_due_us - now) : 0);
  }
  stats.reloads_ok = reloads_ok_;
  stats.reloads_failed = reloads_failed_;
  stats.worker_restarts = worker_restarts_;
  stats.workers = workers_.size();
  return metrics::renderPrometheus(totals, stats);
}

}  // namespace strangler
