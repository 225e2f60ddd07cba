// An open RBD image (rbd_image_t), at its head or at a snapshot. Snapshot
// calls live in snapshot.cc and diff iteration in diff.cc.
#pragma once

#include <napi.h>

#include <functional>
#include <vector>

#include "env_state.h"
#include "handles.h"
#include "wrap_base.h"

namespace rbdnative {

class ImageWrap : public WrapBase<ImageWrap, ImageHandle> {
 public:
  static constexpr const char* kClassName = "NativeImage";
  static constexpr const char* kWhat = "image";
  static constexpr const char* kMadeBy = "openImage()";
  static constexpr Napi::FunctionReference EnvState::*kConstructor = &EnvState::image_ctor;
  static void DefineMethods(std::vector<PropertyDescriptor>& methods);

  explicit ImageWrap(const Napi::CallbackInfo& info) : WrapBase(info) {}

 private:
  Napi::Value Stat(const Napi::CallbackInfo& info);
  Napi::Value Resize(const Napi::CallbackInfo& info);
  Napi::Value Read(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value WriteZeroes(const Napi::CallbackInfo& info);
  Napi::Value Discard(const Napi::CallbackInfo& info);
  Napi::Value Flush(const Napi::CallbackInfo& info);
  Napi::Value GetMetadata(const Napi::CallbackInfo& info);
  Napi::Value SetMetadata(const Napi::CallbackInfo& info);
  Napi::Value RemoveMetadata(const Napi::CallbackInfo& info);
  Napi::Value ListMetadata(const Napi::CallbackInfo& info);
  Napi::Value Lock(const Napi::CallbackInfo& info);
  Napi::Value Unlock(const Napi::CallbackInfo& info);
  Napi::Value Parent(const Napi::CallbackInfo& info);
  Napi::Value Flatten(const Napi::CallbackInfo& info);
  Napi::Value ListWatchers(const Napi::CallbackInfo& info);
  // snapshot.cc
  Napi::Value ListSnapshots(const Napi::CallbackInfo& info);
  Napi::Value CreateSnapshot(const Napi::CallbackInfo& info);
  Napi::Value RemoveSnapshot(const Napi::CallbackInfo& info);
  Napi::Value ListTrashedSnapshots(const Napi::CallbackInfo& info);
  Napi::Value RemoveSnapshotById(const Napi::CallbackInfo& info);
  Napi::Value ProtectSnapshot(const Napi::CallbackInfo& info);
  Napi::Value UnprotectSnapshot(const Napi::CallbackInfo& info);
  Napi::Value IsSnapshotProtected(const Napi::CallbackInfo& info);
  Napi::Value SnapshotExists(const Napi::CallbackInfo& info);
  Napi::Value RollbackSnapshot(const Napi::CallbackInfo& info);
  // diff.cc
  Napi::Value DiffRange(const Napi::CallbackInfo& info);
  Napi::Value HasExtents(const Napi::CallbackInfo& info);

  // Runs a call that only reports success or a negative errno; failure
  // messages are "<what> failed".
  Napi::Value Simple(const Napi::CallbackInfo& info, const char* what,
                     std::function<int(rbd_image_t)> call);

  // Runs call over [offset, length) (arguments 0 and 1) in pieces below
  // 2 GiB, after checking the range is inside the image.
  Napi::Value InPieces(const Napi::CallbackInfo& info, const char* what, const char* call_name,
                       std::function<int(rbd_image_t, uint64_t, uint64_t)> call);
};

}  // namespace rbdnative
