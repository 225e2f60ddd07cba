#include "digest.h"

// xxHash compiled into the addon from its header (libxxhash-dev): the
// prebuilt addon then needs no libxxhash at run time.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>

#include "args.h"

namespace rbdnative {

namespace {

uint64_t Entry(XXH64_hash_t hash) { return hash == 0 ? 1 : hash; }

}  // namespace

uint64_t BlockDigest(const char* data, uint64_t length) {
  return Entry(XXH3_64bits(data, static_cast<size_t>(length)));
}

uint64_t ZeroDigest(uint64_t length) {
  // The streaming state gives what one call over the whole buffer gives.
  static const char kZeros[64 << 10] = {};
  XXH3_state_t* state = XXH3_createState();
  if (state == nullptr) throw std::bad_alloc();
  XXH3_64bits_reset(state);
  for (uint64_t left = length; left > 0;) {
    size_t piece = static_cast<size_t>(std::min<uint64_t>(left, sizeof(kZeros)));
    XXH3_64bits_update(state, kZeros, piece);
    left -= piece;
  }
  uint64_t digest = Entry(XXH3_64bits_digest(state));
  XXH3_freeState(state);
  return digest;
}

uint64_t DigestTable::BlockLength(uint64_t index) const {
  return std::min(block_, length_ - BlockStart(index));
}

void DigestTable::Hash(uint64_t index, const char* data) {
  entries_[index] = BlockDigest(data, BlockLength(index));
}

void DigestTable::SetZero(uint64_t index) {
  uint64_t length = BlockLength(index);
  // Every block but the last has the same length: one zero digest serves.
  static thread_local uint64_t cached_length = 0;
  static thread_local uint64_t cached_digest = 0;
  if (length != cached_length) {
    cached_digest = ZeroDigest(length);
    cached_length = length;
  }
  entries_[index] = cached_digest;
}

Napi::Value Digest128(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBuffer()) ThrowInvalid(env, "digest128 takes a Buffer");
  auto buffer = info[0].As<Napi::Buffer<char>>();
  XXH128_canonical_t canonical;
  XXH128_canonicalFromHash(&canonical, XXH3_128bits(buffer.Data(), buffer.Length()));
  return Napi::Buffer<char>::Copy(env, reinterpret_cast<const char*>(canonical.digest), sizeof(canonical.digest));
}

Napi::Value BlockDigests(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBuffer()) ThrowInvalid(env, "blockDigests takes a Buffer");
  auto buffer = info[0].As<Napi::Buffer<char>>();
  uint64_t block = U64Arg(info, 1, "block size");
  if (block == 0) ThrowInvalid(env, "block size must be positive");
  uint64_t length = buffer.Length();
  uint64_t count = (length + block - 1) / block;
  auto result = Napi::BigUint64Array::New(env, count);
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t start = i * block;
    result[i] = BlockDigest(buffer.Data() + start, std::min(block, length - start));
  }
  return result;
}

}  // namespace rbdnative
