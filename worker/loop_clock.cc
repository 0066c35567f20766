// One LoopClock per event base.
#include "worker/loop_clock.h"

#include <memory>
#include <vector>

namespace strangler {

LoopClock& LoopClock::of(event_base* base) {
  // A worker has one base (tests and benchmarks a few): a short list, searched
  // when a connection or limiter is made, not per request.
  static std::vector<std::unique_ptr<LoopClock>> clocks;
  for (const auto& clock : clocks) {
    if (clock->base_ == base) return *clock;
  }
  clocks.push_back(std::make_unique<LoopClock>(base));
  return *clocks.back();
}

}  // namespace strangler
