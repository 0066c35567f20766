// A blocking Redis connection with connect and command timeouts, for the
// supervisor, the CLI and a worker's start (never on the request path).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <hiredis/hiredis.h>

namespace strangler {

struct RedisAddress {
  bool unix_socket = false;
  std::string host;  // or socket path
  int port = 6379;
  std::string password;
  int db = 0;
};

// Parses redis://[:password@]host:port[/db] or unix:///path; false when malformed.
bool parseRedisUrl(const std::string& url, RedisAddress& address);

struct ReplyDeleter {
  void operator()(redisReply* reply) const { freeReplyObject(reply); }
};
using RedisReply = std::unique_ptr<redisReply, ReplyDeleter>;

class RedisConnection {
 public:
  // Connects, authenticates and selects the database; null with `error` set
  // when Redis cannot be reached within `timeout_ms`.
  static std::unique_ptr<RedisConnection> open(const std::string& url, int timeout_ms,
                                               std::string& error);
  ~RedisConnection();

  // Runs one command given as separate arguments. Null with `error` set on an
  // I/O failure or an error reply.
  RedisReply command(const std::vector<std::string>& arguments, std::string& error);

 private:
  explicit RedisConnection(redisContext* context) : context_(context) {}
  redisContext* context_;
};

}  // namespace strangler
