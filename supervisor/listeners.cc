// The listening sockets, one SO_REUSEPORT socket per address and worker slot.
#include "supervisor/listeners.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace strangler {
namespace {

constexpr int kListenBacklog = 4096;

int openListeningSocket(const ListenAddress& address, std::string& error) {
  sockaddr_storage storage = {};
  socklen_t length = 0;
  bool v6 = address.host.find(':') != std::string::npos;
  if (v6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(address.port);
    inet_pton(AF_INET6, address.host.c_str(), &in6->sin6_addr);
    length = sizeof *in6;
  } else {
    auto* in4 = reinterpret_cast<sockaddr_in*>(&storage);
    in4->sin_family = AF_INET;
    in4->sin_port = htons(address.port);
    inet_pton(AF_INET, address.host.c_str(), &in4->sin_addr);
    length = sizeof *in4;
  }

  int fd = socket(storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = "socket() for " + address.text() + " failed: " + strerror(errno);
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (v6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);

  if (bind(fd, reinterpret_cast<sockaddr*>(&storage), length) != 0 || listen(fd, kListenBacklog) != 0) {
    error = "cannot listen on " + address.text() + ": " + strerror(errno);
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

SlotListeners::~SlotListeners() { closeAll(); }

bool SlotListeners::open(const std::vector<ListenAddress>& addresses, int slots, std::string& error) {
  closeAll();
  fds_.resize(static_cast<size_t>(slots));
  for (auto& slot : fds_) {
    for (const ListenAddress& address : addresses) {
      int fd = openListeningSocket(address, error);
      if (fd < 0) {
        closeAll();
        return false;
      }
      slot.push_back(fd);
    }
  }
  return true;
}

void SlotListeners::closeAll() {
  for (auto& slot : fds_) {
    for (int fd : slot) close(fd);
  }
  fds_.clear();
}

}  // namespace strangler
