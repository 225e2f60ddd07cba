/** DigestTable's decisions (lib/engine/digest-table.ts): block size, resize, comparison, and the native hashes they rest on. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkDigestStart, DigestTable, digestBlockFor, MIN_DIGEST_BLOCK, zeroDigest } from '../../lib/engine/digest-table.js';
import { InvalidArgumentError } from '../../lib/ceph/errors.js';
import { blockDigests, digest128 } from '../../lib/ceph/transfer-job.js';
import { BlockHasher } from '../../lib/engine/block-hasher.js';

const KiB = 1024n;
const MiB = 1024n * KiB;
const GiB = 1024n * MiB;

test('xxHash as libxxhash computes it: XXH3-128 of "abc", XXH3-64 entries, 0 stored as 1', () => {
  assert.equal(digest128(Buffer.from('abc')).toString('hex'), '06b05ab6733a618578af5f94892f3950');
  const entries = blockDigests(Buffer.alloc(10), 4);
  assert.equal(entries.length, 3);
  assert.equal(entries[0], entries[1]);
  assert.notEqual(entries[0], entries[2], 'a short last block has its own digest');
  assert.equal(entries[0], zeroDigest(4n));
  assert.equal(entries[2], zeroDigest(2n));
});

test('the block size: 64 KiB up to 64 GiB, then doubling to keep 2^20 entries, never above the I/O size', () => {
  assert.equal(digestBlockFor(10n * GiB, 4n * MiB), MIN_DIGEST_BLOCK);
  assert.equal(digestBlockFor(64n * GiB, 4n * MiB), MIN_DIGEST_BLOCK);
  assert.equal(digestBlockFor(64n * GiB + 1n, 4n * MiB), 128n * KiB);
  assert.equal(digestBlockFor(1024n * GiB, 4n * MiB), 1n * MiB);
  assert.equal(digestBlockFor(64n * 1024n * GiB, 4n * MiB), 4n * MiB);
  assert.equal(digestBlockFor(1n * GiB, 16n * KiB), 16n * KiB);
});

test('zeros: every entry the zero digest of its block, the short last one its own', () => {
  const table = DigestTable.zeros(200n * KiB, 64n * KiB);
  assert.equal(table.count, 4);
  for (let i = 0; i < 3; i++) assert.equal(table.entry(i), zeroDigest(64n * KiB));
  assert.equal(table.entry(3), zeroDigest(8n * KiB));
  assert.equal(table.unknownBlocks(), 0);
  assert.throws(() => new DigestTable(200n * KiB, 64n * KiB, Buffer.alloc(8)), InvalidArgumentError);
});

test('resizedTo keeps the blocks inside both sizes, zeroes the new ones, and reads the edge block again', () => {
  const old = new DigestTable(200n * KiB, 64n * KiB, Buffer.alloc(32));
  for (let i = 0; i < 4; i++) old.set(i, BigInt(100 + i));
  const grown = old.resizedTo(300n * KiB);
  assert.equal(grown.table.count, 5);
  assert.deepEqual([0, 1, 2].map((i) => grown.table.entry(i)), [100n, 101n, 102n]);
  assert.deepEqual(grown.extraBlocks, [3n], 'the old short last block is read again');
  assert.equal(grown.table.entry(4), zeroDigest(300n * KiB - 256n * KiB));
  const shrunk = old.resizedTo(100n * KiB);
  assert.equal(shrunk.table.count, 2);
  assert.equal(shrunk.table.entry(0), 100n);
  assert.deepEqual(shrunk.extraBlocks, [1n]);
  const aligned = old.resizedTo(128n * KiB);
  assert.deepEqual(aligned.extraBlocks, [], 'a cut on a block boundary leaves no edge block');
  const same = old.resizedTo(200n * KiB);
  assert.ok(same.table.entries.equals(old.entries) && same.table.entries !== old.entries, 'a copy');
});

test('compare joins adjacent mismatches into byte ranges and skips unknown blocks', () => {
  const a = new DigestTable(300n * KiB, 64n * KiB, Buffer.alloc(40));
  const b = new DigestTable(300n * KiB, 64n * KiB, Buffer.alloc(40));
  for (let i = 0; i < 5; i++) {
    a.set(i, BigInt(i + 1));
    b.set(i, BigInt(i + 1));
  }
  assert.deepEqual(a.compare(b), []);
  b.set(1, 99n);
  b.set(2, 98n);
  b.set(4, 97n);
  assert.deepEqual(a.compare(b), [{ offset: 64n * KiB, length: 128n * KiB }, { offset: 256n * KiB, length: 44n * KiB }]);
  a.set(1, 0n);
  assert.equal(a.unknownBlocks(), 1);
  assert.deepEqual(a.compare(b), [{ offset: 128n * KiB, length: 64n * KiB }, { offset: 256n * KiB, length: 44n * KiB }]);
  assert.throws(() => a.compare(DigestTable.zeros(300n * KiB, 128n * KiB)), InvalidArgumentError);
  assert.match(a.pointDigest(), /^[0-9a-f]{32}$/);
  assert.notEqual(a.pointDigest(), b.pointDigest());
});

test('bad sizes, block sizes, entries and digest starts are InvalidArgumentErrors saying what is accepted', () => {
  const refused = (call: () => unknown, message: RegExp): void => {
    assert.throws(call, (error: unknown) => error instanceof InvalidArgumentError && message.test(error.message));
  };
  for (const block of [0n, -1n, 3n, 2048n, 8n * MiB, 65536, '65536', null, undefined]) {
    refused(() => DigestTable.zeros(MiB, block as bigint), /blockSize must be a bigint power of two from 4096 to 4194304 bytes/);
    refused(() => digestBlockFor(MiB, block as bigint), /ioSize must be a bigint power of two/);
  }
  for (const size of [-1n, 1n << 64n, 5, '5', null]) {
    refused(() => DigestTable.zeros(size as bigint, 64n * KiB), /size must be a bigint from 0 to 2\^64-1/);
    refused(() => digestBlockFor(size as bigint, 4n * MiB), /size must be a bigint/);
  }
  refused(() => new DigestTable(MiB, 64n * KiB, 'x' as unknown as Buffer), /needs a Buffer of 128 bytes, got "x"/);
  refused(() => DigestTable.zeros(MiB, 64n * KiB).compare({} as DigestTable), /must be a DigestTable, got an object/);
  const table = DigestTable.zeros(MiB, 64n * KiB);
  assert.doesNotThrow(() => checkDigestStart(undefined, 'op'));
  assert.doesNotThrow(() => checkDigestStart({ table, extraBlocks: [0n, 15n] }, 'op'));
  refused(() => checkDigestStart(null, 'op'), /options.digests must be \{ table, extraBlocks\? \}, got null/);
  refused(() => checkDigestStart({ table: {} }, 'op'), /options.digests.table must be a DigestTable/);
  for (const extra of [[16n], [-1n], [1], 'x']) {
    refused(() => checkDigestStart({ table, extraBlocks: extra }, 'op'), /extraBlocks must be an array of block indexes \(bigints below 16\)/);
  }
});

test('BlockHasher: pieces of any alignment, runs of zeros and a short last block give the table of the whole bytes', () => {
  const size = 5 * 4096 + 1000;
  const bytes = Buffer.alloc(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 7919) % 251;
  bytes.fill(0, 8192, 12288); // a whole block of zeros
  bytes.fill(0, 15000, 17000); // zeros across a block boundary
  const expected = blockDigests(bytes, 4096);
  const hasher = new BlockHasher(BigInt(size), 4096n);
  // Data cut anywhere, zero runs fed as lengths without data.
  const feeds: Array<[number, number, boolean]> = [[0, 100, true], [100, 8000, true], [8100, 92, true], [8192, 4096, false],
    [12288, 2712, true], [15000, 2000, false], [17000, size - 17000, true]];
  for (const [at, length, data] of feeds) hasher.feed(data ? bytes.subarray(at, at + length) : undefined, BigInt(length));
  assert.equal(hasher.complete, true);
  assert.deepEqual([...Array(hasher.table.count).keys()].map((i) => hasher.table.entry(i)), [...expected]);
});
