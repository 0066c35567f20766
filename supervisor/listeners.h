// The listening sockets: one SO_REUSEPORT socket per listen address and
// worker slot, created once by the supervisor and kept open for its life,
// so a replacement worker inherits the very socket (and accept queue) of the
// worker it replaces.
#pragma once

#include <string>
#include <vector>

#include "shared/config.h"

namespace strangler {

class SlotListeners {
 public:
  SlotListeners() = default;
  ~SlotListeners();
  SlotListeners(const SlotListeners&) = delete;
  SlotListeners& operator=(const SlotListeners&) = delete;

  // Creates `slots` sockets for each address; false with `error` naming the
  // address on failure (e.g. already in use).
  bool open(const std::vector<ListenAddress>& addresses, int slots, std::string& error);
  void closeAll();

  // The descriptors of one slot, one per address (close-on-exec set).
  const std::vector<int>& slot(int index) const { return fds_[static_cast<size_t>(index)]; }
  int slots() const { return static_cast<int>(fds_.size()); }

 private:
  std::vector<std::vector<int>> fds_;
};

}  // namespace strangler
