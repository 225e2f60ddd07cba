// Lifetime of a librados/librbd handle shared between JavaScript objects,
// worker threads and the environment cleanup hook.
#pragma once

#include <atomic>
#include <cerrno>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

namespace rbdnative {

// What a handle is, so a parent can count its open children by kind (a pool
// refuses to close with an image or a watch open, and says which).
enum class HandleKind { kCluster, kPool, kImage, kWatch };

// A handle is released exactly once: by an explicit close, by the last owner
// going away, or by the environment cleanup hook at exit. Workers hold a
// shared lock while they use the raw handle, so a release waits for calls in
// flight instead of pulling the handle out from under them.
class Handle {
 public:
  explicit Handle(HandleKind kind) : kind_(kind) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  virtual ~Handle() = default;

  // Shared lock for the duration of one native call; check IsOpen() under it.
  std::shared_lock<std::shared_mutex> Use() const {
    return std::shared_lock<std::shared_mutex>(mu_);
  }
  bool IsOpen() const { return !released_.load(); }
  HandleKind kind() const { return kind_; }

  // Releases children first (an image before its pool, a pool before its
  // cluster) because librados must not be shut down under an open image.
  void CloseTree();
  void Close();

  // librbd holds operations on this handle that will never complete (an
  // aio write waiting for an exclusive lock another client keeps, or one
  // left behind when this client was blocklisted): closing it would wait
  // for them forever. Its release is skipped from now on (the resource is
  // left to the process's exit), and so are those of its ancestors, which
  // must not be shut down under it.
  void MarkStuck();

  void AddChild(const std::shared_ptr<Handle>& child);
  // Number of children of this kind that are still open, for refusing an
  // early close.
  size_t OpenChildren(HandleKind kind);
  std::vector<std::shared_ptr<Handle>> LiveChildren();

 protected:
  // Frees the librados/librbd resource. Called at most once, under the
  // exclusive lock. Derived destructors must call Close() themselves.
  virtual void Release() = 0;
  // The handle this one was opened through (an image's pool, a pool's
  // cluster), which a stuck handle keeps from being released.
  virtual Handle* parent() const { return nullptr; }

 private:
  const HandleKind kind_;
  mutable std::shared_mutex mu_;
  std::atomic<bool> released_{false};
  std::atomic<bool> stuck_{false};
  std::mutex children_mu_;
  std::vector<std::weak_ptr<Handle>> children_;
};

// Runs call(raw handle) under the shared lock, or fails with EBADF when the
// handle was closed before the worker got to it.
template <typename H, typename F>
int WithHandle(const std::shared_ptr<H>& handle, const char* what,
               std::string& message, F call) {
  auto lock = handle->Use();
  if (!handle->IsOpen()) {
    message = std::string(what) + " handle is closed";
    return -EBADF;
  }
  return call(handle->get());
}

}  // namespace rbdnative
