// The read buffers of one transfer job, all of one size, reused for the
// whole job: its memory stays at what its window needs, and no read pays
// for a fresh buffer's first touch. Shared: a delivering job hands a buffer
// to a copy on the thread pool, which gives it back when done, possibly
// after the job has ended; the last owner frees them all.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <vector>

namespace rbdnative {

class BufferPool {
 public:
  explicit BufferPool(uint64_t size) : size_(size) {}
  ~BufferPool() {
    for (char* buffer : all_) std::free(buffer);
  }
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // A buffer of the pool's size, nullptr when memory is out.
  char* Acquire() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!free_.empty()) {
      char* buffer = free_.back();
      free_.pop_back();
      return buffer;
    }
    char* buffer = static_cast<char*>(std::malloc(size_));
    if (buffer) all_.push_back(buffer);
    return buffer;
  }

  // Takes back a buffer Acquire() gave.
  void Release(char* buffer) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(buffer);
  }

 private:
  const uint64_t size_;
  std::mutex mu_;
  std::vector<char*> free_;
  std::vector<char*> all_;
};

}  // namespace rbdnative
