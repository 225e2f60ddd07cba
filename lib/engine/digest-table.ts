/**
 * A point in time's block digests: one XXH3-64 entry per block of the
 * image (0 = no digest known), which the transfer engine computes as data
 * passes and a verification computes again from what is stored. Pure
 * decisions (block size, resize, comparison) live here; the hashing is
 * native (native/digest.cc).
 */
import { describeValue } from '../ceph/validate.js';
import { invalidArgument } from '../ceph/errors.js';
import { blockDigests, digest128 } from '../ceph/transfer-job.js';
import { MAX_IO_SIZE } from './options.js';

/** Where a verification found stored bytes that do not match their digest. */
export interface Mismatch {
  offset: bigint;
  length: bigint;
}

/** The smallest block: reading a changed 4 KiB extent's whole block costs the same operation and 60 KiB more. */
export const MIN_DIGEST_BLOCK = 64n << 10n;
/** Blocks grow (doubling) until a table has at most this many entries (8 MiB), or reach the I/O size. */
export const MAX_TABLE_BLOCKS = 1n << 20n;
/** A table's blocks lie within one I/O, which is at least the smallest RBD object (order 12). */
const SMALLEST_BLOCK = 4n << 10n;

/** Whether blockSize can be a table's: a power of two from 4 KiB to the largest I/O (4 MiB). */
export function isDigestBlockSize(blockSize: unknown): blockSize is bigint {
  return typeof blockSize === 'bigint' && blockSize >= SMALLEST_BLOCK && blockSize <= MAX_IO_SIZE &&
    (blockSize & (blockSize - 1n)) === 0n;
}

/** A digest block size given by a caller, as `field` of `operation`'s arguments. */
export function checkDigestBlockSize(field: string, blockSize: unknown, operation: string): bigint {
  if (!isDigestBlockSize(blockSize)) {
    throw invalidArgument(operation, 'arguments',
      `${field} must be a bigint power of two from ${SMALLEST_BLOCK} to ${MAX_IO_SIZE} bytes, got ${describeValue(blockSize)}`);
  }
  return blockSize;
}

/** An image size given to the table's functions: a bigint below 2^64. */
function checkSize(size: unknown, operation: string): bigint {
  if (typeof size !== 'bigint' || size < 0n || size >= 1n << 64n) {
    throw invalidArgument(operation, 'arguments', `size must be a bigint from 0 to 2^64-1, got ${describeValue(size)}`);
  }
  return size;
}

/**
 * The digests a transfer is to compute (transfer.ts DigestStart): a
 * DigestTable, and blocks to read again that lie in it.
 */
export function checkDigestStart(value: unknown, operation: string): void {
  if (value === undefined) return;
  const field = 'options.digests';
  if (typeof value !== 'object' || value === null) {
    throw invalidArgument(operation, 'arguments', `${field} must be { table, extraBlocks? }, got ${describeValue(value)}`);
  }
  const { table, extraBlocks } = value as { table?: unknown; extraBlocks?: unknown };
  if (!(table instanceof DigestTable)) {
    throw invalidArgument(operation, 'arguments', `${field}.table must be a DigestTable, got ${describeValue(table)}`);
  }
  if (extraBlocks === undefined) return;
  if (!Array.isArray(extraBlocks) || extraBlocks.some((block) => typeof block !== 'bigint' || block < 0n || block >= table.count)) {
    throw invalidArgument(operation, 'arguments', `${field}.extraBlocks must be an array of block indexes (bigints below ${table.count})`);
  }
}

const zeroDigests = new Map<bigint, bigint>();

/**
 * The entries as 32-bit words (low, high): a table has up to 2^20 entries,
 * and looping over them as numbers stays within a few milliseconds of the
 * event loop, as BigInt reads would not.
 */
function words(entries: Buffer): Uint32Array {
  const aligned = entries.byteOffset % 4 === 0 ? entries : Buffer.from(entries);
  return new Uint32Array(aligned.buffer, aligned.byteOffset, aligned.length / 4);
}

/** The entry of a block of `length` zero bytes. */
export function zeroDigest(length: bigint): bigint {
  let digest = zeroDigests.get(length);
  if (digest === undefined) {
    digest = blockDigests(Buffer.alloc(Number(length)), Number(length))[0]!;
    zeroDigests.set(length, digest);
  }
  return digest;
}

/**
 * The block size of a new chain's digests: 64 KiB, doubled until the table
 * has at most 2^20 entries, never above the I/O size (which it must
 * divide: an I/O block is read whole or in pieces of whole blocks).
 */
export function digestBlockFor(size: bigint, ioSize: bigint): bigint {
  checkSize(size, 'digestBlockFor');
  checkDigestBlockSize('ioSize', ioSize, 'digestBlockFor');
  let block = MIN_DIGEST_BLOCK;
  while (block < ioSize && (size + block - 1n) / block > MAX_TABLE_BLOCKS) block *= 2n;
  return block < ioSize ? block : ioSize;
}

export class DigestTable {
  readonly size: bigint;
  readonly blockSize: bigint;
  /** 8 bytes per block, little-endian. */
  readonly entries: Buffer;

  constructor(size: bigint, blockSize: bigint, entries: Buffer) {
    const needs = DigestTable.blocksOf(size, blockSize) * 8n;
    if (!Buffer.isBuffer(entries) || BigInt(entries.length) !== needs) {
      throw invalidArgument('DigestTable', 'arguments',
        `a digest table of ${size} bytes in ${blockSize}-byte blocks needs a Buffer of ${needs} bytes, got ${Buffer.isBuffer(entries) ? `${entries.length} bytes` : describeValue(entries)}`);
    }
    this.size = size;
    this.blockSize = blockSize;
    this.entries = entries;
  }

  static blocksOf(size: bigint, blockSize: bigint): bigint {
    checkSize(size, 'DigestTable');
    checkDigestBlockSize('blockSize', blockSize, 'DigestTable');
    return (size + blockSize - 1n) / blockSize;
  }

  /** The table of an image that reads as zeros throughout (where a whole-history transfer starts). */
  static zeros(size: bigint, blockSize: bigint): DigestTable {
    const table = new DigestTable(size, blockSize, Buffer.alloc(Number(DigestTable.blocksOf(size, blockSize)) * 8));
    if (table.count === 0) return table;
    const whole = Buffer.alloc(8);
    whole.writeBigUInt64LE(zeroDigest(blockSize));
    table.entries.fill(whole);
    table.set(table.count - 1, zeroDigest(table.blockLength(table.count - 1)));
    return table;
  }

  get count(): number {
    return this.entries.length / 8;
  }

  entry(index: number): bigint {
    return this.entries.readBigUInt64LE(index * 8);
  }

  set(index: number, entry: bigint): void {
    this.entries.writeBigUInt64LE(entry, index * 8);
  }

  blockLength(index: number): bigint {
    const start = BigInt(index) * this.blockSize;
    return this.size - start < this.blockSize ? this.size - start : this.blockSize;
  }

  /** Blocks without a digest (their chain's earlier backups were not hashed). */
  unknownBlocks(): number {
    const w = words(this.entries);
    let unknown = 0;
    for (let i = 0; i < w.length; i += 2) if (w[i] === 0 && w[i + 1] === 0) unknown++;
    return unknown;
  }

  /** XXH3-128 of the entries, in hex: one digest of the whole point in time. */
  pointDigest(): string {
    return digest128(this.entries).toString('hex');
  }

  /**
   * The parent's table as the start of a transfer to an image of newSize:
   * blocks wholly inside both sizes keep their entry, blocks beyond the old
   * size read as zeros unless the transfer writes them, and the block on
   * either size's edge (its length or content changed) is read again.
   */
  resizedTo(newSize: bigint): { table: DigestTable; extraBlocks: bigint[] } {
    if (newSize === this.size) return { table: new DigestTable(newSize, this.blockSize, Buffer.from(this.entries)), extraBlocks: [] };
    const table = DigestTable.zeros(newSize, this.blockSize);
    const kept = (newSize < this.size ? newSize : this.size) / this.blockSize;
    this.entries.copy(table.entries, 0, 0, Number(kept) * 8);
    const extraBlocks = BigInt(table.count) > kept ? [kept] : [];
    return { table, extraBlocks };
  }

  /**
   * The blocks whose entries differ, adjacent ones joined, as byte ranges.
   * Blocks unknown on either side are not compared.
   */
  compare(other: DigestTable): Mismatch[] {
    if (!(other instanceof DigestTable) || other.size !== this.size || other.blockSize !== this.blockSize) {
      throw invalidArgument('DigestTable.compare', 'arguments', other instanceof DigestTable
        ? `digest tables of ${this.size}/${this.blockSize} and ${other.size}/${other.blockSize} bytes do not compare`
        : `must be a DigestTable, got ${describeValue(other)}`);
    }
    const mismatches: Mismatch[] = [];
    if (this.entries.equals(other.entries)) return mismatches;
    const mine = words(this.entries);
    const theirs = words(other.entries);
    const unknown = (w: Uint32Array, i: number): boolean => w[2 * i] === 0 && w[2 * i + 1] === 0;
    for (let i = 0; i < this.count; i++) {
      if (mine[2 * i] === theirs[2 * i] && mine[2 * i + 1] === theirs[2 * i + 1]) continue;
      if (unknown(mine, i) || unknown(theirs, i)) continue;
      const offset = BigInt(i) * this.blockSize;
      const last = mismatches.at(-1);
      if (last !== undefined && last.offset + last.length === offset) {
        last.length += this.blockLength(i);
      } else {
        mismatches.push({ offset, length: this.blockLength(i) });
      }
    }
    return mismatches;
  }
}
