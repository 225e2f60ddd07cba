// Entry point of the native addon: the wrapper classes and connect().
#include <napi.h>

#include "cancel.h"
#include "chunked_digests.h"
#include "cluster.h"
#include "codec.h"
#include "digest.h"
#include "env_state.h"
#include "file_sync.h"
#include "image.h"
#include "inlet.h"
#include "object_file.h"
#include "outlet.h"
#include "pool.h"
#include "transfer.h"
#include "watch.h"
#include "zero_runs.h"

namespace rbdnative {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  EnvState* state = InstallEnvState(env);
  Napi::Function cluster = ClusterWrap::Define(env);
  Napi::Function pool = PoolWrap::Define(env);
  Napi::Function image = ImageWrap::Define(env);
  Napi::Function watch = WatchWrap::Define(env);
  Napi::Function cancel = CancelToken::Define(env);
  Napi::Function outlet = Outlet::Define(env);
  Napi::Function inlet = Inlet::Define(env);
  state->cluster_ctor = Napi::Persistent(cluster);
  state->pool_ctor = Napi::Persistent(pool);
  state->image_ctor = Napi::Persistent(image);
  state->watch_ctor = Napi::Persistent(watch);
  state->cancel_ctor = Napi::Persistent(cancel);
  state->outlet_ctor = Napi::Persistent(outlet);
  state->inlet_ctor = Napi::Persistent(inlet);
  // Not constructible from JavaScript (each is made by the call that opens
  // its handle): exported so that a test without a cluster can compare
  // their prototypes with lib/ceph/native.ts.
  Napi::Object classes = Napi::Object::New(env);
  classes.Set(ClusterWrap::kClassName, cluster);
  classes.Set(PoolWrap::kClassName, pool);
  classes.Set(ImageWrap::kClassName, image);
  classes.Set(WatchWrap::kClassName, watch);
  exports.Set("classes", classes);
  exports.Set("connect", Napi::Function::New(env, ClusterWrap::Connect, "connect"));
  exports.Set("CancelToken", cancel);
  exports.Set("Outlet", outlet);
  exports.Set("Inlet", inlet);
  exports.Set("Codec", CodecWrap::Define(env));
  exports.Set("syncFileSystem", Napi::Function::New(env, SyncFileSystem, "syncFileSystem"));
  exports.Set("sha256Blocks", Napi::Function::New(env, Sha256Blocks, "sha256Blocks"));
  exports.Set("Md5", Md5Wrap::Define(env));
  exports.Set("storeObject", Napi::Function::New(env, StoreObject, "storeObject"));
  exports.Set("transfer", Napi::Function::New(env, StartTransfer, "transfer"));
  exports.Set("digest128", Napi::Function::New(env, Digest128, "digest128"));
  exports.Set("blockDigests", Napi::Function::New(env, BlockDigests, "blockDigests"));
  exports.Set("closeAll", Napi::Function::New(
                              env,
                              [](const Napi::CallbackInfo& info) {
                                EnvState::Get(info.Env())->CloseEverything();
                              },
                              "closeAll"));
  return exports;
}

}  // namespace rbdnative

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  return rbdnative::Init(env, exports);
}

NODE_API_MODULE(rbd_backup, InitAddon)
