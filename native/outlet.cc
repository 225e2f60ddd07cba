#include "outlet.h"

#include "args.h"
#include "env_state.h"

namespace rbdnative {

Napi::Function Outlet::Define(Napi::Env env) {
  return DefineClass(env, "Outlet", {InstanceMethod("taken", &Outlet::Taken)});
}

Outlet::Outlet(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Outlet>(info) {}

std::shared_ptr<OutletState> Outlet::StateOf(Napi::Value value) {
  if (value.IsUndefined() || value.IsNull()) return nullptr;
  if (value.IsObject() && value.As<Napi::Object>().InstanceOf(EnvState::Get(value.Env())->outlet_ctor.Value())) {
    return Unwrap(value.As<Napi::Object>())->state_;
  }
  ThrowInvalid(value.Env(), "outlet must be an Outlet");
}

Napi::Value Outlet::Taken(const Napi::CallbackInfo& info) {
  uint64_t ops = U64Arg(info, 0, "ops");
  uint64_t bytes = U64Arg(info, 1, "bytes");
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->taken_ops += ops;
  state_->taken_bytes += bytes;
  if (state_->wake) state_->wake();
  return info.Env().Undefined();
}

}  // namespace rbdnative
