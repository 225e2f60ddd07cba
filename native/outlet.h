// The JavaScript side of a transfer that delivers what it reads (a stream
// export) instead of writing it: JavaScript acknowledges each delivered
// piece once its consumer has taken it, and only then does the piece stop
// counting against the job's window, so reads never run further ahead of a
// slow consumer than the window allows.
#pragma once

#include <napi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

namespace rbdnative {

struct OutletState {
  std::mutex mu;
  // Acknowledged by JavaScript and not yet counted off by the job.
  uint64_t taken_ops = 0;
  uint64_t taken_bytes = 0;
  // Set by the job while it runs: an acknowledgement wakes it up.
  std::function<void()> wake;
};

class Outlet : public Napi::ObjectWrap<Outlet> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Outlet(const Napi::CallbackInfo& info);

  // The state of an Outlet argument; nullptr for undefined.
  static std::shared_ptr<OutletState> StateOf(Napi::Value value);

 private:
  // taken(ops, bytes): that many delivered pieces (of that many bytes) are
  // the consumer's now.
  Napi::Value Taken(const Napi::CallbackInfo& info);
  std::shared_ptr<OutletState> state_ = std::make_shared<OutletState>();
};

}  // namespace rbdnative
