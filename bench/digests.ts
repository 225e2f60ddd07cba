/**
 * The digests of the transfers with digests, on the benchmark's side and
 * untimed: the table an incremental starts from (hashImage of the source
 * at its from-snapshot, written to a file the child reads before its
 * timing starts, so that neither the hashing's time nor its operations
 * count), and the check of every table a run computed against hashImage
 * of the target's end snapshot.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ioSizeFor } from '../lib/engine/options.js';
import { Cluster, digestBlockFor, hashImage, type DigestTable } from '../lib/index.js';
import { CONNECT_TIMEOUT_MS, OP_TIMEOUT_MS, VerificationError, type Bench } from './bench.js';
import type { DigestsStart } from './protocol.js';
import type { Measure } from './results.js';

const KiB = 1024;

interface Hashed {
  table: DigestTable;
  bytesRead: bigint;
  ms: number;
}

/** hashImage of POOL/IMAGE@SNAPSHOT in the block size a chain of its size gets (digestBlockFor). */
async function hashSnapshot(bench: Bench, pool: string, image: string, snapshot: string): Promise<Hashed> {
  const started = performance.now();
  await using cluster = await Cluster.connect({ ...bench.a.ref, timeoutMs: CONNECT_TIMEOUT_MS, opTimeoutMs: OP_TIMEOUT_MS });
  await using opened = await cluster.pool(pool);
  await using handle = await opened.openImage(image, { snapshot, readOnly: true });
  const { size, objectSize } = await handle.stat();
  const hashed = await hashImage({
    image: handle, snapshot, blockSize: digestBlockFor(size, ioSizeFor(objectSize)),
    concurrency: bench.config.engine.concurrency, memoryBytes: bench.config.engine.memoryBytes,
  });
  return { table: hashed.table, bytesRead: hashed.bytesRead, ms: performance.now() - started };
}

/** The start of a whole-history transfer with digests: the zeros of a volume of the bench's size. */
export function zerosStart(bench: Bench): DigestsStart {
  const size = BigInt(bench.sizeBytes);
  // The bench's images have 4 MiB objects (bench.ts OBJECT_SIZE).
  return { size: bench.sizeBytes, blockSize: Number(digestBlockFor(size, ioSizeFor(4n << 20n))) };
}

/**
 * The start of an incremental with digests from rbd/src@FROM: that
 * snapshot's table by hashImage, in a file under cluster A's directory
 * (removed with the run's work directory).
 */
export async function fromSnapshotStart(bench: Bench, from: string): Promise<DigestsStart> {
  const hashed = await hashSnapshot(bench, 'rbd', 'src', from);
  const entriesFile = join(bench.a.dir, `digests-src-${from}.bin`);
  writeFileSync(entriesFile, hashed.table.entries);
  bench.log(`  start table: hashImage of rbd/src@${from} (untimed, ${(hashed.ms / 1000).toFixed(2)} s, ` +
    `${hashed.table.count} blocks of ${Number(hashed.table.blockSize) / KiB} KiB)`);
  return { size: Number(hashed.table.size), blockSize: Number(hashed.table.blockSize), entriesFile };
}

/**
 * Checks the table a run with digests computed (its point digest, the
 * XXH3-128 of the entries) against hashImage of the target's end snapshot,
 * POOL/IMAGE@SNAPSHOT. Fails the run loudly when they differ.
 */
export async function checkDigests(bench: Bench, m: Measure, pool: string, image: string, snapshot: string): Promise<string> {
  const computed = m.stats?.['pointDigest'];
  if (typeof computed !== 'string') {
    throw new VerificationError(`VERIFICATION FAILED: the transfer into ${pool}/${image} with digests returned no digest table`);
  }
  const hashed = await hashSnapshot(bench, pool, image, snapshot);
  const expected = hashed.table.pointDigest();
  if (computed !== expected || Number(m.stats?.['digestBlockSize']) !== Number(hashed.table.blockSize)) {
    throw new VerificationError(`VERIFICATION FAILED: the digest table of the transfer into ${pool}/${image}@${snapshot} ` +
      `(point digest ${computed}, ${String(m.stats?.['digestBlockSize'])}-byte blocks) differs from hashImage of it ` +
      `(${expected}, ${hashed.table.blockSize}-byte blocks)`);
  }
  bench.log(`  verified the digest table: hashImage of ${pool}/${image}@${snapshot} gives the same point digest ` +
    `${expected.slice(0, 16)}… (${(hashed.ms / 1000).toFixed(2)} s, untimed)`);
  return `its digest table equals hashImage of ${pool}/${image}@${snapshot} (${hashed.table.count} blocks of ` +
    `${Number(hashed.table.blockSize) / KiB} KiB)`;
}
