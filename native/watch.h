// A watch on one RADOS object (rados_watch3) that acknowledges every notify
// itself, so that a notifier can tell a live holder from a dead one.
#pragma once

#include <napi.h>

#include <vector>

#include "env_state.h"
#include "handles.h"
#include "wrap_base.h"

namespace rbdnative {

class WatchWrap : public WrapBase<WatchWrap, WatchHandle> {
 public:
  static constexpr const char* kClassName = "NativeWatch";
  static constexpr const char* kWhat = "watch";
  static constexpr const char* kMadeBy = "watchObject()";
  static constexpr Napi::FunctionReference EnvState::*kConstructor = &EnvState::watch_ctor;
  static void DefineMethods(std::vector<PropertyDescriptor>& methods);

  explicit WatchWrap(const Napi::CallbackInfo& info) : WrapBase(info) {}

 private:
  Napi::Value Id(const Napi::CallbackInfo& info);
  Napi::Value Check(const Napi::CallbackInfo& info);
};

}  // namespace rbdnative
