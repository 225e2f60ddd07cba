// The JavaScript side of a transfer that writes what JavaScript gives it (a
// diff stream parsed in JavaScript, the pieces of a restore from files)
// instead of reading a source: the same job, window and overlap ordering as
// every other write of the engine. Each piece is written from its own
// Buffer (no copy), which stays referenced until its write has completed;
// pieces given and not yet written count against the job's window and
// memory, and JavaScript gives the next one only while room() says so
// (onWritten tells it that room was made).
#pragma once

#include <napi.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace rbdnative {

// A piece given to the job: data to write, or (data null) zeroes.
struct Given {
  uint64_t offset = 0;
  uint64_t length = 0;
  const char* data = nullptr;
  // Keeps data's Buffer alive; deleted on the JavaScript thread only.
  napi_ref buffer = nullptr;
};

struct InletState {
  std::mutex mu;
  // Given and not yet taken by the job, in the order given.
  std::deque<Given> queue;
  // end() was called: once the queue is empty, the job is done.
  bool ended = false;
  // A job took it: an inlet serves one transfer.
  bool attached = false;
  // The job has ended: nothing given is taken any more.
  bool closed = false;
  // Given and not yet released (written, or dropped by a stopped job).
  uint64_t given_ops = 0;
  uint64_t given_bytes = 0;
  // The job's window and memory, set when it starts.
  uint64_t window = 1;
  uint64_t memory = 0;
  // Set by the job while it runs: a piece given (or the end) wakes it up.
  std::function<void()> wake;

  // On the JavaScript thread: the pieces' Buffers are let go and they
  // leave the window.
  void Release(napi_env env, const std::vector<Given>& pieces);
};

class Inlet : public Napi::ObjectWrap<Inlet> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Inlet(const Napi::CallbackInfo& info);

  // The state of an Inlet argument; nullptr when value is not an Inlet.
  static std::shared_ptr<InletState> StateOf(Napi::Value value);

 private:
  // give(data: Buffer | null, offset: bigint, length: bigint): data (its
  // length) or zeroes (length) at offset. Refused once the job has ended.
  Napi::Value Give(const Napi::CallbackInfo& info);
  // room(): whether the window takes another piece now.
  Napi::Value Room(const Napi::CallbackInfo& info);
  // pending(): pieces given and not yet written.
  Napi::Value Pending(const Napi::CallbackInfo& info);
  // end(): nothing more will be given.
  Napi::Value End(const Napi::CallbackInfo& info);
  std::shared_ptr<InletState> state_ = std::make_shared<InletState>();
};

}  // namespace rbdnative
