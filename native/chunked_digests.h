// The digests of Cinder's chunked file layout, on the thread pool: SHA-256
// of every hash block (the sha256file) and MD5 of every object's data (the
// metadata). OpenSSL's, as Node.js itself links and exports it: the addon
// needs no crypto library of its own.
#pragma once

#include <napi.h>

#include <openssl/evp.h>

#include <string>

namespace rbdnative {

// sha256Blocks(data, blockSize): Promise<Buffer>, 32 bytes per block of
// data (the last may be short), in order.
Napi::Value Sha256Blocks(const Napi::CallbackInfo& info);

// MD5 of bytes given in order, as Python's hashlib computes it.
class Md5Digest {
 public:
  Md5Digest();
  ~Md5Digest();
  Md5Digest(const Md5Digest&) = delete;
  Md5Digest& operator=(const Md5Digest&) = delete;
  void Update(const char* data, size_t length);
  // Lower-case hex; the digest is final after this.
  std::string Hex();

 private:
  EVP_MD_CTX* ctx_;
};

// new Md5(): update(data) resolves once data is hashed (on the thread pool;
// one at a time); digest() is the hex digest of all of it, and ends it.
class Md5Wrap : public Napi::ObjectWrap<Md5Wrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Md5Wrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value Update(const Napi::CallbackInfo& info);
  Napi::Value Digest(const Napi::CallbackInfo& info);
  std::shared_ptr<Md5Digest> digest_;
  bool ended_ = false;
  int inflight_ = 0;
};

}  // namespace rbdnative
