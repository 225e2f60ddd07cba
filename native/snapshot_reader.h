// Reads an image snapshot's data objects straight from RADOS, all the
// extents wanted from one object in a single operation: librbd would send
// one operation per extent, and at real-cluster latencies an incremental of
// scattered small changes is bound by its operation count.
#pragma once

#include <rados/librados.h>
#include <rbd/librbd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "handles.h"

namespace rbdnative {

class SnapshotReader {
 public:
  // One extent of one object: image offset and length, and where in the
  // caller's buffer it goes.
  struct Extent {
    uint64_t offset;
    uint64_t length;
    char* into;
  };

  // A reader for `snapshot` of the image, or nullptr (with why in *reason)
  // when reading its objects directly would not give what librbd reads:
  // a clone (data may come from the parent), fancy striping, a migrating
  // or format 1 image. Runs only librbd calls answered from the open
  // image's memory.
  static std::unique_ptr<SnapshotReader> Open(const std::shared_ptr<ImageHandle>& image,
                                              const std::string& snapshot, std::string* reason);
  ~SnapshotReader();
  SnapshotReader(const SnapshotReader&) = delete;
  SnapshotReader& operator=(const SnapshotReader&) = delete;

  // What one Read delivers once its completion fires: per extent, the
  // bytes read and that sub-read's result.
  struct Results {
    std::vector<Extent> extents;
    std::vector<size_t> lengths;
    std::vector<int> rvals;
    rados_read_op_t op = nullptr;
  };

  // Starts one RADOS read of the extents (all in one object, in offset
  // order) into `results`, which must stay put until `done` fires.
  int Read(std::vector<Extent> extents, Results* results, rados_completion_t done);
  // After the completion: fills what the object did not hold with zeros
  // (an absent object or one shorter than the extent reads as zeros, as in
  // librbd) and returns 0, or the first failure.
  static int Finish(Results* results, int rc);
  uint64_t object_size() const { return object_size_; }

 private:
  SnapshotReader(rados_ioctx_t io, std::string prefix, uint64_t object_size)
      : io_(io), prefix_(std::move(prefix)), object_size_(object_size) {}

  rados_ioctx_t io_;
  std::string prefix_;
  uint64_t object_size_;
};

}  // namespace rbdnative
