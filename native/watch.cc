// Watch/notify on RADOS objects: the calls of PoolWrap that watch an object
// and notify its watchers, and NativeWatch, the watch they make.
#include "watch.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "args.h"
#include "errors.h"
#include "pool.h"
#include "worker.h"

namespace rbdnative {

namespace {

// librados' thread. The ack is all a notifier needs to see this client alive;
// rados_notify_ack only queues the reply, so it never stalls librados.
void AckNotify(void* arg, uint64_t notify_id, uint64_t cookie, uint64_t, void*, size_t) {
  auto* context = static_cast<WatchContext*>(arg);
  rados_notify_ack(context->io, context->oid.c_str(), notify_id, cookie, nullptr, 0);
}

// librados' thread: ENOTCONN when the watch lapsed (a disconnect longer than
// its timeout), ESHUTDOWN when this client was blocklisted.
void RecordWatchError(void* arg, uint64_t, int err) {
  static_cast<WatchContext*>(arg)->error.store(err < 0 ? -err : err);
}

// rados_notify2's reply as the OSD encodes it (little-endian):
//   le32 acks,     each: le64 gid, le64 cookie, le32 length, length bytes
//   le32 timeouts, each: le64 gid, le64 cookie
// librados fills it in even when the notify ends in ETIMEDOUT; that is how
// the watchers that did not answer are named.
struct NotifyReply {
  struct Ack {
    uint64_t gid;
    uint64_t cookie;
    size_t offset;  // of the ack's payload in raw
    size_t length;
  };
  struct Timeout {
    uint64_t gid;
    uint64_t cookie;
  };

  NotifyReply() = default;
  NotifyReply(const NotifyReply&) = delete;
  NotifyReply& operator=(const NotifyReply&) = delete;
  ~NotifyReply() {
    if (raw) rados_buffer_free(raw);
  }

  char* raw = nullptr;  // librados' buffer, freed with rados_buffer_free
  size_t length = 0;
  std::vector<Ack> acks;
  std::vector<Timeout> timeouts;
};

// Reads little-endian integers from the reply, refusing to run past its end.
class ReplyReader {
 public:
  ReplyReader(const char* data, size_t length)
      : data_(reinterpret_cast<const unsigned char*>(data)), length_(length) {}
  size_t at() const { return at_; }
  bool Read(size_t bytes, uint64_t& out) {
    if (length_ - at_ < bytes) return false;
    out = 0;
    for (size_t i = 0; i < bytes; ++i) out |= uint64_t{data_[at_ + i]} << (8 * i);
    at_ += bytes;
    return true;
  }
  bool Skip(uint64_t bytes) {
    if (length_ - at_ < bytes) return false;
    at_ += bytes;
    return true;
  }

 private:
  const unsigned char* data_;
  size_t length_;
  size_t at_ = 0;
};

bool DecodeNotifyReply(NotifyReply& reply) {
  // No buffer at all: the OSD answered nothing (no watcher to name).
  if (!reply.raw) return true;
  ReplyReader reader(reply.raw, reply.length);
  uint64_t count = 0;
  if (!reader.Read(4, count)) return false;
  for (uint64_t i = 0; i < count; ++i) {
    NotifyReply::Ack ack{};
    uint64_t length = 0;
    if (!reader.Read(8, ack.gid) || !reader.Read(8, ack.cookie) || !reader.Read(4, length)) {
      return false;
    }
    ack.offset = reader.at();
    ack.length = static_cast<size_t>(length);
    if (!reader.Skip(length)) return false;
    reply.acks.push_back(ack);
  }
  if (!reader.Read(4, count)) return false;
  for (uint64_t i = 0; i < count; ++i) {
    NotifyReply::Timeout timeout{};
    if (!reader.Read(8, timeout.gid) || !reader.Read(8, timeout.cookie)) return false;
    reply.timeouts.push_back(timeout);
  }
  return true;
}

// librados pings each watch once per objecter_tick_interval, and the OSD
// drops a watch that stays unpinged for its timeout: a timeout not well
// above the interval lets a live holder's watch lapse between two pings
// (seen here: a 3 s watch lost within 4 s at the default 5 s interval).
// Two intervals leave room for one late ping.
int CheckPingInterval(rados_t cluster, uint64_t timeout, std::string& message) {
  char value[64] = {0};
  int rc = rados_conf_get(cluster, "objecter_tick_interval", value, sizeof(value) - 1);
  if (rc < 0) {
    message = "cannot read objecter_tick_interval";
    return rc;
  }
  double interval = std::strtod(value, nullptr);
  if (static_cast<double>(timeout) < 2 * interval) {
    char shown[32];
    std::snprintf(shown, sizeof(shown), "%g", interval);
    message = "a watch timeout of " + std::to_string(timeout) +
              " s would lapse between librados' pings every " + shown +
              " s (objecter_tick_interval): give at least twice that, or connect with a "
              "smaller objecter_tick_interval";
    return -EINVAL;
  }
  return 0;
}

Napi::Object GidAndCookie(Napi::Env env, uint64_t gid, uint64_t cookie) {
  Napi::Object object = Napi::Object::New(env);
  object.Set("gid", BigU64(env, gid));
  object.Set("cookie", BigU64(env, cookie));
  return object;
}

Napi::Value WatchObject(PoolWrap& wrap, const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto handle = wrap.OpenHandle(env);
  std::string oid = StringArg(info, 0, "object name");
  uint64_t timeout = U64Arg(info, 1, "watch timeout");
  // 0 would mean the OSD's default (osd_client_watch_timeout, 30 s).
  if (timeout == 0 || timeout > UINT32_MAX) {
    ThrowInvalid(env, "watch timeout must be 1 to 2^32-1 seconds");
  }
  EnvState* state = EnvState::Get(env);
  return wrap.Run<std::shared_ptr<WatchHandle>>(
      env,
      [handle, oid, timeout](std::shared_ptr<WatchHandle>& out, std::string& message) {
        return WithHandle(handle, "pool", message, [&](rados_ioctx_t io) {
          int rc = CheckPingInterval(handle->cluster()->get(), timeout, message);
          if (rc < 0) return rc;
          auto context = std::make_unique<WatchContext>();
          context->io = io;
          context->oid = oid;
          uint64_t cookie = 0;
          rc = rados_watch3(io, oid.c_str(), &cookie, AckNotify, RecordWatchError,
                                static_cast<uint32_t>(timeout), context.get());
          if (rc < 0) {
            message = rc == -ENOENT ? "object does not exist (only an existing object can be watched)"
                                    : "rados_watch3 failed";
            // librados cancelled the watch; a callback it queued meanwhile
            // may still hold the context.
            rados_watch_flush(handle->cluster()->get());
            return rc;
          }
          out = std::make_shared<WatchHandle>(handle, std::move(context), cookie);
          handle->AddChild(out);
          return 0;
        });
      },
      [state](Napi::Env, std::shared_ptr<WatchHandle>& watch) {
        return NewWrapper(state->watch_ctor, watch);
      });
}

Napi::Value NotifyObject(PoolWrap& wrap, const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto handle = wrap.OpenHandle(env);
  std::string oid = StringArg(info, 0, "object name");
  uint64_t timeout_ms = U64Arg(info, 1, "notify timeout");
  // librados passes the OSD whole seconds and turns 0 into its default.
  if (timeout_ms < 1000) ThrowInvalid(env, "notify timeout must be at least 1000 ms");
  const char* data = nullptr;
  size_t length = 0;
  std::shared_ptr<Napi::ObjectReference> keep;
  if (!info[2].IsUndefined() && !info[2].IsNull()) {
    if (!info[2].IsBuffer()) ThrowInvalid(env, "notify payload must be a Buffer");
    auto buffer = info[2].As<Napi::Buffer<char>>();
    if (buffer.Length() > INT32_MAX) ThrowInvalid(env, "notify payload is too large");
    // The worker reads straight from the caller's Buffer; the reference
    // keeps it alive until the notify settles.
    keep = std::make_shared<Napi::ObjectReference>(Napi::Persistent(buffer.As<Napi::Object>()));
    data = buffer.Data();
    length = buffer.Length();
  }
  return wrap.Run<NotifyReply>(
      env,
      [handle, oid, timeout_ms, data, length, keep](NotifyReply& out, std::string& message) {
        return WithHandle(handle, "pool", message, [&](rados_ioctx_t io) {
          int rc = rados_notify2(io, oid.c_str(), data, static_cast<int>(length), timeout_ms,
                                 &out.raw, &out.length);
          // ETIMEDOUT with a reply only says that some watcher did not
          // answer in time; the reply names it. Without a reply the notify
          // itself failed.
          if (rc < 0 && !(rc == -ETIMEDOUT && out.raw)) {
            if (rc == -ENOENT) {
              message = "object does not exist";
            } else if (rc == -ETIMEDOUT) {
              message = "the notify timed out without a reply from the OSD";
            } else {
              message = "rados_notify2 failed";
            }
            return rc;
          }
          if (!DecodeNotifyReply(out)) {
            message = "the notify reply is malformed";
            return -EIO;
          }
          return 0;
        });
      },
      [](Napi::Env env, NotifyReply& reply) {
        Napi::Array acks = Napi::Array::New(env, reply.acks.size());
        for (size_t i = 0; i < reply.acks.size(); ++i) {
          const auto& ack = reply.acks[i];
          Napi::Object entry = GidAndCookie(env, ack.gid, ack.cookie);
          entry.Set("reply", Napi::Buffer<char>::Copy(env, reply.raw + ack.offset, ack.length));
          acks.Set(i, entry);
        }
        Napi::Array timeouts = Napi::Array::New(env, reply.timeouts.size());
        for (size_t i = 0; i < reply.timeouts.size(); ++i) {
          timeouts.Set(i, GidAndCookie(env, reply.timeouts[i].gid, reply.timeouts[i].cookie));
        }
        Napi::Object result = Napi::Object::New(env);
        result.Set("acks", acks);
        result.Set("timeouts", timeouts);
        return result;
      });
}

}  // namespace

void PoolWrap::DefineWatchMethods(std::vector<PropertyDescriptor>& methods) {
  methods.insert(methods.end(),
                 {Method<WatchObject>("watchObject"),
                  Method<NotifyObject>("notifyObject")});
}

void WatchWrap::DefineMethods(std::vector<PropertyDescriptor>& methods) {
  methods.insert(methods.end(),
                 {InstanceMethod("id", &WatchWrap::Id),
                  InstanceMethod("check", &WatchWrap::Check)});
}

// The cookie never changes, so this answers without librados.
Napi::Value WatchWrap::Id(const Napi::CallbackInfo& info) {
  return BigU64(info.Env(), handle_->get());
}

Napi::Value WatchWrap::Check(const Napi::CallbackInfo& info) {
  auto handle = OpenHandle(info.Env());
  return Run<int>(
      info.Env(),
      [handle](int& out, std::string& message) {
        return WithHandle(handle, "watch", message, [&](uint64_t cookie) {
          if (int err = handle->error()) {
            message = "the watch was lost; close it and watch again";
            return -err;
          }
          return WithHandle(handle->pool(), "pool", message, [&](rados_ioctx_t io) {
            int rc = rados_watch_check(io, cookie);
            if (rc < 0) {
              message = "the watch was lost; close it and watch again";
              return rc;
            }
            out = rc;
            return 0;
          });
        });
      },
      [](Napi::Env env, int& ms) { return Napi::Number::New(env, ms); });
}

}  // namespace rbdnative
