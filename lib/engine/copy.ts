/**
 * copyImage: the full-copy path, used when a diff restore is not allowed.
 * Copies source@snapshot into a target image chunk by chunk (default
 * 128 MiB, the last one partial), with the same native pipelining as
 * transferDiff. Within each chunk only allocated extents are read; the rest
 * of the chunk is skipped on a target that reads as zeros and zeroed on one
 * that holds data, so a used target ends up byte-identical too.
 */
import type { TransferPlan } from '../ceph/transfer-job.js';
import { cancelledError } from '../ceph/cancel.js';
import { invalidArgument } from '../ceph/errors.js';
import { checkFlag, checkName, toU64 } from '../ceph/validate.js';
import { checkSourceAndTarget } from '../ceph/image-argument.js';
import { checkDigestStart } from './digest-table.js';
import type { Image } from '../ceph/image.js';
import { logEngine } from './log.js';
import { checkEngineOptions, ioSizeFor, type EngineOptions } from './options.js';
import { clearResume, findResume } from './resume.js';
import { hasRecord, runTransfer, type DigestStart, type TransferStats } from './transfer.js';

export interface CopyImageOptions extends EngineOptions {
  source: Image;
  /** The snapshot to copy; absent = the source's head (read through a read-only handle). */
  snapshot?: string;
  /** Open at its head, writable, at least as large as the source snapshot. */
  target: Image;
  /** Default 128 MiB, at least MIN_CHUNK_SIZE. */
  chunkSize?: number | bigint;
  /**
   * Skip all-zero chunks (and holes) instead of writing zeros. Only right
   * when the target reads as zeros; default: whether the target has no data.
   */
  skipZeroes?: boolean;
  /** Discard target bytes beyond the source's length. Default true. */
  discardExcess?: boolean;
  /** Hash the copied blocks into this table (of the snapshot's size, see DigestTable.zeros); the stats then hold it. */
  digests?: DigestStart;
}

export type CopyStats = TransferStats & {
  /** Bytes discarded beyond the source's length. */
  bytesDiscarded: bigint;
};

export const DEFAULT_CHUNK_SIZE = 128n << 20n;
/** Each chunk is one diff listing call: 1-byte chunks made a 4 MiB copy outlast a 60 s budget. */
export const MIN_CHUNK_SIZE = 1n << 20n;

export async function copyImage(options: CopyImageOptions): Promise<CopyStats> {
  const { source, target } = checkSourceAndTarget(options, 'copyImage');
  const { snapshot } = options;
  const resource = `${source.pool.spec}/${source.name}${snapshot === undefined ? '' : `@${String(snapshot)}`} -> ${target.spec}`;
  if (snapshot !== undefined) checkName('snapshot', snapshot, 'copyImage', resource);
  const limits = checkEngineOptions(options, 'copyImage', resource);
  checkFlag('skipZeroes', options.skipZeroes, 'copyImage', resource);
  checkFlag('discardExcess', options.discardExcess, 'copyImage', resource);
  checkDigestStart(options.digests, 'copyImage');
  const chunkSize = toU64('chunkSize', options.chunkSize ?? DEFAULT_CHUNK_SIZE, 'copyImage', resource);
  if (chunkSize < MIN_CHUNK_SIZE) {
    throw invalidArgument('copyImage', resource, `chunkSize must be at least ${MIN_CHUNK_SIZE} bytes (default ${DEFAULT_CHUNK_SIZE}), got ${chunkSize}`);
  }
  if (target.snapshot !== undefined) {
    throw invalidArgument('copyImage', resource, 'the target must be open at its head, not at a snapshot');
  }
  if (options.signal?.aborted) throw cancelledError('copyImage', resource, options.signal);
  const snap = await source.pool.openImage(source.name, { ...(snapshot === undefined ? {} : { snapshot }), readOnly: true });
  try {
    const { size, objectSize, features } = await snap.stat();
    const { size: targetSize } = await target.stat();
    if (targetSize < size) {
      throw invalidArgument('copyImage', resource,
        `the target is ${targetSize} bytes, smaller than the source's ${size}`);
    }
    // A copy of a snapshot picks up the work of an earlier copy of it that
    // did not finish (a head may change between runs: never resumed).
    const resuming = snapshot === undefined ? undefined
      : await findResume(snap, target, { kind: 'copy', snapshot, fromSnapshot: undefined, length: size, digestBlock: options.digests?.table.blockSize });
    const skipZeroes = resuming?.point?.targetIsZero ?? options.skipZeroes ?? !(await target.hasExtents());
    const plan: TransferPlan = {
      ...(snapshot === undefined ? {} : { snapshot }),
      length: size,
      step: chunkSize,
      ioSize: ioSizeFor(objectSize),
      window: limits.concurrency,
      memory: BigInt(limits.memoryBytes),
      // Whole objects from the object map: no per-object listing, and zero
      // runs inside objects are still found in the data.
      wholeObject: features.includes('fast-diff'),
      targetIsZero: skipZeroes,
      zeroGaps: !skipZeroes,
    };
    logEngine('copyImage %s: %d bytes in %d-byte chunks', resource, size, chunkSize);
    const stats = await runTransfer(snap, target, plan, { ...options, ...(resuming === undefined ? {} : { resuming }) }, 'copyImage', resource);
    let bytesDiscarded = 0n;
    if ((options.discardExcess ?? true) && targetSize > size) {
      // Image.discard goes in pieces below 2 GiB (rbd_discard's limit).
      bytesDiscarded = targetSize - size;
      await target.discard(size, bytesDiscarded);
    }
    if (hasRecord(stats)) await clearResume(target);
    return { ...stats, size, bytesDiscarded };
  } finally {
    await snap.close();
  }
}
