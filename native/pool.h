// A pool (and namespace) opened for I/O (rados_ioctx_t): images in it,
// whole small objects, their locks (object_lock.cc) and watches (watch.cc).
#pragma once

#include <napi.h>

#include <memory>
#include <vector>

#include "env_state.h"
#include "handles.h"

namespace rbdnative {

// Throws EBUSY naming the images or watches still open: a pool (or its
// cluster) does not close under them.
void RefuseWhileOpen(Napi::Env env, size_t images, size_t watches);

class PoolWrap : public Napi::ObjectWrap<PoolWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit PoolWrap(const Napi::CallbackInfo& info);
  ~PoolWrap() override;

  std::shared_ptr<PoolHandle> OpenHandle(Napi::Env env) const;
  static PoolWrap* FromValue(Napi::Env env, Napi::Value value);

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
  Napi::Value OpenImageCount(const Napi::CallbackInfo& info);
  Napi::Value ClosePool(const Napi::CallbackInfo& info);
  // object_lock.cc
  static void DefineObjectLockMethods(std::vector<PropertyDescriptor>& methods);
  Napi::Value LockObject(const Napi::CallbackInfo& info);
  Napi::Value UnlockObject(const Napi::CallbackInfo& info);
  Napi::Value ListLockers(const Napi::CallbackInfo& info);
  Napi::Value BreakLock(const Napi::CallbackInfo& info);
  // watch.cc
  static void DefineWatchMethods(std::vector<PropertyDescriptor>& methods);
  Napi::Value WatchObject(const Napi::CallbackInfo& info);
  Napi::Value NotifyObject(const Napi::CallbackInfo& info);

  std::shared_ptr<PoolHandle> handle_;
  EnvState* state_;
  int inflight_ = 0;
  bool closed_ = false;
};

}  // namespace rbdnative
