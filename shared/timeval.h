// libevent's timers and hiredis' connect timeout take a timeval; the
// project's durations are std::chrono durations, or milliseconds from the
// configuration. One conversion for all of them.
#pragma once

#include <sys/time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace strangler {

// To the microsecond; a negative duration becomes zero (a timer due at once).
template <class Rep, class Period>
timeval toTimeval(std::chrono::duration<Rep, Period> duration) {
  int64_t us = std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::microseconds>(duration).count());
  return {static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
}

inline timeval millisecondsToTimeval(int64_t ms) { return toTimeval(std::chrono::milliseconds(ms)); }

}  // namespace strangler
