#include "chunked_digests.h"

#include <cerrno>
#include <memory>
#include <new>
#include <vector>

#include "args.h"
#include "worker.h"

namespace rbdnative {

namespace {

// Fetched once: EVP_sha256() would look the algorithm up on every call.
const EVP_MD* Sha256() {
  static const EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

const EVP_MD* Md5() {
  static const EVP_MD* md = EVP_MD_fetch(nullptr, "MD5", nullptr);
  return md;
}

Napi::Buffer<char> BufferArg(const Napi::CallbackInfo& info, size_t index, const char* call) {
  if (!info[index].IsBuffer()) ThrowInvalid(info.Env(), std::string(call) + " takes a Buffer");
  return info[index].As<Napi::Buffer<char>>();
}

}  // namespace

Napi::Value Sha256Blocks(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto buffer = BufferArg(info, 0, "sha256Blocks");
  uint64_t block = U64Arg(info, 1, "block size");
  if (block == 0 || block > (1u << 30)) ThrowInvalid(env, "block size must be 1 byte to 1 GiB");
  const char* data = buffer.Data();
  size_t length = buffer.Length();
  // The buffer is the call's owner: held until the call settles, so data stays valid.
  return RunAsync<std::vector<unsigned char>>(
      env, buffer, nullptr,
      [data, length, block](std::vector<unsigned char>& out, std::string& message) {
        const EVP_MD* md = Sha256();
        if (md == nullptr) {
          message = "OpenSSL has no SHA-256";
          return -ENOSYS;
        }
        size_t count = (length + block - 1) / block;
        out.resize(count * 32);
        for (size_t i = 0; i < count; ++i) {
          size_t start = i * block;
          size_t piece = std::min<size_t>(block, length - start);
          if (EVP_Digest(data + start, piece, out.data() + i * 32, nullptr, md, nullptr) != 1) {
            message = "SHA-256 failed";
            return -EIO;
          }
        }
        return 0;
      },
      [](Napi::Env env, std::vector<unsigned char>& out) -> Napi::Value {
        return Napi::Buffer<char>::Copy(env, reinterpret_cast<const char*>(out.data()), out.size());
      });
}

Md5Digest::Md5Digest() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr || Md5() == nullptr || EVP_DigestInit_ex(ctx_, Md5(), nullptr) != 1) {
    EVP_MD_CTX_free(ctx_);
    throw std::bad_alloc();
  }
}

Md5Digest::~Md5Digest() { EVP_MD_CTX_free(ctx_); }

void Md5Digest::Update(const char* data, size_t length) { EVP_DigestUpdate(ctx_, data, length); }

std::string Md5Digest::Hex() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_DigestFinal_ex(ctx_, digest, &size);
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < size; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 15];
  }
  return hex;
}

Napi::Function Md5Wrap::Define(Napi::Env env) {
  return DefineClass(env, "Md5", {InstanceMethod<&Md5Wrap::Update>("update"), InstanceMethod<&Md5Wrap::Digest>("digest")});
}

Md5Wrap::Md5Wrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Md5Wrap>(info) {
  try {
    digest_ = std::make_shared<Md5Digest>();
  } catch (const std::bad_alloc&) {
    throw MakeError(info.Env(), ENOMEM, "cannot set up MD5");
  }
}

Napi::Value Md5Wrap::Update(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto buffer = BufferArg(info, 0, "md5.update");
  if (ended_) throw MakeError(env, EINVAL, "md5.update after digest()");
  if (inflight_ > 0) throw MakeError(env, EBUSY, "md5.update: the previous update has not settled");
  // Held until the call settles: this wrapper (its count) and the buffer (its data).
  Napi::Object owners = Napi::Object::New(env);
  owners.Set("md5", Value());
  owners.Set("data", buffer);
  auto digest = digest_;
  const char* data = buffer.Data();
  size_t length = buffer.Length();
  return RunAsync(env, owners, &inflight_, [digest, data, length](std::string&) {
    digest->Update(data, length);
    return 0;
  });
}

Napi::Value Md5Wrap::Digest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (ended_) throw MakeError(env, EINVAL, "md5.digest() twice");
  if (inflight_ > 0) throw MakeError(env, EBUSY, "md5.digest(): an update has not settled");
  ended_ = true;
  return Napi::String::New(env, digest_->Hex());
}

}  // namespace rbdnative
