// A worker process: one libevent loop, one ruleset version, one slot.
#include "worker/worker.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "shared/control_channel.h"
#include "shared/crash_handler.h"
#include "shared/process_log.h"
#include "shared/redis_client.h"
#include "shared/rules_store.h"
#include "shared/timeval.h"
#include "worker/client_connection.h"
#include "worker/http2_connection.h"
#include "worker/rate_limiter.h"

namespace strangler {
namespace {

constexpr int kRedisTimeoutMs = 2000;
// Gauges sampled from the pools, and the longest a log line waits, at most.
constexpr timeval kHousekeepingInterval = {1, 0};

bool parseNumberList(const std::string& text, std::vector<int>& numbers) {
  size_t start = 0;
  while (start < text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    char* end = nullptr;
    long number = strtol(text.c_str() + start, &end, 10);
    if (end != text.c_str() + comma || number < 0) return false;
    numbers.push_back(static_cast<int>(number));
    start = comma + 1;
  }
  return !numbers.empty();
}

bool parseWorkerArguments(int argc, char** argv, WorkerOptions& options, std::string& error) {
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    std::string value = argv[i + 1];
    if (flag == "--slot") options.slot = atoi(value.c_str());
    else if (flag == "--rules-version") options.rules_version = strtoull(value.c_str(), nullptr, 10);
    else if (flag == "--control-fd") options.control_fd = atoi(value.c_str());
    else if (flag == "--metrics-fd") options.metrics_fd = atoi(value.c_str());
    else if (flag == "--metrics-region") options.metrics_region = atoi(value.c_str());
    else if (flag == "--listen-fds") {
      if (!parseNumberList(value, options.listen_fds)) {
        error = "--listen-fds: expected a comma list of descriptors";
        return false;
      }
    } else {
      error = "unknown worker flag " + flag;
      return false;
    }
  }
  if (options.listen_fds.empty() || options.control_fd < 0 || options.rules_version == 0) {
    error = "a worker needs --slot, --rules-version, --listen-fds and --control-fd (it is started by the supervisor)";
    return false;
  }
  return true;
}

}  // namespace

Worker::Worker(Config config, WorkerOptions options) : config_(std::move(config)), options_(std::move(options)) {
  if (getrandom(&id_seed_, sizeof id_seed_, 0) != sizeof id_seed_) id_seed_ = static_cast<uint32_t>(getpid());
}

Worker::~Worker() {
  connections_.clear();
  for (evconnlistener* listener : listeners_) evconnlistener_free(listener);
  pools_.reset();
  rate_limiter_.reset();
  graveyard_.reset();
  access_log_.detach();
  if (control_event_) event_free(control_event_);
  if (drain_timer_) event_free(drain_timer_);
  if (term_event_) event_free(term_event_);
  if (housekeeping_timer_) event_free(housekeeping_timer_);
  sockets_.reset();
  if (base_) event_base_free(base_);
}

size_t Worker::nextRequestId(char* out) {
  // "%08x%02x%014llx" of the seed, the slot and the counter, without printf.
  uint64_t counter = ++id_counter_;
  if (counter >> 56) {
    int length = snprintf(out, kRequestIdSize, "%08x%02x%014llx", id_seed_, options_.slot & 0xFF,
                          static_cast<unsigned long long>(counter));
    return static_cast<size_t>(length);
  }
  static const char kHex[] = "0123456789abcdef";
  auto put = [&](size_t end, uint64_t value, int digits) {
    for (int i = 1; i <= digits; i++, value >>= 4) out[end - static_cast<size_t>(i)] = kHex[value & 15];
  };
  put(8, id_seed_, 8);
  put(10, static_cast<uint64_t>(options_.slot & 0xFF), 2);
  put(24, counter, 14);
  return 24;
}

bool Worker::loadRules(std::string& error) {
  std::unique_ptr<RedisConnection> redis = RedisConnection::open(config_.redis_url, kRedisTimeoutMs, error);
  if (!redis) return false;
  RulesStore store(*redis, config_.redis_prefix);
  std::string document;
  if (!store.document(options_.rules_version, document, error)) return false;

  LoadResult loaded =
      loadRulesFromText(document, "ruleset version " + std::to_string(options_.rules_version), false);
  if (!loaded.ruleset) {
    error = loaded.errors.empty() ? "invalid ruleset" : loaded.errors.front();
    return false;
  }
  if (!pools_->configure(*loaded.ruleset, error)) return false;
  router_ = std::make_shared<Router>(std::shared_ptr<const Ruleset>(std::move(loaded.ruleset)),
                                     options_.rules_version);
  route_series_.assign(router_->ruleset().routes.size(), {metrics::kUnknownSeries, metrics::kUnknownSeries});
  return true;
}

size_t Worker::routeSeries(const Router& router, const Route& route, bool with_upstream) {
  std::string_view upstream = with_upstream ? std::string_view(route.upstream) : std::string_view();
  if (&router != router_.get()) return metrics_.routeSeriesId(route.name, upstream);

  // Series are named on first use, as by name: the exposition shows only those counted.
  size_t position = static_cast<size_t>(&route - router.ruleset().routes.data());
  size_t& series = route_series_[position][with_upstream ? 1 : 0];
  if (series == metrics::kUnknownSeries) series = metrics_.routeSeriesId(route.name, upstream);
  return series;
}

void Worker::attachMetrics() {
  if (options_.metrics_fd < 0) {
    plog::warn("worker has no metrics region: its counters are not reported", {{"slot", options_.slot}});
    return;
  }
  std::string error;
  if (!metrics_.attach(options_.metrics_fd, options_.metrics_region, error)) {
    plog::error("worker metrics not shared: its counters are not reported",
                {{"slot", options_.slot}, {"error", error}});
  }
}

void Worker::declareMetricSeries() {
  for (const auto& [name, upstream] : router_->ruleset().upstreams) metrics_.declareUpstream(name);
}

void Worker::sampleGauges() {
  for (const auto& [name, upstream] : router_->ruleset().upstreams) {
    metrics_.setUpstreamIdle(name, pools_->idleCount(name));
  }
}

void Worker::updateConnectionGauges() {
  metrics_.setConnections(metrics::Protocol::h2, h2_connections_);
  metrics_.setConnections(metrics::Protocol::http1, connections_.size() - h2_connections_);
}

void Worker::onHousekeeping(evutil_socket_t, short, void* self) {
  auto* worker = static_cast<Worker*>(self);
  worker->sampleGauges();
  worker->access_log_.flush();
}

bool Worker::startListening(std::string& error) {
  for (int fd : options_.listen_fds) {
    // An inherited blocking socket would hang the loop in accept().
    evutil_make_socket_nonblocking(fd);
    evconnlistener* listener =
        evconnlistener_new(base_, &Worker::onAccept, this, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
    if (!listener) {
      error = "cannot listen on inherited socket " + std::to_string(fd);
      return false;
    }
    evconnlistener_set_error_cb(listener, &Worker::onAcceptError);
    listeners_.push_back(listener);
  }
  return true;
}

int Worker::run() {
  // Die with the supervisor, even when it is killed without a chance to say so.
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  signal(SIGPIPE, SIG_IGN);
  // Ctrl-C reaches the whole process group; the supervisor decides what stops.
  signal(SIGINT, SIG_IGN);

  base_ = event_base_new();
  clock_ = &LoopClock::of(base_);
  // Priority 0 is for flushing the access log ahead of the responses it describes.
  event_base_priority_init(base_, 2);
  sockets_ = std::make_unique<SocketContext>(base_);
  // HTTP/1 responses leave at the end of each batch of events, their access
  // lines just ahead of them.
  sockets_->setBeforeWrites([](void* log) { static_cast<AccessLog*>(log)->flush(); }, &access_log_);
  attachMetrics();
  graveyard_ = std::make_unique<DeferredDeleteQueue>(base_);
  pools_ = std::make_unique<UpstreamPool>(base_, *graveyard_, metrics_);

  std::string error;
  if (!access_log_.open(config_, options_.slot, error) || !loadRules(error) || !startListening(error)) {
    plog::error("worker failed to start", {{"slot", options_.slot}, {"rules_version", options_.rules_version},
                                           {"error", error}});
    // The supervisor gives up this version rather than retrying it.
    sendControlMessage(options_.control_fd, "failed " + std::to_string(options_.rules_version) + "\n" + error);
    return 1;
  }
  // The limit is read here, before the first request can arrive.
  rate_limiter_ = std::make_unique<RateLimiter>(base_, config_, metrics_);
  rate_limiter_->start();

  // handleControl reads until the channel is empty, so it must not block.
  evutil_make_socket_nonblocking(options_.control_fd);
  control_event_ = event_new(base_, options_.control_fd, EV_READ | EV_PERSIST, &Worker::onControl, this);
  event_add(control_event_, nullptr);
  term_event_ = evsignal_new(base_, SIGTERM, &Worker::onSignal, this);
  event_add(term_event_, nullptr);
  drain_timer_ = evtimer_new(base_, &Worker::onDrainTimeout, this);
  access_log_.attach(base_);
  declareMetricSeries();
  housekeeping_timer_ = event_new(base_, -1, EV_PERSIST, &Worker::onHousekeeping, this);
  event_add(housekeeping_timer_, &kHousekeepingInterval);

  std::string ready = "ready " + std::to_string(options_.rules_version);
  if (!sendControlMessage(options_.control_fd, ready)) {
    plog::error("worker cannot report ready", {{"error", strerror(errno)}});
    return 1;
  }
  plog::info("worker ready", {{"slot", options_.slot}, {"rules_version", options_.rules_version},
                              {"routes", static_cast<unsigned long>(router_->ruleset().routes.size())}});

  event_base_dispatch(base_);
  access_log_.flush();
  plog::info("worker stopped", {{"slot", options_.slot}, {"rules_version", options_.rules_version},
                                {"connections_handed_in", static_cast<unsigned long>(handed_in_)},
                                {"connections_handed_out", static_cast<unsigned long>(handed_out_)}});
  return 0;
}

void Worker::onAccept(evconnlistener*, evutil_socket_t fd, sockaddr* peer, int length, void* self) {
  static_cast<Worker*>(self)->accept(fd, peer, length);
}

void Worker::accept(evutil_socket_t fd, sockaddr* peer, int) {
  auto connection = std::make_unique<ClientConnection>(*this, fd, peer);
  ClientConnection* raw = connection.get();
  connections_[raw] = std::move(connection);
  metrics_.connectionAccepted();
  updateConnectionGauges();
  raw->start();

  // At the limit, new connections wait in the kernel's accept queue.
  if (!accepting_paused_ && connections_.size() >= static_cast<size_t>(config_.max_connections)) {
    accepting_paused_ = true;
    for (evconnlistener* listener : listeners_) evconnlistener_disable(listener);
    plog::warn("connection limit reached: accepting paused", {{"max_connections", config_.max_connections}});
  }
}

void Worker::switchToHttp2(ClientConnection* from, Http1Socket& socket, const ClientInfo& client,
                           const RequestHead* upgrade, const std::string& settings,
                           const std::string& upgrade_body) {
  auto session = std::make_unique<Http2Connection>(*this, socket, client);
  Http2Connection* raw = session.get();
  connections_[raw] = std::move(session);
  auto found = connections_.find(from);
  if (found != connections_.end()) {
    graveyard_->add(std::move(found->second));
    connections_.erase(found);
  }
  h2_connections_++;
  updateConnectionGauges();
  bool started = upgrade ? raw->startUpgraded(*upgrade, settings, upgrade_body) : raw->start();
  if (!started) raw->close();
}

void Worker::onAcceptError(evconnlistener* listener, void*) {
  // Out of descriptors: log and go on; the listener retries on the next event.
  int error = EVUTIL_SOCKET_ERROR();
  plog::warn("accept failed", {{"error", evutil_socket_error_to_string(error)}});
  (void)listener;
}

void Worker::connectionClosed(DownstreamConnection* connection) {
  auto found = connections_.find(connection);
  if (found == connections_.end()) return;
  graveyard_->add(std::move(found->second));
  connections_.erase(found);
  if (dynamic_cast<Http2Connection*>(connection)) h2_connections_--;
  updateConnectionGauges();
  // Connections the drain timeout cuts are counted as cut, not as closed.
  if (draining_ && !cutting_) metrics_.drainClosedConnection();
  if (draining_ && connections_.empty()) endDrain();
  if (accepting_paused_ && !draining_ && connections_.size() < static_cast<size_t>(config_.max_connections)) {
    accepting_paused_ = false;
    for (evconnlistener* listener : listeners_) evconnlistener_enable(listener);
  }
}

void Worker::onControl(evutil_socket_t, short, void* self) { static_cast<Worker*>(self)->handleControl(); }

void Worker::handleControl() {
  while (true) {
    std::string message;
    int passed_fd = -1;
    ControlReceive received = receiveControlMessage(options_.control_fd, message, passed_fd);
    if (received == ControlReceive::nothing_yet) return;
    if (received == ControlReceive::closed) {
      event_del(control_event_);
      beginDrain("supervisor_gone", false);
      return;
    }

    const std::string handover = "handover\n";
    if (message.compare(0, handover.size(), handover) == 0 && passed_fd >= 0) {
      adoptConnection(passed_fd, message.substr(handover.size()));
    } else if (passed_fd >= 0) {
      close(passed_fd);
    }
    if (message == "drain") beginDrain("drain_order", false);
    else if (message == "drain handover") beginDrain("rollout", true);
    else if (message.compare(0, handover.size(), handover) != 0) {
      plog::warn("unknown control message", {{"message", message.substr(0, 64)}});
    }
  }
}

void Worker::adoptConnection(int fd, const std::string& unparsed) {
  sockaddr_storage peer = {};
  socklen_t peer_length = sizeof peer;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_length) != 0) {
    close(fd);
    return;
  }
  evutil_make_socket_nonblocking(fd);
  auto connection = std::make_unique<ClientConnection>(*this, fd, reinterpret_cast<sockaddr*>(&peer));
  ClientConnection* raw = connection.get();
  connections_[raw] = std::move(connection);
  handed_in_++;
  updateConnectionGauges();
  raw->startHandedOver(unparsed);
}

bool Worker::handOver(int fd, const std::string& unparsed) {
  // The supervisor passes the socket on to the slot's new worker; this
  // worker's copy closes when the connection object goes.
  if (!handing_over_) return false;
  bool sent = sendControlMessage(options_.control_fd, "handover\n" + unparsed, fd);
  if (sent) handed_out_++;
  if (sent) metrics_.drainHandedOver();
  return sent;
}

void Worker::onSignal(evutil_socket_t, short, void* self) {
  static_cast<Worker*>(self)->beginDrain("sigterm", false);
}

void Worker::beginDrain(const char* why, bool hand_over) {
  if (draining_) return;
  draining_ = true;
  handing_over_ = hand_over;
  plog::info("worker draining", {{"slot", options_.slot}, {"reason", why},
                                 {"connections", static_cast<unsigned long>(connections_.size())}});
  for (evconnlistener* listener : listeners_) evconnlistener_free(listener);
  listeners_.clear();

  timeval timeout = millisecondsToTimeval(config_.drain_timeout_ms);
  evtimer_add(drain_timer_, &timeout);

  // Closing an idle connection removes it from the map, so walk a copy.
  std::vector<DownstreamConnection*> open;
  for (const auto& entry : connections_) open.push_back(entry.first);
  for (DownstreamConnection* connection : open) connection->beginDrain();
  if (connections_.empty()) endDrain();
}

void Worker::onDrainTimeout(evutil_socket_t, short, void* self) {
  auto* worker = static_cast<Worker*>(self);
  plog::warn("drain timeout: cutting connections",
             {{"slot", worker->options_.slot}, {"connections", static_cast<unsigned long>(worker->connections_.size())}});
  worker->metrics_.drainCut(worker->connections_.size(), worker->metrics_.inflight());
  // Each request still open gets its access line before the worker goes.
  std::vector<DownstreamConnection*> open;
  for (const auto& entry : worker->connections_) open.push_back(entry.first);
  worker->cutting_ = true;
  for (DownstreamConnection* connection : open) connection->cut();
  worker->endDrain();
}

void Worker::endDrain() { event_base_loopexit(base_, nullptr); }

int runWorker(int argc, char** argv) {
  Config config;
  std::string error;
  if (!loadConfig(environmentWith(), config, error)) {
    fprintf(stderr, "strangler worker: %s\n", error.c_str());
    return 2;
  }
  plog::setup("worker", config.log_level);
  installCrashHandler("worker");

  WorkerOptions options;
  if (!parseWorkerArguments(argc, argv, options, error)) {
    plog::error("bad worker arguments", {{"error", error}});
    return 2;
  }
  Worker worker(std::move(config), std::move(options));
  return worker.run();
}

}  // namespace strangler
