// Argument conversion between JavaScript values and native types. The
// TypeScript layer validates first; these checks keep a bad call from ever
// reaching librados as garbage.
#pragma once

#include <napi.h>

#include <cstdint>
#include <optional>
#include <string>

namespace rbdnative {

// Throws a JavaScript TypeError carrying errno EINVAL.
[[noreturn]] void ThrowInvalid(Napi::Env env, const std::string& message);

std::string StringArg(const Napi::CallbackInfo& info, size_t index,
                      const char* what);
// undefined and null become nullopt.
std::optional<std::string> OptionalStringArg(const Napi::CallbackInfo& info,
                                             size_t index, const char* what);
// A bigint or a non-negative safe integer number.
uint64_t U64Arg(const Napi::CallbackInfo& info, size_t index,
                const char* what);
uint64_t U64Value(Napi::Env env, Napi::Value value, const char* what);
bool BoolArg(const Napi::CallbackInfo& info, size_t index);

Napi::Value BigU64(Napi::Env env, uint64_t value);

}  // namespace rbdnative
