// NativeImage: I/O, metadata, advisory header locks, parent and flatten of an open image.
#include "image.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "args.h"
#include "cancel.h"
#include "env_state.h"
#include "errors.h"
#include "worker.h"

namespace rbdnative {

namespace {

// rbd_discard reports the discarded length as an int, so one call must stay
// below 2 GiB.
constexpr uint64_t kDiscardPiece = 1ull << 30;

struct ImageStat {
  rbd_image_info_t info{};
  uint64_t features = 0;
  uint64_t stripe_unit = 0;
  uint64_t stripe_count = 0;
  struct timespec created {};
};

struct ParentInfo {
  bool has_parent = false;
  std::string pool;
  std::string pool_namespace;
  std::string image;
  std::string image_id;
  std::string snapshot;
  uint64_t snapshot_id = 0;
  bool trash = false;
};

struct FlattenProgress {
  uint64_t done;
  uint64_t total;
};

// rbd_flatten_with_progress, reporting progress to a JavaScript callback
// (coalesced: only the latest value is delivered) and stopping when the
// cancel flag is raised.
class FlattenWorker : public Napi::AsyncProgressWorker<FlattenProgress> {
 public:
  FlattenWorker(Napi::Env env, Napi::Object owner, int* inflight,
                std::shared_ptr<ImageHandle> handle, Napi::Value on_progress,
                CancelFlag cancel)
      : Napi::AsyncProgressWorker<FlattenProgress>(env, "rbd-backup:flatten"),
        deferred_(Napi::Promise::Deferred::New(env)),
        guard_(owner, inflight),
        handle_(std::move(handle)),
        cancel_(std::move(cancel)) {
    if (on_progress.IsFunction()) {
      on_progress_ = Napi::Persistent(on_progress.As<Napi::Function>());
    }
  }

  Napi::Promise Start() {
    Queue();
    return deferred_.Promise();
  }

 protected:
  void Execute(const ExecutionProgress& progress) override {
    if (cancel_->load()) {
      Fail(ECANCELED, "flatten cancelled");
      return;
    }
    progress_ = &progress;
    int rc = WithHandle(handle_, "image", message_, [&](rbd_image_t image) {
      return rbd_flatten_with_progress(image, &FlattenWorker::OnFlattenProgress, this);
    });
    progress_ = nullptr;
    if (rc < 0) {
      if (cancel_->load()) {
        Fail(ECANCELED, "flatten cancelled");
      } else {
        Fail(-rc, message_.empty() ? "rbd_flatten_with_progress failed" : message_);
      }
    }
  }

  void OnProgress(const FlattenProgress* data, size_t count) override {
    if (count == 0 || on_progress_.IsEmpty()) return;
    Napi::Env env = Env();
    // The TypeScript wrapper catches its callback's errors; this only keeps
    // a stray exception from unwinding into Node-API.
    try {
      on_progress_.Call({Napi::Number::New(env, static_cast<double>(data->done)),
                         Napi::Number::New(env, static_cast<double>(data->total))});
    } catch (const Napi::Error&) {
    }
  }

  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override {
    deferred_.Reject(MakeError(Env(), err_ ? err_ : EIO, e.Message()).Value());
  }

 private:
  static int OnFlattenProgress(uint64_t done, uint64_t total, void* arg) {
    auto* self = static_cast<FlattenWorker*>(arg);
    FlattenProgress p{done, total};
    self->progress_->Send(&p, 1);
    // A negative return asks librbd to stop the flatten.
    return self->cancel_->load() ? -ECANCELED : 0;
  }

  void Fail(int err, const std::string& message) {
    err_ = err;
    SetError(message);
  }

  Napi::Promise::Deferred deferred_;
  InflightGuard guard_;
  std::shared_ptr<ImageHandle> handle_;
  CancelFlag cancel_;
  Napi::FunctionReference on_progress_;
  const ExecutionProgress* progress_ = nullptr;
  std::string message_;
  int err_ = 0;
};

}  // namespace

int CheckImageRange(rbd_image_t image, uint64_t offset, uint64_t length,
                    const char* what, std::string& message) {
  uint64_t size = 0;
  int rc = rbd_get_size(image, &size);
  if (rc < 0) {
    message = "rbd_get_size failed";
    return rc;
  }
  if (offset > size || length > size - offset) {
    message = std::string(what) + " of " + std::to_string(length) +
              " bytes at offset " + std::to_string(offset) +
              " passes the end of the image (size " + std::to_string(size) + ")";
    return -EINVAL;
  }
  return 0;
}

void ImageWrap::DefineMethods(std::vector<PropertyDescriptor>& methods) {
  methods.insert(methods.end(),
                 {InstanceMethod("stat", &ImageWrap::Stat),
                  InstanceMethod("resize", &ImageWrap::Resize),
                  InstanceMethod("writeZeroes", &ImageWrap::WriteZeroes),
                  InstanceMethod("discard", &ImageWrap::Discard),
                  InstanceMethod("flush", &ImageWrap::Flush),
                  InstanceMethod("getMetadata", &ImageWrap::GetMetadata),
                  InstanceMethod("setMetadata", &ImageWrap::SetMetadata),
                  InstanceMethod("removeMetadata", &ImageWrap::RemoveMetadata),
                  InstanceMethod("listMetadata", &ImageWrap::ListMetadata),
                  InstanceMethod("lock", &ImageWrap::Lock),
                  InstanceMethod("unlock", &ImageWrap::Unlock),
                  InstanceMethod("parent", &ImageWrap::Parent),
                  InstanceMethod("flatten", &ImageWrap::Flatten),
                  InstanceMethod("listWatchers", &ImageWrap::ListWatchers)});
  DefineAioMethods(methods);
  DefineSnapshotMethods(methods);
  DefineDiffMethods(methods);
}

Napi::Value ImageWrap::Simple(const Napi::CallbackInfo& info, const char* what,
                              std::function<int(rbd_image_t)> call) {
  auto handle = OpenHandle(info.Env());
  std::string name = what;
  return Run(info.Env(),
             [handle, name, call = std::move(call)](std::string& message) {
               return WithHandle(handle, "image", message, [&](rbd_image_t image) {
                 int rc = call(image);
                 if (rc < 0 && message.empty()) message = name + " failed";
                 return rc;
               });
             });
}

// rbd_watchers_list: the clients watching the image header, which every
// client that opened the image for writing does (a mapped or attached
// volume has one). The watcher array grows until it holds them all.
Napi::Value ImageWrap::ListWatchers(const Napi::CallbackInfo& info) {
  auto handle = OpenHandle(info.Env());
  struct Watcher {
    std::string address;
    int64_t id;
    uint64_t cookie;
  };
  using Result = std::vector<Watcher>;
  return Run<Result>(
      info.Env(),
      [handle](Result& out, std::string& message) {
        return WithHandle(handle, "image", message, [&](rbd_image_t image) {
          std::vector<rbd_image_watcher_t> watchers(8);
          for (;;) {
            size_t count = watchers.size();
            int rc = rbd_watchers_list(image, watchers.data(), &count);
            if (rc == -ERANGE && count > watchers.size()) {
              watchers.resize(count);
              continue;
            }
            if (rc < 0) {
              message = "rbd_watchers_list failed";
              return rc;
            }
            for (size_t i = 0; i < count; ++i) {
              out.push_back({watchers[i].addr ? watchers[i].addr : "", watchers[i].id, watchers[i].cookie});
            }
            rbd_watchers_list_cleanup(watchers.data(), count);
            return 0;
          }
        });
      },
      [](Napi::Env env, Result& watchers) {
        Napi::Array array = Napi::Array::New(env, watchers.size());
        for (size_t i = 0; i < watchers.size(); ++i) {
          Napi::Object w = Napi::Object::New(env);
          w.Set("address", watchers[i].address);
          w.Set("id", Napi::BigInt::New(env, watchers[i].id));
          w.Set("cookie", BigU64(env, watchers[i].cookie));
          array.Set(i, w);
        }
        return array;
      });
}

Napi::Value ImageWrap::Stat(const Napi::CallbackInfo& info) {
  auto handle = OpenHandle(info.Env());
  return Run<ImageStat>(
      info.Env(),
      [handle](ImageStat& out, std::string& message) {
        return WithHandle(handle, "image", message, [&](rbd_image_t image) {
          int rc = rbd_stat(image, &out.info, sizeof(out.info));
          if (rc >= 0) rc = rbd_get_features(image, &out.features);
          if (rc >= 0) rc = rbd_get_stripe_unit(image, &out.stripe_unit);
          if (rc >= 0) rc = rbd_get_stripe_count(image, &out.stripe_count);
          if (rc >= 0) rc = rbd_get_create_timestamp(image, &out.created);
          if (rc < 0) message = "rbd_stat failed";
          return rc;
        });
      },
      [](Napi::Env env, ImageStat& s) {
        Napi::Object result = Napi::Object::New(env);
        result.Set("size", BigU64(env, s.info.size));
        result.Set("objectSize", BigU64(env, s.info.obj_size));
        result.Set("objectCount", BigU64(env, s.info.num_objs));
        result.Set("order", Napi::Number::New(env, s.info.order));
        result.Set("blockNamePrefix", Napi::String::New(env, s.info.block_name_prefix));
        result.Set("features", BigU64(env, s.features));
        result.Set("stripeUnit", BigU64(env, s.stripe_unit));
        result.Set("stripeCount", BigU64(env, s.stripe_count));
        result.Set("createdAtMs", Napi::Number::New(env, static_cast<double>(s.created.tv_sec) * 1000.0 +
                                                             static_cast<double>(s.created.tv_nsec) / 1e6));
        return result;
      });
}

Napi::Value ImageWrap::Resize(const Napi::CallbackInfo& info) {
  uint64_t size = U64Arg(info, 0, "size");
  return Simple(info, "rbd_resize",
                [size](rbd_image_t image) { return rbd_resize(image, size); });
}

Napi::Value ImageWrap::InPieces(const Napi::CallbackInfo& info, const char* what,
                                const char* call_name,
                                std::function<int(rbd_image_t, uint64_t, uint64_t)> call) {
  uint64_t offset = U64Arg(info, 0, "offset");
  uint64_t length = U64Arg(info, 1, "length");
  auto handle = OpenHandle(info.Env());
  std::string name = what;
  std::string failed = std::string(call_name) + " failed";
  return Run(info.Env(),
             [handle, offset, length, name, failed, call = std::move(call)](std::string& message) {
               return WithHandle(handle, "image", message, [&](rbd_image_t image) {
                 int rc = CheckImageRange(image, offset, length, name.c_str(), message);
                 if (rc < 0) return rc;
                 for (uint64_t done = 0; done < length;) {
                   uint64_t piece = std::min(length - done, kDiscardPiece);
                   rc = call(image, offset + done, piece);
                   if (rc < 0) {
                     message = failed;
                     return rc;
                   }
                   done += piece;
                 }
                 return 0;
               });
             });
}

Napi::Value ImageWrap::WriteZeroes(const Napi::CallbackInfo& info) {
  return InPieces(info, "writeZeroes", "rbd_write_zeroes",
                  [](rbd_image_t image, uint64_t offset, uint64_t length) {
                    ssize_t n = rbd_write_zeroes(image, offset, length, 0, 0);
                    return n < 0 ? static_cast<int>(n) : 0;
                  });
}

Napi::Value ImageWrap::Discard(const Napi::CallbackInfo& info) {
  return InPieces(info, "discard", "rbd_discard", [](rbd_image_t image, uint64_t offset, uint64_t length) {
    return rbd_discard(image, offset, length);
  });
}

Napi::Value ImageWrap::Flush(const Napi::CallbackInfo& info) {
  return Simple(info, "rbd_flush", [](rbd_image_t image) { return rbd_flush(image); });
}

// rbd_metadata_list: every key and value, each NUL-terminated in its buffer.
// librbd reports the lengths it needs (and -ERANGE) when a buffer is short;
// it compares the values buffer with the keys' total too, so both grow to
// the larger need.
Napi::Value ImageWrap::ListMetadata(const Napi::CallbackInfo& info) {
  auto handle = OpenHandle(info.Env());
  using Result = std::vector<std::pair<std::string, std::string>>;
  return Run<Result>(
      info.Env(),
      [handle](Result& out, std::string& message) {
        return WithHandle(handle, "image", message, [&](rbd_image_t image) {
          std::vector<char> keys(4096), values(4096);
          for (;;) {
            size_t keys_length = keys.size(), values_length = values.size();
            int rc = rbd_metadata_list(image, "", 0, keys.data(), &keys_length, values.data(), &values_length);
            if (rc == -ERANGE) {
              size_t need = std::max(keys_length, values_length);
              keys.resize(std::max(need, keys.size() * 2));
              values.resize(keys.size());
              continue;
            }
            if (rc < 0) {
              message = "rbd_metadata_list failed";
              return rc;
            }
            size_t k = 0, v = 0;
            while (k < keys_length && v < values_length) {
              std::string key(keys.data() + k, strnlen(keys.data() + k, keys_length - k));
              std::string value(values.data() + v, strnlen(values.data() + v, values_length - v));
              k += key.size() + 1;
              v += value.size() + 1;
              out.emplace_back(std::move(key), std::move(value));
            }
            return 0;
          }
        });
      },
      [](Napi::Env env, Result& pairs) {
        Napi::Array array = Napi::Array::New(env, pairs.size());
        for (size_t i = 0; i < pairs.size(); ++i) {
          Napi::Array pair = Napi::Array::New(env, 2);
          pair.Set(uint32_t{0}, pairs[i].first);
          pair.Set(uint32_t{1}, pairs[i].second);
          array.Set(i, pair);
        }
        return array;
      });
}

Napi::Value ImageWrap::GetMetadata(const Napi::CallbackInfo& info) {
  auto handle = OpenHandle(info.Env());
  std::string key = StringArg(info, 0, "metadata key");
  using Result = std::optional<std::string>;
  return Run<Result>(
      info.Env(),
      [handle, key](Result& out, std::string& message) {
        return WithHandle(handle, "image", message, [&](rbd_image_t image) {
          std::vector<char> value(256);
          size_t length = value.size();
          int rc;
          while ((rc = rbd_metadata_get(image, key.c_str(), value.data(), &length)) ==
                 -ERANGE) {
            value.resize(length);
          }
          if (rc == -ENOENT) return 0;
          if (rc < 0) {
            message = "rbd_metadata_get failed";
            return rc;
          }
          // On success librbd leaves length as the buffer size; the value
          // is NUL-terminated inside it.
          out = std::string(value.data(), strnlen(value.data(), value.size()));
          return 0;
        });
      },
      [](Napi::Env env, Result& value) -> Napi::Value {
        if (!value) return env.Undefined();
        return Napi::String::New(env, *value);
      });
}

Napi::Value ImageWrap::SetMetadata(const Napi::CallbackInfo& info) {
  std::string key = StringArg(info, 0, "metadata key");
  std::string value = StringArg(info, 1, "metadata value");
  return Simple(info, "rbd_metadata_set", [key, value](rbd_image_t image) {
    return rbd_metadata_set(image, key.c_str(), value.c_str());
  });
}

Napi::Value ImageWrap::RemoveMetadata(const Napi::CallbackInfo& info) {
  std::string key = StringArg(info, 0, "metadata key");
  return Simple(info, "rbd_metadata_remove", [key](rbd_image_t image) {
    return rbd_metadata_remove(image, key.c_str());
  });
}

// The advisory lock lives on the image's header object under a name of our
// own, not under librbd's "rbd_lock": a writer's automatic exclusive-lock
// takes that one, and an advisory lock there stalls every write.
constexpr const char* kLockName = "rbd-backup";

int WithHeader(const std::shared_ptr<ImageHandle>& handle, std::string& message,
               const std::function<int(rados_ioctx_t, const std::string&)>& call) {
  return WithHandle(handle, "image", message, [&](rbd_image_t image) {
    char id[64] = {0};
    int rc = rbd_get_id(image, id, sizeof(id));
    if (rc < 0) {
      message = "rbd_get_id failed (format 1 images have no header id)";
      return rc;
    }
    return WithHandle(handle->pool(), "pool", message, [&](rados_ioctx_t io) {
      return call(io, std::string("rbd_header.") + id);
    });
  });
}

Napi::Value ImageWrap::Lock(const Napi::CallbackInfo& info) {
  auto handle = OpenHandle(info.Env());
  std::string cookie = StringArg(info, 0, "lock cookie");
  return Run(info.Env(),
             [handle, cookie](std::string& message) {
               return WithHeader(handle, message, [&](rados_ioctx_t io, const std::string& oid) {
                 int rc = rados_lock_exclusive(io, oid.c_str(), kLockName, cookie.c_str(),
                                               "rbd-backup image lock", nullptr, 0);
                 if (rc == -EBUSY) {
                   message = "image is locked by another client or cookie";
                 } else if (rc == -EEXIST) {
                   message = "this client already holds the lock with this cookie";
                 } else if (rc < 0) {
                   message = "rados_lock_exclusive failed";
                 }
                 return rc;
               });
             });
}

Napi::Value ImageWrap::Unlock(const Napi::CallbackInfo& info) {
  auto handle = OpenHandle(info.Env());
  std::string cookie = StringArg(info, 0, "lock cookie");
  return Run(info.Env(),
             [handle, cookie](std::string& message) {
               return WithHeader(handle, message, [&](rados_ioctx_t io, const std::string& oid) {
                 int rc = rados_unlock(io, oid.c_str(), kLockName, cookie.c_str());
                 if (rc == -ENOENT) {
                   message = "this client holds no lock with this cookie";
                 } else if (rc < 0) {
                   message = "rados_unlock failed";
                 }
                 return rc;
               });
             });
}

Napi::Value ImageWrap::Parent(const Napi::CallbackInfo& info) {
  auto handle = OpenHandle(info.Env());
  return Run<ParentInfo>(
      info.Env(),
      [handle](ParentInfo& out, std::string& message) {
        return WithHandle(handle, "image", message, [&](rbd_image_t image) {
          rbd_linked_image_spec_t parent{};
          rbd_snap_spec_t snap{};
          int rc = rbd_get_parent(image, &parent, &snap);
          if (rc == -ENOENT) return 0;
          if (rc < 0) {
            message = "rbd_get_parent failed";
            return rc;
          }
          out.has_parent = true;
          out.pool = parent.pool_name;
          out.pool_namespace = parent.pool_namespace;
          out.image = parent.image_name;
          out.image_id = parent.image_id;
          out.trash = parent.trash;
          out.snapshot = snap.name;
          out.snapshot_id = snap.id;
          rbd_linked_image_spec_cleanup(&parent);
          rbd_snap_spec_cleanup(&snap);
          return 0;
        });
      },
      [](Napi::Env env, ParentInfo& p) -> Napi::Value {
        if (!p.has_parent) return env.Null();
        Napi::Object result = Napi::Object::New(env);
        result.Set("pool", p.pool);
        result.Set("namespace", p.pool_namespace);
        result.Set("image", p.image);
        result.Set("imageId", p.image_id);
        result.Set("snapshot", p.snapshot);
        result.Set("snapshotId", BigU64(env, p.snapshot_id));
        result.Set("trash", p.trash);
        return result;
      });
}

Napi::Value ImageWrap::Flatten(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto handle = OpenHandle(env);
  CancelFlag cancel = CancelToken::FlagOf(info[1]);
  // Registered like a transfer, so closing everything (at exit, at env
  // teardown) cancels a running flatten instead of waiting for all of it.
  EnvState::Get(env)->AddJob(cancel);
  auto* worker = new FlattenWorker(env, Value(), Inflight(), handle, info[0], cancel);
  return worker->Start();
}

}  // namespace rbdnative
