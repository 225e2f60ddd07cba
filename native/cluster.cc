// NativeCluster: connecting to a cluster, and the calls on it (pools, blocklist, OSD map).
#include "cluster.h"

#include <rbd/librbd.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "args.h"
#include "errors.h"
#include "worker.h"

namespace rbdnative {

namespace {

struct ConnectSettings {
  std::string user;
  // Expanded as $cluster in configuration values and librados' default
  // paths (the keyring search list among them).
  std::string cluster_name = "ceph";
  std::optional<std::string> conf_file;
  // Applied in order with rados_conf_set after the file; holds the key too,
  // which is why it is wiped once used.
  std::vector<std::pair<std::string, std::string>> settings;
};

void Wipe(std::string& secret) {
  volatile char* p = secret.data();
  for (size_t i = 0; i < secret.size(); ++i) p[i] = 0;
  secret.clear();
}

// Builds, configures and connects a rados_t; on failure leaves nothing
// behind. Messages name the setting that failed but never its value.
int ConnectCluster(ConnectSettings& s, rados_t* out, std::string& message) {
  rados_t cluster = nullptr;
  std::string name = "client." + s.user;
  int rc = rados_create2(&cluster, s.cluster_name.c_str(), name.c_str(), 0);
  if (rc < 0) {
    message = "rados_create2 failed for " + name;
    return rc;
  }
  if (s.conf_file) {
    rc = rados_conf_read_file(cluster,
                              s.conf_file->empty() ? nullptr
                                                   : s.conf_file->c_str());
    if (rc < 0) {
      message = "cannot read ceph configuration " +
                (s.conf_file->empty() ? std::string("from the default places")
                                      : *s.conf_file);
    }
  }
  for (auto& [key, value] : s.settings) {
    if (rc < 0) break;
    rc = rados_conf_set(cluster, key.c_str(), value.c_str());
    if (rc < 0) message = "cannot set configuration option " + key;
  }
  for (auto& setting : s.settings) Wipe(setting.second);
  if (rc >= 0) {
    rc = rados_connect(cluster);
    if (rc < 0) {
      message = "cannot connect to the cluster as " + name + ": " +
                std::strerror(-rc);
    }
  }
  if (rc < 0) {
    rados_shutdown(cluster);
    return rc;
  }
  *out = cluster;
  return 0;
}

}  // namespace

void ClusterWrap::DefineMethods(std::vector<PropertyDescriptor>& methods) {
  methods.insert(methods.end(),
                 {InstanceMethod("fsid", &ClusterWrap::Fsid),
                  InstanceMethod("listPools", &ClusterWrap::ListPools),
                  InstanceMethod("createPool", &ClusterWrap::CreatePool),
                  InstanceMethod("deletePool", &ClusterWrap::DeletePool),
                  InstanceMethod("openPool", &ClusterWrap::OpenPool),
                  InstanceMethod("instanceId", &ClusterWrap::InstanceId),
                  InstanceMethod("blocklistAdd", &ClusterWrap::BlocklistAdd),
                  InstanceMethod("waitForLatestOsdMap", &ClusterWrap::WaitForLatestOsdMap),
                  InstanceMethod("openImageCount", &ClusterWrap::OpenImageCount)});
}

Napi::Value ClusterWrap::Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) ThrowInvalid(env, "connect options must be an object");
  Napi::Object options = info[0].As<Napi::Object>();
  auto settings = std::make_shared<ConnectSettings>();
  Napi::Value user = options.Get("user");
  if (!user.IsString()) ThrowInvalid(env, "user must be a string");
  settings->user = user.As<Napi::String>().Utf8Value();
  Napi::Value cluster_name = options.Get("cluster");
  if (cluster_name.IsString()) settings->cluster_name = cluster_name.As<Napi::String>().Utf8Value();
  Napi::Value conf = options.Get("conf");
  if (conf.IsString()) settings->conf_file = conf.As<Napi::String>().Utf8Value();
  Napi::Value list = options.Get("settings");
  if (list.IsArray()) {
    Napi::Array array = list.As<Napi::Array>();
    for (uint32_t i = 0; i < array.Length(); ++i) {
      Napi::Value pair = array.Get(i);
      if (!pair.IsArray() || pair.As<Napi::Array>().Length() != 2) {
        ThrowInvalid(env, "settings must be [key, value] pairs");
      }
      Napi::Value key = pair.As<Napi::Array>().Get(0u);
      Napi::Value value = pair.As<Napi::Array>().Get(1u);
      if (!key.IsString() || !value.IsString()) {
        ThrowInvalid(env, "settings must be string pairs");
      }
      settings->settings.emplace_back(key.As<Napi::String>().Utf8Value(),
                                      value.As<Napi::String>().Utf8Value());
    }
  }
  EnvState* state = EnvState::Get(env);
  return RunAsync<std::shared_ptr<ClusterHandle>>(
      env, Napi::Object(), nullptr,
      [settings](std::shared_ptr<ClusterHandle>& out, std::string& message) {
        rados_t cluster = nullptr;
        int rc = ConnectCluster(*settings, &cluster, message);
        if (rc < 0) return rc;
        out = std::make_shared<ClusterHandle>(cluster);
        return 0;
      },
      [state](Napi::Env, std::shared_ptr<ClusterHandle>& handle) {
        state->AddRoot(handle);
        return NewWrapper(state->cluster_ctor, handle);
      });
}

Napi::Value ClusterWrap::Fsid(const Napi::CallbackInfo& info) {
  auto handle = OpenHandle(info.Env());
  return Run<std::string>(
      info.Env(),
      [handle](std::string& out, std::string& message) {
        return WithHandle(handle, "cluster", message, [&](rados_t c) {
          char buf[64] = {0};
          int rc = rados_cluster_fsid(c, buf, sizeof(buf) - 1);
          if (rc < 0) return rc;
          out = buf;
          return 0;
        });
      },
      [](Napi::Env env, std::string& fsid) {
        return Napi::String::New(env, fsid);
      });
}

Napi::Value ClusterWrap::ListPools(const Napi::CallbackInfo& info) {
  auto handle = OpenHandle(info.Env());
  return Run<std::vector<std::string>>(
      info.Env(),
      [handle](std::vector<std::string>& out, std::string& message) {
        return WithHandle(handle, "cluster", message, [&](rados_t c) {
          std::vector<char> buf(4096);
          int rc;
          // rados_pool_list returns the length it needs; retry until the
          // list (which may grow meanwhile) fits.
          while ((rc = rados_pool_list(c, buf.data(), buf.size())) >
                 static_cast<int>(buf.size())) {
            buf.resize(rc);
          }
          if (rc < 0) return rc;
          for (const char* p = buf.data(); *p != '\0'; p += std::strlen(p) + 1) {
            out.emplace_back(p);
          }
          return 0;
        });
      },
      [](Napi::Env env, std::vector<std::string>& pools) {
        Napi::Array array = Napi::Array::New(env, pools.size());
        for (size_t i = 0; i < pools.size(); ++i) array.Set(i, pools[i]);
        return array;
      });
}

Napi::Value ClusterWrap::CreatePool(const Napi::CallbackInfo& info) {
  auto handle = OpenHandle(info.Env());
  std::string name = StringArg(info, 0, "pool name");
  return Run(info.Env(),
             [handle, name](std::string& message) {
               return WithHandle(handle, "cluster", message, [&](rados_t c) {
                 int rc = rados_pool_create(c, name.c_str());
                 if (rc < 0) {
                   message = "rados_pool_create failed";
                   return rc;
                 }
                 rados_ioctx_t io = nullptr;
                 rc = rados_ioctx_create(c, name.c_str(), &io);
                 if (rc < 0) {
                   message = "rados_ioctx_create failed";
                   return rc;
                 }
                 // Same as `rbd pool init`: tags the pool for rbd.
                 rc = rbd_pool_init(io, false);
                 if (rc < 0) message = "rbd_pool_init failed";
                 rados_ioctx_destroy(io);
                 return rc;
               });
             });
}

Napi::Value ClusterWrap::DeletePool(const Napi::CallbackInfo& info) {
  auto handle = OpenHandle(info.Env());
  std::string name = StringArg(info, 0, "pool name");
  return Run(info.Env(),
             [handle, name](std::string& message) {
               return WithHandle(handle, "cluster", message, [&](rados_t c) {
                 int rc = rados_pool_delete(c, name.c_str());
                 if (rc < 0) message = "rados_pool_delete failed";
                 return rc;
               });
             });
}

Napi::Value ClusterWrap::OpenPool(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto handle = OpenHandle(env);
  std::string name = StringArg(info, 0, "pool name");
  std::string ns = OptionalStringArg(info, 1, "namespace").value_or("");
  EnvState* state = state_;
  return Run<std::shared_ptr<PoolHandle>>(
      env,
      [handle, name, ns](std::shared_ptr<PoolHandle>& out, std::string& message) {
        return WithHandle(handle, "cluster", message, [&](rados_t c) {
          rados_ioctx_t io = nullptr;
          int rc = rados_ioctx_create(c, name.c_str(), &io);
          if (rc < 0) {
            message = rc == -ENOENT ? "pool does not exist"
                                    : "rados_ioctx_create failed";
            return rc;
          }
          rados_ioctx_set_namespace(io, ns.c_str());
          out = std::make_shared<PoolHandle>(handle, io);
          handle->AddChild(out);
          return 0;
        });
      },
      [state](Napi::Env, std::shared_ptr<PoolHandle>& pool) {
        return NewWrapper(state->pool_ctor, pool);
      });
}

// No I/O: the id was read when the connection was made, so this answers on
// the JavaScript thread without waiting for a close in progress.
Napi::Value ClusterWrap::InstanceId(const Napi::CallbackInfo& info) {
  return BigU64(info.Env(), OpenHandle(info.Env())->instance_id());
}

Napi::Value ClusterWrap::BlocklistAdd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto handle = OpenHandle(env);
  std::string address = StringArg(info, 0, "client address");
  uint64_t expire = U64Arg(info, 1, "blocklist expiry");
  if (expire > UINT32_MAX) ThrowInvalid(env, "blocklist expiry must fit in 32 bits");
  return Run(env, [handle, address, expire](std::string& message) {
    return WithHandle(handle, "cluster", message, [&](rados_t c) {
      // librados takes a mutable string; give it a copy of its own.
      std::string mutable_address = address;
      int rc = rados_blocklist_add(c, mutable_address.data(), static_cast<uint32_t>(expire));
      if (rc < 0) message = "rados_blocklist_add failed";
      return rc;
    });
  });
}

// rados_wait_for_latest_osdmap: asks the monitor for the newest OSD map and
// waits for it. Pacific's Objecter can stay on a stale map after an op timed
// out while an OSD restarted (it then sends every later op to the dead
// instance, and each one times out); a fresh map ends that.
Napi::Value ClusterWrap::WaitForLatestOsdMap(const Napi::CallbackInfo& info) {
  auto handle = OpenHandle(info.Env());
  return Run(info.Env(), [handle](std::string& message) {
    return WithHandle(handle, "cluster", message, [&](rados_t c) {
      int rc = rados_wait_for_latest_osdmap(c);
      if (rc < 0) message = "rados_wait_for_latest_osdmap failed";
      return rc;
    });
  });
}

size_t ClusterWrap::OpenUnder(HandleKind kind) const {
  size_t count = 0;
  for (auto& pool : handle_->LiveChildren()) count += pool->OpenChildren(kind);
  return count;
}

}  // namespace rbdnative
