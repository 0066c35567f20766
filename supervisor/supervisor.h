// The supervisor: loads rules into Redis, owns the listening sockets, starts
// one worker per slot bound to the active ruleset version, replaces workers
// that die, rolls out new versions by generations and stops gracefully.
#pragma once

#include <event2/event.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "shared/config.h"
#include "shared/metrics.h"
#include "supervisor/admin_server.h"
#include "supervisor/embedded_redis.h"
#include "supervisor/listeners.h"
#include "supervisor/rules_events.h"

namespace strangler {

class RedisConnection;

class Supervisor {
 public:
  explicit Supervisor(Config config);
  ~Supervisor();

  // Runs until stopped; returns the process exit code.
  int run();

 private:
  enum class Phase { starting, running, stopping };

  struct WorkerProcess {
    Supervisor* owner = nullptr;
    pid_t pid = -1;
    int slot = 0;
    uint64_t rules_version = 0;
    int control_fd = -1;
    event* control_event = nullptr;
    std::string control_input;
    bool ready = false;
    int64_t ready_at_us = 0;  // monotonic clock
    bool draining = false;
    std::string load_error;  // why it cannot serve its version, when it said so
    int metrics_region = -1;  // its region of metrics_, or -1 when none was free
  };

  struct Slot {
    Supervisor* owner = nullptr;
    int index = 0;
    pid_t current = -1;   // the worker serving the active version, or being started for it
    pid_t previous = -1;  // the worker being replaced, until the current one is ready
    // Unasked worker exits in a row, since a worker of this slot last stayed
    // up kStableRunMs after ready; it sets the restart back-off.
    int consecutive_failures = 0;
    std::string last_failure;  // how the last of them ended
    int64_t restart_due_us = 0;  // monotonic time of the pending restart, or 0
    event* restart_timer = nullptr;
  };

  bool connectRedis(std::string& error);
  bool publishRulesFromDisk(std::string& error);
  bool fetchActiveVersion(uint64_t& version, std::string& error);
  void noteRedisLost(const std::string& error);

  bool spawnWorker(int slot, uint64_t version);
  void handleWorkerMessage(WorkerProcess& worker);
  void onWorkerReady(WorkerProcess& worker);
  void onWorkerFailedToLoad(WorkerProcess& worker, const std::string& reason);
  bool generationReady() const;
  void completeGeneration();
  // Gives up the version being rolled out: its workers go, the old ones stay.
  void abandonRollout(const std::string& reason);
  int failuresInARow(const Slot& slot) const;
  void reapChildren();
  void onWorkerExit(pid_t pid, int status);
  void onUnaskedExit(Slot& slot, const WorkerProcess& worker, int status);
  void scheduleRestart(int slot);
  void drainWorker(WorkerProcess& worker);
  void forwardHandover(const WorkerProcess& from, const std::string& message, int fd);

  void reload();
  void rollOut(uint64_t version);
  // Rolls out the active version in Redis if it changed; false when unreadable.
  // A version that failed to load is tried again only when `retry_failed`.
  bool checkActiveVersion(bool& rolled_out, bool retry_failed);
  // A version pushed elsewhere (the CLI, another host) is a reload too:
  // followed on each rules event and each periodic check.
  void followActiveVersion();
  void beginStop(const char* why);
  void closeListenersAndDrain();
  void finishIfStopped();

  std::string notReadyReason() const;
  std::string slotNotReadyReason(const Slot& slot) const;
  std::string readinessNote() const;
  std::string rulesJson();
  std::string metricsText();

  static void onSignal(evutil_socket_t signal_number, short, void* self);
  static void onControl(evutil_socket_t fd, short, void* self);
  static void onRestartTimer(evutil_socket_t, short, void* self);
  static void onPollTimer(evutil_socket_t, short, void* self);
  static void onShutdownDelay(evutil_socket_t, short, void* self);
  static void onStopDeadline(evutil_socket_t, short, void* self);
  static void onReloadTimer(evutil_socket_t, short, void* self);

  Config config_;
  Phase phase_ = Phase::starting;
  std::string executable_;
  event_base* base_ = nullptr;
  EmbeddedRedis embedded_redis_;
  std::unique_ptr<RedisConnection> redis_;
  SlotListeners listeners_;
  std::unique_ptr<AdminServer> admin_;
  std::unique_ptr<RulesEventSubscriber> rules_events_;
  std::vector<event*> signal_events_;
  event* poll_timer_ = nullptr;
  event* shutdown_delay_timer_ = nullptr;
  event* stop_deadline_timer_ = nullptr;
  event* reload_timer_ = nullptr;

  // The version this supervisor serves, or rolls out to while rolling_out_.
  uint64_t active_version_ = 0;
  // The version of the last complete generation: it keeps serving until the
  // whole new generation is ready, and stays when a rollout is abandoned.
  uint64_t serving_version_ = 0;
  bool rolling_out_ = false;
  int64_t reload_requested_us_ = 0;  // the first SIGHUP of a coalesced reload, until it is handled
  int64_t rollout_started_us_ = 0;   // that SIGHUP, or when the change was seen in Redis
  int rollout_exits_ = 0;  // unasked exits of the new version's workers in this rollout
  // The last version given up because its workers could not load it, and why;
  // 0 once the active version in Redis is served.
  uint64_t failed_version_ = 0;
  std::string failed_reason_;
  uint64_t rollouts_complete_ = 0;
  uint64_t rollouts_failed_ = 0;
  uint64_t last_rollout_us_ = 0;
  std::vector<Slot> slots_;
  std::map<pid_t, std::unique_ptr<WorkerProcess>> workers_;
  uint64_t worker_restarts_ = 0;
  uint64_t connections_handed_over_ = 0;
  uint64_t reloads_ok_ = 0;
  uint64_t reloads_failed_ = 0;
  bool redis_lost_ = false;
  metrics::MetricsSegment metrics_;
  // Counters of workers gone, so that totals never go backwards.
  metrics::MetricsTotals retired_metrics_;
  int exit_code_ = 0;
};

}  // namespace strangler
