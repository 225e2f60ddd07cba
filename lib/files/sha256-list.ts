/**
 * A backup's SHA-256 per hash block of the volume (its `_sha256file`), held
 * as 32 bytes a block: a 1 TiB volume's list of 32 KiB blocks is 1 GiB
 * here, where Cinder's JSON of it is 2.4 GB. Read from a parent's file and
 * streamed out to a new one.
 */
import { stat, type FileHandle } from 'node:fs/promises';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { CHUNKED_VERSION } from './chunked-layout.js';
import { ChunkedBackupError } from './errors.js';
import { fromSystem } from '../ceph/errors.js';
import { onFile } from '../engine/target-file.js';

/** The largest sha256file read: V8's strings end near 512 MiB (a volume of ~1.7 TiB in 32 KiB blocks is past it). */
const MAX_FILE_BYTES = 480 << 20;
/** Entries written per write call. */
const LINES_PER_WRITE = 8192;

export class Sha256List {
  readonly blockSize: number;
  readonly count: number;
  readonly #digests: Buffer;

  constructor(blockSize: number, count: number, digests = Buffer.alloc(count * 32)) {
    this.blockSize = blockSize;
    this.count = count;
    this.#digests = digests;
  }

  /** The list of a volume of size bytes (its last block may be short). */
  static forSize(blockSize: number, size: bigint): Sha256List {
    return new Sha256List(blockSize, Number((size + BigInt(blockSize) - 1n) / BigInt(blockSize)));
  }

  /** Sets block index's digest (32 bytes); says whether it differs from what was there. */
  replace(index: number, digest: Uint8Array): boolean {
    const slot = this.#digests.subarray(index * 32, index * 32 + 32);
    if (slot.equals(digest)) return false;
    slot.set(digest);
    return true;
  }

  copy(): Sha256List {
    return new Sha256List(this.blockSize, this.count, Buffer.from(this.#digests));
  }

  hex(index: number): string {
    return this.#digests.toString('hex', index * 32, index * 32 + 32);
  }

  /** Writes the entries as Cinder's sha256file lists them (between sha256FileFrame's head and tail). */
  async writeEntries(handle: FileHandle): Promise<void> {
    if (this.count === 0) {
      await handle.writeFile('[]');
      return;
    }
    await handle.writeFile('[\n');
    for (let first = 0; first < this.count; first += LINES_PER_WRITE) {
      const last = Math.min(this.count, first + LINES_PER_WRITE);
      const lines: string[] = [];
      for (let i = first; i < last; i++) lines.push(`    "${this.hex(i)}"${i === this.count - 1 ? '' : ','}\n`);
      await handle.writeFile(lines.join(''));
    }
    await handle.writeFile('  ]');
  }

  /**
   * A parent's `_sha256file`, checked: its version, block size and
   * digests. Parsed on a worker thread: the JSON of a 1 TiB volume's list
   * is hundreds of MiB, and even a 1 GiB volume's (2.3 MB) takes the event
   * loop tens of milliseconds.
   */
  static async read(file: string): Promise<Sha256List> {
    const { size } = await onFile('backup', file, 'reading the parent\'s sha256file', () => stat(file));
    const bad = (detail: string): ChunkedBackupError => new ChunkedBackupError({ operation: 'backup', resource: file, detail });
    if (size > MAX_FILE_BYTES) throw bad(`it is ${size} bytes, more than the ${MAX_FILE_BYTES} this version reads: take a full backup`);
    const worker = new Worker(new URL('./sha256-file-worker.js', import.meta.url), { workerData: file });
    try {
      const [answer] = await Promise.race([once(worker, 'message'), once(worker, 'error').then(([error]) => { throw error; })]) as [ParsedSha256File];
      if ('failure' in answer) {
        if (answer.failure === 'read') {
          throw fromSystem(Object.assign(new Error(answer.message), { code: answer.code }), 'backup', file, 'reading the parent\'s sha256file');
        }
        throw bad(answer.detail);
      }
      return new Sha256List(answer.blockSize, answer.count, Buffer.from(answer.digests));
    } finally {
      await worker.terminate();
    }
  }

}

/** What the worker makes of a sha256file: its list, or why not. */
export type ParsedSha256File =
  | { blockSize: number; count: number; digests: ArrayBuffer }
  | { failure: 'read'; code: string; message: string }
  | { failure: 'content'; detail: string };

/** A sha256file's text, checked (pure; run by sha256-file-worker.ts). */
export function parseSha256File(text: string): ParsedSha256File {
  const bad = (detail: string): ParsedSha256File => ({ failure: 'content', detail });
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch (error) {
    return bad(`it is not JSON (${(error as Error).message}): the file is damaged or truncated`);
  }
  if (parsed === null || typeof parsed !== 'object') return bad('it is not a JSON object');
  if (parsed.version !== CHUNKED_VERSION) return bad(`it is of version ${JSON.stringify(parsed.version)}; only ${CHUNKED_VERSION} is known`);
  const blockSize = parsed.chunk_size;
  if (typeof blockSize !== 'number' || !Number.isSafeInteger(blockSize) || blockSize <= 0) return bad('its chunk_size is not a positive integer');
  const list = parsed.sha256s;
  if (!Array.isArray(list)) return bad('it has no list of sha256s');
  const digests = new ArrayBuffer(list.length * 32);
  const view = Buffer.from(digests);
  for (const [i, hex] of list.entries()) {
    if (typeof hex !== 'string' || !/^[0-9a-f]{64}$/.test(hex)) return bad(`its sha256 ${i} is not 64 hex digits`);
    view.write(hex, i * 32, 'hex');
  }
  return { blockSize, count: list.length, digests };
}
