// Objects are never destroyed inside their own callback frame: they are
// handed to this queue and deleted once the current callback has returned.
#pragma once

#include <event2/event.h>

#include <memory>
#include <vector>

namespace strangler {

class Deletable {
 public:
  virtual ~Deletable() = default;
};

class DeferredDeleteQueue {
 public:
  explicit DeferredDeleteQueue(event_base* base);
  ~DeferredDeleteQueue();

  void add(std::unique_ptr<Deletable> object);

 private:
  static void onRun(evutil_socket_t, short, void* self);
  void run();

  event* event_;
  std::vector<std::unique_ptr<Deletable>> pending_;
};

}  // namespace strangler
