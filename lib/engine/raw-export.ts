/**
 * exportRaw: an image (or a snapshot of it) as raw bytes, the way
 * `rbd export` writes them: into a file (written sparsely: holes are left
 * unwritten and the file is sized at the end) or sequentially into a Node
 * Writable (holes as zeros, honouring back-pressure). A file is written
 * under a partial name beside it and gets its own name only when complete,
 * so a failed, cancelled or killed export never leaves a file that looks
 * whole; file-system failures are CephErrors naming the path.
 */
import type { Writable } from 'node:stream';
import { invalidArgument } from '../ceph/errors.js';
import { checkCallback, checkFlag, checkName, checkOptions } from '../ceph/validate.js';
import { checkImage } from '../ceph/image-argument.js';
import type { Image } from '../ceph/image.js';
import {
  checkEngineOptions, DEFAULT_STREAM_MEMORY_BYTES, type EngineLimits, type EngineOptions,
} from './options.js';
import { BlockHasher } from './block-hasher.js';
import { checkDigestBlockSize, type DigestTable } from './digest-table.js';
import { readInOrder } from '../ceph/transfer-job.js';
import { readPlanFor } from './transfer.js';
import { StreamSink } from './stream-writes.js';
import { closeTargetFile, onFile, openTargetFile, type TargetFile } from './target-file.js';

export interface ExportRawOptions extends EngineOptions {
  /** The snapshot to export; absent = the image's head. */
  snapshot?: string;
  /**
   * A file path (an existing file is refused unless overwrite; written as
   * `.<name>.partial-<random>` beside it and renamed when complete) or a
   * Writable (ended at the end).
   */
  to: string | Writable;
  overwrite?: boolean;
  /** Hash the exported bytes in blocks of this size; the stats then hold their digest table. */
  digestBlock?: bigint;
  /**
   * Called once every byte is written (a file synced), before the file gets
   * its name or the stream is ended: a rejection fails the export, so no
   * file appears and the stream is never ended as if complete.
   */
  beforeFinish?: (stats: Omit<ExportRawStats, 'elapsedMs'>) => Promise<void>;
}

export interface ExportRawStats {
  size: bigint;
  bytesRead: bigint;
  elapsedMs: number;
  /** With digestBlock: the digests of the bytes exported. */
  digests?: DigestTable;
}

export async function exportRaw(image: Image, options: ExportRawOptions): Promise<ExportRawStats> {
  checkImage('image', image, 'exportRaw');
  checkOptions(options, 'exportRaw');
  const { snapshot, to } = options;
  const resource = `${image.pool.spec}/${image.name}${snapshot === undefined ? '' : `@${String(snapshot)}`}`;
  if (snapshot !== undefined) checkName('snapshot', snapshot, 'exportRaw', resource);
  const limits = checkEngineOptions(options, 'exportRaw', resource, DEFAULT_STREAM_MEMORY_BYTES);
  if (typeof to !== 'string' && (typeof to !== 'object' || to === null || typeof to.write !== 'function')) {
    throw invalidArgument('exportRaw', resource, 'to must be a file path or a Writable');
  }
  if (options.digestBlock !== undefined) checkDigestBlockSize('options.digestBlock', options.digestBlock, 'exportRaw');
  checkCallback('beforeFinish', options.beforeFinish, 'exportRaw', resource);
  checkFlag('overwrite', options.overwrite, 'exportRaw', resource);
  const started = performance.now();
  // The file first: when it cannot be made, no image view was opened to leak.
  const file = typeof to === 'string' ? await openTargetFile(to, options.overwrite ?? false, 'exportRaw') : undefined;
  let failed = true;
  try {
    const view = await image.pool.openImage(image.name, { ...(snapshot === undefined ? {} : { snapshot }), readOnly: true });
    try {
      const stats = await copyOut(view, file ?? (to as Writable), limits, options, resource);
      failed = false;
      return { ...stats, elapsedMs: performance.now() - started };
    } finally {
      await view.close();
    }
  } finally {
    if (file) await closeTargetFile(file, failed);
  }
}

async function copyOut(view: Image, out: TargetFile | Writable, limits: EngineLimits, options: ExportRawOptions,
  resource: string): Promise<Omit<ExportRawStats, 'elapsedMs'>> {
  const file = 'handle' in out ? out : undefined;
  const sink = file ? undefined : new StreamSink(out as Writable, { operation: 'exportRaw', resource, signal: options.signal });
  try {
    return await copyInto(view, file ?? sink!, limits, options, resource);
  } finally {
    sink?.release();
  }
}

async function copyInto(view: Image, out: TargetFile | StreamSink, limits: EngineLimits, options: ExportRawOptions,
  resource: string): Promise<Omit<ExportRawStats, 'elapsedMs'>> {
  const file = out instanceof StreamSink ? undefined : out;
  const { size, objectSize } = await view.stat();
  const hasher = options.digestBlock === undefined ? undefined : new BlockHasher(size, options.digestBlock);
  let position = 0n;
  let bytesRead = 0n;
  let lastReport = 0;
  const pieces = readInOrder(view, { ...readPlanFor(size, objectSize, limits), snapshot: view.snapshot },
    options.signal, 'exportRaw', resource);
  for await (const piece of pieces) {
    if (hasher) {
      if (piece.offset > position) hasher.feed(undefined, piece.offset - position);
      hasher.feed(piece.data, piece.length);
    }
    if (file) {
      const { data } = piece;
      if (data) await onFile('exportRaw', file.path, 'cannot write', () => file.handle.write(data, 0, data.length, Number(piece.offset)));
    } else {
      const sink = out as StreamSink;
      if (piece.offset > position) await sink.writeZeroes(piece.offset - position);
      if (piece.data) await sink.write(piece.data);
      else await sink.writeZeroes(piece.length);
    }
    if (piece.data) bytesRead += BigInt(piece.data.length);
    position = piece.offset + piece.length;
    if (options.onProgress && performance.now() - lastReport > 100) {
      lastReport = performance.now();
      options.onProgress({ done: position, total: size, bytesRead });
    }
  }
  if (hasher && size > position) hasher.feed(undefined, size - position);
  const stats = { size, bytesRead, ...(hasher === undefined ? {} : { digests: hasher.table }) };
  if (file) {
    // The holes were never written: sizing the file makes them read as zeros.
    await onFile('exportRaw', file.path, 'cannot size the file', () => file.handle.truncate(Number(size)));
    await onFile('exportRaw', file.path, 'cannot sync the file', () => file.handle.sync());
    await options.beforeFinish?.(stats);
  } else {
    const sink = out as StreamSink;
    if (size > position) await sink.writeZeroes(size - position);
    await options.beforeFinish?.(stats);
    await sink.end();
  }
  options.onProgress?.({ done: size, total: size, bytesRead });
  return stats;
}
