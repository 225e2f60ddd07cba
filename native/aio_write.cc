// NativeImage.write as a librbd aio write. A blocking rbd_write2 held one of
// the thread pool's four threads for a whole round trip, so a JavaScript
// window of 64 writes kept at most four in flight (at ~4 ms per operation,
// a restore from files spent most of its time there). Here a short job of
// the pool checks the range and submits; librbd's completion comes back to
// the JavaScript thread through one thread-safe function per environment.
#include "aio_write.h"

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "args.h"
#include "env_state.h"
#include "errors.h"
#include "worker.h"

namespace rbdnative {

namespace {

struct PendingWrite;

void SettleOnJsThread(Napi::Env env, Napi::Function, std::nullptr_t*, PendingWrite* write);

using CompletionCall = Napi::TypedThreadSafeFunction<std::nullptr_t, PendingWrite, SettleOnJsThread>;

}  // namespace

// Carries completions from librbd's threads to the JavaScript thread. The
// thread-safe function keeps the event loop alive only while writes are
// pending, and once the environment's cleanup hook has closed every image
// (rbd_close waits for its aio) nothing is posted to it any more.
class AioCompletions {
 public:
  explicit AioCompletions(Napi::Env env) : call_(CompletionCall::New(env, "rbd-backup:write", 0, 1)) {
    call_.Unref(env);
  }

  // JavaScript thread: a write was made.
  void Started(Napi::Env env) {
    if (pending_++ == 0) call_.Ref(env);
  }
  // JavaScript thread: a write settled.
  void Settled(Napi::Env env) {
    if (--pending_ == 0) call_.Unref(env);
  }
  // Any thread. False once the environment is going away: the write is then
  // left to die with it (its references belong to a gone environment).
  bool Post(PendingWrite* write) {
    std::lock_guard<std::mutex> lock(mu_);
    return !shut_down_ && call_.NonBlockingCall(write) == napi_ok;
  }
  void ShutDown() {
    std::lock_guard<std::mutex> lock(mu_);
    shut_down_ = true;
  }

 private:
  CompletionCall call_;
  size_t pending_ = 0;
  std::mutex mu_;
  bool shut_down_ = false;
};

namespace {

struct PendingWrite {
  PendingWrite(Napi::Env env, ImageWrap& wrap, Napi::Buffer<char> buffer, uint64_t offset)
      : deferred(Napi::Promise::Deferred::New(env)),
        guard(wrap.Value(), wrap.Inflight()),
        data(Napi::Persistent(buffer.As<Napi::Object>())),
        bytes(buffer.Data()),
        offset(offset),
        length(buffer.Length()) {}

  Napi::Promise::Deferred deferred;
  // Keeps the wrapper counted as busy (close() refuses) and alive.
  InflightGuard guard;
  // librbd writes from the buffer itself (zero copy) until it completes.
  Napi::ObjectReference data;
  const char* bytes;
  uint64_t offset;
  uint64_t length;
  AioCompletions* completions = nullptr;
  // Set by the submitting job or by the completion.
  int err = 0;
  std::string message;
};

void Settle(Napi::Env env, PendingWrite* write) {
  std::unique_ptr<PendingWrite> owned(write);
  // While a worker thread is being terminated Node-API refuses to run
  // anything (node-addon-api throws then): nothing is left to tell, and an
  // exception must not unwind into Node.
  try {
    write->completions->Settled(env);
    if (write->err != 0) {
      write->deferred.Reject(MakeError(env, write->err, write->message).Value());
    } else {
      write->deferred.Resolve(env.Undefined());
    }
  } catch (const Napi::Error&) {
  }
}

void SettleOnJsThread(Napi::Env env, Napi::Function, std::nullptr_t*, PendingWrite* write) {
  // Called without an environment when the thread-safe function is torn
  // down with completions queued: their references cannot be released then.
  if (env == nullptr) return;
  Settle(env, write);
}

void OnComplete(rbd_completion_t completion, void* arg) {
  auto* write = static_cast<PendingWrite*>(arg);
  ssize_t rc = rbd_aio_get_return_value(completion);
  rbd_aio_release(completion);
  if (rc < 0) {
    write->err = static_cast<int>(-rc);
    write->message = "rbd_aio_write2 failed";
  }
  write->completions->Post(write);
}

// Checks the range (librbd would clip a write past the end) and submits,
// under the handle's shared lock, on the pool; the write then completes
// through OnComplete, or here when it could not start.
class SubmitWrite : public Napi::AsyncWorker {
 public:
  SubmitWrite(Napi::Env env, std::shared_ptr<ImageHandle> handle, PendingWrite* write)
      : Napi::AsyncWorker(env, "rbd-backup:write"), handle_(std::move(handle)), write_(write) {}

 protected:
  void Execute() override {
    const bool submits = write_->length > 0;
    int rc = WithHandle(handle_, "image", write_->message, [this](rbd_image_t image) {
      if (!handle_->writable()) {
        write_->message = "rbd_aio_write2 failed";
        return -EROFS;
      }
      int rc = CheckImageRange(image, write_->offset, write_->length, "write", write_->message);
      if (rc < 0 || write_->length == 0) return rc;
      rbd_completion_t completion = nullptr;
      rc = rbd_aio_create_completion(write_, OnComplete, &completion);
      if (rc < 0) {
        write_->message = "rbd_aio_create_completion failed";
        return rc;
      }
      rc = rbd_aio_write2(image, write_->offset, write_->length, write_->bytes, completion, 0);
      if (rc < 0) {
        rbd_aio_release(completion);
        write_->message = "rbd_aio_write2 failed to start";
      }
      return rc;
    });
    // Once submitted, the write belongs to its completion, which may
    // already have settled it: it is not touched here again.
    if (rc < 0) {
      write_->err = -rc;
    } else if (submits) {
      write_ = nullptr;
    }
  }
  void OnOK() override {
    if (write_ != nullptr) Settle(Env(), write_);
  }

 private:
  std::shared_ptr<ImageHandle> handle_;
  PendingWrite* write_;
};

}  // namespace

Napi::Value AioWrite(ImageWrap& wrap, const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto handle = wrap.OpenHandle(env);
  if (!info[0].IsBuffer()) ThrowInvalid(env, "data must be a Buffer");
  auto buffer = info[0].As<Napi::Buffer<char>>();
  uint64_t offset = U64Arg(info, 1, "offset");
  if (buffer.Length() > (1ull << 30)) ThrowInvalid(env, "one write takes at most 1 GiB");
  EnvState* state = EnvState::Get(env);
  if (state->aio_completions == nullptr) state->aio_completions = new AioCompletions(env);
  auto* write = new PendingWrite(env, wrap, buffer, offset);
  write->completions = state->aio_completions;
  write->completions->Started(env);
  Napi::Promise promise = write->deferred.Promise();
  (new SubmitWrite(env, std::move(handle), write))->Queue();
  return promise;
}

void ShutDownAioWrites(EnvState* state) {
  if (state->aio_completions != nullptr) state->aio_completions->ShutDown();
}

}  // namespace rbdnative
