/**
 * A backup's sha256s as it hashes its blocks: its parent's list (read as
 * it goes, Sha256FileReader) with the blocks read replaced, written as it
 * goes (Sha256FileWriter). Blocks come in increasing order; those between
 * are the parent's, copied. Memory is a window of the list, whatever the
 * volume's size. A full backup has no parent and gives every block.
 */
import { ChunkedBackupError } from './errors.js';
import type { Sha256FileReader } from './sha256-file-reader.js';
import type { Sha256FileWriter } from './sha256-file-writer.js';

/** Parent digests read at a time. */
const COPY_DIGESTS = 8192;

export class Sha256Update {
  readonly #writer: Sha256FileWriter;
  readonly #parent: Sha256FileReader | undefined;
  /** Blocks of the volume: entries of the list. */
  readonly #count: number;
  readonly #operation: string;
  /** The next block whose digest is to be written. */
  #next = 0;
  readonly #scratch = Buffer.allocUnsafe(COPY_DIGESTS * 32);

  constructor(writer: Sha256FileWriter, parent: Sha256FileReader | undefined, count: number, operation: string) {
    this.#writer = writer;
    this.#parent = parent;
    this.#count = count;
    this.#operation = operation;
  }

  #miscounted(lists: string): ChunkedBackupError {
    return new ChunkedBackupError({
      operation: this.#operation, resource: this.#parent!.path,
      detail: `it lists ${lists} sha256s, the volume has ${this.#count} blocks: the file is damaged or of another volume; take a full backup`,
    });
  }

  /** The parent's next n digests into the scratch buffer (n at most COPY_DIGESTS). */
  async #readParent(n: number): Promise<Buffer> {
    if (await this.#parent!.read(n, this.#scratch, this.#operation) < n) throw this.#miscounted(String(this.#parent!.count));
    return this.#scratch.subarray(0, n * 32);
  }

  /** Copies the parent's digests up to block end. */
  async #copyTo(end: number): Promise<void> {
    while (this.#next < end) {
      const n = Math.min(COPY_DIGESTS, end - this.#next);
      await this.#writer.append(await this.#readParent(n));
      this.#next += n;
    }
  }

  /**
   * The digests (32 bytes each) of the blocks from first on: written, and
   * for each whether it differs from the parent's (always, without one).
   */
  async take(first: number, digests: Buffer): Promise<Uint8Array> {
    const n = digests.length / 32;
    if (first < this.#next || first + n > this.#count) {
      throw new RangeError(`blocks ${first}..${first + n} after block ${this.#next} of ${this.#count}: not in order`);
    }
    const changed = new Uint8Array(n).fill(1);
    if (this.#parent === undefined) {
      if (first !== this.#next) throw new RangeError(`a full backup's blocks skip from ${this.#next} to ${first}`);
    } else {
      await this.#copyTo(first);
      for (let done = 0; done < n;) {
        const k = Math.min(COPY_DIGESTS, n - done);
        const theirs = await this.#readParent(k);
        for (let i = 0; i < k; i++) {
          changed[done + i] = theirs.compare(digests, (done + i) * 32, (done + i + 1) * 32, i * 32, (i + 1) * 32) === 0 ? 0 : 1;
        }
        done += k;
      }
    }
    await this.#writer.append(digests);
    this.#next = first + n;
    return changed;
  }

  /** After the last block read: the parent's rest copied, its end checked, and the list ended. */
  async end(): Promise<void> {
    if (this.#parent === undefined) {
      if (this.#next !== this.#count) throw new RangeError(`a full backup gave ${this.#next} of ${this.#count} blocks`);
    } else {
      await this.#copyTo(this.#count);
      if (await this.#parent.read(1, this.#scratch, this.#operation) > 0) throw this.#miscounted(`more than ${this.#count}`);
      await this.#parent.finish(this.#operation);
    }
    await this.#writer.end();
  }
}
