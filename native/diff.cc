// Diff iteration calls of ImageWrap: rbd_diff_iterate2 over one range per
// call, so the caller pages through an image of any size with memory bounded
// by the range.
#include <string>
#include <vector>

#include "diff.h"

#include "args.h"
#include "image.h"
#include "worker.h"

namespace rbdnative {

int CollectExtent(uint64_t offset, size_t length, int exists, void* arg) {
  auto* extents = static_cast<ExtentList*>(arg);
  extents->ranges.push_back(offset);
  extents->ranges.push_back(length);
  extents->exists.push_back(exists ? 1 : 0);
  return 0;
}

namespace {

struct ExtentProbe {
  bool found = false;
};

// Stops the iteration at the first allocated extent.
int StopAtData(uint64_t, size_t, int exists, void* arg) {
  if (!exists) return 0;
  static_cast<ExtentProbe*>(arg)->found = true;
  return -ECANCELED;
}

// Gives the vector's memory to a typed array without copying it.
template <typename T>
Napi::Value HandOver(Napi::Env env, std::vector<T>&& values, napi_typedarray_type type) {
  auto* owned = new std::vector<T>(std::move(values));
  size_t count = owned->size();
  // An external ArrayBuffer needs a non-null pointer even when empty.
  if (owned->empty()) owned->reserve(1);
  auto buffer = Napi::ArrayBuffer::New(
      env, owned->data(), count * sizeof(T),
      [](Napi::Env, void*, std::vector<T>* hint) { delete hint; }, owned);
  napi_value array;
  napi_status status = napi_create_typedarray(env, type, count, buffer, 0, &array);
  NAPI_THROW_IF_FAILED(env, status, Napi::Value());
  return Napi::Value(env, array);
}

Napi::Value DiffRange(ImageWrap& wrap, const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto handle = wrap.OpenHandle(env);
  std::optional<std::string> from = OptionalStringArg(info, 0, "from snapshot");
  uint64_t offset = U64Arg(info, 1, "offset");
  uint64_t length = U64Arg(info, 2, "length");
  bool include_parent = BoolArg(info, 3);
  bool whole_object = BoolArg(info, 4);
  return wrap.Run<ExtentList>(
      env,
      [handle, from, offset, length, include_parent, whole_object](
          ExtentList& out, std::string& message) {
        return WithHandle(handle, "image", message, [&](rbd_image_t image) {
          int rc = rbd_diff_iterate2(image, from ? from->c_str() : nullptr, offset,
                                     length, include_parent, whole_object,
                                     &CollectExtent, &out);
          if (rc == -ENOENT && from) {
            message = "from snapshot does not exist";
          } else if (rc < 0) {
            message = "rbd_diff_iterate2 failed";
          }
          return rc;
        });
      },
      [](Napi::Env env, ExtentList& extents) {
        Napi::Object result = Napi::Object::New(env);
        result.Set("ranges", HandOver(env, std::move(extents.ranges), napi_biguint64_array));
        result.Set("exists", HandOver(env, std::move(extents.exists), napi_uint8_array));
        return result;
      });
}

Napi::Value HasExtents(ImageWrap& wrap, const Napi::CallbackInfo& info) {
  auto handle = wrap.OpenHandle(info.Env());
  return wrap.Run<bool>(
      info.Env(),
      [handle](bool& out, std::string& message) {
        return WithHandle(handle, "image", message, [&](rbd_image_t image) {
          uint64_t size = 0;
          int rc = rbd_get_size(image, &size);
          if (rc < 0) {
            message = "rbd_get_size failed";
            return rc;
          }
          ExtentProbe probe;
          // Exact extents, not whole objects: an object that still exists
          // but was zeroed holds no data, as diff() says too. The object map
          // still lets librbd skip objects that do not exist.
          rc = rbd_diff_iterate2(image, nullptr, 0, size, true, false, &StopAtData,
                                 &probe);
          out = probe.found;
          if (rc == -ECANCELED && probe.found) return 0;
          if (rc < 0) message = "rbd_diff_iterate2 failed";
          return rc;
        });
      },
      [](Napi::Env env, bool& value) { return Napi::Boolean::New(env, value); });
}

}  // namespace

void ImageWrap::DefineDiffMethods(std::vector<PropertyDescriptor>& methods) {
  methods.insert(methods.end(),
                 {Method<DiffRange>("diffRange"),
                  Method<HasExtents>("hasExtents")});
}

}  // namespace rbdnative
