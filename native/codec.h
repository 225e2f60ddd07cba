// Streaming compression for backups in Cinder's chunked file layout: zstd
// (libzstd) and bz2 (libbz2), both ways, on the thread pool. Node's zlib
// has no bz2, and no zstd before Node 22.15.
#pragma once

#include <napi.h>

namespace rbdnative {

// new Codec(kind): 'zstd-compress', 'zstd-decompress', 'bz2-compress' or
// 'bz2-decompress'. codec.run(input, finish, outputCap) resolves to
// { output, consumed, done }: what it made of input (at most outputCap
// bytes; call again with the rest of the input, or an empty one, until it
// has consumed it all and output came back short), and, with finish (the
// input's end), whether the stream is complete. One run at a time.
class CodecWrap : public Napi::ObjectWrap<CodecWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit CodecWrap(const Napi::CallbackInfo& info);
  ~CodecWrap() override;
  // The library's stream, used on the thread pool by one run at a time.
  struct State;

 private:
  Napi::Value Run(const Napi::CallbackInfo& info);
  State* state_ = nullptr;
  int inflight_ = 0;
};

}  // namespace rbdnative
