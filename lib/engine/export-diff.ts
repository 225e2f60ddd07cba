/**
 * exportDiff: an RBD diff v1 stream of an image between two snapshots (or
 * its whole history), byte-compatible with `rbd export-diff`, as a Node
 * Readable. Reads run ahead in a bounded window (ordered-reader.ts) and the
 * stream is produced only as fast as its consumer takes it.
 */
import { Readable } from 'node:stream';
import { NotFoundError } from '../ceph/errors.js';
import { checkName } from '../ceph/validate.js';
import type { Image } from '../ceph/image.js';
import {
  DIFF_HEADER, END_RECORD, encodeExtentHead, encodeName, encodeSize, RECORD_FROM, RECORD_TO, RECORD_WRITE,
  RECORD_ZERO,
} from './diff-format.js';
import { checkEngineOptions, ioSizeFor, type EngineOptions } from './options.js';
import { readInOrder } from './ordered-reader.js';

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
  const limits = checkEngineOptions(options, 'exportDiff', resource);
  if (fromSnapshot !== undefined && !(await image.snapshotExists(fromSnapshot))) {
    throw new NotFoundError({
      code: 'ENOENT', operation: 'exportDiff', resource, detail: `from-snapshot ${fromSnapshot} does not exist`,
    });
  }
  const snap = await image.pool.openImage(image.name, { snapshot, readOnly: true });
  try {
    const { size, objectSize } = await snap.stat();
    yield DIFF_HEADER;
    if (fromSnapshot !== undefined) yield encodeName(RECORD_FROM, fromSnapshot);
    yield encodeName(RECORD_TO, snapshot);
    yield encodeSize(size);
    let lastReport = 0;
    let bytesRead = 0;
    const pieces = readInOrder(snap, {
      fromSnapshot, wholeObject: options.wholeObject, ioSize: ioSizeFor(objectSize), limits, signal,
      operation: 'exportDiff', resource,
    });
    for await (const piece of pieces) {
      if (piece.data) {
        bytesRead += piece.data.length;
        yield* dataRecords(piece.offset, piece.data);
      } else {
        yield encodeExtentHead(RECORD_ZERO, piece.offset, piece.length);
      }
      if (options.onProgress && performance.now() - lastReport > 100) {
        lastReport = performance.now();
        options.onProgress({ done: Number(piece.offset + piece.length), total: Number(size), bytesRead });
      }
    }
    yield END_RECORD;
    options.onProgress?.({ done: Number(size), total: Number(size), bytesRead });
  } finally {
    await snap.close();
  }
}
