// NativeImage.read, .readMany and .write as librbd aio. A blocking
// rbd_read2 or rbd_write2 held one of the thread pool's four threads for a
// whole round trip, so a JavaScript window of 64 writes, or of reads running
// ahead, kept at most four in flight (at ~4 ms per operation, a restore from
// files spent most of its time there); readMany waited for its batch on a
// thread of the pool too. Here a short job of the pool checks the ranges and
// submits; librbd's completions come back to the JavaScript thread through
// one thread-safe function per environment, a batch once its last range is
// done.
#include "aio_io.h"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "args.h"
#include "env_state.h"
#include "errors.h"
#include "image.h"
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

enum class IoKind { kRead, kReadMany, kWrite };

// What one librbd completion is for: a range of its batch.
struct IoRange {
  PendingIo* io = nullptr;
  uint64_t offset = 0;
  uint64_t length = 0;
  // librbd reads into or writes from the JavaScript buffer itself (zero
  // copy) until it completes.
  char* bytes = nullptr;
};

struct PendingIo {
  PendingIo(Napi::Env env, ImageWrap& wrap, Napi::Object data, IoKind kind)
      : deferred(Napi::Promise::Deferred::New(env)),
        guard(wrap.Value(), wrap.Inflight()),
        data(Napi::Persistent(data)),
        kind(kind) {}

  void Add(uint64_t offset, uint64_t length, char* bytes) { ranges.push_back({this, offset, length, bytes}); }
  // Any thread: the first failure is the one told.
  void Fail(int rc, std::string why) {
    std::lock_guard<std::mutex> lock(mu);
    if (err != 0) return;
    err = rc;
    message = std::move(why);
  }

  Napi::Promise::Deferred deferred;
  // Keeps the wrapper counted as busy (close() refuses) and alive.
  InflightGuard guard;
  // The buffer (read, write) or the array of buffers (readMany), kept
  // until every range completed; a read resolves with it.
  Napi::ObjectReference data;
  IoKind kind;
  std::vector<IoRange> ranges;
  AioCompletions* completions = nullptr;
  // Ranges submitted and not completed, plus one held by the submitting
  // job: whoever brings it to zero settles the batch.
  std::atomic<size_t> outstanding{1};
  std::mutex mu;
  // Set by the submitting job or by a completion (under mu).
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
      io->deferred.Resolve(io->kind == IoKind::kWrite ? env.Undefined() : io->data.Value());
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
  auto* range = static_cast<IoRange*>(arg);
  PendingIo* io = range->io;
  ssize_t rc = rbd_aio_get_return_value(completion);
  rbd_aio_release(completion);
  if (rc < 0) {
    io->Fail(static_cast<int>(-rc), io->kind == IoKind::kWrite ? "rbd_aio_write2 failed" : "rbd_aio_read2 failed");
  } else if (io->kind != IoKind::kWrite && static_cast<uint64_t>(rc) != range->length) {
    io->Fail(EIO, "image shrank during the read");
  }
  if (--io->outstanding == 0) io->completions->Post(io);
}

// Checks every range (librbd would clip I/O past the end) and submits them
// all, under the handle's shared lock, on the pool; the batch then settles
// through the completion of its last range, or here when none is left in
// flight once submitting ends (nothing to do, or nothing could start).
class SubmitIo : public Napi::AsyncWorker {
 public:
  SubmitIo(Napi::Env env, std::shared_ptr<ImageHandle> handle, PendingIo* io)
      : Napi::AsyncWorker(env, "rbd-backup:io"), handle_(std::move(handle)), io_(io) {}

 protected:
  void Execute() override {
    const bool write = io_->kind == IoKind::kWrite;
    const char* call = write ? "rbd_aio_write2" : "rbd_aio_read2";
    std::string message;
    int rc = WithHandle(handle_, "image", message, [&](rbd_image_t image) {
      if (write && !handle_->writable()) {
        message = std::string(call) + " failed";
        return -EROFS;
      }
      for (const IoRange& range : io_->ranges) {
        int rc = CheckImageRange(image, range.offset, range.length, write ? "write" : "read", message);
        if (rc < 0) return rc;
      }
      for (IoRange& range : io_->ranges) {
        if (range.length == 0) continue;
        rbd_completion_t completion = nullptr;
        int rc = rbd_aio_create_completion(&range, OnComplete, &completion);
        if (rc < 0) {
          message = "rbd_aio_create_completion failed";
          return rc;
        }
        ++io_->outstanding;
        rc = write ? rbd_aio_write2(image, range.offset, range.length, range.bytes, completion, 0)
                   : rbd_aio_read2(image, range.offset, range.length, range.bytes, completion, 0);
        if (rc < 0) {
          --io_->outstanding;
          rbd_aio_release(completion);
          message = std::string(call) + " failed to start";
          return rc;
        }
      }
      return 0;
    });
    if (rc < 0) io_->Fail(-rc, std::move(message));
    // Ranges still in flight own the batch now: the last to complete
    // settles it, and it may already have. Not touched here again then.
    if (--io_->outstanding != 0) io_ = nullptr;
  }
  void OnOK() override {
    if (io_ != nullptr) Settle(Env(), io_);
  }

 private:
  std::shared_ptr<ImageHandle> handle_;
  PendingIo* io_;
};

Napi::Promise Start(Napi::Env env, std::shared_ptr<ImageHandle> handle, PendingIo* io) {
  EnvState* state = EnvState::Get(env);
  if (state->aio_completions == nullptr) state->aio_completions = new AioCompletions(env);
  io->completions = state->aio_completions;
  io->completions->Started(env);
  Napi::Promise promise = io->deferred.Promise();
  (new SubmitIo(env, std::move(handle), io))->Queue();
  return promise;
}

Napi::Value AioRead(ImageWrap& wrap, const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto handle = wrap.OpenHandle(env);
  uint64_t offset = U64Arg(info, 0, "offset");
  uint64_t length = U64Arg(info, 1, "length");
  if (length > (1ull << 30)) ThrowInvalid(env, "one read takes at most 1 GiB");
  // Made here, on the JavaScript thread, and read into directly.
  auto buffer = Napi::Buffer<char>::New(env, static_cast<size_t>(length));
  auto* io = new PendingIo(env, wrap, buffer, IoKind::kRead);
  io->Add(offset, length, buffer.Data());
  return Start(env, std::move(handle), io);
}

Napi::Value AioReadMany(ImageWrap& wrap, const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto handle = wrap.OpenHandle(env);
  if (!info[0].IsArray() || !info[1].IsArray()) ThrowInvalid(env, "readMany takes an array of offsets and one of lengths");
  auto offsets = info[0].As<Napi::Array>();
  auto lengths = info[1].As<Napi::Array>();
  uint32_t count = offsets.Length();
  if (count == 0 || count > 1024 || lengths.Length() != count) {
    ThrowInvalid(env, "readMany takes 1 to 1024 ranges, as many offsets as lengths");
  }
  struct Asked {
    uint64_t offset;
    uint64_t length;
  };
  std::vector<Asked> asked;
  asked.reserve(count);
  uint64_t total = 0;
  for (uint32_t i = 0; i < count; ++i) {
    uint64_t offset = U64Value(env, offsets.Get(i), "offset");
    uint64_t length = U64Value(env, lengths.Get(i), "length");
    total += length;
    if (length == 0 || total > (1ull << 30)) ThrowInvalid(env, "readMany reads 1 byte or more per range, at most 1 GiB in all");
    asked.push_back({offset, length});
  }
  // Every argument checked before the batch exists: a throw above leaves nothing pending.
  Napi::Array buffers = Napi::Array::New(env, count);
  auto* io = new PendingIo(env, wrap, buffers, IoKind::kReadMany);
  for (uint32_t i = 0; i < count; ++i) {
    auto buffer = Napi::Buffer<char>::New(env, static_cast<size_t>(asked[i].length));
    buffers.Set(i, buffer);
    io->Add(asked[i].offset, asked[i].length, buffer.Data());
  }
  return Start(env, std::move(handle), io);
}

Napi::Value AioWrite(ImageWrap& wrap, const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto handle = wrap.OpenHandle(env);
  if (!info[0].IsBuffer()) ThrowInvalid(env, "data must be a Buffer");
  auto buffer = info[0].As<Napi::Buffer<char>>();
  uint64_t offset = U64Arg(info, 1, "offset");
  if (buffer.Length() > (1ull << 30)) ThrowInvalid(env, "one write takes at most 1 GiB");
  auto* io = new PendingIo(env, wrap, buffer, IoKind::kWrite);
  io->Add(offset, buffer.Length(), buffer.Data());
  return Start(env, std::move(handle), io);
}

}  // namespace

void ImageWrap::DefineAioMethods(std::vector<PropertyDescriptor>& methods) {
  methods.insert(methods.end(), {Method<AioRead>("read"), Method<AioReadMany>("readMany"), Method<AioWrite>("write")});
}

void ShutDownAio(EnvState* state) {
  if (state->aio_completions != nullptr) state->aio_completions->ShutDown();
}

}  // namespace rbdnative
