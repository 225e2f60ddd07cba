/**
 * backupChunked: a snapshot of an RBD image written as a backup in Cinder's
 * chunked file layout (chunked-layout.ts), full or incremental. A full
 * backup hashes every 32 KiB block and stores the whole volume, one object
 * per backup_file_size chunk, as Cinder's does (holes are not read: they
 * are zeros). An incremental reads only the blocks the RBD diff since the
 * parent's snapshot names, hashes them against the parent's sha256s, and
 * stores the runs of blocks whose digest changed, split at chunk ends as
 * Cinder's are: what Cinder's own incremental of the same volume stores,
 * without reading the rest. Reads run ahead in a bounded window; hashing,
 * compression and writing run on the thread pool (the addon's).
 *
 * Nothing looks complete before it is: the objects are written and named,
 * made durable by one syncfs of their file system, then the sha256file,
 * then the metadata (what a restore starts from), each synced, the
 * directory synced after each. A failure removes what was written.
 */
import { mkdir, readdir, rmdir, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate } from 'node:timers/promises';
import { cancelledError } from '../ceph/cancel.js';
import type { Image } from '../ceph/image.js';
import { checkEngineOptions, MAX_IO_SIZE, type EngineOptions } from '../engine/options.js';
import { readInOrder } from '../ceph/transfer-job.js';
import { readPlanFor } from '../engine/transfer.js';
import { closeTargetFile, onFile, openTargetFile } from '../engine/target-file.js';
import {
  metadataFrame, metadataList, metadataName, sha256Name, type ChunkedBackupFacts, type ChunkedObject, type Compression,
} from './chunked-layout.js';
import { ObjectWriter } from './object-writer.js';
import { Sha256FileReader } from './sha256-file-reader.js';
import { Sha256FileWriter } from './sha256-file-writer.js';
import { Sha256Update } from './sha256-update.js';
import { syncDir, syncFileSystem } from './chunked-store.js';
import { sha256Blocks } from './object-digests.js';

export interface ChunkedBackupOptions extends EngineOptions {
  /** The image, open at the snapshot backed up. */
  source: Image;
  /**
   * An incremental: the parent's snapshot (on the source) and its
   * sha256file open at its first digest (of the same block); closed here.
   */
  parent?: { snapshot: string; backupId: string; sha256s: Sha256FileReader };
  /** The backup's container directory (made here; it must not hold a backup). */
  dir: string;
  prefix: string;
  facts: ChunkedBackupFacts;
  /** Cinder's volume_meta: JSON text, or null. */
  volumeMeta: string | null;
  compression: Compression;
  /** backup_file_size: the most data of one object, a multiple of shaBlockSize. */
  chunkSize: number;
  shaBlockSize: number;
}

export interface ChunkedBackupStats {
  objects: ChunkedObject[];
  /** Bytes read from the snapshot. */
  bytesRead: bigint;
  /** Bytes of data stored (before compression). */
  bytesWritten: bigint;
  /** Bytes of the objects' files. */
  bytesStored: bigint;
  /** Hash blocks read whose digest had not changed (an incremental's, not stored). */
  blocksUnchanged: number;
  /** Diff extents read (whole objects for a full backup). */
  pieces: number;
  elapsedMs: number;
}

const operation = 'backup';
/** The most the loop over the pieces runs before it lets the event loop have a turn. */
const TURN_MS = 4;

/** Writes a document under a partial name, syncs it and names it. */
async function writeDocument(path: string, write: (handle: FileHandle) => Promise<void>): Promise<void> {
  const file = await openTargetFile(path, false, operation);
  let failed = true;
  try {
    await onFile(operation, path, 'writing', () => write(file.handle));
    await onFile(operation, path, 'syncing', () => file.handle.sync());
    failed = false;
  } finally {
    await closeTargetFile(file, failed);
  }
}

export async function backupChunked(options: ChunkedBackupOptions): Promise<ChunkedBackupStats> {
  try {
    return await backupWith(options);
  } finally {
    await options.parent?.sha256s.close();
  }
}

async function backupWith(options: ChunkedBackupOptions): Promise<ChunkedBackupStats> {
  const started = performance.now();
  const { source, parent, dir, prefix, facts, signal, onProgress } = options;
  const limits = checkEngineOptions(options, operation, source.spec, 16 << 20);
  const { size, objectSize } = await source.stat();
  const block = options.shaBlockSize;
  const blocks = Number((size + BigInt(block) - 1n) / BigInt(block));
  // Whole hash blocks at a time (a block need not divide 4 MiB: Cinder's need only divide backup_file_size).
  const zeroStep = Math.max(block, Number(MAX_IO_SIZE) - (Number(MAX_IO_SIZE) % block));
  const zeros = Buffer.alloc(zeroStep);
  const zeroDigest = await sha256Blocks(Buffer.alloc(block), block, operation, source.spec);
  const zeroDigests = Buffer.concat(Array.from({ length: zeroStep / block }, () => zeroDigest));
  const stats: ChunkedBackupStats = {
    objects: [], bytesRead: 0n, bytesWritten: 0n, bytesStored: 0n, blocksUnchanged: 0, pieces: 0, elapsedMs: 0,
  };
  await onFile(operation, dir, 'making the backup\'s container', () => mkdir(dir, { recursive: true }));
  const writer = new ObjectWriter(dir, prefix, { compression: options.compression, chunkSize: options.chunkSize, operation });
  let shaFile: Sha256FileWriter | undefined;
  let reported = 0;
  const report = (done: bigint): void => {
    if (onProgress !== undefined && performance.now() - reported >= 100) {
      reported = performance.now();
      onProgress({ done, total: size, bytesRead: stats.bytesRead });
    }
  };

  let failed = true;
  let storing: Promise<void> = Promise.resolve();
  try {
    shaFile = await Sha256FileWriter.open(dir, prefix, facts, block, operation);
    const sha256s = new Sha256Update(shaFile, parent?.sha256s, blocks, operation);
    /** Stores the runs of the blocks of data at offset (block-aligned) whose digests changed. */
    const take = async (offset: bigint, data: Buffer, digests: Buffer | Promise<Buffer>): Promise<void> => {
      const changed = await sha256s.take(Number(offset / BigInt(block)), await digests);
      let run: number | undefined;
      const flush = async (end: number): Promise<void> => {
        if (run === undefined) return;
        await writer.write(Number(offset) + run, data.subarray(run, end));
        stats.bytesWritten += BigInt(end - run);
        run = undefined;
      };
      for (let at = 0, i = 0; at < data.length; at += block, i++) {
        if (changed[i] === 1) {
          run ??= at;
        } else {
          stats.blocksUnchanged++;
          await flush(at);
        }
      }
      await flush(data.length);
      report(offset + BigInt(data.length));
    };
    /** A full backup's holes: zero blocks, stored like any (Cinder's full backup covers the volume). */
    const takeZeros = async (from: bigint, to: bigint): Promise<void> => {
      for (let at = from; at < to;) {
        const end = to - at < BigInt(zeroStep) ? to : at + BigInt(zeroStep);
        const data = zeros.subarray(0, Number(end - at));
        // Every zero block has one digest; only a short one at the volume's end is hashed.
        const full = Math.floor(data.length / block);
        const known = zeroDigests.subarray(0, full * 32);
        await take(at, data, full * block === data.length ? known
          : Buffer.concat([known, await sha256Blocks(data.subarray(full * block), block, operation, source.spec)]));
        at = end;
        // Nothing in a step of zeros need wait for I/O: this lets timers and other I/O in.
        await setImmediate();
        if (signal?.aborted) throw cancelledError(operation, source.spec, signal);
      }
    };

    let next = 0n;
    const plan = readPlanFor(size, objectSize, limits);
    // Reads are whole hash blocks, in pieces that never cut one: a block
    // that does not divide the object's pieces makes pieces of whole blocks
    // (read through librbd: they may span objects).
    if (plan.ioSize % BigInt(block) !== 0n) plan.ioSize = BigInt(zeroStep);
    if (plan.memory < plan.ioSize) plan.memory = plan.ioSize;
    const pieces = readInOrder(source, {
      ...plan, snapshot: source.snapshot, fromSnapshot: parent?.snapshot, wholeObject: parent === undefined, align: BigInt(block),
    }, signal, operation, source.spec);
    // A piece is hashed (on the thread pool) while the one before is stored
    // (its md5, compression and file writes, on the thread pool too).
    let turn = performance.now();
    for await (const piece of pieces) {
      if (signal?.aborted) throw cancelledError(operation, source.spec, signal);
      // A batch of reads resolves at once and its pieces go on as microtasks: timers and other I/O get a turn every few ms.
      if (performance.now() - turn > TURN_MS) {
        await setImmediate();
        turn = performance.now();
      }
      const digests = sha256Blocks(piece.data!, block, operation, source.spec);
      digests.catch(() => undefined); // awaited by its take; a failure before that is not unhandled
      await storing;
      if (parent === undefined) await takeZeros(next, piece.offset);
      stats.pieces++;
      stats.bytesRead += piece.length;
      storing = take(piece.offset, piece.data!, digests);
      storing.catch(() => undefined); // awaited at the next piece or after the last
      next = piece.offset + piece.length;
    }
    await storing;
    if (parent === undefined) await takeZeros(next, size);
    await writer.finish();
    await sha256s.end();
    // Every object and the sha256file durable before a name says they are there.
    await syncFileSystem(dir, operation);
    await shaFile.name();
    await syncDir(dir, operation);
    await writeDocument(join(dir, metadataName(prefix)), async (handle) => {
      const { head, tail } = metadataFrame(facts, parent?.backupId ?? null, options.volumeMeta);
      await handle.writeFile(head);
      // A write every few hundred entries: making the text of thousands at once held the event loop ~20 ms.
      for (const piece of metadataList(writer.objects, 256)) await handle.writeFile(piece);
      await handle.writeFile(tail);
    });
    await syncDir(dir, operation);
    failed = false;
  } finally {
    if (failed) {
      // A piece being stored when the reads failed finishes (or fails) before its files go.
      await storing.catch(() => undefined);
      await abandon(dir, prefix, writer, shaFile);
    }
  }
  onProgress?.({ done: size, total: size, bytesRead: stats.bytesRead });
  stats.objects = writer.objects;
  stats.bytesStored = BigInt(writer.bytesStored);
  stats.elapsedMs = performance.now() - started;
  return stats;
}

/**
 * What a failed backup wrote goes: its metadata first (named but not yet
 * synced when the directory's sync failed), its objects, its sha256file
 * (partial or named), and the container when nothing else is in it.
 */
async function abandon(dir: string, prefix: string, writer: ObjectWriter, shaFile: Sha256FileWriter | undefined): Promise<void> {
  await unlink(join(dir, metadataName(prefix))).catch(() => undefined);
  await writer.abandon();
  await shaFile?.abandon();
  await unlink(join(dir, sha256Name(prefix))).catch(() => undefined);
  const left = await readdir(dir).catch(() => ['?']);
  if (left.length === 0) await rmdir(dir).catch(() => undefined);
}
