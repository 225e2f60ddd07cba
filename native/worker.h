// Runs one blocking librados/librbd call on the libuv thread pool and settles
// a Promise with its result on the JavaScript thread.
#pragma once

#include <napi.h>

#include <cstring>
#include <functional>
#include <string>
#include <utility>

#include "errors.h"

namespace rbdnative {

// Counts the calls in flight on one JavaScript wrapper and keeps the wrapper
// alive until they settle, so close() can refuse while work is pending and a
// finalizer never runs under a worker.
class InflightGuard {
 public:
  // An empty owner (a call not made on a wrapper, like connect) counts
  // nothing.
  InflightGuard(Napi::Object owner, int* counter) : counter_(counter) {
    if (!owner.IsEmpty()) owner_ = Napi::Persistent(owner);
    if (counter_) ++*counter_;
  }
  ~InflightGuard() {
    if (counter_) --*counter_;
  }
  InflightGuard(const InflightGuard&) = delete;
  InflightGuard& operator=(const InflightGuard&) = delete;

 private:
  Napi::ObjectReference owner_;
  int* counter_;
};

template <typename Result>
class CallWorker : public Napi::AsyncWorker {
 public:
  using Body = std::function<int(Result& out, std::string& message)>;
  using Convert = std::function<Napi::Value(Napi::Env, Result&)>;

  CallWorker(Napi::Env env, Napi::Object owner, int* inflight, Body body,
             Convert convert)
      : Napi::AsyncWorker(env, "rbd-backup"),
        deferred_(Napi::Promise::Deferred::New(env)),
        guard_(owner, inflight),
        body_(std::move(body)),
        convert_(std::move(convert)) {}

  Napi::Promise Start() {
    Queue();
    return deferred_.Promise();
  }

  void OnWorkComplete(Napi::Env env, napi_status status) override {
    // While a worker thread's environment terminates, Node-API calls fail
    // and node-addon-api throws (opening the handle scope, settling the
    // promise, rethrowing that to JavaScript); uncaught here, that aborts
    // the whole process. The base class destroys the worker last, so it
    // has not when it threw.
    try {
      Napi::AsyncWorker::OnWorkComplete(env, status);
    } catch (const Napi::Error&) {
      Destroy();
    }
  }

 protected:
  void Execute() override {
    std::string message;
    int rc = body_(result_, message);
    if (rc < 0) {
      err_ = -rc;
      SetError(message.empty() ? std::strerror(err_) : message);
    }
  }
  void OnOK() override {
    Napi::Value value =
        convert_ ? convert_(Env(), result_) : Env().Undefined();
    deferred_.Resolve(value);
  }
  void OnError(const Napi::Error& e) override {
    deferred_.Reject(MakeError(Env(), err_ ? err_ : EIO, e.Message()).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  InflightGuard guard_;
  Body body_;
  Convert convert_;
  Result result_{};
  int err_ = 0;
};

struct Nothing {};

// Queues body on the thread pool; convert builds the resolved value.
template <typename Result>
Napi::Promise RunAsync(Napi::Env env, Napi::Object owner, int* inflight,
                       typename CallWorker<Result>::Body body,
                       typename CallWorker<Result>::Convert convert) {
  auto* worker = new CallWorker<Result>(env, owner, inflight, std::move(body),
                                        std::move(convert));
  return worker->Start();
}

inline Napi::Promise RunAsync(Napi::Env env, Napi::Object owner, int* inflight,
                              std::function<int(std::string& message)> body) {
  return RunAsync<Nothing>(
      env, owner, inflight,
      [body = std::move(body)](Nothing&, std::string& message) {
        return body(message);
      },
      nullptr);
}

}  // namespace rbdnative
