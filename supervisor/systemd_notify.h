// Service state for systemd (Type=notify), through libsystemd's sd_notify:
// a no-op when NOTIFY_SOCKET is unset, so the supervisor calls it freely.
#pragma once

#include <string>

namespace strangler::systemd {

void ready(const std::string& status);      // READY=1: every slot serves the active version
void reloading(const std::string& status);  // RELOADING=1 with MONOTONIC_USEC: a rollout began
void stopping();                            // STOPPING=1: the graceful stop began
void status(const std::string& text);       // STATUS=...

}  // namespace strangler::systemd
