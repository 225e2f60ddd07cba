// The librados/librbd resources the wrappers hold: a connection (rados_t),
// a pool's ioctx, an open image and a watch, each a Handle that keeps the one
// it was opened through alive. Below every wrapper, so that a wrapper opening
// another kind's handle needs no other wrapper's header.
#pragma once

#include <rados/librados.h>
#include <rbd/librbd.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "handle.h"

namespace rbdnative {

class ClusterHandle : public Handle {
 public:
  // Called on a worker right after rados_connect, which fixes the id for
  // the life of the connection.
  explicit ClusterHandle(rados_t cluster)
      : Handle(HandleKind::kCluster),
        cluster_(cluster),
        instance_id_(rados_get_instance_id(cluster)) {}
  ~ClusterHandle() override { Close(); }
  rados_t get() const { return cluster_; }
  uint64_t instance_id() const { return instance_id_; }

 protected:
  void Release() override;

 private:
  rados_t cluster_;
  const uint64_t instance_id_;
};

class PoolHandle : public Handle {
 public:
  PoolHandle(std::shared_ptr<ClusterHandle> cluster, rados_ioctx_t io)
      : Handle(HandleKind::kPool), cluster_(std::move(cluster)), io_(io) {}
  ~PoolHandle() override { Close(); }
  rados_ioctx_t get() const { return io_; }
  const std::shared_ptr<ClusterHandle>& cluster() const { return cluster_; }

 protected:
  void Release() override;
  Handle* parent() const override { return cluster_.get(); }

 private:
  // Keeps rados_t alive for as long as the ioctx exists.
  std::shared_ptr<ClusterHandle> cluster_;
  rados_ioctx_t io_;
};

class ImageHandle : public Handle {
 public:
  ImageHandle(std::shared_ptr<PoolHandle> pool, rbd_image_t image, bool writable)
      : Handle(HandleKind::kImage), pool_(std::move(pool)), image_(image), writable_(writable) {}
  ~ImageHandle() override { Close(); }
  rbd_image_t get() const { return image_; }
  // Open at the head and not read-only. librbd never completes an aio
  // write to an image open otherwise (it fails rbd_write2 with EROFS).
  bool writable() const { return writable_; }
  const std::shared_ptr<PoolHandle>& pool() const { return pool_; }

 protected:
  void Release() override;
  Handle* parent() const override { return pool_.get(); }

 private:
  // The ioctx must outlive the image opened through it.
  std::shared_ptr<PoolHandle> pool_;
  rbd_image_t image_;
  const bool writable_;
};

// The argument librados hands to a watch's callbacks, on its own thread.
// It must outlive every callback librados may still run, so the watch frees
// it only after rados_unwatch2 and rados_watch_flush.
struct WatchContext {
  rados_ioctx_t io = nullptr;
  std::string oid;
  // Positive errno of the last error librados reported on the watch; 0 while
  // none. Once set the watch is dead for good (librados' rule): the owner
  // closes it and watches again.
  std::atomic<int> error{0};
};

// A watch on one RADOS object (rados_watch3).
class WatchHandle : public Handle {
 public:
  WatchHandle(std::shared_ptr<PoolHandle> pool,
              std::unique_ptr<WatchContext> context, uint64_t cookie)
      : Handle(HandleKind::kWatch),
        pool_(std::move(pool)),
        context_(std::move(context)),
        cookie_(cookie) {}
  ~WatchHandle() override { Close(); }
  // The watch cookie (librados' id of the watch).
  uint64_t get() const { return cookie_; }
  const std::shared_ptr<PoolHandle>& pool() const { return pool_; }
  // Only under Use() while IsOpen(): the context goes with the release.
  int error() const { return context_->error.load(); }

 protected:
  void Release() override;

 private:
  // The ioctx the watch lives on must outlive it.
  std::shared_ptr<PoolHandle> pool_;
  std::unique_ptr<WatchContext> context_;
  uint64_t cookie_;
};

}  // namespace rbdnative
