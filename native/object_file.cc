#include "object_file.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "args.h"
#include "chunked_digests.h"
#include "worker.h"

namespace rbdnative {

namespace {

struct Stored {
  std::string md5;
  size_t bytes = 0;
  bool compressed = false;
};

// Python's zlib.compress(data): level 6 (the default), a zlib stream of 32 KiB window, memLevel 8.
bool Deflate(const char* data, size_t length, std::vector<char>& out) {
  uLongf size = compressBound(static_cast<uLong>(length));
  out.resize(size);
  int rc = compress2(reinterpret_cast<Bytef*>(out.data()), &size, reinterpret_cast<const Bytef*>(data),
                     static_cast<uLong>(length), Z_DEFAULT_COMPRESSION);
  if (rc != Z_OK) return false;
  out.resize(size);
  return true;
}

// Writes the partial file (created here, so never another writer's) and removes it again if that fails.
int WriteFile(const std::string& partial, const char* data, size_t length, std::string& message) {
  int fd = open(partial.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) {
    int err = errno;
    message = "creating the backup's object failed: " + std::string(std::strerror(err));
    return -err;
  }
  int rc = 0;
  for (size_t done = 0; done < length && rc == 0;) {
    ssize_t n = write(fd, data + done, length - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      rc = -errno;
      message = "writing the backup's object failed: " + std::string(std::strerror(-rc));
    } else {
      done += static_cast<size_t>(n);
    }
  }
  if (close(fd) != 0 && rc == 0) {
    rc = -errno;
    message = "writing the backup's object failed (on close): " + std::string(std::strerror(-rc));
  }
  if (rc < 0) unlink(partial.c_str());
  return rc;
}

}  // namespace

Napi::Value StoreObject(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string partial = StringArg(info, 0, "partial path");
  std::string path = StringArg(info, 1, "path");
  if (partial.empty() || path.empty() || partial.find('\0') != std::string::npos || path.find('\0') != std::string::npos) {
    ThrowInvalid(env, "storeObject takes two paths");
  }
  if (!info[2].IsBuffer()) ThrowInvalid(env, "storeObject takes the object's data as a Buffer");
  auto data = info[2].As<Napi::Buffer<char>>();
  bool zlib = false;
  Napi::Buffer<char> packed;
  if (info[3].IsBuffer()) {
    packed = info[3].As<Napi::Buffer<char>>();
  } else if (info[3].IsString() && info[3].As<Napi::String>().Utf8Value() == "zlib") {
    zlib = true;
  } else if (!(info[3].IsString() && info[3].As<Napi::String>().Utf8Value() == "none")) {
    ThrowInvalid(env, "storeObject's packing is 'none', 'zlib' or a Buffer");
  }
  // Held until the call settles: the data and the packed bytes it may write.
  Napi::Object owners = Napi::Object::New(env);
  owners.Set("data", data);
  const char* bytes = data.Data();
  size_t length = data.Length();
  const char* packed_bytes = nullptr;
  size_t packed_length = 0;
  if (!packed.IsEmpty()) {
    owners.Set("packed", packed);
    packed_bytes = packed.Data();
    packed_length = packed.Length();
  }
  return RunAsync<Stored>(
      env, owners, nullptr,
      [partial, path, bytes, length, zlib, packed_bytes, packed_length](Stored& stored, std::string& message) {
        Md5Digest md5;
        md5.Update(bytes, length);
        stored.md5 = md5.Hex();
        std::vector<char> deflated;
        const char* smaller = packed_bytes;
        size_t smaller_length = packed_length;
        if (zlib) {
          if (!Deflate(bytes, length, deflated)) {
            message = "zlib could not compress the backup's object";
            return -ENOMEM;
          }
          smaller = deflated.data();
          smaller_length = deflated.size();
        }
        stored.compressed = smaller != nullptr && smaller_length < length;
        const char* out = stored.compressed ? smaller : bytes;
        stored.bytes = stored.compressed ? smaller_length : length;
        int rc = WriteFile(partial, out, stored.bytes, message);
        if (rc == 0 && rename(partial.c_str(), path.c_str()) != 0) {
          rc = -errno;
          message = "naming the backup's object failed: " + std::string(std::strerror(-rc));
          unlink(partial.c_str());
        }
        return rc;
      },
      [](Napi::Env env, Stored& stored) -> Napi::Value {
        Napi::Object result = Napi::Object::New(env);
        result.Set("md5", stored.md5);
        result.Set("bytes", Napi::Number::New(env, static_cast<double>(stored.bytes)));
        result.Set("compressed", Napi::Boolean::New(env, stored.compressed));
        return result;
      });
}

}  // namespace rbdnative
