// Advisory RADOS locks on whole objects (cls_lock through rados_lock_*),
// the calls of PoolWrap that take, release and inspect them.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "args.h"
#include "errors.h"
#include "pool.h"
#include "worker.h"

namespace rbdnative {

namespace {

struct Locker {
  std::string client;
  std::string cookie;
  std::string address;
};

struct Lockers {
  bool exclusive = false;
  std::string tag;
  std::vector<Locker> lockers;
};

// The next of the NUL-separated strings librados packed into buf; stays
// inside the buffer even if librados ever left out a terminator.
std::string NextString(const std::vector<char>& buf, size_t& at) {
  if (at >= buf.size()) return std::string();
  size_t length = strnlen(buf.data() + at, buf.size() - at);
  std::string value(buf.data() + at, length);
  at += length + 1;
  return value;
}

int ReadLockers(rados_ioctx_t io, const std::string& oid, const std::string& name,
                Lockers& out, std::string& message) {
  std::vector<char> tag(64), clients(256), cookies(256), addrs(256);
  ssize_t count;
  int exclusive = 0;
  for (;;) {
    size_t tag_len = tag.size(), clients_len = clients.size(),
           cookies_len = cookies.size(), addrs_len = addrs.size();
    count = rados_list_lockers(io, oid.c_str(), name.c_str(), &exclusive,
                               tag.data(), &tag_len, clients.data(), &clients_len,
                               cookies.data(), &cookies_len, addrs.data(), &addrs_len);
    if (count != -ERANGE) break;
    // librados put the sizes it needs in the lengths; lockers may come and
    // go between the calls, so ask again until everything fits.
    tag.resize(std::max(tag.size(), tag_len));
    clients.resize(std::max(clients.size(), clients_len));
    cookies.resize(std::max(cookies.size(), cookies_len));
    addrs.resize(std::max(addrs.size(), addrs_len));
  }
  // A missing object holds no lock: the answer is "nobody", not an error.
  if (count == -ENOENT) return 0;
  if (count < 0) {
    message = "rados_list_lockers failed";
    return static_cast<int>(count);
  }
  out.exclusive = exclusive != 0;
  out.tag = std::string(tag.data(), strnlen(tag.data(), tag.size()));
  size_t client_at = 0, cookie_at = 0, addr_at = 0;
  for (ssize_t i = 0; i < count; ++i) {
    Locker locker;
    locker.client = NextString(clients, client_at);
    locker.cookie = NextString(cookies, cookie_at);
    locker.address = NextString(addrs, addr_at);
    out.lockers.push_back(std::move(locker));
  }
  return 0;
}

Napi::Value LockObject(PoolWrap& wrap, const Napi::CallbackInfo& info) {
  auto handle = wrap.OpenHandle(info.Env());
  std::string oid = StringArg(info, 0, "object name");
  std::string name = StringArg(info, 1, "lock name");
  std::string cookie = StringArg(info, 2, "lock cookie");
  std::string description = StringArg(info, 3, "lock description");
  uint64_t duration_ms = U64Arg(info, 4, "lock duration");
  bool renew = BoolArg(info, 5);
  return wrap.Run(info.Env(),
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

Napi::Value UnlockObject(PoolWrap& wrap, const Napi::CallbackInfo& info) {
  auto handle = wrap.OpenHandle(info.Env());
  std::string oid = StringArg(info, 0, "object name");
  std::string name = StringArg(info, 1, "lock name");
  std::string cookie = StringArg(info, 2, "lock cookie");
  return wrap.Run(info.Env(),
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

Napi::Value ListLockers(PoolWrap& wrap, const Napi::CallbackInfo& info) {
  auto handle = wrap.OpenHandle(info.Env());
  std::string oid = StringArg(info, 0, "object name");
  std::string name = StringArg(info, 1, "lock name");
  return wrap.Run<Lockers>(
      info.Env(),
      [handle, oid, name](Lockers& out, std::string& message) {
        return WithHandle(handle, "pool", message, [&](rados_ioctx_t io) {
          return ReadLockers(io, oid, name, out, message);
        });
      },
      [](Napi::Env env, Lockers& found) {
        Napi::Object result = Napi::Object::New(env);
        result.Set("exclusive", found.exclusive);
        result.Set("tag", found.tag);
        Napi::Array lockers = Napi::Array::New(env, found.lockers.size());
        for (size_t i = 0; i < found.lockers.size(); ++i) {
          Napi::Object locker = Napi::Object::New(env);
          locker.Set("client", found.lockers[i].client);
          locker.Set("cookie", found.lockers[i].cookie);
          locker.Set("address", found.lockers[i].address);
          lockers.Set(i, locker);
        }
        result.Set("lockers", lockers);
        return result;
      });
}

Napi::Value BreakLock(PoolWrap& wrap, const Napi::CallbackInfo& info) {
  auto handle = wrap.OpenHandle(info.Env());
  std::string oid = StringArg(info, 0, "object name");
  std::string name = StringArg(info, 1, "lock name");
  std::string client = StringArg(info, 2, "lock holder");
  std::string cookie = StringArg(info, 3, "lock cookie");
  return wrap.Run(info.Env(),
                  [handle, oid, name, client, cookie](std::string& message) {
                    return WithHandle(handle, "pool", message, [&](rados_ioctx_t io) {
                      int rc = rados_break_lock(io, oid.c_str(), name.c_str(), client.c_str(),
                                                cookie.c_str());
                      if (rc == -ENOENT) {
                        message = "the lock is not held by " + client + " with this cookie";
                      } else if (rc < 0) {
                        message = "rados_break_lock failed";
                      }
                      return rc;
                    });
                  });
}

}  // namespace

void PoolWrap::DefineObjectLockMethods(std::vector<PropertyDescriptor>& methods) {
  methods.insert(methods.end(),
                 {Method<LockObject>("lockObject"),
                  Method<UnlockObject>("unlockObject"),
                  Method<ListLockers>("listLockers"),
                  Method<BreakLock>("breakLock")});
}

}  // namespace rbdnative
