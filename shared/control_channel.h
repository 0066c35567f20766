// The control channel between the supervisor and a worker: a SOCK_SEQPACKET
// socketpair, so every message arrives whole and a socket passed along
// (SCM_RIGHTS) belongs to exactly one message.
//
// Messages: "ready V" (worker: serving version V), "failed V\nREASON"
// (worker: cannot serve version V, and exits), "drain" (supervisor: stop
// taking requests), "drain handover" (the same, handing idle HTTP/1
// connections to the slot's new worker), and "handover\n" followed by the
// bytes a connection had read but not parsed, with its socket attached.
#pragma once

#include <string>

namespace strangler {

// Sends one message, with `passed_fd` attached when it is not -1.
bool sendControlMessage(int channel, const std::string& message, int passed_fd = -1);

enum class ControlReceive { message, nothing_yet, closed };

// Receives one message. `passed_fd` is the attached socket (the caller owns
// it), or -1.
ControlReceive receiveControlMessage(int channel, std::string& message, int& passed_fd);

}  // namespace strangler
