// The supervisor's subscription to the rules channel (P rules:events), so a
// version pushed by the CLI or another host starts rolling out as soon as it
// is published, not at the next periodic check.
//
// The subscription is a hint, never the truth: a message only makes the
// supervisor read the active version, and the periodic check still runs for
// what a subscriber cannot see (messages published while it was
// disconnected). Reconnects by itself, once a second, for as long as it lives.
#pragma once

#include <event2/event.h>
#include <hiredis/async.h>

#include <functional>
#include <string>

#include "shared/redis_client.h"

namespace strangler {

class RulesEventSubscriber {
 public:
  // `on_event` runs for each message on `channel` and after each
  // (re)subscription, when messages may have been missed.
  RulesEventSubscriber(event_base* base, RedisAddress address, std::string channel,
                       std::function<void()> on_event);
  ~RulesEventSubscriber();
  RulesEventSubscriber(const RulesEventSubscriber&) = delete;
  RulesEventSubscriber& operator=(const RulesEventSubscriber&) = delete;

  void start();
  bool subscribed() const { return subscribed_; }

 private:
  static void onConnect(const redisAsyncContext* context, int status);
  static void onDisconnect(const redisAsyncContext* context, int status);
  static void onSetupReply(redisAsyncContext* context, void* reply, void* self);
  static void onMessage(redisAsyncContext* context, void* reply, void* self);
  static void onRetryTimer(evutil_socket_t, short, void* self);
  static void onConnectTimer(evutil_socket_t, short, void* self);

  void connect();
  void send(redisCallbackFn* callback, const std::vector<std::string>& arguments);
  void handleMessage(const redisReply& reply);
  // Logs the first loss of a run of them and tries again a second later.
  void lost(const std::string& why);

  event_base* base_;
  RedisAddress address_;
  std::string channel_;
  std::function<void()> on_event_;
  redisAsyncContext* context_ = nullptr;
  event* retry_timer_;
  event* connect_timer_;
  bool subscribed_ = false;
  bool warned_ = false;
};

}  // namespace strangler
