// A blocking Redis connection with connect and command timeouts.
#include "shared/redis_client.h"

#include <fcntl.h>

#include <cstdlib>

#include "shared/timeval.h"

namespace strangler {

bool parseRedisUrl(const std::string& url, RedisAddress& address) {
  const std::string unix_scheme = "unix://";
  const std::string tcp_scheme = "redis://";
  if (url.compare(0, unix_scheme.size(), unix_scheme) == 0) {
    address.unix_socket = true;
    address.host = url.substr(unix_scheme.size());
    return !address.host.empty() && address.host[0] == '/';
  }
  if (url.compare(0, tcp_scheme.size(), tcp_scheme) != 0) return false;

  std::string rest = url.substr(tcp_scheme.size());
  size_t at = rest.rfind('@');
  if (at != std::string::npos) {
    std::string credentials = rest.substr(0, at);
    size_t colon = credentials.find(':');
    address.password = colon == std::string::npos ? credentials : credentials.substr(colon + 1);
    rest = rest.substr(at + 1);
  }
  size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    std::string db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    if (!db.empty()) {
      char* end = nullptr;
      long number = strtol(db.c_str(), &end, 10);
      if (*end != '\0' || number < 0 || number > 1000) return false;
      address.db = static_cast<int>(number);
    }
  }
  std::string port_text;
  if (!rest.empty() && rest[0] == '[') {
    size_t close = rest.find(']');
    if (close == std::string::npos) return false;
    address.host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') return false;
      port_text = rest.substr(close + 2);
    }
  } else {
    size_t colon = rest.rfind(':');
    address.host = rest.substr(0, colon);
    if (colon != std::string::npos) port_text = rest.substr(colon + 1);
  }
  if (!port_text.empty()) {
    char* end = nullptr;
    long port = strtol(port_text.c_str(), &end, 10);
    if (*end != '\0' || port < 1 || port > 65535) return false;
    address.port = static_cast<int>(port);
  }
  return !address.host.empty();
}

std::unique_ptr<RedisConnection> RedisConnection::open(const std::string& url, int timeout_ms,
                                                       std::string& error) {
  RedisAddress address;
  if (!parseRedisUrl(url, address)) {
    error = "malformed Redis URL '" + url + "'";
    return nullptr;
  }
  timeval timeout = millisecondsToTimeval(timeout_ms);
  redisContext* context = address.unix_socket
                              ? redisConnectUnixWithTimeout(address.host.c_str(), timeout)
                              : redisConnectWithTimeout(address.host.c_str(), address.port, timeout);
  if (!context || context->err) {
    error = std::string("cannot connect to Redis at ") +
            (address.unix_socket ? address.host : address.host + ":" + std::to_string(address.port)) +
            ": " + (context ? context->errstr : "out of memory");
    if (context) redisFree(context);
    return nullptr;
  }
  redisSetTimeout(context, timeout);
  // The supervisor forks and execs workers: they must not inherit its
  // connection (Redis would see it open until the last of them exits).
  fcntl(context->fd, F_SETFD, FD_CLOEXEC);
  std::unique_ptr<RedisConnection> connection(new RedisConnection(context));

  if (!address.password.empty() && !connection->command({"AUTH", address.password}, error)) {
    error = "Redis AUTH failed: " + error;
    return nullptr;
  }
  if (address.db != 0 && !connection->command({"SELECT", std::to_string(address.db)}, error)) {
    error = "Redis SELECT failed: " + error;
    return nullptr;
  }
  return connection;
}

RedisConnection::~RedisConnection() { redisFree(context_); }

RedisReply RedisConnection::command(const std::vector<std::string>& arguments, std::string& error) {
  std::vector<const char*> pointers;
  std::vector<size_t> lengths;
  for (const std::string& argument : arguments) {
    pointers.push_back(argument.data());
    lengths.push_back(argument.size());
  }
  auto* raw = static_cast<redisReply*>(
      redisCommandArgv(context_, static_cast<int>(arguments.size()), pointers.data(), lengths.data()));
  if (!raw) {
    error = std::string("Redis command ") + arguments[0] + " failed: " + context_->errstr;
    return nullptr;
  }
  RedisReply reply(raw);
  if (reply->type == REDIS_REPLY_ERROR) {
    error = std::string("Redis command ") + arguments[0] + " failed: " + std::string(reply->str, reply->len);
    return nullptr;
  }
  return reply;
}

}  // namespace strangler
