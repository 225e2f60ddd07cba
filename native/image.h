// An open RBD image (rbd_image_t), at its head or at a snapshot. Snapshot
// calls live in snapshot.cc and diff iteration in diff.cc.
#pragma once

#include <napi.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "env_state.h"
#include "handles.h"
#include "wrap_base.h"

namespace rbdnative {

// librbd clips I/O that crosses the end of the image instead of failing it,
// which would turn a caller's mistake into silently missing data: every
// read and write is checked first (EINVAL, message set).
int CheckImageRange(rbd_image_t image, uint64_t offset, uint64_t length,
                    const char* what, std::string& message);

class ImageWrap : public WrapBase<ImageWrap, ImageHandle> {
 public:
  static constexpr const char* kClassName = "NativeImage";
  static constexpr const char* kWhat = "image";
  static constexpr const char* kMadeBy = "openImage()";
  static constexpr Napi::FunctionReference EnvState::*kConstructor = &EnvState::image_ctor;
  static void DefineMethods(std::vector<PropertyDescriptor>& methods);

  explicit ImageWrap(const Napi::CallbackInfo& info) : WrapBase(info) {}

  // Runs a call that only reports success or a negative errno; failure
  // messages are "<what> failed".
  Napi::Value Simple(const Napi::CallbackInfo& info, const char* what,
                     std::function<int(rbd_image_t)> call);

 private:
  Napi::Value Stat(const Napi::CallbackInfo& info);
  Napi::Value Resize(const Napi::CallbackInfo& info);
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
  // Each adds the methods its file implements.
  static void DefineAioMethods(std::vector<PropertyDescriptor>& methods);       // aio_io.cc
  static void DefineSnapshotMethods(std::vector<PropertyDescriptor>& methods);  // snapshot.cc
  static void DefineDiffMethods(std::vector<PropertyDescriptor>& methods);      // diff.cc

  // Runs call over [offset, length) (arguments 0 and 1) in pieces below
  // 2 GiB, after checking the range is inside the image.
  Napi::Value InPieces(const Napi::CallbackInfo& info, const char* what, const char* call_name,
                       std::function<int(rbd_image_t, uint64_t, uint64_t)> call);
};

}  // namespace rbdnative
