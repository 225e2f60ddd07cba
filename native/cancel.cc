#include "cancel.h"

#include "args.h"
#include "env_state.h"

namespace rbdnative {

Napi::Function CancelToken::Define(Napi::Env env) {
  return DefineClass(env, "CancelToken",
                     {InstanceMethod("cancel", &CancelToken::Cancel),
                      InstanceAccessor("cancelled", &CancelToken::Cancelled,
                                       nullptr)});
}

CancelToken::CancelToken(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<CancelToken>(info) {}

CancelFlag CancelToken::FlagOf(Napi::Value value) {
  if (value.IsObject()) {
    Napi::Object object = value.As<Napi::Object>();
    Napi::Env env = value.Env();
    EnvState* state = EnvState::Get(env);
    if (object.InstanceOf(state->cancel_ctor.Value())) {
      return Unwrap(object)->flag_;
    }
  }
  if (!value.IsUndefined() && !value.IsNull()) {
    ThrowInvalid(value.Env(), "cancel token must be a CancelToken");
  }
  return std::make_shared<std::atomic<bool>>(false);
}

Napi::Value CancelToken::Cancel(const Napi::CallbackInfo& info) {
  flag_->store(true);
  return info.Env().Undefined();
}

Napi::Value CancelToken::Cancelled(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), flag_->load());
}

}  // namespace rbdnative
