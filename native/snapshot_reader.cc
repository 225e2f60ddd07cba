#include "snapshot_reader.h"

#include <rbd/features.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace rbdnative {

namespace {

std::string Failed(const char* call, int rc) {
  return std::string(call) + " failed: " + std::strerror(-rc);
}

// Whether the objects of the image at its current snapshot hold all of its
// data, laid out one object after another; otherwise why not.
std::string Ineligible(rbd_image_t image) {
  uint8_t old_format = 0;
  int rc = rbd_get_old_format(image, &old_format);
  if (rc < 0) return Failed("rbd_get_old_format", rc);
  if (old_format) return "a format 1 image";
  uint64_t features = 0;
  rc = rbd_get_features(image, &features);
  if (rc < 0) return Failed("rbd_get_features", rc);
  if (features & RBD_FEATURE_MIGRATING) return "an image being migrated (its data may still be in the source)";
  uint64_t stripe_count = 0;
  rc = rbd_get_stripe_count(image, &stripe_count);
  if (rc < 0) return Failed("rbd_get_stripe_count", rc);
  if (stripe_count > 1) return "a striped image";
  rbd_linked_image_spec_t parent;
  rbd_snap_spec_t parent_snap;
  rc = rbd_get_parent(image, &parent, &parent_snap);
  if (rc == 0) {
    rbd_linked_image_spec_cleanup(&parent);
    rbd_snap_spec_cleanup(&parent_snap);
    return "a clone (unwritten data comes from its parent)";
  }
  if (rc != -ENOENT) return Failed("rbd_get_parent", rc);
  return "";
}

}  // namespace

std::unique_ptr<SnapshotReader> SnapshotReader::Open(const std::shared_ptr<ImageHandle>& handle,
                                                     const std::string& snapshot, std::string* reason) {
  rbd_image_t image = handle->get();
  *reason = Ineligible(image);
  if (!reason->empty()) return nullptr;
  uint64_t snap_id = 0;
  int rc = rbd_snap_get_id(image, snapshot.c_str(), &snap_id);
  if (rc < 0) {
    *reason = Failed("rbd_snap_get_id", rc);
    return nullptr;
  }
  rbd_image_info_t info;
  rc = rbd_stat(image, &info, sizeof(info));
  if (rc < 0) {
    *reason = Failed("rbd_stat", rc);
    return nullptr;
  }
  char prefix[RBD_MAX_BLOCK_NAME_SIZE];
  rc = rbd_get_block_name_prefix(image, prefix, sizeof(prefix));
  if (rc < 0) {
    *reason = Failed("rbd_get_block_name_prefix", rc);
    return nullptr;
  }
  int64_t data_pool = rbd_get_data_pool_id(image);
  if (data_pool < 0) {
    *reason = Failed("rbd_get_data_pool_id", static_cast<int>(data_pool));
    return nullptr;
  }
  // Data objects live in the image's namespace, in its data pool.
  rados_ioctx_t image_io = handle->pool()->get();
  char ns[256];
  rc = rados_ioctx_get_namespace(image_io, ns, sizeof(ns));
  if (rc < 0) {
    *reason = Failed("rados_ioctx_get_namespace", rc);
    return nullptr;
  }
  rados_ioctx_t io;
  rc = rados_ioctx_create2(handle->pool()->cluster()->get(), data_pool, &io);
  if (rc < 0) {
    *reason = Failed("rados_ioctx_create2", rc);
    return nullptr;
  }
  rados_ioctx_set_namespace(io, ns);
  rados_ioctx_snap_set_read(io, snap_id);
  return std::unique_ptr<SnapshotReader>(new SnapshotReader(io, prefix, info.obj_size));
}

SnapshotReader::~SnapshotReader() { rados_ioctx_destroy(io_); }

int SnapshotReader::Read(std::vector<Extent> extents, Results* results, rados_completion_t done) {
  uint64_t object_no = extents.front().offset / object_size_;
  char oid[RBD_MAX_BLOCK_NAME_SIZE + 24];
  std::snprintf(oid, sizeof(oid), "%s.%016" PRIx64, prefix_.c_str(), object_no);
  results->extents = std::move(extents);
  results->lengths.assign(results->extents.size(), 0);
  results->rvals.assign(results->extents.size(), 0);
  results->op = rados_create_read_op();
  if (!results->op) return -ENOMEM;
  for (size_t i = 0; i < results->extents.size(); ++i) {
    const Extent& e = results->extents[i];
    rados_read_op_read(results->op, e.offset % object_size_, e.length, e.into, &results->lengths[i],
                       &results->rvals[i]);
  }
  int rc = rados_aio_read_op_operate(results->op, io_, done, oid, 0);
  if (rc < 0) {
    rados_release_read_op(results->op);
    results->op = nullptr;
  }
  return rc;
}

int SnapshotReader::Finish(Results* results, int rc) {
  if (results->op) {
    rados_release_read_op(results->op);
    results->op = nullptr;
  }
  if (rc == -ENOENT) {
    for (const Extent& e : results->extents) std::memset(e.into, 0, e.length);
    return 0;
  }
  if (rc < 0) return rc;
  for (size_t i = 0; i < results->extents.size(); ++i) {
    if (results->rvals[i] < 0) return results->rvals[i];
    const Extent& e = results->extents[i];
    size_t got = std::min<size_t>(results->lengths[i], e.length);
    std::memset(e.into + got, 0, e.length - got);
  }
  return 0;
}

}  // namespace rbdnative
