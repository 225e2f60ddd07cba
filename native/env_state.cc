#include "env_state.h"

#include "aio_io.h"

namespace rbdnative {

namespace {

struct DisposeWork {
  uv_work_t req;
  std::shared_ptr<Handle> handle;
};

void CleanupHook(EnvState* state) {
  state->CloseEverything();
  // rbd_close waited for every aio read and write; none may reach JavaScript now.
  ShutDownAio(state);
  // Cancelled and with their handles closed, they end in moments.
  state->WaitForThreads();
  state->tearing_down = true;
  // The references die with the environment; resetting them here keeps
  // their destructors from touching it later. The state itself is left
  // allocated because wrapper finalizers that run after this hook read it.
  state->cluster_ctor.Reset();
  state->pool_ctor.Reset();
  state->image_ctor.Reset();
  state->watch_ctor.Reset();
  state->cancel_ctor.Reset();
  state->outlet_ctor.Reset();
  state->inlet_ctor.Reset();
}

void KeepState(Napi::Env, EnvState*) {}

}  // namespace

EnvState* EnvState::Get(Napi::Env env) { return env.GetInstanceData<EnvState>(); }

void EnvState::AddRoot(const std::shared_ptr<Handle>& root) {
  std::lock_guard<std::mutex> lock(roots_mu);
  std::vector<std::weak_ptr<Handle>> kept;
  for (auto& weak : roots) {
    if (!weak.expired()) kept.push_back(std::move(weak));
  }
  kept.push_back(root);
  roots.swap(kept);
}

void EnvState::CloseEverything() {
  std::vector<std::shared_ptr<Handle>> live;
  {
    std::lock_guard<std::mutex> lock(roots_mu);
    for (auto& weak : jobs) {
      if (auto cancel = weak.lock()) cancel->store(true);
    }
    jobs.clear();
    for (auto& weak : roots) {
      if (auto root = weak.lock()) live.push_back(std::move(root));
    }
    roots.clear();
  }
  // Waits for calls in flight (a cancelled job drains in moments).
  for (auto& root : live) root->CloseTree();
}

void EnvState::ThreadStarted() {
  std::lock_guard<std::mutex> lock(threads_mu);
  ++live_threads;
}

void EnvState::ThreadEnded() {
  // Notified under the lock, like every hand-off to a waiter that may
  // return (and move on) as soon as it sees the count.
  std::lock_guard<std::mutex> lock(threads_mu);
  --live_threads;
  threads_cv.notify_all();
}

void EnvState::WaitForThreads() {
  std::unique_lock<std::mutex> lock(threads_mu);
  threads_cv.wait(lock, [this] { return live_threads == 0; });
}

void EnvState::AddJob(const std::shared_ptr<std::atomic<bool>>& cancel) {
  std::lock_guard<std::mutex> lock(roots_mu);
  std::vector<std::weak_ptr<std::atomic<bool>>> kept;
  for (auto& weak : jobs) {
    if (!weak.expired()) kept.push_back(std::move(weak));
  }
  kept.push_back(cancel);
  jobs.swap(kept);
}

void EnvState::Dispose(std::shared_ptr<Handle> handle) {
  if (!handle) return;
  if (tearing_down || loop == nullptr) {
    handle.reset();
    return;
  }
  auto* work = new DisposeWork{};
  work->handle = std::move(handle);
  int rc = uv_queue_work(
      loop, &work->req,
      [](uv_work_t* req) {
        reinterpret_cast<DisposeWork*>(req)->handle.reset();
      },
      [](uv_work_t* req, int) { delete reinterpret_cast<DisposeWork*>(req); });
  if (rc != 0) delete work;  // releases the handle here as a last resort
}

EnvState* InstallEnvState(Napi::Env env) {
  auto* state = new EnvState();
  napi_get_uv_event_loop(env, &state->loop);
  // No finalizer: see CleanupHook for why the state outlives the env.
  env.SetInstanceData<EnvState, KeepState>(state);
  env.AddCleanupHook(CleanupHook, state);
  return state;
}

}  // namespace rbdnative
