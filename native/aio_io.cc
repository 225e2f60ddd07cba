// NativeImage.read and .write as librbd aio. A blocking rbd_read2 or
// rbd_write2 held one of the thread pool's four threads for a whole round
// trip, so a JavaScript window of 64 writes, or of reads running ahead, kept
// at most four in flight (at ~4 ms per operation, a restore from files spent
// most of its time there). Here a short job of the pool checks the range and
// submits; librbd's completion comes back to the JavaScript thread through
// one thread-safe function per environment.
#include "aio_io.h"

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

struct PendingIo;

void SettleOnJsThread(Napi::Env env, Napi::Function, std::nullptr_t*, PendingIo* io);

using CompletionCall = Napi::TypedThreadSafeFunction<std::nullptr_t, PendingIo, SettleOnJsThread>;

}  // namespace

// Carries completions from librbd's threads to the JavaScript thread. The
// thread-safe function keeps the event loop alive only while I/O is
// pending, and once the environment's cleanup hook has closed every image
// (rbd_close waits for its aio) nothing is posted to it any more.
class AioCompletions {
 public:
  explicit AioCompletions(Napi::Env env) : call_(CompletionCall::New(env, "rbd-backup:io", 0, 1)) {
    call_.Unref(env);
  }

  // JavaScript thread: an I/O was started.
  void Started(Napi::Env env) {
    if (pending_++ == 0) call_.Ref(env);
  }
  // JavaScript thread: an I/O settled.
  void Settled(Napi::Env env) {
    if (--pending_ == 0) call_.Unref(env);
  }
  // Any thread. Once the environment is going away the I/O is left to die
  // with it (its references belong to a gone environment).
  void Post(PendingIo* io) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!shut_down_) call_.NonBlockingCall(io);
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

struct PendingIo {
  PendingIo(Napi::Env env, ImageWrap& wrap, Napi::Buffer<char> buffer, uint64_t offset, bool read)
      : deferred(Napi::Promise::Deferred::New(env)),
        guard(wrap.Value(), wrap.Inflight()),
        data(Napi::Persistent(buffer.As<Napi::Object>())),
        bytes(buffer.Data()),
        offset(offset),
        length(buffer.Length()),
        read(read) {}

  Napi::Promise::Deferred deferred;
  // Keeps the wrapper counted as busy (close() refuses) and alive.
  InflightGuard guard;
  // librbd reads into or writes from the buffer itself (zero copy) until
  // it completes; a read resolves with it.
  Napi::ObjectReference data;
  char* bytes;
  uint64_t offset;
  uint64_t length;
  bool read;
  AioCompletions* completions = nullptr;
  // Set by the submitting job or by the completion.
  int err = 0;
  std::string message;
};

void Settle(Napi::Env env, PendingIo* io) {
  std::unique_ptr<PendingIo> owned(io);
  // While a worker thread is being terminated Node-API refuses to run
  // anything (node-addon-api throws then): nothing is left to tell, and an
  // exception must not unwind into Node.
  try {
    io->completions->Settled(env);
    if (io->err != 0) {
      io->deferred.Reject(MakeError(env, io->err, io->message).Value());
    } else {
      io->deferred.Resolve(io->read ? io->data.Value() : env.Undefined());
    }
  } catch (const Napi::Error&) {
  }
}

void SettleOnJsThread(Napi::Env env, Napi::Function, std::nullptr_t*, PendingIo* io) {
  // Called without an environment when the thread-safe function is torn
  // down with completions queued: their references cannot be released then.
  if (env == nullptr) return;
  Settle(env, io);
}

void OnComplete(rbd_completion_t completion, void* arg) {
  auto* io = static_cast<PendingIo*>(arg);
  ssize_t rc = rbd_aio_get_return_value(completion);
  rbd_aio_release(completion);
  if (rc < 0) {
    io->err = static_cast<int>(-rc);
    io->message = io->read ? "rbd_aio_read2 failed" : "rbd_aio_write2 failed";
  } else if (io->read && static_cast<uint64_t>(rc) != io->length) {
    io->err = EIO;
    io->message = "image shrank during the read";
  }
  io->completions->Post(io);
}

// Checks the range (librbd would clip I/O past the end) and submits, under
// the handle's shared lock, on the pool; the I/O then completes through
// OnComplete, or here when it could not start.
class SubmitIo : public Napi::AsyncWorker {
 public:
  SubmitIo(Napi::Env env, std::shared_ptr<ImageHandle> handle, PendingIo* io)
      : Napi::AsyncWorker(env, "rbd-backup:io"), handle_(std::move(handle)), io_(io) {}

 protected:
  void Execute() override {
    const bool submits = io_->length > 0;
    const char* call = io_->read ? "rbd_aio_read2" : "rbd_aio_write2";
    int rc = WithHandle(handle_, "image", io_->message, [this, call](rbd_image_t image) {
      if (!io_->read && !handle_->writable()) {
        io_->message = std::string(call) + " failed";
        return -EROFS;
      }
      int rc = CheckImageRange(image, io_->offset, io_->length, io_->read ? "read" : "write", io_->message);
      if (rc < 0 || io_->length == 0) return rc;
      rbd_completion_t completion = nullptr;
      rc = rbd_aio_create_completion(io_, OnComplete, &completion);
      if (rc < 0) {
        io_->message = "rbd_aio_create_completion failed";
        return rc;
      }
      rc = io_->read ? rbd_aio_read2(image, io_->offset, io_->length, io_->bytes, completion, 0)
                     : rbd_aio_write2(image, io_->offset, io_->length, io_->bytes, completion, 0);
      if (rc < 0) {
        rbd_aio_release(completion);
        io_->message = std::string(call) + " failed to start";
      }
      return rc;
    });
    // Once submitted, the I/O belongs to its completion, which may already
    // have settled it: it is not touched here again.
    if (rc < 0) {
      io_->err = -rc;
    } else if (submits) {
      io_ = nullptr;
    }
  }
  void OnOK() override {
    if (io_ != nullptr) Settle(Env(), io_);
  }

 private:
  std::shared_ptr<ImageHandle> handle_;
  PendingIo* io_;
};

Napi::Promise Start(Napi::Env env, ImageWrap& wrap, std::shared_ptr<ImageHandle> handle,
                    Napi::Buffer<char> buffer, uint64_t offset, bool read) {
  EnvState* state = EnvState::Get(env);
  if (state->aio_completions == nullptr) state->aio_completions = new AioCompletions(env);
  auto* io = new PendingIo(env, wrap, buffer, offset, read);
  io->completions = state->aio_completions;
  io->completions->Started(env);
  Napi::Promise promise = io->deferred.Promise();
  (new SubmitIo(env, std::move(handle), io))->Queue();
  return promise;
}

}  // namespace

Napi::Value AioRead(ImageWrap& wrap, const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto handle = wrap.OpenHandle(env);
  uint64_t offset = U64Arg(info, 0, "offset");
  uint64_t length = U64Arg(info, 1, "length");
  if (length > (1ull << 30)) ThrowInvalid(env, "one read takes at most 1 GiB");
  // Made here, on the JavaScript thread, and read into directly.
  auto buffer = Napi::Buffer<char>::New(env, static_cast<size_t>(length));
  return Start(env, wrap, std::move(handle), buffer, offset, true);
}

Napi::Value AioWrite(ImageWrap& wrap, const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto handle = wrap.OpenHandle(env);
  if (!info[0].IsBuffer()) ThrowInvalid(env, "data must be a Buffer");
  auto buffer = info[0].As<Napi::Buffer<char>>();
  uint64_t offset = U64Arg(info, 1, "offset");
  if (buffer.Length() > (1ull << 30)) ThrowInvalid(env, "one write takes at most 1 GiB");
  return Start(env, wrap, std::move(handle), buffer, offset, false);
}

void ShutDownAio(EnvState* state) {
  if (state->aio_completions != nullptr) state->aio_completions->ShutDown();
}

}  // namespace rbdnative
