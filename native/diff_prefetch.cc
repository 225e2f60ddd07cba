#include "diff_prefetch.h"

#include <algorithm>
#include <cstring>

namespace rbdnative {

namespace {

struct Collecting {
  ExtentList* list;
  const std::atomic<bool>* stop;
};

int CollectUnlessStopped(uint64_t offset, size_t length, int exists, void* arg) {
  auto* collecting = static_cast<Collecting*>(arg);
  if (collecting->stop->load()) return -ECANCELED;
  return CollectExtent(offset, length, exists, collecting->list);
}

}  // namespace

DiffPrefetcher::DiffPrefetcher(rbd_image_t image, std::optional<std::string> from, uint64_t start,
                               uint64_t length, uint64_t first_step, uint64_t step, bool whole_object,
                               std::function<void()> notify)
    : image_(image),
      from_(std::move(from)),
      start_(start),
      length_(length),
      first_step_(std::min(first_step, step)),
      step_(step),
      whole_object_(whole_object),
      notify_(std::move(notify)),
      thread_([this] { Loop(); }) {}

DiffPrefetcher::~DiffPrefetcher() {
  Stop();
  if (thread_.joinable()) thread_.join();
}

void DiffPrefetcher::Stop() {
  // Set under the lock: the loop checks stop_ under it before it waits, so
  // the flag cannot land between that check and the wait (a lost wake-up
  // that would leave the loop, and the join, waiting forever).
  std::lock_guard<std::mutex> lock(mu_);
  stop_.store(true);
  room_.notify_all();
}

void DiffPrefetcher::Loop() {
  const char* from = from_ ? from_->c_str() : nullptr;
  uint64_t span = first_step_;
  for (uint64_t start = start_; start < length_; start += span, span = span > step_ / 4 ? step_ : span * 4) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      room_.wait(lock, [&] { return ready_.size() < kAhead || stop_.load(); });
    }
    if (stop_.load()) break;
    Range range;
    range.start = start;
    range.length = std::min(span, length_ - start);
    Collecting collecting{&range.extents, &stop_};
    int rc = rbd_diff_iterate2(image_, from, range.start, range.length, true, whole_object_,
                               &CollectUnlessStopped, &collecting);
    if (stop_.load()) break;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (rc < 0) {
        error_ = rc;
        message_ = "diff of the source range of " + std::to_string(range.length) + " bytes at offset " +
                   std::to_string(range.start) + " failed: " + std::strerror(-rc);
        break;
      }
      ready_.push_back(std::move(range));
    }
    notify_();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
  }
  notify_();
}

DiffPrefetcher::State DiffPrefetcher::TryTake(Range* out) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!ready_.empty()) {
    *out = std::move(ready_.front());
    ready_.pop_front();
    room_.notify_all();
    return State::kReady;
  }
  if (error_ != 0) return State::kFailed;
  return done_ ? State::kDone : State::kPending;
}

}  // namespace rbdnative
