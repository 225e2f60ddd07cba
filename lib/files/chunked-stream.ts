/**
 * A chain of backups in Cinder's chunked layout as one stream of the
 * volume's bytes in offset order (a restore into a pipe, which cannot seek
 * as a volume or a file can). Each byte comes from the newest layer that
 * holds it (an incremental's objects over the full backup's), zeros where
 * none does. The objects a byte is taken from are read front to back,
 * several at once where layers interleave, each decompressed as it is read
 * and checked whole against its md5 at its end; memory stays bounded by
 * the objects open at once, a piece of each.
 */
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { cancelledError } from '../ceph/cancel.js';
import { StreamSink } from '../engine/stream-writes.js';
import type { ChunkedObject } from './chunked-layout.js';
import type { StoredBackup } from './chunked-store.js';
import { objectData } from './object-data.js';

/** Bytes [start, end) of the volume, taken from an object (whose data starts at object.offset). */
interface Segment {
  start: number;
  end: number;
  object: ChunkedObject;
  file: string;
}

/** The segments of the merged chain, in offset order, without overlaps: newer layers laid over older ones. */
export function layChain(chain: readonly StoredBackup[]): Segment[] {
  const segments: Segment[] = [];
  for (const { dir, metadata } of chain) {
    for (const object of metadata.objects) {
      if (object.length === 0) continue;
      const laid: Segment = { start: object.offset, end: object.offset + object.length, object, file: join(dir, object.name) };
      // The first segment that ends after this one starts, and the first that starts at or after its end.
      let first = 0;
      for (let hi = segments.length; first < hi;) {
        const mid = (first + hi) >> 1;
        if (segments[mid]!.end <= laid.start) first = mid + 1;
        else hi = mid;
      }
      let after = first;
      while (after < segments.length && segments[after]!.start < laid.end) after++;
      const pieces: Segment[] = [];
      const head = segments[first];
      if (first < after && head!.start < laid.start) pieces.push({ ...head!, end: laid.start });
      pieces.push(laid);
      const tail = segments[after - 1];
      if (first < after && tail!.end > laid.end) pieces.push({ ...tail!, start: laid.end });
      segments.splice(first, after - first, ...pieces);
    }
  }
  return segments;
}

/** An object read front to back (objectData: decompressed, checked whole), taken from at increasing offsets. */
class ObjectReader {
  readonly #object: ChunkedObject;
  readonly #pieces: AsyncGenerator<Buffer>;
  /** Data read from it so far; #held is what of it has not been used. */
  #position = 0;
  #held: Buffer = Buffer.alloc(0);

  constructor(object: ChunkedObject, file: string) {
    this.#object = object;
    this.#pieces = objectData(object, file);
  }

  /** Stops reading it (after a failure elsewhere): its file is closed. */
  close(): void {
    void this.#pieces.return(undefined).catch(() => undefined);
  }

  async #next(): Promise<boolean> {
    const step = await this.#pieces.next();
    if (step.done) return false;
    this.#position += step.value.length;
    this.#held = step.value;
    return true;
  }

  /** Its data from offset `from` (within the object, at or after what was taken before) for `length` bytes, in pieces. */
  async* take(from: number, length: number): AsyncGenerator<Buffer> {
    // Up to `from`: skipped (a newer layer holds those bytes), hashed all the same.
    for (;;) {
      const heldStart = this.#position - this.#held.length;
      if (from < heldStart) throw new Error(`object ${this.#object.name} read backwards, at ${from} after ${heldStart}`);
      if (from < this.#position) {
        this.#held = this.#held.subarray(from - heldStart);
        break;
      }
      this.#held = Buffer.alloc(0);
      if (from === this.#position) break;
      if (!(await this.#next())) throw this.#shortOf(from);
    }
    for (let left = length; left > 0;) {
      if (this.#held.length === 0 && !(await this.#next())) throw this.#shortOf(from + length);
      const piece = this.#held.subarray(0, left);
      this.#held = this.#held.subarray(piece.length);
      left -= piece.length;
      yield piece;
    }
  }

  /** Reads the rest: objectData checks the length and md5 of the whole at its end. */
  async finish(): Promise<void> {
    while (await this.#next());
  }

  /** Unreachable unless its metadata contradicts itself: objectData throws first when the data ends short. */
  #shortOf(offset: number): Error {
    return new Error(`object ${this.#object.name} ended at ${this.#position}, before the ${offset} its segments need`);
  }
}

/**
 * Writes the merged chain's `size` bytes into stream, in order, and ends
 * it. onBytes hears of every piece written (data or zeros).
 */
export async function streamChain(chain: readonly StoredBackup[], size: number, stream: Writable,
  job: { signal: AbortSignal | undefined; resource: string; onBytes: (bytes: number, data: boolean) => void }): Promise<void> {
  const segments = layChain(chain).filter((s) => s.start < size);
  const uses = new Map<string, number>();
  for (const segment of segments) uses.set(segment.file, (uses.get(segment.file) ?? 0) + 1);
  const readers = new Map<string, ObjectReader>();
  let position = 0;
  const sink = new StreamSink(stream, { operation: 'restore', resource: job.resource, signal: job.signal });
  try {
    for (const segment of segments) {
      if (job.signal?.aborted) throw cancelledError('restore', job.resource, job.signal);
      if (segment.start > position) {
        await sink.writeZeroes(BigInt(segment.start - position));
        job.onBytes(segment.start - position, false);
      }
      let reader = readers.get(segment.file);
      if (reader === undefined) {
        reader = new ObjectReader(segment.object, segment.file);
        readers.set(segment.file, reader);
      }
      const end = Math.min(segment.end, size);
      for await (const piece of reader.take(segment.start - segment.object.offset, end - segment.start)) {
        await sink.write(piece);
        job.onBytes(piece.length, true);
      }
      position = end;
      const left = uses.get(segment.file)! - 1;
      uses.set(segment.file, left);
      if (left === 0) {
        readers.delete(segment.file);
        await reader.finish();
      }
    }
    if (size > position) {
      await sink.writeZeroes(BigInt(size - position));
      job.onBytes(size - position, false);
    }
    await sink.end();
  } finally {
    // After a failure: the objects still open are closed (their files with them).
    for (const reader of readers.values()) reader.close();
    sink.release();
  }
}
