// Block digests of an image's data: the transfer engine hashes each block
// it reads (XXH3, 64 bits per block) into a table that covers the whole
// image, and JavaScript hashes such a table (XXH3, 128 bits) into one
// digest of the point in time. xxHash (Debian's libxxhash) hashes at
// memory speed, far above any cluster's read rate; it guards against
// corruption, not against someone who can rewrite the digests too. It is
// compiled in from the header (digest.cc), so only a build needs it.
#pragma once

#include <napi.h>

#include <cstdint>
#include <vector>

namespace rbdnative {

// One entry per block of the image, in block order. 0 means "no digest
// known" (a block of a chain hashed by nothing before): a computed 0 is
// stored as 1, which costs 2^-64 of the hash's strength.
class DigestTable {
 public:
  DigestTable() = default;
  DigestTable(std::vector<uint64_t> entries, uint64_t block, uint64_t length)
      : entries_(std::move(entries)), block_(block), length_(length) {}

  bool enabled() const { return block_ != 0; }
  uint64_t block() const { return block_; }
  uint64_t BlockOf(uint64_t offset) const { return offset / block_; }
  uint64_t BlockStart(uint64_t index) const { return index * block_; }
  // A block's length: block(), or less for the image's last block.
  uint64_t BlockLength(uint64_t index) const;
  uint64_t count() const { return entries_.size(); }
  // Hashes `data` (the whole of block `index`) into the table.
  void Hash(uint64_t index, const char* data);
  // Block `index` reads as zeros.
  void SetZero(uint64_t index);
  const std::vector<uint64_t>& entries() const { return entries_; }

 private:
  std::vector<uint64_t> entries_;
  uint64_t block_ = 0;
  uint64_t length_ = 0;
};

// The table entry of `length` bytes of data.
uint64_t BlockDigest(const char* data, uint64_t length);
// The table entry of `length` zero bytes, without a buffer of that size.
uint64_t ZeroDigest(uint64_t length);

// JavaScript entries, synchronous (XXH3 hashes 8 MiB, the largest table,
// in well under a millisecond):
// digest128(buffer) -> 16-byte Buffer (XXH3-128, big-endian as xxHash prints it).
Napi::Value Digest128(const Napi::CallbackInfo& info);
// blockDigests(buffer, blockSize) -> BigUint64Array, one table entry per
// block (the last one may be short): what a transfer would store for them.
Napi::Value BlockDigests(const Napi::CallbackInfo& info);

}  // namespace rbdnative
