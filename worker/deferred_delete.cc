// Deletes objects after the current callback has returned.
#include "worker/deferred_delete.h"

namespace strangler {

DeferredDeleteQueue::DeferredDeleteQueue(event_base* base)
    : event_(event_new(base, -1, 0, &DeferredDeleteQueue::onRun, this)) {}

DeferredDeleteQueue::~DeferredDeleteQueue() {
  event_free(event_);
  pending_.clear();
}

void DeferredDeleteQueue::add(std::unique_ptr<Deletable> object) {
  if (!object) return;
  pending_.push_back(std::move(object));
  event_active(event_, 0, 0);
}

void DeferredDeleteQueue::onRun(evutil_socket_t, short, void* self) {
  static_cast<DeferredDeleteQueue*>(self)->run();
}

void DeferredDeleteQueue::run() {
  // Destructors may queue further objects; those wait for the next round.
  std::vector<std::unique_ptr<Deletable>> now;
  now.swap(pending_);
  now.clear();
}

}  // namespace strangler
