/**
 * A backup's block digests, stored beside it in the backup pool as the
 * object backup.<id>.digests. Format version 1: one line of JSON (the
 * header below), a newline, then the table: 8 bytes per block of the
 * backup's size, little-endian XXH3-64 of the block's bytes (0: no digest
 * known, a computed 0 is stored as 1). pointDigest, XXH3-128 of the table,
 * is the digest of the whole point in time and keeps the table honest.
 */
import { NotFoundError } from '../ceph/errors.js';
import type { Pool } from '../ceph/pool.js';
import { DigestTable, isDigestBlockSize } from '../engine/digest-table.js';
import { DigestsError } from './errors.js';
import { digestsObjectName } from './naming.js';

export const DIGESTS_FORMAT = 'rbd-backup-digests';
export const DIGESTS_VERSION = 1;

export interface DigestsHeader {
  format: typeof DIGESTS_FORMAT;
  version: typeof DIGESTS_VERSION;
  backupId: string;
  /** The backup's snapshot, whose bytes the table describes. */
  snapshot: string;
  /** Bytes, as a decimal string (a JSON number loses precision past 2^53). */
  size: string;
  blockSize: number;
  algorithm: 'xxh3-64';
  blocks: number;
  /** Blocks without a digest: the chain's earlier backups were not hashed. */
  unknownBlocks: number;
  /** XXH3-128 of the table, hex. */
  pointDigest: string;
  createdAt: string;
}

export interface BackupDigests {
  header: DigestsHeader;
  table: DigestTable;
}

export function encodeDigests(backupId: string, snapshot: string, table: DigestTable, createdAt = new Date()): Buffer {
  const header: DigestsHeader = {
    format: DIGESTS_FORMAT, version: DIGESTS_VERSION, backupId, snapshot,
    size: table.size.toString(), blockSize: Number(table.blockSize), algorithm: 'xxh3-64',
    blocks: table.count, unknownBlocks: table.unknownBlocks(), pointDigest: table.pointDigest(),
    createdAt: createdAt.toISOString(),
  };
  return Buffer.concat([Buffer.from(`${JSON.stringify(header)}\n`), table.entries]);
}

/** Parses and checks a digests object against the backup it should describe. */
export function decodeDigests(data: Buffer, expected: { backupId: string; snapshot: string }, resource: string): BackupDigests {
  const fail = (detail: string): DigestsError => new DigestsError({ operation: 'readDigests', resource, detail });
  const newline = data.indexOf(0x0a);
  if (newline < 0) throw fail('the digests object has no header line (truncated or not a digests object)');
  let header: Partial<DigestsHeader>;
  try {
    header = JSON.parse(data.subarray(0, newline).toString('utf8')) as Partial<DigestsHeader>;
  } catch {
    throw fail('the digests object\'s header is not JSON');
  }
  if (header.format !== DIGESTS_FORMAT) throw fail(`not a digests object (format ${String(header.format)})`);
  if (header.version !== DIGESTS_VERSION) {
    throw fail(`digests format version ${String(header.version)} is not one this version reads (${DIGESTS_VERSION}); verify with a newer ceph-rbd-backup`);
  }
  if (header.backupId !== expected.backupId || header.snapshot !== expected.snapshot) {
    throw fail(`the digests describe backup ${String(header.backupId)}@${String(header.snapshot)}, not ${expected.backupId}@${expected.snapshot}`);
  }
  const { size, blockSize, blocks, pointDigest } = header;
  if (typeof size !== 'string' || !/^\d{1,20}$/.test(size) || BigInt(size) >= 1n << 64n ||
    typeof blockSize !== 'number' || !Number.isSafeInteger(blockSize) ||
    typeof blocks !== 'number' || !Number.isSafeInteger(blocks) ||
    typeof pointDigest !== 'string' || header.algorithm !== 'xxh3-64') {
    throw fail('the digests header lacks size, blockSize, blocks, algorithm or pointDigest');
  }
  if (!isDigestBlockSize(BigInt(blockSize))) {
    throw fail(`the digests' block size ${String(blockSize)} is not a power of two from 4 KiB to 4 MiB`);
  }
  const entries = data.subarray(newline + 1);
  if (BigInt(blocks) !== DigestTable.blocksOf(BigInt(size), BigInt(blockSize)) || entries.length !== blocks * 8) {
    throw fail(`the table holds ${entries.length} bytes where ${blocks} blocks of ${blockSize} bytes over ${size} bytes need ${blocks * 8} (truncated)`);
  }
  const table = new DigestTable(BigInt(size), BigInt(blockSize), Buffer.from(entries));
  if (table.pointDigest() !== pointDigest) throw fail('the table does not match its point digest (the digests object is damaged)');
  return { header: header as DigestsHeader, table };
}

/** A backup's digests; undefined when it has none (made before digests, or by Cinder). */
export async function readDigests(pool: Pool, backupId: string, snapshot: string): Promise<BackupDigests | undefined> {
  const name = digestsObjectName(backupId);
  let data: Buffer;
  try {
    data = await pool.readObject(name);
  } catch (error) {
    if (error instanceof NotFoundError) return undefined;
    throw error;
  }
  return decodeDigests(data, { backupId, snapshot }, `${pool.spec}/${name}`);
}

/** The digests of a backup's point in time (snapshot undefined: a legacy full copy), or why there are none (DigestsError). */
export async function requireDigests(pool: Pool, backupId: string, point: { snapshot: string | undefined; size: bigint },
  operation: string, resource: string): Promise<DigestTable> {
  const none = (detail: string): DigestsError => new DigestsError({ operation, resource, detail });
  if (point.snapshot === undefined) throw none('a legacy full copy (no backup snapshot) has no digests');
  const digests = await readDigests(pool, backupId, point.snapshot);
  if (digests === undefined) {
    throw none('the backup has no digests object (made before digests were kept, by Cinder, or with digests off); it can still be restored without verify');
  }
  if (digests.table.size !== point.size) throw none(`the digests cover ${digests.table.size} bytes, the backup's snapshot ${point.size}`);
  return digests.table;
}

export async function writeDigests(pool: Pool, backupId: string, snapshot: string, table: DigestTable): Promise<void> {
  await pool.writeObject(digestsObjectName(backupId), encodeDigests(backupId, snapshot, table));
}

/** Removes a backup's digests object; false when there was none. */
export async function removeDigests(pool: Pool, backupId: string): Promise<boolean> {
  try {
    await pool.removeObject(digestsObjectName(backupId));
    return true;
  } catch (error) {
    if (error instanceof NotFoundError) return false;
    throw error;
  }
}
