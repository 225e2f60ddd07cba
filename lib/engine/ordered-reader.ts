/**
 * Reads an image's extents (from diff iteration) in offset order with a
 * bounded window of reads running ahead, for the stream paths whose data has
 * to pass through JavaScript (diff stream export, raw export). Memory stays
 * bounded by the window whatever the image size.
 */
import { cancelledError } from '../ceph/cancel.js';
import type { Image } from '../ceph/image.js';
import type { EngineLimits } from './options.js';

export interface OrderedPiece {
  offset: bigint;
  length: bigint;
  /** The bytes; undefined for a range that no longer exists (a hole). */
  data?: Buffer;
}

interface Pending {
  offset: bigint;
  length: bigint;
  /** Whether it is data to read (not a hole). */
  data: boolean;
  /** Its read, once started (with the batch it is in). */
  read?: Promise<Buffer>;
}

/**
 * Small reads go out in batches of up to this many pieces (one readMany:
 * all in flight at once, one promise and one short job of the pool to
 * submit them), a batch once it is full, its diff batch is done or its
 * oldest piece is wanted: a window of 64 small reads is 2 calls into the
 * addon, not 64. Pieces of BATCH_BELOW bytes or more go
 * out one by one as before: they are few, bound by bandwidth, and their
 * buffers, made at once in a batch, lived long enough to be promoted out
 * of V8's young generation (a slow consumer's RSS then grew by 150 MiB).
 */
const BATCH_PIECES = 32;
const BATCH_BELOW = 1n << 20n;

export interface OrderedReadOptions {
  fromSnapshot?: string;
  wholeObject?: boolean;
  /**
   * Widen every extent to whole blocks of this size (clipped to the image's
   * end) and read them, holes included: for a reader that hashes blocks.
   */
  align?: bigint;
  ioSize: bigint;
  limits: EngineLimits;
  signal?: AbortSignal;
  operation: string;
  resource: string;
}

export async function* readInOrder(image: Image, options: OrderedReadOptions): AsyncGenerator<OrderedPiece> {
  const { ioSize, limits, signal } = options;
  const queue: Pending[] = [];
  let queuedBytes = 0n;
  /** Small pieces queued whose read has not started. */
  let unread: Pending[] = [];
  const startReads = (): void => {
    if (unread.length === 0) return;
    const batch = unread;
    unread = [];
    const reads = batch.length === 1 ? image.read(batch[0]!.offset, batch[0]!.length).then((data) => [data]) : image.readMany(batch);
    batch.forEach((piece, i) => {
      piece.read = reads.then((buffers) => buffers[i]!);
      // Awaited in order later; this keeps an early failure from being
      // reported as unhandled while older pieces are still going out.
      piece.read.catch(() => undefined);
    });
  };
  const oldest = async (): Promise<OrderedPiece> => {
    const piece = queue.shift()!;
    if (!piece.data) return { offset: piece.offset, length: piece.length };
    if (piece.read === undefined) startReads();
    queuedBytes -= piece.length;
    return { offset: piece.offset, length: piece.length, data: await piece.read! };
  };
  const { align } = options;
  try {
    if (signal?.aborted) throw cancelledError(options.operation, options.resource, signal);
    const size = align === undefined ? 0n : (await image.stat()).size;
    // With align: where the blocks read so far end (widened extents overlap).
    let covered = 0n;
    for await (const batch of image.diff({ fromSnapshot: options.fromSnapshot, wholeObject: options.wholeObject ?? false })) {
      for (const extent of batch) {
        if (signal?.aborted) throw cancelledError(options.operation, options.resource, signal);
        let start = extent.offset;
        let extentEnd = extent.offset + extent.length;
        if (align !== undefined) {
          start = start - start % align;
          if (start < covered) start = covered;
          extentEnd = (extentEnd + align - 1n) / align * align;
          if (extentEnd > size) extentEnd = size;
          if (start >= extentEnd) continue;
          covered = extentEnd;
        } else if (!extent.exists) {
          queue.push({ offset: extent.offset, length: extent.length, data: false });
          continue;
        }
        for (let offset = start; offset < extentEnd;) {
          // Pieces end on ioSize boundaries so that they line up with objects;
          // with align, on a block boundary too (no block is cut in two).
          let boundary = (offset / ioSize + 1n) * ioSize;
          if (align !== undefined && boundary % align !== 0n) {
            boundary -= boundary % align;
            if (boundary <= offset) boundary = offset + align;
          }
          const end = boundary < extentEnd ? boundary : extentEnd;
          while (queue.length >= limits.concurrency ||
            (queue.length > 0 && queuedBytes + (end - offset) > BigInt(limits.memoryBytes))) {
            yield await oldest();
          }
          if (signal?.aborted) throw cancelledError(options.operation, options.resource, signal);
          const piece: Pending = { offset, length: end - offset, data: true };
          queue.push(piece);
          queuedBytes += piece.length;
          if (piece.length >= BATCH_BELOW) startReads();
          unread.push(piece);
          if (unread.length >= BATCH_PIECES || piece.length >= BATCH_BELOW) startReads();
          offset = end;
        }
      }
      // What this batch of the diff named goes out before the next batch is awaited.
      startReads();
    }
    while (queue.length > 0) yield await oldest();
  } finally {
    // Reads still in flight must finish before the caller closes the image.
    await Promise.allSettled(queue.map((piece) => piece.read));
  }
}
