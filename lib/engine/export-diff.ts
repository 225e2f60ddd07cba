/**
 * exportDiff: an RBD diff v1 stream of an image between two snapshots (or
 * its whole history), byte-compatible with `rbd export-diff`, as a Node
 * Readable. The native engine reads ahead in its bounded window (readInOrder)
 * and the stream is produced only as fast as its consumer takes it.
 */
import { Readable } from 'node:stream';
import { NotFoundError } from '../ceph/errors.js';
import { readInOrder } from '../ceph/transfer-job.js';
import { checkFlag, checkName, checkOptions } from '../ceph/validate.js';
import { checkImage } from '../ceph/image-argument.js';
import type { Image } from '../ceph/image.js';
import {
  DIFF_HEADER, END_RECORD, encodeExtentHead, encodeName, encodeSize, RECORD_FROM, RECORD_TO, RECORD_WRITE,
  RECORD_ZERO,
} from './diff-format.js';
import { checkEngineOptions, DEFAULT_STREAM_MEMORY_BYTES, type EngineOptions } from './options.js';
import { readPlanFor } from './transfer.js';

export interface ExportDiffOptions extends EngineOptions {
  /** The snapshot the stream ends at (its 't' record). */
  snapshot: string;
  /** Only changes since this snapshot (its 'f' record); absent = whole history. */
  fromSnapshot?: string;
  /** Object-granular extents (fast-diff). Default false. */
  wholeObject?: boolean;
}

/** Zero runs at least this long inside read data become 'z' records. */
const MIN_ZERO_RUN = 64n << 10n;

/** Splits data into 'w' and 'z' records at its zero runs ([start, end) pairs, found by the native reader). */
function* dataRecords(offset: bigint, data: Buffer, runs: readonly number[]): Generator<Buffer> {
  let dataStart = 0;
  for (let i = 0; i < runs.length; i += 2) {
    const [zeroStart, zeroEnd] = [runs[i], runs[i + 1]];
    if (zeroStart > dataStart) {
      yield encodeExtentHead(RECORD_WRITE, offset + BigInt(dataStart), BigInt(zeroStart - dataStart));
      yield data.subarray(dataStart, zeroStart);
    }
    yield encodeExtentHead(RECORD_ZERO, offset + BigInt(zeroStart), BigInt(zeroEnd - zeroStart));
    dataStart = zeroEnd;
  }
  if (data.length > dataStart) {
    yield encodeExtentHead(RECORD_WRITE, offset + BigInt(dataStart), BigInt(data.length - dataStart));
    yield data.subarray(dataStart);
  }
}

export function exportDiff(image: Image, options: ExportDiffOptions): Readable {
  // Refused at once rather than as the stream's first error.
  checkImage('image', image, 'exportDiff');
  checkOptions(options, 'exportDiff');
  return Readable.from(generateDiff(image, options), { objectMode: false, highWaterMark: 1 << 20 });
}

async function* generateDiff(image: Image, options: ExportDiffOptions): AsyncGenerator<Buffer> {
  const { snapshot, fromSnapshot, signal } = options;
  const resource = `${image.pool.spec}/${image.name}@${String(snapshot)}`;
  checkName('snapshot', snapshot, 'exportDiff', resource);
  if (fromSnapshot !== undefined) checkName('snapshot', fromSnapshot, 'exportDiff', resource);
  const limits = checkEngineOptions(options, 'exportDiff', resource, DEFAULT_STREAM_MEMORY_BYTES);
  checkFlag('wholeObject', options.wholeObject, 'exportDiff', resource);
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
    let bytesRead = 0n;
    const pieces = readInOrder(snap, {
      ...readPlanFor(size, objectSize, limits), snapshot, fromSnapshot, wholeObject: options.wholeObject ?? false,
      zeroRuns: true, minZeroRun: MIN_ZERO_RUN,
    }, signal, 'exportDiff', resource);
    for await (const piece of pieces) {
      if (piece.data) {
        bytesRead += BigInt(piece.data.length);
        yield* dataRecords(piece.offset, piece.data, piece.zeroRuns ?? []);
      } else {
        yield encodeExtentHead(RECORD_ZERO, piece.offset, piece.length);
      }
      if (options.onProgress && performance.now() - lastReport > 100) {
        lastReport = performance.now();
        options.onProgress({ done: piece.offset + piece.length, total: size, bytesRead });
      }
    }
    yield END_RECORD;
    options.onProgress?.({ done: size, total: size, bytesRead });
  } finally {
    await snap.close();
  }
}
