// The private redis-server a supervisor starts when STRANGLER_REDIS_URL is
// unset: on a unix socket in a runtime folder it owns, no persistence,
// stopped (and the folder removed) when the supervisor exits.
#pragma once

#include <sys/types.h>

#include <string>

namespace strangler {

class EmbeddedRedis {
 public:
  EmbeddedRedis() = default;
  ~EmbeddedRedis();

  // Starts redis-server from PATH and waits until it answers; false with
  // `error` when it is missing or does not come up.
  bool start(std::string& error);
  void stop();

  std::string url() const { return "unix://" + socket_path_; }
  pid_t pid() const { return pid_; }
  // The supervisor reaped the process itself (it reaps every child).
  void markExited() { pid_ = -1; }

 private:
  pid_t pid_ = -1;
  std::string folder_;
  std::string socket_path_;
};

}  // namespace strangler
