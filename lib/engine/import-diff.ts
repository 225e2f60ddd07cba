/**
 * importDiff: applies an RBD diff v1 stream (ours or `rbd export-diff`'s) to
 * an image with import-diff's semantics: the from-snapshot must exist on the
 * target and the end snapshot must not; the size record resizes the target;
 * the end snapshot is created only after every write succeeded and the
 * stream ended well. The native engine writes the records (writeInOrder:
 * its bounded window, from the parsed Buffers themselves), and the stream
 * is read only as fast as they complete; records that overlap apply in
 * stream order. A refused stream leaves the target's size and snapshots
 * as they were (data records already applied stay, as with import-diff).
 */
import type { Readable } from 'node:stream';
import { AlreadyExistsError, NotFoundError, invalidArgument } from '../ceph/errors.js';
import { cancelledError } from '../ceph/cancel.js';
import { checkImage } from '../ceph/image-argument.js';
import { writeInOrder } from '../ceph/transfer-job.js';
import { checkOptions, describeValue } from '../ceph/validate.js';
import type { Image } from '../ceph/image.js';
import { maxImageSize, MAX_OBJECT_COUNT } from '../ceph/limits.js';
import { DiffStreamError } from './diff-format.js';
import { DiffStreamParser, type DiffRecord } from './diff-parser.js';
import { checkEngineOptions, DEFAULT_STREAM_MEMORY_BYTES, type EngineOptions } from './options.js';
import { logEngine } from './log.js';

export interface ImportDiffStats {
  fromSnapshot: string | undefined;
  /** The end snapshot created on the target, if the stream named one. */
  snapshot: string | undefined;
  size: bigint | undefined;
  bytesWritten: bigint;
  bytesZeroed: bigint;
  streamBytes: bigint;
  elapsedMs: number;
}

export async function importDiff(stream: Readable | AsyncIterable<Buffer>, target: Image,
  options: EngineOptions = {}): Promise<ImportDiffStats> {
  const operation = 'importDiff';
  checkImage('target', target, operation);
  checkOptions(options, operation);
  if (typeof (stream as Partial<AsyncIterable<Buffer>> | null)?.[Symbol.asyncIterator] !== 'function') {
    throw invalidArgument(operation, 'arguments', `stream must be a Readable or an async iterable of Buffers, got ${describeValue(stream)}`);
  }
  const resource = target.spec;
  const { concurrency, memoryBytes } = checkEngineOptions(options, operation, resource, DEFAULT_STREAM_MEMORY_BYTES);
  if (target.snapshot !== undefined) {
    throw invalidArgument(operation, resource, 'the target must be open at its head, not at a snapshot');
  }
  const started = performance.now();
  const parser = new DiffStreamParser(operation, resource);
  const stats: ImportDiffStats = {
    fromSnapshot: undefined, snapshot: undefined, size: undefined,
    bytesWritten: 0n, bytesZeroed: 0n, streamBytes: 0n, elapsedMs: 0,
  };
  const { size: originalSize, objectSize, stripeUnit, stripeCount } = await target.stat();
  const maxSize = maxImageSize({ objectSize, stripeUnit, stripeCount });
  let size = originalSize;
  // The size record's resize waits for the first data record (or the end),
  // so the snapshot checks of every metadata record come before any change.
  let resizeTo: bigint | undefined;
  let lastReport = 0;

  const resize = async (): Promise<void> => {
    if (resizeTo === undefined) return;
    const wanted = resizeTo;
    resizeTo = undefined;
    if (wanted !== size) {
      await writer.drain();
      await target.resize(wanted);
      size = wanted;
    }
  };

  // Checked against the size the image is about to have, before resizing
  // to it: a first record that is refused then changes nothing.
  const checkExtent = (record: { offset: bigint; at: number }, length: bigint): void => {
    const end = resizeTo ?? size;
    if (record.offset + length > end) {
      throw new DiffStreamError(operation, resource, record.at,
        `extent of ${length} bytes at offset ${record.offset} passes the end of the image (size ${end})`);
    }
  };

  const apply = async (record: DiffRecord): Promise<void> => {
    switch (record.kind) {
      case 'from':
        if (!(await target.snapshotExists(record.name))) {
          throw new NotFoundError({
            code: 'ENOENT', operation, resource,
            detail: `the stream starts at snapshot ${record.name}, which the target does not have`,
          });
        }
        stats.fromSnapshot = record.name;
        return;
      case 'to':
        if (await target.snapshotExists(record.name)) {
          throw new AlreadyExistsError({
            code: 'EEXIST', operation, resource, detail: `the target already has the end snapshot ${record.name}`,
          });
        }
        stats.snapshot = record.name;
        return;
      case 'size':
        if (record.size > maxSize) {
          throw new DiffStreamError(operation, resource, record.at,
            `image size ${record.size} is larger than ${maxSize}, the most ${MAX_OBJECT_COUNT} objects of ` +
            `${objectSize} bytes hold`);
        }
        stats.size = record.size;
        resizeTo = record.size;
        return;
      case 'data': {
        const { data, offset } = record;
        checkExtent(record, BigInt(data.length));
        await resize();
        await writer.write(data, offset);
        return;
      }
      case 'zero': {
        const { offset, length } = record;
        checkExtent(record, length);
        await resize();
        await writer.writeZeroes(offset, length);
        return;
      }
      case 'end':
        await resize();
        return;
    }
  };

  const writer = writeInOrder(target, { window: concurrency, memory: BigInt(memoryBytes), targetIsZero: false },
    options.signal, operation, resource);
  try {
    for await (const chunk of stream as AsyncIterable<Buffer | string>) {
      if (options.signal?.aborted) throw cancelledError(operation, resource, options.signal);
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      stats.streamBytes += BigInt(bytes.length);
      for (const record of parser.push(bytes)) await apply(record);
      if (options.onProgress && performance.now() - lastReport > 100) {
        lastReport = performance.now();
        options.onProgress({ done: stats.streamBytes, total: 0n, bytesRead: stats.streamBytes });
      }
    }
    parser.finish();
    // Everything written and the target flushed.
    const written = await writer.end();
    stats.bytesWritten = written.bytesWritten;
    stats.bytesZeroed = written.bytesZeroed;
    if (options.signal?.aborted) throw cancelledError(operation, resource, options.signal);
    if (stats.snapshot !== undefined) await target.createSnapshot(stats.snapshot);
  } catch (error) {
    // Let the writes in flight settle before reporting, so the caller never
    // races them (a retry, a close); their own errors matter less than this one.
    await writer.stop();
    if (size !== originalSize) await restoreSize(target, originalSize, error);
    throw error;
  }
  stats.elapsedMs = performance.now() - started;
  logEngine('importDiff %s: %o', resource, stats);
  return stats;
}

/** After a refused stream, the target's size as before the import; the refusal is what the caller hears of. */
async function restoreSize(target: Image, size: bigint, refusal: unknown): Promise<void> {
  try {
    await target.resize(size);
  } catch (error) {
    logEngine('importDiff %s: could not restore the size %d after %o: %o', target.spec, size, refusal, error);
  }
}
