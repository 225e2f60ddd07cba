// Advisory RADOS locks on whole objects (cls_lock through rados_lock_*),
// the calls of PoolWrap that take, release and inspect them.
#include <string>
#include <vector>

#include "args.h"
#include "errors.h"
#include "pool.h"
#include "worker.h"

namespace rbdnative {

void PoolWrap::DefineObjectLockMethods(std::vector<PropertyDescriptor>& methods) {
  methods.push_back(InstanceMethod("lockObject", &PoolWrap::LockObject));
  methods.push_back(InstanceMethod("unlockObject", &PoolWrap::UnlockObject));
}

Napi::Value PoolWrap::LockObject(const Napi::CallbackInfo& info) {
  auto handle = OpenHandle(info.Env());
  std::string oid = StringArg(info, 0, "object name");
  std::string name = StringArg(info, 1, "lock name");
  std::string cookie = StringArg(info, 2, "lock cookie");
  std::string description = StringArg(info, 3, "lock description");
  uint64_t duration_ms = U64Arg(info, 4, "lock duration");
  bool renew = BoolArg(info, 5);
  return RunAsync(info.Env(), Value(), &inflight_,
                  [handle, oid, name, cookie, description, duration_ms, renew](std::string& message) {
                    return WithHandle(handle, "pool", message, [&](rados_ioctx_t io) {
                      struct timeval duration {
                        static_cast<time_t>(duration_ms / 1000),
                            static_cast<suseconds_t>((duration_ms % 1000) * 1000)
                      };
                      int rc = rados_lock_exclusive(io, oid.c_str(), name.c_str(), cookie.c_str(),
                                                    description.c_str(),
                                                    duration_ms ? &duration : nullptr,
                                                    renew ? LIBRADOS_LOCK_FLAG_MUST_RENEW : 0);
                      if (rc == -EBUSY) {
                        message = "the lock is held by another client or cookie";
                      } else if (rc == -EEXIST) {
                        message = "this client already holds the lock with this cookie";
                      } else if (rc == -ENOENT && renew) {
                        message = "the lock to renew is no longer held (it expired or was broken)";
                      } else if (rc < 0) {
                        message = "rados_lock_exclusive failed";
                      }
                      return rc;
                    });
                  });
}

Napi::Value PoolWrap::UnlockObject(const Napi::CallbackInfo& info) {
  auto handle = OpenHandle(info.Env());
  std::string oid = StringArg(info, 0, "object name");
  std::string name = StringArg(info, 1, "lock name");
  std::string cookie = StringArg(info, 2, "lock cookie");
  return RunAsync(info.Env(), Value(), &inflight_,
                  [handle, oid, name, cookie](std::string& message) {
                    return WithHandle(handle, "pool", message, [&](rados_ioctx_t io) {
                      int rc = rados_unlock(io, oid.c_str(), name.c_str(), cookie.c_str());
                      if (rc == -ENOENT) {
                        message = "this client holds no such lock";
                      } else if (rc < 0) {
                        message = "rados_unlock failed";
                      }
                      return rc;
                    });
                  });
}

}  // namespace rbdnative
