/**
 * Writes a backup's data objects into its container as Cinder's chunked
 * driver cuts them: contiguous data goes on into the same object until a
 * gap or the end of a backup_file_size chunk of the volume; each object is
 * `<prefix>-<index>` from 1, compressed as a whole (one zlib, zstd or bz2
 * stream, which Cinder's decompress reads; or none where that does not
 * make it smaller, as Cinder stores such objects), with the md5 of its
 * data. A long object is streamed (one of 2 GB never sits in memory).
 * Each is written under a partial dot name (which Cinder's listing by
 * prefix does not see) and given its name once complete; the caller makes
 * them durable (one syncfs) before anything names them.
 */
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Writable, type Duplex, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { once } from 'node:events';
import { createDeflate, deflate } from 'node:zlib';
import { promisify } from 'node:util';
import { fromSystem, nativeCall } from '../ceph/errors.js';
import { addon } from '../ceph/native.js';
import { closeTargetFile, openTargetFile, partialName, type TargetFile } from '../engine/target-file.js';
import { objectName, type ChunkedObject, type Compression } from './chunked-layout.js';
import { codecDuplex, codecStage } from './codec.js';
import { ObjectMd5 } from './object-digests.js';

/** The stage an object's data passes on its way to its file. */
function compressor(compression: Compression, file: string, operation: string): Transform | Duplex {
  switch (compression) {
    case 'zlib': return createDeflate();
    case 'zstd': case 'bz2': return codecDuplex(`${compression}-compress`, operation, file);
    case 'none': return new PassThrough();
  }
}

/**
 * An object's data is held until this much has come: an object that ends
 * before gets Cinder's own rule (compressed whole, stored compressed only
 * if that made it smaller); a longer one is streamed, compressed when
 * these first bytes shrink.
 */
const HELD_BYTES = 4 << 20;
const deflateAsync = promisify(deflate);
/** Objects being compressed, synced and named at once, and the bytes they may hold. */
const FINISHING_AT_ONCE = 16;
const FINISHING_BYTES = 32 << 20;

/** An object being streamed to its file. */
interface Streaming {
  file: TargetFile;
  /** Where the data goes in: a compressor, or a pass-through to the file. */
  head: Transform | Duplex;
  piping: Promise<void>;
}

interface OpenObject {
  entry: ChunkedObject;
  /** Its data's md5 so far, once streamed (a held object's is taken as it is stored). */
  md5: ObjectMd5 | undefined;
  /** Its data, until it is streamed. */
  held: Buffer[];
  heldBytes: number;
  streaming: Streaming | undefined;
}

/** The whole of data compressed by the addon's zstd or bz2, in one go (on the thread pool; zlib is storeObject's own). */
async function compressWhole(data: Buffer, compression: 'zstd' | 'bz2', operation: string, file: string): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for await (const piece of codecStage(`${compression}-compress`, operation, file)((async function* () { yield data; })())) pieces.push(piece);
  return Buffer.concat(pieces);
}

export class ObjectWriter {
  readonly #dir: string;
  readonly #prefix: string;
  readonly #compression: Compression;
  readonly #chunkSize: number;
  readonly #operation: string;
  #open: OpenObject | undefined;
  /** The objects written, in order (complete, named and with their compression, once finish() returned). */
  readonly objects: ChunkedObject[] = [];
  /** Bytes of their files (compressed or not), once finish() returned. */
  bytesStored = 0;
  readonly #finishing = new Set<Promise<void>>();
  #finishingBytes = 0;
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
      if (open === undefined || open.entry.offset + open.entry.length !== at || at % this.#chunkSize === 0) {
        await this.close();
        this.#start(at);
      }
      const room = this.#chunkSize - (at % this.#chunkSize);
      const piece = rest.length <= room ? rest : rest.subarray(0, room);
      await this.#append(piece);
      at += piece.length;
      rest = rest.subarray(piece.length);
    }
  }

  #start(offset: number): void {
    const name = objectName(this.#prefix, this.objects.length + 1);
    const entry: ChunkedObject = { name, offset, length: 0, md5: '', compression: 'none' };
    this.objects.push(entry);
    this.#open = { entry, md5: undefined, held: [], heldBytes: 0, streaming: undefined };
  }

  async #append(piece: Buffer): Promise<void> {
    const open = this.#open!;
    open.entry.length += piece.length;
    if (open.streaming === undefined) {
      open.held.push(piece);
      open.heldBytes += piece.length;
      if (open.heldBytes >= HELD_BYTES) await this.#stream(open);
      return;
    }
    await Promise.all([open.md5!.update(piece), this.#feed(open.streaming, piece)]);
  }

  async #feed(streaming: Streaming, piece: Buffer): Promise<void> {
    if (!streaming.head.write(piece)) await Promise.race([once(streaming.head, 'drain'), streaming.piping]);
  }

  /**
   * A long object goes to its file as it comes, compressed when its first
   * HELD_BYTES shrink under zlib (fast, and what tells for every algorithm
   * whether there is anything to gain): random or encrypted data is then
   * not compressed at all, where Cinder pays ~35 MiB/s to find out.
   */
  async #stream(open: OpenObject): Promise<void> {
    const held = Buffer.concat(open.held);
    open.md5 = new ObjectMd5(this.#operation, join(this.#dir, open.entry.name));
    await open.md5.update(held);
    const shrinks = this.#compression !== 'none' && (await deflateAsync(held)).length < held.length;
    const compression = shrinks ? this.#compression : 'none';
    open.entry.compression = compression;
    const file = await openTargetFile(join(this.#dir, open.entry.name), false, this.#operation);
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
    open.streaming = { file, head, piping };
    open.held = [];
    open.heldBytes = 0;
    await this.#feed(open.streaming, held);
  }

  /**
   * Ends the open object, if any: a streamed object's md5 is final at
   * once; a held object's md5, compression, writing and naming go on in
   * the background, a few at a time (an incremental can make thousands of
   * small objects). finish() waits for them.
   */
  async close(): Promise<void> {
    const open = this.#open;
    if (open === undefined) return;
    this.#open = undefined;
    if (open.md5 !== undefined) open.entry.md5 = open.md5.hex();
    while (this.#finishing.size >= FINISHING_AT_ONCE || (this.#finishing.size > 0 && this.#finishingBytes >= FINISHING_BYTES)) {
      await Promise.race(this.#finishing);
    }
    if (this.#failure !== undefined) {
      // An earlier object failed: this one is no longer open, so it goes here (abandon() would not see it).
      if (open.streaming !== undefined) await this.#drop(open.streaming);
      this.#failure.rethrow();
    }
    const bytes = open.heldBytes;
    this.#finishingBytes += bytes;
    const finishing: Promise<void> = (open.streaming === undefined ? this.#finishHeld(open) : this.#finishStream(open.streaming)).then(
      () => {
        this.#finishing.delete(finishing);
        this.#finishingBytes -= bytes;
      },
      (error: unknown) => {
        this.#finishing.delete(finishing);
        this.#finishingBytes -= bytes;
        this.#failure ??= { rethrow: () => { throw error; } };
      });
    this.#finishing.add(finishing);
  }

  /**
   * A short object: compressed whole, kept compressed only when that made
   * it smaller (Cinder's rule), written, named, in one job of the addon
   * (zstd and bz2 compressed before it). Named at once (the container is
   * this backup's, under its lock); made durable with all the others by
   * one syncfs before the metadata names them (chunked-backup.ts).
   */
  async #finishHeld(open: OpenObject): Promise<void> {
    const data = open.held.length === 1 ? open.held[0]! : Buffer.concat(open.held);
    open.held = [];
    const path = join(this.#dir, open.entry.name);
    const packing = this.#compression === 'none' || this.#compression === 'zlib' ? this.#compression
      : await compressWhole(data, this.#compression, this.#operation, path);
    const stored = await nativeCall(this.#operation, path, () => addon.storeObject(partialName(path), path, data, packing));
    open.entry.md5 = stored.md5;
    if (stored.compressed) open.entry.compression = this.#compression;
    this.bytesStored += stored.bytes;
  }

  async #finishStream(streaming: Streaming): Promise<void> {
    let named = false;
    try {
      streaming.head.end();
      await streaming.piping;
      const { size } = await streaming.file.handle.stat();
      this.bytesStored += size;
      await closeTargetFile(streaming.file, false);
      named = true;
    } finally {
      if (!named) await this.#drop(streaming);
    }
  }

  /** After the last write: every object closed, written and named (or the first failure thrown). */
  async finish(): Promise<void> {
    await this.close();
    await this.#settle();
    this.#failure?.rethrow();
  }

  async #settle(): Promise<void> {
    while (this.#finishing.size > 0) await Promise.race(this.#finishing);
  }

  async #drop(streaming: Streaming): Promise<void> {
    streaming.head.destroy();
    await streaming.piping.catch(() => undefined);
    await closeTargetFile(streaming.file, true);
  }

  /** After a failure: the open object's partial file and every object written go (once those being finished are). */
  async abandon(): Promise<void> {
    const open = this.#open;
    this.#open = undefined;
    if (open?.streaming !== undefined) await this.#drop(open.streaming);
    await this.#settle();
    for (const object of this.objects) {
      await unlink(join(this.#dir, object.name)).catch(() => undefined);
    }
  }
}
