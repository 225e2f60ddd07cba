// A connection to one Ceph cluster (rados_t).
#pragma once

#include <napi.h>

#include "env_state.h"
#include "handles.h"
#include "wrap_base.h"

namespace rbdnative {

class ClusterWrap : public WrapBase<ClusterWrap, ClusterHandle> {
 public:
  static constexpr const char* kClassName = "NativeCluster";
  static constexpr const char* kWhat = "cluster";
  static constexpr const char* kMadeBy = "connect()";
  static constexpr Napi::FunctionReference EnvState::*kConstructor = &EnvState::cluster_ctor;
  static void DefineMethods(std::vector<PropertyDescriptor>& methods);

  // connect(options): rados_create2 + rados_conf_* + rados_connect.
  static Napi::Value Connect(const Napi::CallbackInfo& info);

  explicit ClusterWrap(const Napi::CallbackInfo& info) : WrapBase(info) {}

  // Images and watches are opened through the cluster's pools.
  size_t OpenUnder(HandleKind kind) const;

 private:
  Napi::Value Fsid(const Napi::CallbackInfo& info);
  Napi::Value ListPools(const Napi::CallbackInfo& info);
  Napi::Value CreatePool(const Napi::CallbackInfo& info);
  Napi::Value DeletePool(const Napi::CallbackInfo& info);
  Napi::Value OpenPool(const Napi::CallbackInfo& info);
  Napi::Value InstanceId(const Napi::CallbackInfo& info);
  Napi::Value BlocklistAdd(const Napi::CallbackInfo& info);
  Napi::Value WaitForLatestOsdMap(const Napi::CallbackInfo& info);
};

}  // namespace rbdnative
