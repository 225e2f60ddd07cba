// A watch on one RADOS object (rados_watch3) that acknowledges every notify
// itself, so that a notifier can tell a live holder from a dead one.
#pragma once

#include <napi.h>
#include <rados/librados.h>

#include <atomic>
#include <memory>
#include <string>

#include "env_state.h"
#include "handle.h"
#include "pool.h"

namespace rbdnative {

// The argument librados hands to the watch's callbacks, on its own thread.
// It must outlive every callback librados may still run, so the watch frees
// it only after rados_unwatch2 and rados_watch_flush.
struct WatchContext {
  rados_ioctx_t io = nullptr;
  std::string oid;
  // Positive errno of the last error librados reported on the watch; 0 while
  // none. Once set the watch is dead for good (librados' rule): the owner
  // closes it and watches again.
  std::atomic<int> error{0};
};

class WatchHandle : public Handle {
 public:
  WatchHandle(std::shared_ptr<PoolHandle> pool,
              std::unique_ptr<WatchContext> context, uint64_t cookie)
      : Handle(HandleKind::kWatch),
        pool_(std::move(pool)),
        context_(std::move(context)),
        cookie_(cookie) {}
  ~WatchHandle() override { Close(); }
  // The watch cookie (librados' id of the watch).
  uint64_t get() const { return cookie_; }
  const std::shared_ptr<PoolHandle>& pool() const { return pool_; }
  // Only under Use() while IsOpen(): the context goes with the release.
  int error() const { return context_->error.load(); }

 protected:
  void Release() override;

 private:
  // The ioctx the watch lives on must outlive it.
  std::shared_ptr<PoolHandle> pool_;
  std::unique_ptr<WatchContext> context_;
  uint64_t cookie_;
};

class WatchWrap : public Napi::ObjectWrap<WatchWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit WatchWrap(const Napi::CallbackInfo& info);
  ~WatchWrap() override;

 private:
  std::shared_ptr<WatchHandle> OpenHandle(Napi::Env env) const;
  Napi::Value Id(const Napi::CallbackInfo& info);
  Napi::Value Check(const Napi::CallbackInfo& info);
  Napi::Value CloseWatch(const Napi::CallbackInfo& info);

  std::shared_ptr<WatchHandle> handle_;
  EnvState* state_;
  int inflight_ = 0;
  bool closed_ = false;
};

}  // namespace rbdnative
