// A pool (and namespace) opened for I/O (rados_ioctx_t): images in it,
// whole small objects, their locks (object_lock.cc) and watches (watch.cc).
#pragma once

#include <napi.h>

#include <vector>

#include "env_state.h"
#include "handles.h"
#include "wrap_base.h"

namespace rbdnative {

class PoolWrap : public WrapBase<PoolWrap, PoolHandle> {
 public:
  static constexpr const char* kClassName = "NativePool";
  static constexpr const char* kWhat = "pool";
  static constexpr const char* kMadeBy = "openPool()";
  static constexpr Napi::FunctionReference EnvState::*kConstructor = &EnvState::pool_ctor;
  static void DefineMethods(std::vector<PropertyDescriptor>& methods);

  explicit PoolWrap(const Napi::CallbackInfo& info) : WrapBase(info) {}

 private:
  Napi::Value ListImages(const Napi::CallbackInfo& info);
  Napi::Value CreateImage(const Napi::CallbackInfo& info);
  Napi::Value RemoveImage(const Napi::CallbackInfo& info);
  Napi::Value RenameImage(const Napi::CallbackInfo& info);
  Napi::Value OpenImage(const Napi::CallbackInfo& info);
  Napi::Value Clone(const Napi::CallbackInfo& info);
  Napi::Value ReadObject(const Napi::CallbackInfo& info);
  Napi::Value WriteObject(const Napi::CallbackInfo& info);
  Napi::Value RemoveObject(const Napi::CallbackInfo& info);
  Napi::Value ObjectExists(const Napi::CallbackInfo& info);
  // Each adds the methods its file implements.
  static void DefineObjectLockMethods(std::vector<PropertyDescriptor>& methods);  // object_lock.cc
  static void DefineWatchMethods(std::vector<PropertyDescriptor>& methods);       // watch.cc
};

}  // namespace rbdnative
