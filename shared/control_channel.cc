// The control channel between the supervisor and a worker.
#include "shared/control_channel.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace strangler {
namespace {

// Large enough for a connection's unparsed bytes (at most the read
// watermark: the header limit plus 16 KiB, and the limit is at most 1 MiB).
constexpr size_t kMaxMessage = (1 << 20) + 64 * 1024;

}  // namespace

bool sendControlMessage(int channel, const std::string& message, int passed_fd) {
  iovec part = {const_cast<char*>(message.data()), message.size()};
  msghdr header = {};
  header.msg_iov = &part;
  header.msg_iovlen = 1;

  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (passed_fd >= 0) {
    header.msg_control = control;
    header.msg_controllen = sizeof control;
    cmsghdr* attached = CMSG_FIRSTHDR(&header);
    attached->cmsg_level = SOL_SOCKET;
    attached->cmsg_type = SCM_RIGHTS;
    attached->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(attached), &passed_fd, sizeof(int));
  }

  ssize_t sent;
  do {
    sent = sendmsg(channel, &header, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  return sent == static_cast<ssize_t>(message.size());
}

ControlReceive receiveControlMessage(int channel, std::string& message, int& passed_fd) {
  static std::vector<char> buffer(kMaxMessage);
  passed_fd = -1;
  iovec part = {buffer.data(), buffer.size()};
  msghdr header = {};
  header.msg_iov = &part;
  header.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  header.msg_control = control;
  header.msg_controllen = sizeof control;

  ssize_t received;
  do {
    received = recvmsg(channel, &header, MSG_CMSG_CLOEXEC);
  } while (received < 0 && errno == EINTR);
  if (received < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return ControlReceive::nothing_yet;
  if (received <= 0) return ControlReceive::closed;

  for (cmsghdr* attached = CMSG_FIRSTHDR(&header); attached; attached = CMSG_NXTHDR(&header, attached)) {
    if (attached->cmsg_level == SOL_SOCKET && attached->cmsg_type == SCM_RIGHTS) {
      memcpy(&passed_fd, CMSG_DATA(attached), sizeof(int));
    }
  }
  message.assign(buffer.data(), static_cast<size_t>(received));
  return ControlReceive::message;
}

}  // namespace strangler
