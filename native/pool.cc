// NativePool: the images of a pool, clones, and whole small objects.
#include "pool.h"

#include <rbd/librbd.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "args.h"
#include "errors.h"
#include "handles.h"
#include "worker.h"

namespace rbdnative {

namespace {

// Small metadata objects only: refuse to pull anything larger into memory.
constexpr uint64_t kMaxObjectRead = 64ull << 20;

struct CreateOptions {
  std::optional<uint64_t> features;
  std::optional<uint64_t> order;
  std::optional<uint64_t> stripe_unit;
  std::optional<uint64_t> stripe_count;
  std::optional<uint64_t> clone_format;
};

CreateOptions ParseCreateOptions(Napi::Env env, Napi::Value value) {
  CreateOptions options;
  if (!value.IsObject()) return options;
  Napi::Object object = value.As<Napi::Object>();
  auto read = [&](const char* key, std::optional<uint64_t>& out) {
    Napi::Value v = object.Get(key);
    if (!v.IsUndefined() && !v.IsNull()) out = U64Value(env, v, key);
  };
  read("features", options.features);
  read("order", options.order);
  read("stripeUnit", options.stripe_unit);
  read("stripeCount", options.stripe_count);
  read("cloneFormat", options.clone_format);
  return options;
}

// rbd_image_options_t owned for one call.
class ImageOptions {
 public:
  explicit ImageOptions(const CreateOptions& options) {
    rbd_image_options_create(&opts_);
    if (options.features)
      rbd_image_options_set_uint64(opts_, RBD_IMAGE_OPTION_FEATURES, *options.features);
    if (options.order)
      rbd_image_options_set_uint64(opts_, RBD_IMAGE_OPTION_ORDER, *options.order);
    if (options.stripe_unit)
      rbd_image_options_set_uint64(opts_, RBD_IMAGE_OPTION_STRIPE_UNIT, *options.stripe_unit);
    if (options.stripe_count)
      rbd_image_options_set_uint64(opts_, RBD_IMAGE_OPTION_STRIPE_COUNT, *options.stripe_count);
    if (options.clone_format)
      rbd_image_options_set_uint64(opts_, RBD_IMAGE_OPTION_CLONE_FORMAT, *options.clone_format);
  }
  ~ImageOptions() { rbd_image_options_destroy(opts_); }
  ImageOptions(const ImageOptions&) = delete;
  ImageOptions& operator=(const ImageOptions&) = delete;
  rbd_image_options_t get() const { return opts_; }

 private:
  rbd_image_options_t opts_;
};

struct ObjectData {
  char* data = nullptr;
  size_t size = 0;
};

}  // namespace

void PoolWrap::DefineMethods(std::vector<PropertyDescriptor>& methods) {
  methods.insert(methods.end(),
                 {InstanceMethod("listImages", &PoolWrap::ListImages),
                  InstanceMethod("createImage", &PoolWrap::CreateImage),
                  InstanceMethod("removeImage", &PoolWrap::RemoveImage),
                  InstanceMethod("renameImage", &PoolWrap::RenameImage),
                  InstanceMethod("openImage", &PoolWrap::OpenImage),
                  InstanceMethod("clone", &PoolWrap::Clone),
                  InstanceMethod("readObject", &PoolWrap::ReadObject),
                  InstanceMethod("writeObject", &PoolWrap::WriteObject),
                  InstanceMethod("removeObject", &PoolWrap::RemoveObject),
                  InstanceMethod("objectExists", &PoolWrap::ObjectExists),
                  InstanceMethod("openImageCount", &PoolWrap::OpenImageCount)});
  DefineObjectLockMethods(methods);
  DefineWatchMethods(methods);
}

Napi::Value PoolWrap::ListImages(const Napi::CallbackInfo& info) {
  auto handle = OpenHandle(info.Env());
  return Run<std::vector<std::string>>(
      info.Env(),
      [handle](std::vector<std::string>& out, std::string& message) {
        return WithHandle(handle, "pool", message, [&](rados_ioctx_t io) {
          std::vector<rbd_image_spec_t> specs(64);
          size_t count = specs.size();
          int rc;
          while ((rc = rbd_list2(io, specs.data(), &count)) == -ERANGE) {
            specs.resize(count);
          }
          if (rc < 0) {
            message = "rbd_list2 failed";
            return rc;
          }
          for (size_t i = 0; i < count; ++i) out.emplace_back(specs[i].name);
          rbd_image_spec_list_cleanup(specs.data(), count);
          return 0;
        });
      },
      [](Napi::Env env, std::vector<std::string>& names) {
        Napi::Array array = Napi::Array::New(env, names.size());
        for (size_t i = 0; i < names.size(); ++i) array.Set(i, names[i]);
        return array;
      });
}

Napi::Value PoolWrap::CreateImage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto handle = OpenHandle(env);
  std::string name = StringArg(info, 0, "image name");
  uint64_t size = U64Arg(info, 1, "size");
  CreateOptions options = ParseCreateOptions(env, info[2]);
  return Run(env,
             [handle, name, size, options](std::string& message) {
               return WithHandle(handle, "pool", message, [&](rados_ioctx_t io) {
                 ImageOptions opts(options);
                 int rc = rbd_create4(io, name.c_str(), size, opts.get());
                 if (rc < 0) message = "rbd_create4 failed";
                 return rc;
               });
             });
}

Napi::Value PoolWrap::RemoveImage(const Napi::CallbackInfo& info) {
  auto handle = OpenHandle(info.Env());
  std::string name = StringArg(info, 0, "image name");
  return Run(info.Env(),
             [handle, name](std::string& message) {
               return WithHandle(handle, "pool", message, [&](rados_ioctx_t io) {
                 int rc = rbd_remove(io, name.c_str());
                 if (rc == -ENOTEMPTY) {
                   message = "image has snapshots";
                 } else if (rc == -EBUSY) {
                   message = "image is still open or has watchers";
                 } else if (rc < 0) {
                   message = "rbd_remove failed";
                 }
                 return rc;
               });
             });
}

Napi::Value PoolWrap::RenameImage(const Napi::CallbackInfo& info) {
  auto handle = OpenHandle(info.Env());
  std::string from = StringArg(info, 0, "image name");
  std::string to = StringArg(info, 1, "new image name");
  return Run(info.Env(),
             [handle, from, to](std::string& message) {
               return WithHandle(handle, "pool", message, [&](rados_ioctx_t io) {
                 int rc = rbd_rename(io, from.c_str(), to.c_str());
                 if (rc == -EEXIST) {
                   message = "an image with the new name exists";
                 } else if (rc < 0) {
                   message = "rbd_rename failed";
                 }
                 return rc;
               });
             });
}

Napi::Value PoolWrap::OpenImage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto handle = OpenHandle(env);
  std::string name = StringArg(info, 0, "image name");
  std::optional<std::string> snapshot = OptionalStringArg(info, 1, "snapshot");
  bool read_only = BoolArg(info, 2);
  EnvState* state = state_;
  return Run<std::shared_ptr<ImageHandle>>(
      env,
      [handle, name, snapshot, read_only](std::shared_ptr<ImageHandle>& out,
                                          std::string& message) {
        return WithHandle(handle, "pool", message, [&](rados_ioctx_t io) {
          rbd_image_t image = nullptr;
          const char* snap = snapshot ? snapshot->c_str() : nullptr;
          int rc = read_only ? rbd_open_read_only(io, name.c_str(), &image, snap)
                             : rbd_open(io, name.c_str(), &image, snap);
          if (rc < 0) {
            message = rc == -ENOENT ? "image or snapshot does not exist"
                                    : "rbd_open failed";
            return rc;
          }
          out = std::make_shared<ImageHandle>(handle, image, !read_only && !snapshot);
          handle->AddChild(out);
          return 0;
        });
      },
      [state](Napi::Env, std::shared_ptr<ImageHandle>& image) {
        return NewWrapper(state->image_ctor, image);
      });
}

Napi::Value PoolWrap::Clone(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto child_pool = OpenHandle(env);
  auto parent_pool = FromValue(env, info[0])->OpenHandle(env);
  std::string parent_name = StringArg(info, 1, "parent image name");
  std::string parent_snap = StringArg(info, 2, "parent snapshot");
  std::string child_name = StringArg(info, 3, "clone name");
  CreateOptions options = ParseCreateOptions(env, info[4]);
  if (parent_pool->cluster() != child_pool->cluster()) {
    ThrowInvalid(env, "a clone and its parent must be in the same cluster");
  }
  return Run(
      env,
      [child_pool, parent_pool, parent_name, parent_snap, child_name,
       options](std::string& message) {
        auto clone = [&](rados_ioctx_t pio, rados_ioctx_t cio) {
          ImageOptions opts(options);
          int rc = rbd_clone3(pio, parent_name.c_str(), parent_snap.c_str(),
                              cio, child_name.c_str(), opts.get());
          if (rc == -EINVAL) {
            message = "rbd_clone3 refused (is the parent snapshot protected "
                      "and does the parent have the layering feature?)";
          } else if (rc < 0) {
            message = "rbd_clone3 failed";
          }
          return rc;
        };
        // One shared lock per handle: taking the same one twice on a thread
        // is undefined behaviour.
        if (parent_pool == child_pool) {
          return WithHandle(child_pool, "pool", message,
                            [&](rados_ioctx_t io) { return clone(io, io); });
        }
        return WithHandle(parent_pool, "parent pool", message, [&](rados_ioctx_t pio) {
          return WithHandle(child_pool, "pool", message,
                            [&](rados_ioctx_t cio) { return clone(pio, cio); });
        });
      });
}

Napi::Value PoolWrap::ReadObject(const Napi::CallbackInfo& info) {
  auto handle = OpenHandle(info.Env());
  std::string oid = StringArg(info, 0, "object name");
  return Run<ObjectData>(
      info.Env(),
      [handle, oid](ObjectData& out, std::string& message) {
        return WithHandle(handle, "pool", message, [&](rados_ioctx_t io) {
          uint64_t size = 0;
          time_t mtime = 0;
          int rc = rados_stat(io, oid.c_str(), &size, &mtime);
          if (rc < 0) {
            message = rc == -ENOENT ? "object does not exist" : "rados_stat failed";
            return rc;
          }
          if (size > kMaxObjectRead) {
            message = "object is " + std::to_string(size) +
                      " bytes, more than readObject takes";
            return -EFBIG;
          }
          // malloc'd here and handed to JavaScript as the Buffer's own
          // memory: read once, never copied.
          out.data = static_cast<char*>(std::malloc(size ? size : 1));
          if (!out.data) return -ENOMEM;
          size_t done = 0;
          while (done < size) {
            rc = rados_read(io, oid.c_str(), out.data + done, size - done, done);
            if (rc < 0) {
              message = "rados_read failed";
              break;
            }
            if (rc == 0) break;  // shrank since the stat
            done += static_cast<size_t>(rc);
          }
          if (rc < 0) {
            std::free(out.data);
            out.data = nullptr;
            return rc;
          }
          out.size = done;
          return 0;
        });
      },
      [](Napi::Env env, ObjectData& object) {
        char* data = object.data;
        object.data = nullptr;
        return Napi::Buffer<char>::New(env, data, object.size,
                                       [](Napi::Env, char* p) { std::free(p); });
      });
}

Napi::Value PoolWrap::WriteObject(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto handle = OpenHandle(env);
  std::string oid = StringArg(info, 0, "object name");
  if (!info[1].IsBuffer()) ThrowInvalid(env, "object data must be a Buffer");
  auto buffer = info[1].As<Napi::Buffer<char>>();
  bool exclusive = BoolArg(info, 2);
  // The worker reads straight from the caller's Buffer; the reference keeps
  // it alive until the write settles.
  auto keep = std::make_shared<Napi::ObjectReference>(Napi::Persistent(buffer.As<Napi::Object>()));
  const char* data = buffer.Data();
  size_t length = buffer.Length();
  return Run(env,
             [handle, oid, keep, data, length, exclusive](std::string& message) {
               return WithHandle(handle, "pool", message, [&](rados_ioctx_t io) {
                 rados_write_op_t op = rados_create_write_op();
                 if (exclusive) {
                   rados_write_op_create(op, LIBRADOS_CREATE_EXCLUSIVE, nullptr);
                 }
                 rados_write_op_write_full(op, data, length);
                 int rc = rados_write_op_operate(op, io, oid.c_str(), nullptr, 0);
                 rados_release_write_op(op);
                 if (rc == -EEXIST) {
                   message = "object already exists";
                 } else if (rc < 0) {
                   message = "rados_write_op_operate failed";
                 }
                 return rc;
               });
             });
}

Napi::Value PoolWrap::RemoveObject(const Napi::CallbackInfo& info) {
  auto handle = OpenHandle(info.Env());
  std::string oid = StringArg(info, 0, "object name");
  return Run(info.Env(),
             [handle, oid](std::string& message) {
               return WithHandle(handle, "pool", message, [&](rados_ioctx_t io) {
                 int rc = rados_remove(io, oid.c_str());
                 if (rc == -ENOENT) {
                   message = "object does not exist";
                 } else if (rc < 0) {
                   message = "rados_remove failed";
                 }
                 return rc;
               });
             });
}

Napi::Value PoolWrap::ObjectExists(const Napi::CallbackInfo& info) {
  auto handle = OpenHandle(info.Env());
  std::string oid = StringArg(info, 0, "object name");
  return Run<bool>(
      info.Env(),
      [handle, oid](bool& out, std::string& message) {
        return WithHandle(handle, "pool", message, [&](rados_ioctx_t io) {
          uint64_t size = 0;
          time_t mtime = 0;
          int rc = rados_stat(io, oid.c_str(), &size, &mtime);
          if (rc == -ENOENT) {
            out = false;
            return 0;
          }
          if (rc < 0) {
            message = "rados_stat failed";
            return rc;
          }
          out = true;
          return 0;
        });
      },
      [](Napi::Env env, bool& exists) { return Napi::Boolean::New(env, exists); });
}

}  // namespace rbdnative
