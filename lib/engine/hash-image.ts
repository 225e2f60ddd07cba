/**
 * hashImage: the digest table of an image's snapshot as it reads now,
 * computed natively with the transfer engine's window (reads only, nothing
 * written): every block holding data is read and hashed, the rest is
 * zeros; or only a sample of blocks.
 */
import { cancelledError } from '../ceph/cancel.js';
import { invalidArgument } from '../ceph/errors.js';
import type { Image } from '../ceph/image.js';
import { checkName, checkOptions, describeValue } from '../ceph/validate.js';
import { checkImage } from '../ceph/image-argument.js';
import { checkDigestBlockSize, DigestTable } from './digest-table.js';
import { logEngine } from './log.js';
import { checkEngineOptions, ioSizeFor, type EngineOptions } from './options.js';
import { runTransfer, steppingFor } from './transfer.js';

export interface HashImageOptions extends EngineOptions {
  /** Any handle of the image; it is read through a read-only handle of its own. */
  image: Image;
  /** Absent: the image's head. */
  snapshot?: string;
  blockSize: bigint;
  /** Hash only the image's first bytes (at most its size). Default: all of it. */
  length?: bigint;
  /** Only these blocks (by index): the table holds 0 (unknown) for the others. */
  blocks?: bigint[];
}

export interface HashStats {
  table: DigestTable;
  blocksHashed: number;
  bytesRead: bigint;
  elapsedMs: number;
}

export async function hashImage(options: HashImageOptions): Promise<HashStats> {
  checkOptions(options, 'hashImage');
  const image = checkImage('options.image', options.image, 'hashImage');
  const blockSize = checkDigestBlockSize('options.blockSize', options.blockSize, 'hashImage');
  const { snapshot } = options;
  const resource = `${image.pool.spec}/${image.name}${snapshot === undefined ? '' : `@${String(snapshot)}`}`;
  if (snapshot !== undefined) checkName('snapshot', snapshot, 'hashImage', resource);
  const limits = checkEngineOptions(options, 'hashImage', resource);
  if (options.length !== undefined && typeof options.length !== 'bigint') {
    throw invalidArgument('hashImage', resource, `length must be a bigint, got ${describeValue(options.length)}`);
  }
  if (options.blocks !== undefined && (!Array.isArray(options.blocks) || options.blocks.some((block) => typeof block !== 'bigint'))) {
    throw invalidArgument('hashImage', resource, 'blocks must be an array of block indexes (bigints)');
  }
  if (options.signal?.aborted) throw cancelledError('hashImage', resource, options.signal);
  const opened = await image.pool.openImage(image.name, { ...(snapshot === undefined ? {} : { snapshot }), readOnly: true });
  try {
    const stat = await opened.stat();
    const { objectSize, features } = stat;
    const size = options.length !== undefined && options.length < stat.size ? options.length : stat.size;
    const count = DigestTable.blocksOf(size, blockSize);
    if (options.blocks?.some((block) => block < 0n || block >= count)) {
      throw invalidArgument('hashImage', resource, `a block to hash lies beyond the image's ${count} blocks`);
    }
    const table = options.blocks === undefined
      ? DigestTable.zeros(size, blockSize)
      : new DigestTable(size, blockSize, Buffer.alloc(Number(count) * 8));
    logEngine('hashImage %s: %d bytes in %d-byte blocks%s', resource, size, blockSize,
      options.blocks === undefined ? '' : `, ${options.blocks.length} of them`);
    const stats = await runTransfer(opened, null, {
      ...(snapshot === undefined ? {} : { snapshot }),
      length: size,
      ...steppingFor(objectSize),
      ioSize: ioSizeFor(objectSize),
      window: limits.concurrency,
      memory: BigInt(limits.memoryBytes),
      wholeObject: features.includes('fast-diff'),
      targetIsZero: true,
      zeroGaps: false,
      mergeGap: 0n,
      ...(options.blocks === undefined ? {} : { noListing: true }),
    }, { ...options, digests: { table, extraBlocks: options.blocks ?? [] } }, 'hashImage', resource);
    return { table: stats.digests!, blocksHashed: stats.blocksHashed ?? 0, bytesRead: stats.bytesRead, elapsedMs: stats.elapsedMs };
  } finally {
    await opened.close();
  }
}
