// A watch on one RADOS object (rados_watch3) that acknowledges every notify
// itself, so that a notifier can tell a live holder from a dead one.
#pragma once

#include <napi.h>

#include <memory>

#include "env_state.h"
#include "handles.h"

namespace rbdnative {

class WatchWrap : public Napi::ObjectWrap<WatchWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit WatchWrap(const Napi::CallbackInfo& info);
  ~WatchWrap() override;

 private:
  std::shared_ptr<WatchHandle> OpenHandle(Napi::Env env) const;
  Napi::Value Id(const Napi::CallbackInfo& info);
  Napi::Value Check(const Napi::CallbackInfo& info);
  Napi::Value CloseWatch(const Napi::CallbackInfo& info);

  std::shared_ptr<WatchHandle> handle_;
  EnvState* state_;
  int inflight_ = 0;
  bool closed_ = false;
};

}  // namespace rbdnative
