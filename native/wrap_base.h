// The lifecycle every JavaScript wrapper of a Handle shares: made from a
// handle a worker opened, calls refused once closed and counted while in
// flight, close() refusing while busy, and the finalizer handing a forgotten
// handle to the thread pool.
#pragma once

#include <napi.h>

#include <cerrno>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "args.h"
#include "env_state.h"
#include "errors.h"
#include "handle.h"
#include "worker.h"

namespace rbdnative {

// Self (the wrapper) says what it wraps with four constants:
//   kClassName    its JavaScript class, "NativePool"
//   kWhat         its handle in messages, "pool"
//   kMadeBy       the call that makes one, "openPool()"
//   kConstructor  where EnvState keeps its constructor, &EnvState::pool_ctor
// and lists its methods in a static DefineMethods(methods); close() is
// added here.
template <typename Self, typename HandleT>
class WrapBase : public Napi::ObjectWrap<Self> {
  using Wrap = Napi::ObjectWrap<Self>;

 public:
  using PropertyDescriptor = typename Wrap::PropertyDescriptor;
  // A method implemented as a function of the wrapper in the file of its
  // concept (snapshot.cc, object_lock.cc, ...), so that adding one touches
  // that file only.
  using FreeMethod = Napi::Value (*)(Self&, const Napi::CallbackInfo&);

  static Napi::Function Define(Napi::Env env) {
    std::vector<PropertyDescriptor> methods;
    Self::DefineMethods(methods);
    methods.push_back(Wrap::InstanceMethod("close", &WrapBase::CloseHandle));
    return Wrap::DefineClass(env, Self::kClassName, methods);
  }

  template <FreeMethod method>
  static PropertyDescriptor Method(const char* name) {
    return Wrap::InstanceMethod(name, &WrapBase::Forward<method>);
  }

  static Self* FromValue(Napi::Env env, Napi::Value value) {
    EnvState* state = EnvState::Get(env);
    if (!value.IsObject() ||
        !value.As<Napi::Object>().InstanceOf((state->*Self::kConstructor).Value())) {
      ThrowInvalid(env, std::string("expected a ") + Self::kClassName);
    }
    return Wrap::Unwrap(value.As<Napi::Object>());
  }

  // The handle, or a synchronous EBADF error once close() was called or the
  // handle went with its parent or with closeAll().
  std::shared_ptr<HandleT> OpenHandle(Napi::Env env) const {
    if (closed_ || !handle_->IsOpen()) {
      throw MakeError(env, EBADF, std::string(Self::kWhat) + " handle is closed");
    }
    return handle_;
  }

  // The in-flight counter, for calls that hold this wrapper outside a
  // CallWorker (a flatten, a transfer).
  int* Inflight() { return &inflight_; }

  // Queues body on the thread pool as a call in flight on this wrapper.
  template <typename Result>
  Napi::Promise Run(Napi::Env env, typename CallWorker<Result>::Body body,
                    typename CallWorker<Result>::Convert convert) {
    return RunAsync<Result>(env, this->Value(), &inflight_, std::move(body),
                            std::move(convert));
  }
  Napi::Promise Run(Napi::Env env, std::function<int(std::string& message)> body) {
    return RunAsync(env, this->Value(), &inflight_, std::move(body));
  }

  // Images or watches still open under this handle; a cluster counts those
  // of its pools.
  size_t OpenUnder(HandleKind kind) const { return handle_->OpenChildren(kind); }

 protected:
  explicit WrapBase(const Napi::CallbackInfo& info)
      : Wrap(info), state_(EnvState::Get(info.Env())) {
    if (!info[0].IsExternal()) {
      ThrowInvalid(info.Env(), std::string(Self::kClassName) + " is made by " + Self::kMadeBy);
    }
    handle_ = *info[0].As<Napi::External<std::shared_ptr<HandleT>>>().Data();
  }

  // The release (rbd_close, rados_shutdown) may wait on the network, so a
  // wrapper collected without close() leaves it to the thread pool.
  ~WrapBase() override { state_->Dispose(std::move(handle_)); }

  Napi::Value OpenImageCount(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(self().OpenUnder(HandleKind::kImage)));
  }

  std::shared_ptr<HandleT> handle_;
  EnvState* state_;

 private:
  Self& self() { return static_cast<Self&>(*this); }

  template <FreeMethod method>
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    return method(self(), info);
  }

  // close(): settles at once when already closed; refuses (EBUSY) while
  // calls on this wrapper are in flight or images or watches opened under it
  // are open; otherwise releases the handle on the thread pool, children
  // first (a cluster takes its idle pools with it: an ioctx holds nothing
  // that could be lost).
  Napi::Value CloseHandle(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_ || !handle_->IsOpen()) {
      closed_ = true;
      auto deferred = Napi::Promise::Deferred::New(env);
      deferred.Resolve(env.Undefined());
      return deferred.Promise();
    }
    if (inflight_ > 0) {
      throw MakeError(env, EBUSY,
                      std::to_string(inflight_) + " " + Self::kWhat + " operation(s) in flight");
    }
    if (size_t images = self().OpenUnder(HandleKind::kImage)) {
      throw MakeError(env, EBUSY,
                      std::to_string(images) + " image(s) still open; close them first");
    }
    if (size_t watches = self().OpenUnder(HandleKind::kWatch)) {
      throw MakeError(env, EBUSY,
                      std::to_string(watches) + " watch(es) still open; close them first");
    }
    closed_ = true;
    auto handle = handle_;
    return Run(env, [handle](std::string&) {
      handle->CloseTree();
      return 0;
    });
  }

  int inflight_ = 0;
  bool closed_ = false;
};

// The JavaScript wrapper of a handle a worker just opened, made through the
// wrapper class's constructor (kept in EnvState).
template <typename HandleT>
Napi::Value NewWrapper(const Napi::FunctionReference& constructor,
                       std::shared_ptr<HandleT>& handle) {
  Napi::Env env = constructor.Env();
  auto external = Napi::External<std::shared_ptr<HandleT>>::New(env, &handle);
  return constructor.New({external});
}

}  // namespace rbdnative
