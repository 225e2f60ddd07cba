#include "errors.h"

#include <cerrno>
#include <cstring>

namespace rbdnative {

std::string ErrnoCode(int err) {
  switch (err) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case E2BIG: return "E2BIG";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case EXDEV: return "EXDEV";
    case ENODEV: return "ENODEV";
    case EINVAL: return "EINVAL";
    case EFBIG: return "EFBIG";
    case ENOSPC: return "ENOSPC";
    case EROFS: return "EROFS";
    case ERANGE: return "ERANGE";
    case EDOM: return "EDOM";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOSYS: return "ENOSYS";
    case ENOTEMPTY: return "ENOTEMPTY";
    case ENODATA: return "ENODATA";
    case ENOTSUP: return "EOPNOTSUPP";
    case EOVERFLOW: return "EOVERFLOW";
    case ESHUTDOWN: return "ESHUTDOWN";
    case ETIMEDOUT: return "ETIMEDOUT";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECANCELED: return "ECANCELED";
    case EDQUOT: return "EDQUOT";
    case ENOTCONN: return "ENOTCONN";
    // librbd's snapshot creation failed with it after its unquiesce notify
    // timed out (test/own-cluster/snapshot-under-pause.test.ts).
    case EBADMSG: return "EBADMSG";
    default: return "E" + std::to_string(err);
  }
}

Napi::Error MakeError(Napi::Env env, int err, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("code", Napi::String::New(env, ErrnoCode(err)));
  return error;
}

}  // namespace rbdnative
