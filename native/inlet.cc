#include "inlet.h"

#include "args.h"
#include "env_state.h"

namespace rbdnative {

void InletState::Release(napi_env env, const std::vector<Given>& pieces) {
  uint64_t bytes = 0;
  for (const Given& piece : pieces) {
    if (piece.buffer != nullptr) napi_delete_reference(env, piece.buffer);
    bytes += piece.data != nullptr ? piece.length : 0;
  }
  std::lock_guard<std::mutex> lock(mu);
  given_ops -= std::min<uint64_t>(given_ops, pieces.size());
  given_bytes -= std::min(given_bytes, bytes);
}

Napi::Function Inlet::Define(Napi::Env env) {
  return DefineClass(env, "Inlet",
                     {InstanceMethod("give", &Inlet::Give), InstanceMethod("room", &Inlet::Room),
                      InstanceMethod("pending", &Inlet::Pending), InstanceMethod("end", &Inlet::End)});
}

Inlet::Inlet(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Inlet>(info) {}

std::shared_ptr<InletState> Inlet::StateOf(Napi::Value value) {
  if (value.IsObject() && value.As<Napi::Object>().InstanceOf(EnvState::Get(value.Env())->inlet_ctor.Value())) {
    return Unwrap(value.As<Napi::Object>())->state_;
  }
  return nullptr;
}

Napi::Value Inlet::Give(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Given piece;
  piece.offset = U64Arg(info, 1, "offset");
  piece.length = U64Arg(info, 2, "length");
  if (info[0].IsBuffer()) {
    auto data = info[0].As<Napi::Buffer<char>>();
    if (data.Length() != piece.length) ThrowInvalid(env, "length must be the data's length");
    piece.data = data.Data();
  } else if (!info[0].IsNull()) {
    ThrowInvalid(env, "data must be a Buffer, or null for zeroes");
  }
  if (piece.length == 0 || piece.offset + piece.length < piece.offset) ThrowInvalid(env, "an empty or wrapping piece");
  std::lock_guard<std::mutex> lock(state_->mu);
  if (state_->closed || state_->ended) return Napi::Boolean::New(env, false);
  if (piece.data != nullptr && napi_create_reference(env, info[0], 1, &piece.buffer) != napi_ok) {
    ThrowInvalid(env, "cannot hold the data's Buffer");
  }
  state_->queue.push_back(piece);
  ++state_->given_ops;
  state_->given_bytes += piece.data != nullptr ? piece.length : 0;
  if (state_->wake) state_->wake();
  return Napi::Boolean::New(env, true);
}

Napi::Value Inlet::Room(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(state_->mu);
  // Memory may be passed by the last piece: its size is not known before.
  return Napi::Boolean::New(info.Env(), state_->given_ops == 0 || (state_->given_ops < state_->window &&
                                                                   state_->given_bytes < state_->memory));
}

Napi::Value Inlet::Pending(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(state_->mu);
  return Napi::Number::New(info.Env(), static_cast<double>(state_->given_ops));
}

Napi::Value Inlet::End(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->ended = true;
  if (state_->wake) state_->wake();
  return info.Env().Undefined();
}

}  // namespace rbdnative
