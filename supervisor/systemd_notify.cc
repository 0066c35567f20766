// Service state for systemd (Type=notify).
#include "supervisor/systemd_notify.h"

#include <systemd/sd-daemon.h>
#include <time.h>

namespace strangler::systemd {
namespace {

void send(const std::string& message) {
  // Unset NOTIFY_SOCKET makes sd_notify return 0 without doing anything.
  sd_notify(0, message.c_str());
}

}  // namespace

void ready(const std::string& text) { send("READY=1\nSTATUS=" + text); }

void reloading(const std::string& text) {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  unsigned long long usec = static_cast<unsigned long long>(now.tv_sec) * 1000000ull +
                            static_cast<unsigned long long>(now.tv_nsec / 1000);
  send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec) + "\nSTATUS=" + text);
}

void stopping() { send("STOPPING=1\nSTATUS=draining"); }

void status(const std::string& text) { send("STATUS=" + text); }

}  // namespace strangler::systemd
