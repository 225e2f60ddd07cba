// A connection to one Ceph cluster (rados_t).
#pragma once

#include <napi.h>

#include <memory>

#include "env_state.h"
#include "handles.h"

namespace rbdnative {

class ClusterWrap : public Napi::ObjectWrap<ClusterWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  // connect(options): rados_create2 + rados_conf_* + rados_connect.
  static Napi::Value Connect(const Napi::CallbackInfo& info);

  explicit ClusterWrap(const Napi::CallbackInfo& info);
  ~ClusterWrap() override;

  // The handle, or a synchronous EBADF error once close() was called.
  std::shared_ptr<ClusterHandle> OpenHandle(Napi::Env env) const;

 private:
  Napi::Value Fsid(const Napi::CallbackInfo& info);
  Napi::Value ListPools(const Napi::CallbackInfo& info);
  Napi::Value CreatePool(const Napi::CallbackInfo& info);
  Napi::Value DeletePool(const Napi::CallbackInfo& info);
  Napi::Value OpenPool(const Napi::CallbackInfo& info);
  Napi::Value InstanceId(const Napi::CallbackInfo& info);
  Napi::Value BlocklistAdd(const Napi::CallbackInfo& info);
  Napi::Value WaitForLatestOsdMap(const Napi::CallbackInfo& info);
  Napi::Value OpenImageCount(const Napi::CallbackInfo& info);
  Napi::Value CloseCluster(const Napi::CallbackInfo& info);
  // Open children of this kind over all of the cluster's open pools.
  size_t OpenInPools(HandleKind kind) const;

  std::shared_ptr<ClusterHandle> handle_;
  EnvState* state_;
  int inflight_ = 0;
  bool closed_ = false;
};

}  // namespace rbdnative
