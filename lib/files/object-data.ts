/**
 * A stored object's data, read front to back and decompressed as it is
 * read, checked against its entry: no more than its length as it comes,
 * its length and md5 at its end. What restoreChunked writes into a volume
 * or file and what a stream restore takes its bytes from.
 */
import { createReadStream } from 'node:fs';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createInflate } from 'node:zlib';
import { fromSystem } from '../ceph/errors.js';
import { VerificationError } from '../engine/verification-error.js';
import type { ChunkedObject } from './chunked-layout.js';
import { codecStage } from './codec.js';
import { ChunkedBackupError } from './errors.js';
import { ObjectMd5 } from './object-digests.js';

/** Pieces read from the file, and given out decompressed, at a time (at most). */
const PIECE = 1 << 20;
const SMALLEST_PIECE = 16 << 10;

/** A failure of reading or decompressing the object, typed and naming its file. */
function readFailure(error: unknown, object: ChunkedObject, file: string): Error {
  if (error instanceof ChunkedBackupError) return error;
  // zlib's failures carry codes of its own (Z_DATA_ERROR, Z_BUF_ERROR); zstd's and bz2's are EBADMSG.
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && (code.startsWith('Z_') || code === 'EBADMSG')) {
    return new ChunkedBackupError({
      operation: 'restore', resource: file,
      detail: `its ${object.compression} data does not decompress (${(error as Error).message}): the file is damaged or truncated`,
    });
  }
  return fromSystem(error, 'restore', file, 'reading the backup\'s object');
}

/**
 * The object's data in pieces. Its file is opened on the first next() and
 * closed at the end, on a failure, or when the caller stops early
 * (return()).
 */
export async function* objectData(object: ChunkedObject, file: string): AsyncGenerator<Buffer> {
  // Buffers of the object's size when it is small: each read and each inflate allocates a whole piece,
  // and an incremental's thousands of 32 KiB objects made gigabytes of garbage at 1 MiB each.
  const piece = Math.min(PIECE, Math.max(object.length, SMALLEST_PIECE));
  const out = new PassThrough({ highWaterMark: piece });
  const stages = object.compression === 'zlib' ? [createInflate({ chunkSize: piece })]
    : object.compression === 'none' ? [] : [codecStage(`${object.compression}-decompress`, 'restore', file)];
  (pipeline as (...streams: unknown[]) => Promise<void>)(createReadStream(file, { highWaterMark: piece }), ...stages, out)
    .catch((error: unknown) => out.destroy(error as Error));
  // Each piece while the caller writes it out (on the thread pool, for all but a small object).
  const md5 = new ObjectMd5('restore', file, object.length);
  let hashing = Promise.resolve();
  let at = 0;
  try {
    for await (const piece of out as AsyncIterable<Buffer>) {
      at += piece.length;
      if (at > object.length) {
        throw new ChunkedBackupError({ operation: 'restore', resource: file, detail: `it holds more than its ${object.length} bytes` });
      }
      await hashing;
      hashing = md5.update(piece);
      yield piece;
    }
    await hashing;
  } catch (error) {
    throw readFailure(error, object, file);
  } finally {
    // An update still running when the caller stopped early must not be left unhandled.
    await hashing.catch(() => undefined);
    out.destroy();
  }
  if (at !== object.length || md5.hex() !== object.md5) {
    throw new VerificationError({
      operation: 'restore', resource: file,
      detail: at !== object.length
        ? `it holds ${at} bytes, its metadata says ${object.length}: the file is damaged or truncated`
        : `its data's md5 is not the ${object.md5} its metadata lists: the file is damaged`,
    }, [{ offset: BigInt(object.offset), length: BigInt(object.length) }]);
  }
}
