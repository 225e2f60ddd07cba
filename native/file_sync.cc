#include "file_sync.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "args.h"
#include "worker.h"

namespace rbdnative {

Napi::Value SyncFileSystem(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowInvalid(env, "syncFileSystem takes a path");
  std::string path = info[0].As<Napi::String>();
  if (path.empty() || path.find('\0') != std::string::npos) ThrowInvalid(env, "syncFileSystem takes a path");
  return RunAsync(env, Napi::Object(), nullptr, [path](std::string& message) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      message = "cannot open " + path + " to sync its file system: " + std::strerror(err);
      return -err;
    }
    int rc = syncfs(fd) == 0 ? 0 : -errno;
    if (rc < 0) message = "syncing the file system of " + path + " failed: " + std::strerror(-rc);
    close(fd);
    return rc;
  });
}

}  // namespace rbdnative
