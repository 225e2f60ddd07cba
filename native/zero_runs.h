// Finding the runs of zero bytes in a buffer, at 4 KiB granularity: the
// transfer engine turns them into write-zeroes (or nothing), the diff stream
// export into 'z' records.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace rbdnative {

// [start, end) of each zero run at least min_run long; a buffer that is
// zero throughout is one run whatever its length.
std::vector<std::pair<uint64_t, uint64_t>> FindZeroRuns(const char* data, uint64_t length,
                                                        uint64_t min_run);

}  // namespace rbdnative
