/**
 * Writes a backup's data objects into its container as Cinder's chunked
 * driver cuts them: contiguous data goes on into the same object until a
 * gap or the end of a backup_file_size chunk of the volume; each object is
 * `<prefix>-<index>` from 1, compressed as a whole (one zlib, zstd or bz2
 * stream, which Cinder's decompress reads; or none where that does not
 * make it smaller, as Cinder stores such objects), with the md5 of its data. Streamed: an
 * object of 2 GB never sits in memory. Each is written under a partial
 * dot name (which Cinder's listing by prefix does not see), synced, and
 * only then given its name.
 */
import { createHash, type Hash } from 'node:crypto';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Writable, type Duplex, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { once } from 'node:events';
import { createDeflate, deflate } from 'node:zlib';
import { promisify } from 'node:util';
import { fromSystem } from '../ceph/errors.js';
import { closeTargetFile, onFile, openTargetFile, type TargetFile } from '../engine/target-file.js';
import { objectName, type ChunkedObject, type Compression } from './chunked-layout.js';
import { codecDuplex } from './codec.js';

/** The stage an object's data passes on its way to its file. */
function compressor(compression: Compression, file: string, operation: string): Transform | Duplex {
  switch (compression) {
    case 'zlib': return createDeflate();
    case 'zstd': case 'bz2': return codecDuplex(`${compression}-compress`, operation, file);
    case 'none': return new PassThrough();
  }
}

/** What decides whether an object is compressed. */
const SAMPLE_BYTES = 256 << 10;
const deflateAsync = promisify(deflate);
/** Objects being synced and named at once. */
const FINISHING_AT_ONCE = 16;

interface OpenObject {
  name: string;
  offset: number;
  length: number;
  md5: Hash;
  compression: Compression;
  file: TargetFile;
  /** Where the data goes in: a compressor, or a pass-through to the file. */
  head: Transform | Duplex;
  piping: Promise<void>;
}

export class ObjectWriter {
  readonly #dir: string;
  readonly #prefix: string;
  readonly #compression: Compression;
  readonly #chunkSize: number;
  readonly #operation: string;
  #open: OpenObject | undefined;
  /** The objects written, in order (named once finish() returned). */
  readonly objects: ChunkedObject[] = [];
  /** Bytes of their files (compressed or not), once finish() returned. */
  bytesStored = 0;
  readonly #finishing = new Set<Promise<void>>();
  #failure: { rethrow: () => never } | undefined;

  constructor(dir: string, prefix: string, options: { compression: Compression; chunkSize: number; operation: string }) {
    this.#dir = dir;
    this.#prefix = prefix;
    this.#compression = options.compression;
    this.#chunkSize = options.chunkSize;
    this.#operation = options.operation;
  }

  /** Data of the volume at offset, for the backup: continues the open object when it follows on in the same chunk. */
  async write(offset: number, data: Buffer): Promise<void> {
    let at = offset;
    let rest = data;
    while (rest.length > 0) {
      const open = this.#open;
      if (open === undefined || open.offset + open.length !== at || at % this.#chunkSize === 0) {
        await this.close();
        await this.#start(at, rest);
      }
      const room = this.#chunkSize - (at % this.#chunkSize);
      const piece = rest.length <= room ? rest : rest.subarray(0, room);
      await this.#append(piece);
      at += piece.length;
      rest = rest.subarray(piece.length);
    }
  }

  /**
   * Cinder stores an object uncompressed when compressing it does not make
   * it smaller (random or encrypted data, say). A stream cannot go back:
   * the object's first bytes decide, compressed on the thread pool, and
   * such data is then not compressed at all (the slowest thing a backup
   * of it could do: ~35 MiB/s).
   */
  async #compressionFor(first: Buffer): Promise<Compression> {
    if (this.#compression === 'none') return 'none';
    // zlib, fast, tells for every algorithm whether there is anything to gain.
    const sample = first.subarray(0, SAMPLE_BYTES);
    return (await deflateAsync(sample)).length < sample.length ? this.#compression : 'none';
  }

  async #start(offset: number, first: Buffer): Promise<void> {
    const name = objectName(this.#prefix, this.objects.length + 1);
    const compression = await this.#compressionFor(first);
    const file = await openTargetFile(join(this.#dir, name), false, this.#operation);
    const head = compressor(compression, file.path, this.#operation);
    // Not the handle's own createWriteStream: it holds the handle, whose close then never returns.
    const out = new Writable({
      highWaterMark: 1 << 20,
      write: (chunk: Buffer, _encoding, done) => {
        file.handle.writeFile(chunk).then(() => done(), done);
      },
    });
    const piping = pipeline(head, out).catch((error: unknown) => {
      throw fromSystem(error, this.#operation, file.path, 'writing the backup\'s object');
    });
    // Awaited at the object's end; until then, a failure shows through the writes.
    piping.catch(() => undefined);
    this.#open = { name, offset, length: 0, md5: createHash('md5'), compression, file, head, piping };
  }

  async #append(piece: Buffer): Promise<void> {
    const open = this.#open!;
    open.md5.update(piece);
    open.length += piece.length;
    if (!open.head.write(piece)) await Promise.race([once(open.head, 'drain'), open.piping]);
  }

  /**
   * Ends the open object, if any: its md5 is final and it is listed at
   * once; its flush, sync and naming go on in the background, a few at a
   * time (a sync costs a round trip to the disk, and an incremental can
   * make thousands of small objects). finish() waits for them.
   */
  async close(): Promise<void> {
    const open = this.#open;
    if (open === undefined) return;
    this.#open = undefined;
    this.objects.push({ name: open.name, offset: open.offset, length: open.length, md5: open.md5.digest('hex'), compression: open.compression });
    while (this.#finishing.size >= FINISHING_AT_ONCE) await Promise.race(this.#finishing);
    this.#failure?.rethrow();
    const finishing: Promise<void> = this.#finishObject(open).then(
      () => { this.#finishing.delete(finishing); },
      (error: unknown) => {
        this.#finishing.delete(finishing);
        this.#failure ??= { rethrow: () => { throw error; } };
      });
    this.#finishing.add(finishing);
  }

  async #finishObject(open: OpenObject): Promise<void> {
    let named = false;
    try {
      open.head.end();
      await open.piping;
      await onFile(this.#operation, open.file.path, 'syncing the backup\'s object', () => open.file.handle.sync());
      const { size } = await open.file.handle.stat();
      this.bytesStored += size;
      await closeTargetFile(open.file, false);
      named = true;
    } finally {
      if (!named) await this.#drop(open);
    }
  }

  /** After the last write: every object closed, synced and named (or the first failure thrown). */
  async finish(): Promise<void> {
    await this.close();
    await this.#settle();
    this.#failure?.rethrow();
  }

  async #settle(): Promise<void> {
    while (this.#finishing.size > 0) await Promise.race(this.#finishing);
  }

  async #drop(open: OpenObject): Promise<void> {
    open.head.destroy();
    await open.piping.catch(() => undefined);
    await closeTargetFile(open.file, true);
  }

  /** After a failure: the open object's partial file and every object written go (once those being named are). */
  async abandon(): Promise<void> {
    const open = this.#open;
    this.#open = undefined;
    if (open !== undefined) await this.#drop(open);
    await this.#settle();
    for (const object of this.objects) {
      await unlink(join(this.#dir, object.name)).catch(() => undefined);
    }
  }
}
