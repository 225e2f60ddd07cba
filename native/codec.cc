#include "codec.h"

#include <bzlib.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "args.h"
#include "worker.h"

namespace rbdnative {

enum class CodecKind { kZstdCompress, kZstdDecompress, kBz2Compress, kBz2Decompress };

struct CodecWrap::State {
  CodecKind kind;
  ZSTD_CCtx* zc = nullptr;
  ZSTD_DCtx* zd = nullptr;
  bz_stream bz{};
  bool bz_open = false;
  bool ended = false;
  // zstd decompression: a frame has been started and not ended.
  bool in_frame = false;

  ~State() {
    ZSTD_freeCCtx(zc);
    ZSTD_freeDCtx(zd);
    if (bz_open) {
      if (kind == CodecKind::kBz2Compress) BZ2_bzCompressEnd(&bz);
      else BZ2_bzDecompressEnd(&bz);
    }
  }
};

namespace {

struct Step {
  std::vector<char> output;
  size_t consumed = 0;
  bool done = false;
};

std::string Bz2Error(int rc) {
  switch (rc) {
    case BZ_DATA_ERROR: return "bz2 data is corrupt";
    case BZ_DATA_ERROR_MAGIC: return "not bz2 data (no bz2 header)";
    case BZ_MEM_ERROR: return "bz2 ran out of memory";
    default: return "bz2 failed with code " + std::to_string(rc);
  }
}

// One step on the thread pool. Returns a negative errno and a message on failure.
int RunStep(CodecWrap::State* s, const std::vector<char>& input, bool finish, size_t cap, Step& step, std::string& message) {
  step.output.resize(cap);
  if (s->ended && !input.empty()) {
    message = "data after the end of the compressed stream";
    return -EBADMSG;
  }
  switch (s->kind) {
    case CodecKind::kZstdCompress: {
      ZSTD_inBuffer in{input.data(), input.size(), 0};
      ZSTD_outBuffer out{step.output.data(), cap, 0};
      size_t left = 0;
      do {
        left = ZSTD_compressStream2(s->zc, &out, &in, finish ? ZSTD_e_end : ZSTD_e_continue);
        if (ZSTD_isError(left)) {
          message = std::string("zstd: ") + ZSTD_getErrorName(left);
          return -EIO;
        }
      } while (out.pos < out.size && (in.pos < in.size || (finish && left != 0)));
      step.consumed = in.pos;
      step.output.resize(out.pos);
      step.done = finish && in.pos == in.size && left == 0;
      break;
    }
    case CodecKind::kZstdDecompress: {
      ZSTD_inBuffer in{input.data(), input.size(), 0};
      ZSTD_outBuffer out{step.output.data(), cap, 0};
      while (out.pos < out.size && (in.pos < in.size || s->in_frame)) {
        size_t before_in = in.pos;
        size_t before_out = out.pos;
        size_t rc = ZSTD_decompressStream(s->zd, &out, &in);
        if (ZSTD_isError(rc)) {
          message = std::string("zstd data does not decompress: ") + ZSTD_getErrorName(rc);
          return -EBADMSG;
        }
        s->in_frame = rc != 0;
        if (in.pos == before_in && out.pos == before_out) break;  // needs more input
      }
      step.consumed = in.pos;
      step.output.resize(out.pos);
      if (finish && in.pos == in.size && step.output.size() < cap) {
        if (s->in_frame) {
          message = "the zstd data ends inside a frame: truncated";
          return -EBADMSG;
        }
        step.done = true;
      }
      break;
    }
    case CodecKind::kBz2Compress:
    case CodecKind::kBz2Decompress: {
      bz_stream& bz = s->bz;
      bz.next_in = const_cast<char*>(input.data());
      bz.avail_in = static_cast<unsigned>(input.size());
      bz.next_out = step.output.data();
      bz.avail_out = static_cast<unsigned>(cap);
      if (s->kind == CodecKind::kBz2Compress) {
        int rc = BZ_RUN_OK;
        while (bz.avail_out > 0 && (bz.avail_in > 0 || finish)) {
          rc = BZ2_bzCompress(&bz, finish ? BZ_FINISH : BZ_RUN);
          if (rc == BZ_STREAM_END) break;
          if (rc != BZ_RUN_OK && rc != BZ_FINISH_OK) {
            message = Bz2Error(rc);
            return -EIO;
          }
        }
        step.done = rc == BZ_STREAM_END;
      } else {
        while (bz.avail_out > 0 && bz.avail_in > 0 && !s->ended) {
          int rc = BZ2_bzDecompress(&bz);
          if (rc == BZ_STREAM_END) {
            s->ended = true;
          } else if (rc != BZ_OK) {
            message = "bz2 data does not decompress: " + Bz2Error(rc);
            return -EBADMSG;
          }
        }
        if (s->ended && bz.avail_in > 0) {
          message = "data after the end of the bz2 stream";
          return -EBADMSG;
        }
        size_t made = cap - bz.avail_out;
        if (finish && bz.avail_in == 0 && made < cap) {
          if (!s->ended) {
            message = "the bz2 data ends before its stream does: truncated";
            return -EBADMSG;
          }
          step.done = true;
        }
      }
      step.consumed = input.size() - bz.avail_in;
      step.output.resize(cap - bz.avail_out);
      break;
    }
  }
  if (step.done) s->ended = true;
  return 0;
}

}  // namespace

Napi::Function CodecWrap::Define(Napi::Env env) {
  return DefineClass(env, "Codec", {InstanceMethod<&CodecWrap::Run>("run")});
}

CodecWrap::CodecWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CodecWrap>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowInvalid(env, "Codec takes its kind");
  std::string kind = info[0].As<Napi::String>();
  auto* state = new State();
  if (kind == "zstd-compress") {
    state->kind = CodecKind::kZstdCompress;
    state->zc = ZSTD_createCCtx();
    // Each frame carries a checksum of its content: a damaged object fails its decompression, not only its md5.
    if (state->zc != nullptr) ZSTD_CCtx_setParameter(state->zc, ZSTD_c_checksumFlag, 1);
  } else if (kind == "zstd-decompress") {
    state->kind = CodecKind::kZstdDecompress;
    state->zd = ZSTD_createDCtx();
  } else if (kind == "bz2-compress" || kind == "bz2-decompress") {
    bool compress = kind == "bz2-compress";
    state->kind = compress ? CodecKind::kBz2Compress : CodecKind::kBz2Decompress;
    // Level 9, as Python's bz2.compress; no small-memory mode.
    int rc = compress ? BZ2_bzCompressInit(&state->bz, 9, 0, 0) : BZ2_bzDecompressInit(&state->bz, 0, 0);
    state->bz_open = rc == BZ_OK;
  } else {
    delete state;
    ThrowInvalid(env, "Codec kind must be zstd-compress, zstd-decompress, bz2-compress or bz2-decompress, got " + kind);
  }
  bool ready = state->zc != nullptr || state->zd != nullptr || state->bz_open;
  if (!ready) {
    delete state;
    throw MakeError(env, ENOMEM, "cannot set up " + kind);
  }
  state_ = state;
}

CodecWrap::~CodecWrap() { delete state_; }

Napi::Value CodecWrap::Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBuffer()) ThrowInvalid(env, "codec.run takes a Buffer");
  if (!info[1].IsBoolean()) ThrowInvalid(env, "codec.run's finish must be true or false");
  uint64_t cap = U64Arg(info, 2, "output cap");
  if (cap == 0 || cap > (64u << 20)) ThrowInvalid(env, "output cap must be 1 byte to 64 MiB");
  if (inflight_ > 0) throw MakeError(env, EBUSY, "codec.run: the previous run has not settled");
  auto buffer = info[0].As<Napi::Buffer<char>>();
  // Copied: the caller may reuse its buffer, and a copy of a piece costs little beside (de)compressing it.
  auto input = std::make_shared<std::vector<char>>(buffer.Data(), buffer.Data() + buffer.Length());
  bool finish = info[1].As<Napi::Boolean>();
  State* state = state_;
  return RunAsync<Step>(
      env, Value(), &inflight_,
      [state, input, finish, cap](Step& step, std::string& message) {
        return RunStep(state, *input, finish, static_cast<size_t>(cap), step, message);
      },
      [](Napi::Env env, Step& step) -> Napi::Value {
        Napi::Object result = Napi::Object::New(env);
        result.Set("output", Napi::Buffer<char>::Copy(env, step.output.data(), step.output.size()));
        result.Set("consumed", Napi::Number::New(env, static_cast<double>(step.consumed)));
        result.Set("done", Napi::Boolean::New(env, step.done));
        return result;
      });
}

}  // namespace rbdnative
