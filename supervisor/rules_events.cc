#include "supervisor/rules_events.h"

#include <fcntl.h>
#include <hiredis/adapters/libevent.h>

#include <cstring>
#include <vector>

#include "shared/process_log.h"

namespace strangler {

namespace {

constexpr timeval kRetryDelay = {1, 0};
// hiredis 0.14 has no connect timeout of its own.
constexpr timeval kConnectTimeout = {1, 0};

RulesEventSubscriber* subscriberOf(const redisAsyncContext* context) {
  return static_cast<RulesEventSubscriber*>(context->data);
}

}  // namespace

RulesEventSubscriber::RulesEventSubscriber(event_base* base, RedisAddress address, std::string channel,
                                           std::function<void()> on_event)
    : base_(base),
      address_(std::move(address)),
      channel_(std::move(channel)),
      on_event_(std::move(on_event)),
      retry_timer_(evtimer_new(base, &RulesEventSubscriber::onRetryTimer, this)),
      connect_timer_(evtimer_new(base, &RulesEventSubscriber::onConnectTimer, this)) {}

RulesEventSubscriber::~RulesEventSubscriber() {
  event_free(retry_timer_);
  event_free(connect_timer_);
  if (context_) {
    // Callbacks still pending run during the free; they must find no owner.
    context_->data = nullptr;
    redisAsyncFree(context_);
  }
}

void RulesEventSubscriber::start() { connect(); }

void RulesEventSubscriber::connect() {
  context_ = address_.unix_socket ? redisAsyncConnectUnix(address_.host.c_str())
                                  : redisAsyncConnect(address_.host.c_str(), address_.port);
  if (!context_ || context_->err) {
    std::string why = context_ ? context_->errstr : "out of memory";
    if (context_) redisAsyncFree(context_);
    context_ = nullptr;
    lost(why);
    return;
  }
  // Workers are forked from here and exec'd: they must not hold this socket.
  fcntl(context_->c.fd, F_SETFD, FD_CLOEXEC);
  context_->data = this;
  redisLibeventAttach(context_, base_);
  redisAsyncSetConnectCallback(context_, &RulesEventSubscriber::onConnect);
  redisAsyncSetDisconnectCallback(context_, &RulesEventSubscriber::onDisconnect);
  evtimer_add(connect_timer_, &kConnectTimeout);

  // hiredis queues these until the connection is up.
  if (!address_.password.empty()) send(&RulesEventSubscriber::onSetupReply, {"AUTH", address_.password});
  send(&RulesEventSubscriber::onMessage, {"SUBSCRIBE", channel_});
}

void RulesEventSubscriber::send(redisCallbackFn* callback, const std::vector<std::string>& arguments) {
  std::vector<const char*> pointers;
  std::vector<size_t> lengths;
  for (const std::string& argument : arguments) {
    pointers.push_back(argument.data());
    lengths.push_back(argument.size());
  }
  redisAsyncCommandArgv(context_, callback, this, static_cast<int>(arguments.size()), pointers.data(),
                        lengths.data());
}

void RulesEventSubscriber::onConnect(const redisAsyncContext* context, int status) {
  RulesEventSubscriber* self = subscriberOf(context);
  if (!self) return;
  evtimer_del(self->connect_timer_);
  if (status == REDIS_OK) return;
  // hiredis frees a context whose connect failed once this returns, and
  // whether its disconnect callback runs too differs between versions.
  const_cast<redisAsyncContext*>(context)->data = nullptr;
  self->context_ = nullptr;
  self->lost(context->errstr[0] ? context->errstr : "cannot connect");
}

void RulesEventSubscriber::onDisconnect(const redisAsyncContext* context, int) {
  RulesEventSubscriber* self = subscriberOf(context);
  if (!self) return;
  std::string why = context->errstr[0] ? context->errstr : "connection closed";
  self->context_ = nullptr;
  self->lost(why);
}

void RulesEventSubscriber::onSetupReply(redisAsyncContext* context, void* reply, void*) {
  auto* answer = static_cast<redisReply*>(reply);
  RulesEventSubscriber* self = subscriberOf(context);
  if (!self || !answer || answer->type != REDIS_REPLY_ERROR) return;
  plog::warn("rules events: Redis refused the subscriber's login", {{"error", answer->str}});
}

void RulesEventSubscriber::onMessage(redisAsyncContext* context, void* reply, void*) {
  RulesEventSubscriber* self = subscriberOf(context);
  if (!self || !reply) return;
  self->handleMessage(*static_cast<redisReply*>(reply));
}

void RulesEventSubscriber::handleMessage(const redisReply& reply) {
  if (reply.type == REDIS_REPLY_ERROR) {
    plog::warn("rules events: SUBSCRIBE refused", {{"error", reply.str}});
    return;
  }
  if (reply.type != REDIS_REPLY_ARRAY || reply.elements < 1 || reply.element[0]->type != REDIS_REPLY_STRING) {
    return;
  }
  const char* kind = reply.element[0]->str;
  if (std::strcmp(kind, "subscribe") == 0) {
    subscribed_ = true;
    if (warned_) plog::info("rules events: subscribed again", {{"channel", channel_}});
    warned_ = false;
    // Whatever was published while not subscribed is read now.
    on_event_();
  } else if (std::strcmp(kind, "message") == 0) {
    on_event_();
  }
}

void RulesEventSubscriber::onConnectTimer(evutil_socket_t, short, void* self) {
  auto* subscriber = static_cast<RulesEventSubscriber*>(self);
  if (!subscriber->context_) return;
  redisAsyncContext* context = subscriber->context_;
  subscriber->context_ = nullptr;
  context->data = nullptr;
  redisAsyncFree(context);
  subscriber->lost("no connection within a second");
}

void RulesEventSubscriber::lost(const std::string& why) {
  subscribed_ = false;
  evtimer_del(connect_timer_);
  if (!warned_) {
    plog::warn("rules events: not subscribed; the periodic check goes on, retrying each second",
               {{"channel", channel_}, {"error", why}});
    warned_ = true;
  }
  evtimer_add(retry_timer_, &kRetryDelay);
}

void RulesEventSubscriber::onRetryTimer(evutil_socket_t, short, void* self) {
  auto* subscriber = static_cast<RulesEventSubscriber*>(self);
  if (!subscriber->context_) subscriber->connect();
}

}  // namespace strangler
