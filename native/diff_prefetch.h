// Runs diff iteration ahead of the copy engine on a thread of its own, a
// bounded number of ranges ahead, so that listing what changed (a round trip
// per object for exact extents) overlaps with moving the data.
#pragma once

#include <rbd/librbd.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "diff.h"

namespace rbdnative {

class DiffPrefetcher {
 public:
  struct Range {
    uint64_t start = 0;
    uint64_t length = 0;
    ExtentList extents;
  };
  enum class State { kReady, kPending, kDone, kFailed };

  // Iterates [0, length) of image from `from` (nullopt: the whole history)
  // in ranges of first_step, then four times longer each time up to step;
  // calls notify after each range is ready (from its thread).
  // Lists [start, length) of the image.
  DiffPrefetcher(rbd_image_t image, std::optional<std::string> from, uint64_t start, uint64_t length,
                 uint64_t first_step, uint64_t step, bool whole_object, std::function<void()> notify);
  // Stops the iteration and waits for the thread.
  ~DiffPrefetcher();
  DiffPrefetcher(const DiffPrefetcher&) = delete;
  DiffPrefetcher& operator=(const DiffPrefetcher&) = delete;

  // The next range in order, if it is ready.
  State TryTake(Range* out);
  // After kFailed: the negative errno and what failed.
  int error() const { return error_; }
  const std::string& message() const { return message_; }
  void Stop();

 private:
  void Loop();

  static constexpr size_t kAhead = 2;

  rbd_image_t image_;
  std::optional<std::string> from_;
  uint64_t start_;
  uint64_t length_;
  uint64_t first_step_;
  uint64_t step_;
  bool whole_object_;
  std::function<void()> notify_;

  std::mutex mu_;
  std::condition_variable room_;
  std::deque<Range> ready_;
  bool done_ = false;
  int error_ = 0;
  std::string message_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace rbdnative
