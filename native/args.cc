#include "args.h"

#include <cerrno>
#include <cmath>

#include "errors.h"

namespace rbdnative {

void ThrowInvalid(Napi::Env env, const std::string& message) {
  throw MakeError(env, EINVAL, message);
}

std::string StringArg(const Napi::CallbackInfo& info, size_t index,
                      const char* what) {
  if (!info[index].IsString()) {
    ThrowInvalid(info.Env(), std::string(what) + " must be a string");
  }
  std::string value = info[index].As<Napi::String>().Utf8Value();
  // An embedded NUL would silently cut the name short in the C API.
  if (value.find('\0') != std::string::npos) {
    ThrowInvalid(info.Env(), std::string(what) + " must not contain NUL");
  }
  return value;
}

std::optional<std::string> OptionalStringArg(const Napi::CallbackInfo& info,
                                             size_t index, const char* what) {
  if (info[index].IsUndefined() || info[index].IsNull()) return std::nullopt;
  return StringArg(info, index, what);
}

uint64_t U64Value(Napi::Env env, Napi::Value value, const char* what) {
  if (value.IsBigInt()) {
    bool lossless = false;
    uint64_t result = value.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) {
      ThrowInvalid(env, std::string(what) + " must fit in 64 unsigned bits");
    }
    return result;
  }
  if (value.IsNumber()) {
    double d = value.As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || std::floor(d) != d || d > 9007199254740991.0) {
      ThrowInvalid(env,
                   std::string(what) + " must be a non-negative safe integer");
    }
    return static_cast<uint64_t>(d);
  }
  ThrowInvalid(env, std::string(what) + " must be a bigint or a number");
}

uint64_t U64Arg(const Napi::CallbackInfo& info, size_t index,
                const char* what) {
  return U64Value(info.Env(), info[index], what);
}

bool BoolArg(const Napi::CallbackInfo& info, size_t index) {
  return info[index].ToBoolean().Value();
}

Napi::Value BigU64(Napi::Env env, uint64_t value) {
  return Napi::BigInt::New(env, value);
}

}  // namespace rbdnative
