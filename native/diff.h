// Extent lists collected from rbd_diff_iterate2, shared by the diff calls of
// ImageWrap and by the copy engine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rbdnative {

struct ExtentList {
  std::vector<uint64_t> ranges;  // offset, length pairs
  std::vector<uint8_t> exists;
  size_t size() const { return exists.size(); }
  uint64_t offset(size_t i) const { return ranges[2 * i]; }
  uint64_t length(size_t i) const { return ranges[2 * i + 1]; }
};

// The rbd_diff_iterate2 callback appending to an ExtentList (arg).
int CollectExtent(uint64_t offset, size_t length, int exists, void* arg);

}  // namespace rbdnative
