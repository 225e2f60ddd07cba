#include "zero_runs.h"

#include <algorithm>
#include <cstring>

namespace rbdnative {

namespace {

constexpr uint64_t kZeroBlock = 4096;

bool IsZero(const char* p, size_t n) {
  // The first byte decides almost every non-zero block; memcmp against the
  // block shifted by one then checks the rest at memory speed.
  if (n == 0) return true;
  if (p[0] != 0) return false;
  return std::memcmp(p, p + 1, n - 1) == 0;
}

}  // namespace

std::vector<std::pair<uint64_t, uint64_t>> FindZeroRuns(const char* data, uint64_t length,
                                                        uint64_t min_run) {
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  auto block = [&](uint64_t pos) { return std::min(kZeroBlock, length - pos); };
  uint64_t pos = 0;
  while (pos < length) {
    if (!IsZero(data + pos, block(pos))) {
      pos += block(pos);
      continue;
    }
    uint64_t start = pos;
    while (pos < length && IsZero(data + pos, block(pos))) pos += block(pos);
    if (pos - start >= min_run || (start == 0 && pos == length)) runs.emplace_back(start, pos);
  }
  return runs;
}

}  // namespace rbdnative
