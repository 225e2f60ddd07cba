// Per-environment state of the addon: the constructors of the wrapper
// classes, the open cluster handles that the cleanup hook must close, and
// the hand-off of forgotten handles to the thread pool.
#pragma once

#include <napi.h>
#include <uv.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

#include "handle.h"

namespace rbdnative {

class AioCompletions;  // aio_io.cc

struct EnvState {
  Napi::FunctionReference cluster_ctor;
  Napi::FunctionReference pool_ctor;
  Napi::FunctionReference image_ctor;
  Napi::FunctionReference watch_ctor;
  Napi::FunctionReference cancel_ctor;
  Napi::FunctionReference outlet_ctor;
  Napi::FunctionReference inlet_ctor;
  uv_loop_t* loop = nullptr;
  // Made with the first read or write; like the state, never freed.
  AioCompletions* aio_completions = nullptr;
  bool tearing_down = false;
  std::mutex roots_mu;
  std::vector<std::weak_ptr<Handle>> roots;

  static EnvState* Get(Napi::Env env);
  void AddRoot(const std::shared_ptr<Handle>& root);
  // Long native jobs (transfers) register their cancel flag, so teardown can
  // stop them before it closes the handles they hold.
  void AddJob(const std::shared_ptr<std::atomic<bool>>& cancel);
  std::vector<std::weak_ptr<std::atomic<bool>>> jobs;
  // A wrapper that was garbage collected without close() gives its handle
  // here: the release (rbd_close, rados_shutdown) may wait on the network,
  // so it runs on the thread pool, or right away once the environment is
  // being torn down and the handle is already closed.
  void Dispose(std::shared_ptr<Handle> handle);
  // Native threads (transfers) mark their start and their very end. The
  // cleanup hook waits for them: Node deletes their thread-safe functions
  // right after the cleanup hooks, and a thread that released its own
  // later would touch freed memory.
  void ThreadStarted();
  void ThreadEnded();
  void WaitForThreads();
  std::mutex threads_mu;
  std::condition_variable threads_cv;
  int live_threads = 0;
  // Stops running jobs and closes every open handle, children first. Used
  // at process exit (process.exit() skips the cleanup hook) and by the
  // cleanup hook itself.
  void CloseEverything();
};

// Installs the state and the environment cleanup hook that closes every
// handle still open when the environment exits.
EnvState* InstallEnvState(Napi::Env env);

}  // namespace rbdnative
