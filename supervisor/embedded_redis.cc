// The private redis-server of a supervisor.
#include "supervisor/embedded_redis.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "shared/process_log.h"
#include "shared/redis_client.h"

namespace strangler {
namespace {

constexpr int kStartTimeoutMs = 5000;

std::string findOnPath(const std::string& program) {
  const char* path = getenv("PATH");
  std::string folders = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= folders.size()) {
    size_t colon = folders.find(':', start);
    if (colon == std::string::npos) colon = folders.size();
    std::string candidate = folders.substr(start, colon - start) + "/" + program;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    start = colon + 1;
  }
  // Debian installs redis-server in /usr/bin, but sbin-less PATHs are common under systemd.
  for (const char* folder : {"/usr/bin/", "/usr/sbin/"}) {
    std::string candidate = folder + program;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

void sleepMs(int ms) {
  struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&pause, nullptr);
}

}  // namespace

EmbeddedRedis::~EmbeddedRedis() { stop(); }

bool EmbeddedRedis::start(std::string& error) {
  std::string binary = findOnPath("redis-server");
  if (binary.empty()) {
    error = "redis-server not found on PATH: install it (make deps) or set STRANGLER_REDIS_URL";
    return false;
  }

  const char* runtime = getenv("XDG_RUNTIME_DIR");
  std::string base = runtime && *runtime ? runtime : "/tmp";
  std::string pattern = base + "/strangler-redis-XXXXXX";
  std::vector<char> writable(pattern.begin(), pattern.end());
  writable.push_back('\0');
  if (!mkdtemp(writable.data())) {
    error = "cannot create a runtime folder under " + base + ": " + strerror(errno);
    return false;
  }
  folder_ = writable.data();
  socket_path_ = folder_ + "/redis.sock";

  pid_ = fork();
  if (pid_ < 0) {
    error = std::string("fork for redis-server failed: ") + strerror(errno);
    return false;
  }
  if (pid_ == 0) {
    // Dies with the supervisor, even if the supervisor is killed outright.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGINT, SIG_IGN);
    std::string log = folder_ + "/redis.log";
    execl(binary.c_str(), binary.c_str(), "--port", "0", "--unixsocket", socket_path_.c_str(),
          "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", folder_.c_str(),
          "--logfile", log.c_str(), "--daemonize", "no", static_cast<char*>(nullptr));
    _exit(127);
  }

  for (int waited = 0; waited < kStartTimeoutMs; waited += 20) {
    std::string ignored;
    if (RedisConnection::open(url(), 200, ignored)) {
      plog::info("private redis-server started", {{"redis_pid", static_cast<int>(pid_)}, {"socket", socket_path_}});
      return true;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      error = "redis-server exited at start (see " + folder_ + "/redis.log)";
      return false;
    }
    sleepMs(20);
  }
  error = "redis-server did not answer on " + socket_path_ + " within 5s";
  stop();
  return false;
}

void EmbeddedRedis::stop() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    int status = 0;
    for (int waited = 0; waited < 3000 && waitpid(pid_, &status, WNOHANG) == 0; waited += 10) sleepMs(10);
    if (waitpid(pid_, &status, WNOHANG) == 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
    pid_ = -1;
  }
  if (!folder_.empty()) {
    for (const char* name : {"/redis.sock", "/redis.log", "/dump.rdb"}) unlink((folder_ + name).c_str());
    rmdir(folder_.c_str());
    folder_.clear();
  }
}

}  // namespace strangler
