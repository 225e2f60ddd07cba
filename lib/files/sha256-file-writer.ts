/**
 * A backup's `_sha256file` written as its digests come, in block order,
 * under a partial name beside it: a volume's list is never held (that of a
 * 1 TiB volume is 1 GiB of digests), and nothing named `_sha256file` is
 * seen before the backup's objects are durable. The bytes are those of
 * Cinder's document (sha256FileFrame around the entries, as json.dumps
 * with indent 2 lists them).
 */
import { join } from 'node:path';
import { closeTargetFile, onFile, openTargetFile, type TargetFile } from '../engine/target-file.js';
import { sha256FileFrame, sha256Name, type ChunkedBackupFacts } from './chunked-layout.js';

/** Entries' text gathered before a write (~73 bytes an entry). */
const WRITE_BYTES = 256 << 10;

export class Sha256FileWriter {
  readonly #file: TargetFile;
  readonly #tail: string;
  #pending: string[] = [];
  #pendingBytes = 0;
  /** Digests written so far. */
  count = 0;

  private constructor(file: TargetFile, tail: string) {
    this.#file = file;
    this.#tail = tail;
  }

  /** The partial file, made in dir and begun with the document's head. */
  static async open(dir: string, prefix: string, facts: ChunkedBackupFacts, blockSize: number, operation: string): Promise<Sha256FileWriter> {
    const { head, tail } = sha256FileFrame(facts, blockSize);
    const file = await openTargetFile(join(dir, sha256Name(prefix)), false, operation);
    const writer = new Sha256FileWriter(file, tail);
    writer.#pending.push(head, '[');
    return writer;
  }

  /** The next digests (32 bytes each), in block order. */
  async append(digests: Buffer): Promise<void> {
    for (let at = 0; at < digests.length; at += 32) {
      const entry = `${this.count === 0 ? '' : ','}\n    "${digests.toString('hex', at, at + 32)}"`;
      this.count++;
      this.#pending.push(entry);
      this.#pendingBytes += entry.length;
    }
    if (this.#pendingBytes >= WRITE_BYTES) await this.#write();
  }

  async #write(): Promise<void> {
    const text = this.#pending.join('');
    this.#pending = [];
    this.#pendingBytes = 0;
    await onFile(this.#file.operation, this.#file.path, 'writing the sha256file', () => this.#file.handle.writeFile(text));
  }

  /** After the last digest: the document ended and written out, still under its partial name. */
  async end(): Promise<void> {
    this.#pending.push(this.count === 0 ? ']' : '\n  ]', this.#tail);
    await this.#write();
  }

  /**
   * Gives the file its name (linked: one made there meanwhile is not
   * overwritten). The caller made it durable first (one syncfs with the
   * objects) and syncs the directory after.
   */
  async name(): Promise<void> {
    await closeTargetFile(this.#file, false);
  }

  /** After a failure: the partial file goes. */
  async abandon(): Promise<void> {
    await closeTargetFile(this.#file, true);
  }
}
