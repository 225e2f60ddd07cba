// How each librados/librbd resource is released (once, under the handle's
// exclusive lock; see Handle).
#include "handles.h"

namespace rbdnative {

void ClusterHandle::Release() {
  rados_shutdown(cluster_);
  cluster_ = nullptr;
}

void PoolHandle::Release() {
  rados_ioctx_destroy(io_);
  io_ = nullptr;
}

void ImageHandle::Release() {
  rbd_close(image_);
  image_ = nullptr;
}

void WatchHandle::Release() {
  // A watch is released before its pool: CloseTree goes children first, and
  // a pool refuses close() while a watch of it is open.
  auto lock = pool_->Use();
  if (!pool_->IsOpen()) {
    // Not reachable by the order above. Were it ever, librados could still
    // call back into the context: leaking it is the safe way out.
    context_.release();
    return;
  }
  // A failure here (the watch already lapsed, the client is blocklisted)
  // leaves nothing to undo: librados dropped the watch either way, and the
  // OSD ends it after its timeout.
  rados_unwatch2(pool_->get(), cookie_);
  // A notify already queued may still be acked through the context.
  rados_watch_flush(pool_->cluster()->get());
  context_.reset();
}

}  // namespace rbdnative
