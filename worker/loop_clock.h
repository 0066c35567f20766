// The time of the current pass of an event loop, read from the clock once
// per pass rather than at every use.
//
// Everything a pass handles (a batch of reads, the requests in them, the
// responses sent at its end) is stamped with the moment the pass began, as
// nginx's cached time does. A pass is recognised by libevent's cached time,
// which libevent refreshes once per pass, right after the poll returns;
// outside a pass (no cached time) every call reads the clock.
#pragma once

#include <event2/event.h>
#include <sys/time.h>

#include <chrono>

namespace strangler {

class LoopClock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // The clock of `base`'s loop; one per base, made on first use. A search:
  // owners look it up once and keep the reference.
  static LoopClock& of(event_base* base);

  explicit LoopClock(event_base* base) : base_(base) {}
  LoopClock(const LoopClock&) = delete;
  LoopClock& operator=(const LoopClock&) = delete;

  TimePoint now() {
    timeval pass;
    event_base_gettimeofday_cached(base_, &pass);
    if (pass.tv_sec != pass_.tv_sec || pass.tv_usec != pass_.tv_usec) {
      pass_ = pass;
      now_ = std::chrono::steady_clock::now();
    }
    return now_;
  }

  // Seconds from `start` to the current pass, for latency metrics.
  double secondsSince(TimePoint start) { return std::chrono::duration<double>(now() - start).count(); }

 private:
  event_base* base_;
  timeval pass_ = {0, 0};
  TimePoint now_;
};

}  // namespace strangler
