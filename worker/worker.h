// A worker process: one libevent loop serving the listening sockets of its
// slot with one immutable ruleset version, until the supervisor tells it to
// drain (or goes away).
#pragma once

#include <event2/event.h>
#include <event2/listener.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "shared/config.h"
#include "shared/router.h"
#include "worker/access_log.h"
#include "worker/deferred_delete.h"
#include "worker/upstream_pool.h"

namespace strangler {

class ClientConnection;

struct WorkerOptions {
  int slot = 0;
  uint64_t rules_version = 0;
  std::vector<int> listen_fds;
  int control_fd = -1;
};

class Worker {
 public:
  Worker(Config config, WorkerOptions options);
  ~Worker();

  // Runs until drained; returns the process exit code.
  int run();

  event_base* base() { return base_; }
  const Config& config() const { return config_; }
  std::shared_ptr<const Router> router() const { return router_; }
  UpstreamPool& pools() { return *pools_; }
  AccessLog& accessLog() { return access_log_; }
  DeferredDeleteQueue& graveyard() { return *graveyard_; }
  std::string nextRequestId();

  void connectionClosed(ClientConnection* connection);

 private:
  bool loadRules(std::string& error);
  bool startListening(std::string& error);
  void accept(evutil_socket_t fd, sockaddr* peer, int peer_length);
  void handleControl();
  void beginDrain(const char* why);
  void endDrain();

  static void onAccept(evconnlistener*, evutil_socket_t fd, sockaddr* peer, int length, void* self);
  static void onAcceptError(evconnlistener* listener, void* self);
  static void onControl(evutil_socket_t, short, void* self);
  static void onDrainTimeout(evutil_socket_t, short, void* self);
  static void onSignal(evutil_socket_t signal_number, short, void* self);

  Config config_;
  WorkerOptions options_;
  event_base* base_ = nullptr;
  std::unique_ptr<DeferredDeleteQueue> graveyard_;
  std::unique_ptr<UpstreamPool> pools_;
  std::shared_ptr<const Router> router_;
  AccessLog access_log_;
  std::vector<evconnlistener*> listeners_;
  std::map<ClientConnection*, std::unique_ptr<ClientConnection>> connections_;
  event* control_event_ = nullptr;
  event* drain_timer_ = nullptr;
  event* term_event_ = nullptr;
  std::string control_input_;
  bool draining_ = false;
  uint32_t id_seed_ = 0;
  uint64_t id_counter_ = 0;
};

// Entry point of `strangler worker ...` (started by the supervisor only).
int runWorker(int argc, char** argv);

}  // namespace strangler
