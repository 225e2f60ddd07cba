/**
 * exportDiff: an RBD diff v1 stream of an image between two snapshots (or
 * its whole history), byte-compatible with `rbd export-diff`, as a Node
 * Readable. Reads run ahead in a bounded window and the stream is produced
 * only as fast as its consumer takes it, so memory stays bounded.
 */
import { Readable } from 'node:stream';
import { NotFoundError } from '../ceph/errors.js';
import { checkName } from '../ceph/validate.js';
import { cancelledError } from '../ceph/cancel.js';
import type { Image } from '../ceph/image.js';
import {
  DIFF_HEADER, END_RECORD, encodeExtentHead, encodeName, encodeSize, RECORD_FROM, RECORD_TO, RECORD_WRITE,
  RECORD_ZERO,
} from './diff-format.js';
import { checkEngineOptions, ioSizeFor, type EngineOptions } from './options.js';

export interface ExportDiffOptions extends EngineOptions {
  /** The snapshot the stream ends at (its 't' record). */
  snapshot: string;
  /** Only changes since this snapshot (its 'f' record); absent = whole history. */
  fromSnapshot?: string;
  /** Object-granular extents (fast-diff). Default false. */
  wholeObject?: boolean;
}

/** Zero runs at least this long inside read data become 'z' records. */
const MIN_ZERO_RUN = 64 << 10;
const ZERO_BLOCK = 4096;
const ZEROES = Buffer.alloc(ZERO_BLOCK);

interface Piece {
  offset: bigint;
  length: bigint;
  /** Pending read of an existing extent; undefined for a hole. */
  read?: Promise<Buffer>;
}

/** Splits data into 'w' and 'z' records at 4 KiB granularity. */
function* dataRecords(offset: bigint, data: Buffer): Generator<Buffer> {
  let dataStart = 0;
  let pos = 0;
  const isZero = (at: number): boolean => {
    const end = Math.min(at + ZERO_BLOCK, data.length);
    return data.subarray(at, end).equals(ZEROES.subarray(0, end - at));
  };
  while (pos < data.length) {
    if (!isZero(pos)) {
      pos += ZERO_BLOCK;
      continue;
    }
    const zeroStart = pos;
    while (pos < data.length && isZero(pos)) pos += ZERO_BLOCK;
    pos = Math.min(pos, data.length);
    if (pos - zeroStart < MIN_ZERO_RUN && !(zeroStart === 0 && pos === data.length)) continue;
    if (zeroStart > dataStart) {
      yield encodeExtentHead(RECORD_WRITE, offset + BigInt(dataStart), BigInt(zeroStart - dataStart));
      yield data.subarray(dataStart, zeroStart);
    }
    yield encodeExtentHead(RECORD_ZERO, offset + BigInt(zeroStart), BigInt(pos - zeroStart));
    dataStart = pos;
  }
  if (data.length > dataStart) {
    yield encodeExtentHead(RECORD_WRITE, offset + BigInt(dataStart), BigInt(data.length - dataStart));
    yield data.subarray(dataStart);
  }
}

export function exportDiff(image: Image, options: ExportDiffOptions): Readable {
  return Readable.from(generateDiff(image, options), { objectMode: false, highWaterMark: 1 << 20 });
}

async function* generateDiff(image: Image, options: ExportDiffOptions): AsyncGenerator<Buffer> {
  const { snapshot, fromSnapshot, signal } = options;
  const resource = `${image.pool.spec}/${image.name}@${String(snapshot)}`;
  checkName('snapshot', snapshot, 'exportDiff', resource);
  if (fromSnapshot !== undefined) checkName('snapshot', fromSnapshot, 'exportDiff', resource);
  const { concurrency, memoryBytes } = checkEngineOptions(options, 'exportDiff', resource);
  if (fromSnapshot !== undefined && !(await image.snapshotExists(fromSnapshot))) {
    throw new NotFoundError({
      code: 'ENOENT', operation: 'exportDiff', resource, detail: `from-snapshot ${fromSnapshot} does not exist`,
    });
  }
  const snap = await image.pool.openImage(image.name, { snapshot, readOnly: true });
  const queue: Piece[] = [];
  try {
    const { size, objectSize } = await snap.stat();
    const ioSize = ioSizeFor(objectSize);
    yield DIFF_HEADER;
    if (fromSnapshot !== undefined) yield encodeName(RECORD_FROM, fromSnapshot);
    yield encodeName(RECORD_TO, snapshot);
    yield encodeSize(size);
    let done = 0n;
    let queuedBytes = 0n;
    let lastReport = 0;
    // Emits the oldest queued piece once its read is done.
    async function* emitOldest(): AsyncGenerator<Buffer> {
      const piece = queue.shift()!;
      if (piece.read) queuedBytes -= piece.length;
      if (piece.read) {
        yield* dataRecords(piece.offset, await piece.read);
      } else {
        yield encodeExtentHead(RECORD_ZERO, piece.offset, piece.length);
      }
      done = piece.offset + piece.length;
      if (options.onProgress && performance.now() - lastReport > 100) {
        lastReport = performance.now();
        options.onProgress({ done: Number(done), total: Number(size), bytesRead: Number(done) });
      }
    }
    for await (const batch of snap.diff({ fromSnapshot, wholeObject: options.wholeObject ?? false })) {
      for (const extent of batch) {
        if (!extent.exists) {
          queue.push({ offset: extent.offset, length: extent.length });
          continue;
        }
        for (let offset = extent.offset; offset < extent.offset + extent.length;) {
          const boundary = (offset / ioSize + 1n) * ioSize;
          const end = boundary < extent.offset + extent.length ? boundary : extent.offset + extent.length;
          while (queue.length >= concurrency ||
            (queue.length > 0 && queuedBytes + (end - offset) > BigInt(memoryBytes))) {
            yield* emitOldest();
          }
          if (signal?.aborted) throw cancelledError('exportDiff', resource, signal);
          const read = snap.read(offset, end - offset);
          // Handled when emitted; this keeps an early failure from being
          // reported as unhandled while older pieces are still going out.
          read.catch(() => undefined);
          queue.push({ offset, length: end - offset, read });
          queuedBytes += end - offset;
          offset = end;
        }
      }
    }
    while (queue.length > 0) yield* emitOldest();
    yield END_RECORD;
    options.onProgress?.({ done: Number(size), total: Number(size), bytesRead: Number(done) });
  } finally {
    // Reads still in flight must finish before the image can close.
    await Promise.allSettled(queue.map((piece) => piece.read));
    await snap.close();
  }
}
