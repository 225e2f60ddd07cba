// Snapshot calls of ImageWrap: rbd_snap_*.
#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "args.h"
#include "image.h"
#include "worker.h"

namespace rbdnative {

namespace {

struct SnapshotInfo {
  uint64_t id;
  uint64_t size;
  std::string name;
  int64_t seconds;
  int64_t nanoseconds;
  bool is_protected;
};

// rbd_snap_list (the array grown until it holds them all), calling visit
// for each snapshot in the namespace wanted. rbd_snap_list lists every
// namespace: a removal that was cut short, or one whose clones still exist,
// leaves its snapshot in the trash under a UUID name. Stops at visit's
// first failure (a negative code, with message set).
int VisitSnapshots(rbd_image_t image, rbd_snap_namespace_type_t wanted, std::string& message,
                   const std::function<int(const rbd_snap_info_t&)>& visit) {
  std::vector<rbd_snap_info_t> snaps(16);
  int max = static_cast<int>(snaps.size());
  int rc;
  while ((rc = rbd_snap_list(image, snaps.data(), &max)) == -ERANGE) {
    snaps.resize(max);
  }
  if (rc < 0) {
    message = "rbd_snap_list failed";
    return rc;
  }
  int count = rc;
  rc = 0;
  for (int i = 0; i < count; ++i) {
    rbd_snap_namespace_type_t type = RBD_SNAP_NAMESPACE_TYPE_USER;
    rc = rbd_snap_get_namespace_type(image, snaps[i].id, &type);
    if (rc < 0) {
      message = "rbd_snap_get_namespace_type failed";
      break;
    }
    if (type != wanted) continue;
    rc = visit(snaps[i]);
    if (rc < 0) break;
  }
  rbd_snap_list_end(snaps.data());
  return rc < 0 ? rc : 0;
}

Napi::Value ListSnapshots(ImageWrap& wrap, const Napi::CallbackInfo& info) {
  auto handle = wrap.OpenHandle(info.Env());
  using Result = std::vector<SnapshotInfo>;
  return wrap.Run<Result>(
      info.Env(),
      [handle](Result& out, std::string& message) {
        return WithHandle(handle, "image", message, [&](rbd_image_t image) {
          // Like `rbd snap ls`, the user's snapshots only (rbd_snap_is_protected
          // cannot find a trashed one by its name).
          return VisitSnapshots(image, RBD_SNAP_NAMESPACE_TYPE_USER, message, [&](const rbd_snap_info_t& snap) {
            SnapshotInfo s{snap.id, snap.size, snap.name, 0, 0, false};
            struct timespec ts {};
            int rc = rbd_snap_get_timestamp(image, s.id, &ts);
            if (rc < 0) {
              message = "rbd_snap_get_timestamp failed";
              return rc;
            }
            s.seconds = ts.tv_sec;
            s.nanoseconds = ts.tv_nsec;
            int is_protected = 0;
            rc = rbd_snap_is_protected(image, s.name.c_str(), &is_protected);
            if (rc < 0) {
              message = "rbd_snap_is_protected failed";
              return rc;
            }
            s.is_protected = is_protected != 0;
            out.push_back(std::move(s));
            return 0;
          });
        });
      },
      [](Napi::Env env, Result& snaps) {
        Napi::Array array = Napi::Array::New(env, snaps.size());
        for (size_t i = 0; i < snaps.size(); ++i) {
          Napi::Object s = Napi::Object::New(env);
          s.Set("id", BigU64(env, snaps[i].id));
          s.Set("name", snaps[i].name);
          s.Set("size", BigU64(env, snaps[i].size));
          s.Set("timestampMs",
                Napi::Number::New(env, static_cast<double>(snaps[i].seconds) * 1000.0 +
                                           static_cast<double>(snaps[i].nanoseconds) / 1e6));
          s.Set("protected", snaps[i].is_protected);
          array.Set(i, s);
        }
        return array;
      });
}

// The snapshots in the trash namespace, each with the name it had: librbd
// moves a snapshot there when it is removed while a clone of it lives, and
// one whose removal was cut short (an OSD fault) stays there for good.
Napi::Value ListTrashedSnapshots(ImageWrap& wrap, const Napi::CallbackInfo& info) {
  auto handle = wrap.OpenHandle(info.Env());
  struct Trashed {
    uint64_t id;
    std::string name;
    std::string original_name;
  };
  using Result = std::vector<Trashed>;
  return wrap.Run<Result>(
      info.Env(),
      [handle](Result& out, std::string& message) {
        return WithHandle(handle, "image", message, [&](rbd_image_t image) {
          return VisitSnapshots(image, RBD_SNAP_NAMESPACE_TYPE_TRASH, message, [&](const rbd_snap_info_t& snap) {
            // Snapshot names are at most 255 bytes.
            std::vector<char> original(512, '\0');
            int rc = rbd_snap_get_trash_namespace(image, snap.id, original.data(), original.size() - 1);
            if (rc < 0) {
              message = "rbd_snap_get_trash_namespace failed";
              return rc;
            }
            out.push_back({snap.id, snap.name, original.data()});
            return 0;
          });
        });
      },
      [](Napi::Env env, Result& trashed) {
        Napi::Array array = Napi::Array::New(env, trashed.size());
        for (size_t i = 0; i < trashed.size(); ++i) {
          Napi::Object s = Napi::Object::New(env);
          s.Set("id", BigU64(env, trashed[i].id));
          s.Set("name", trashed[i].name);
          s.Set("originalName", trashed[i].original_name);
          array.Set(i, s);
        }
        return array;
      });
}

// rbd_list_children3: the clones of the snapshot the handle is open at
// (those in the trash too), the array grown until it holds them all.
Napi::Value ListChildren(ImageWrap& wrap, const Napi::CallbackInfo& info) {
  auto handle = wrap.OpenHandle(info.Env());
  struct Child {
    std::string pool;
    std::string pool_namespace;
    std::string image;
    std::string image_id;
    bool trash;
  };
  using Result = std::vector<Child>;
  return wrap.Run<Result>(
      info.Env(),
      [handle](Result& out, std::string& message) {
        return WithHandle(handle, "image", message, [&](rbd_image_t image) {
          std::vector<rbd_linked_image_spec_t> children(8);
          for (;;) {
            size_t count = children.size();
            int rc = rbd_list_children3(image, children.data(), &count);
            if (rc == -ERANGE) {
              children.resize(std::max(count, children.size() * 2));
              continue;
            }
            if (rc < 0) {
              message = "rbd_list_children3 failed";
              return rc;
            }
            for (size_t i = 0; i < count; ++i) {
              const rbd_linked_image_spec_t& c = children[i];
              out.push_back({c.pool_name, c.pool_namespace, c.image_name, c.image_id, c.trash});
            }
            rbd_linked_image_spec_list_cleanup(children.data(), count);
            return 0;
          }
        });
      },
      [](Napi::Env env, Result& children) {
        Napi::Array array = Napi::Array::New(env, children.size());
        for (size_t i = 0; i < children.size(); ++i) {
          Napi::Object c = Napi::Object::New(env);
          c.Set("pool", children[i].pool);
          c.Set("namespace", children[i].pool_namespace);
          c.Set("image", children[i].image);
          c.Set("imageId", children[i].image_id);
          c.Set("trash", children[i].trash);
          array.Set(i, c);
        }
        return array;
      });
}

Napi::Value RemoveSnapshotById(ImageWrap& wrap, const Napi::CallbackInfo& info) {
  uint64_t id = U64Arg(info, 0, "snapshot id");
  return wrap.Simple(info, "rbd_snap_remove_by_id", [id](rbd_image_t image) {
    return rbd_snap_remove_by_id(image, id);
  });
}

Napi::Value CreateSnapshot(ImageWrap& wrap, const Napi::CallbackInfo& info) {
  std::string name = StringArg(info, 0, "snapshot name");
  // Never RBD_SNAP_CREATE_SKIP_QUIESCE: Pacific's librbd then reports
  // success when the snapshot's header write timed out (lib/ceph/image.ts).
  return wrap.Simple(info, "rbd_snap_create2", [name](rbd_image_t image) {
    // librbd calls the progress callback without checking it for null.
    return rbd_snap_create2(image, name.c_str(), 0, [](uint64_t, uint64_t, void*) { return 0; }, nullptr);
  });
}

Napi::Value RemoveSnapshot(ImageWrap& wrap, const Napi::CallbackInfo& info) {
  std::string name = StringArg(info, 0, "snapshot name");
  return wrap.Simple(info, "rbd_snap_remove", [name](rbd_image_t image) {
    return rbd_snap_remove(image, name.c_str());
  });
}

Napi::Value ProtectSnapshot(ImageWrap& wrap, const Napi::CallbackInfo& info) {
  std::string name = StringArg(info, 0, "snapshot name");
  return wrap.Simple(info, "rbd_snap_protect", [name](rbd_image_t image) {
    return rbd_snap_protect(image, name.c_str());
  });
}

Napi::Value UnprotectSnapshot(ImageWrap& wrap, const Napi::CallbackInfo& info) {
  std::string name = StringArg(info, 0, "snapshot name");
  return wrap.Simple(info, "rbd_snap_unprotect", [name](rbd_image_t image) {
    return rbd_snap_unprotect(image, name.c_str());
  });
}

Napi::Value IsSnapshotProtected(ImageWrap& wrap, const Napi::CallbackInfo& info) {
  auto handle = wrap.OpenHandle(info.Env());
  std::string name = StringArg(info, 0, "snapshot name");
  return wrap.Run<bool>(
      info.Env(),
      [handle, name](bool& out, std::string& message) {
        return WithHandle(handle, "image", message, [&](rbd_image_t image) {
          int is_protected = 0;
          int rc = rbd_snap_is_protected(image, name.c_str(), &is_protected);
          if (rc < 0) {
            message = "rbd_snap_is_protected failed";
            return rc;
          }
          out = is_protected != 0;
          return 0;
        });
      },
      [](Napi::Env env, bool& value) { return Napi::Boolean::New(env, value); });
}

Napi::Value SnapshotExists(ImageWrap& wrap, const Napi::CallbackInfo& info) {
  auto handle = wrap.OpenHandle(info.Env());
  std::string name = StringArg(info, 0, "snapshot name");
  return wrap.Run<bool>(
      info.Env(),
      [handle, name](bool& out, std::string& message) {
        return WithHandle(handle, "image", message, [&](rbd_image_t image) {
          int rc = rbd_snap_exists(image, name.c_str(), &out);
          if (rc < 0) message = "rbd_snap_exists failed";
          return rc;
        });
      },
      [](Napi::Env env, bool& value) { return Napi::Boolean::New(env, value); });
}

// Whether the image's header object, read from its OSD now, lists the
// snapshot the handle knows by this name. rbd_snap_exists answers from the
// handle's memory, which librbd updates when its snapshot creation reports
// success: a full fault run once had an incremental backup complete without
// its chain snapshot, so the engine asks the header itself (one read).
int HeaderHasSnapshot(const std::shared_ptr<ImageHandle>& handle, rbd_image_t image, const std::string& name,
                      bool& out, std::string& message) {
  uint64_t snap_id = 0;
  int rc = rbd_snap_get_id(image, name.c_str(), &snap_id);
  if (rc == -ENOENT) {
    out = false;
    return 0;
  }
  if (rc < 0) {
    message = "rbd_snap_get_id failed";
    return rc;
  }
  uint8_t old_format = 0;
  rc = rbd_get_old_format(image, &old_format);
  if (rc < 0) {
    message = "rbd_get_old_format failed";
    return rc;
  }
  if (old_format != 0) {
    // A format 1 header has no snapshot context to read; librbd's answer stands.
    out = true;
    return 0;
  }
  char id[RBD_MAX_BLOCK_NAME_SIZE];
  rc = rbd_get_id(image, id, sizeof(id));
  if (rc < 0) {
    message = "rbd_get_id failed";
    return rc;
  }
  const std::string header = std::string("rbd_header.") + id;
  // The reply: seq (u64), then the snapshot ids (u32 count, u64 each).
  std::vector<char> reply(12 + 8 * 512);
  for (;;) {
    rc = rados_exec(handle->pool()->get(), header.c_str(), "rbd", "get_snapcontext", nullptr, 0, reply.data(),
                    reply.size());
    if (rc != -ERANGE || reply.size() >= (1u << 24)) break;
    reply.resize(reply.size() * 4);
  }
  if (rc < 0) {
    message = "rados_exec rbd.get_snapcontext on " + header + " failed";
    return rc;
  }
  // Ceph encodes little-endian, whatever the host.
  auto little = [&reply](size_t at, size_t bytes) {
    uint64_t value = 0;
    for (size_t i = 0; i < bytes; ++i) value |= static_cast<uint64_t>(static_cast<uint8_t>(reply[at + i])) << (8 * i);
    return value;
  };
  uint64_t count = rc >= 12 ? little(8, 4) : 0;
  if (rc < 12 || static_cast<uint64_t>(rc) < 12 + 8 * count) {
    message = "rbd.get_snapcontext on " + header + " replied with a truncated snapshot context";
    return -EIO;
  }
  out = false;
  for (uint64_t i = 0; i < count && !out; ++i) out = little(12 + 8 * i, 8) == snap_id;
  return 0;
}

Napi::Value HeaderHasSnapshotMethod(ImageWrap& wrap, const Napi::CallbackInfo& info) {
  auto handle = wrap.OpenHandle(info.Env());
  std::string name = StringArg(info, 0, "snapshot name");
  return wrap.Run<bool>(
      info.Env(),
      [handle, name](bool& out, std::string& message) {
        return WithHandle(handle, "image", message,
                          [&](rbd_image_t image) { return HeaderHasSnapshot(handle, image, name, out, message); });
      },
      [](Napi::Env env, bool& value) { return Napi::Boolean::New(env, value); });
}

Napi::Value RollbackSnapshot(ImageWrap& wrap, const Napi::CallbackInfo& info) {
  std::string name = StringArg(info, 0, "snapshot name");
  return wrap.Simple(info, "rbd_snap_rollback", [name](rbd_image_t image) {
    return rbd_snap_rollback(image, name.c_str());
  });
}

}  // namespace

void ImageWrap::DefineSnapshotMethods(std::vector<PropertyDescriptor>& methods) {
  methods.insert(methods.end(),
                 {Method<ListSnapshots>("listSnapshots"),
                  Method<CreateSnapshot>("createSnapshot"),
                  Method<RemoveSnapshot>("removeSnapshot"),
                  Method<ListTrashedSnapshots>("listTrashedSnapshots"),
                  Method<RemoveSnapshotById>("removeSnapshotById"),
                  Method<ListChildren>("listChildren"),
                  Method<ProtectSnapshot>("protectSnapshot"),
                  Method<UnprotectSnapshot>("unprotectSnapshot"),
                  Method<IsSnapshotProtected>("isSnapshotProtected"),
                  Method<SnapshotExists>("snapshotExists"),
                  Method<HeaderHasSnapshotMethod>("headerHasSnapshot"),
                  Method<RollbackSnapshot>("rollbackSnapshot")});
}

}  // namespace rbdnative
