// A flag JavaScript raises (from an AbortSignal) and native loops poll.
#pragma once

#include <napi.h>

#include <atomic>
#include <memory>

namespace rbdnative {

using CancelFlag = std::shared_ptr<std::atomic<bool>>;

class CancelToken : public Napi::ObjectWrap<CancelToken> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit CancelToken(const Napi::CallbackInfo& info);

  // The flag of a CancelToken argument; a fresh, never-raised flag for
  // undefined.
  static CancelFlag FlagOf(Napi::Value value);

 private:
  Napi::Value Cancel(const Napi::CallbackInfo& info);
  Napi::Value Cancelled(const Napi::CallbackInfo& info);
  CancelFlag flag_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace rbdnative
