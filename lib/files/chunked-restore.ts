/**
 * restoreChunked: a backup in Cinder's chunked file layout (its POSIX and
 * NFS drivers'; see chunked-layout.ts) written into an RBD image. As
 * Cinder's restore does: the chain is found by the metadata's parent_id
 * (each parent in Cinder's default container for its id), the full
 * backup's objects are written first, then each incremental's in order.
 * Unlike it, each object's md5 is checked as its bytes pass, every file of
 * the chain is checked to be there and of a known compression before
 * anything is written, and zeros are skipped only where the target is
 * known to hold zeros (the full backup's layer on a new volume: Cinder
 * skips them in every layer, which leaves an incremental's zeroing out).
 * Streamed: memory is bounded by the write window whatever the object size
 * (into an image, the native engine's: writeInOrder).
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import PQueue from 'p-queue';
import { cancelledError } from '../ceph/cancel.js';
import { invalidArgument, NotFoundError } from '../ceph/errors.js';
import { Image } from '../ceph/image.js';
import { writeInOrder } from '../ceph/transfer-job.js';
import { checkFlag, checkId, checkOptions, describeValue } from '../ceph/validate.js';
import { checkEngineOptions, type EngineLimits, type EngineOptions } from '../engine/options.js';
import { closeTargetFile, onFile as onTargetFile, openTargetFile } from '../engine/target-file.js';
import { defaultContainer, type ChunkedObject } from './chunked-layout.js';
import { readStoredBackup, type StoredBackup } from './chunked-store.js';
import { ChunkedBackupError } from './errors.js';
import { objectData } from './object-data.js';
import { layChain, streamChain } from './chunked-stream.js';

export interface ChunkedRestoreOptions extends EngineOptions {
  /** The backup root: the NFS share's mount point, or Cinder's backup_posix_path. */
  root: string;
  /** The backup's id. */
  backupId: string;
  /** Its container under root (the record's `container`). Default: Cinder's for the id, `<id[0:2]>/<id[2:4]>/<id>`. */
  container?: string;
  /** Its object prefix (the record's service_metadata). Default: that of the one `*_metadata` file in its container. */
  prefix?: string;
  /**
   * The image written, open at its head (at least as large as the data),
   * or a raw file of `size` bytes: written under a partial name beside it
   * (sparsely) and given its name once complete and synced; an existing
   * file is refused unless overwrite.
   */
  target: Image | ChunkedFileTarget | ChunkedStreamTarget;
  /** An image target reads as zeros (a volume just created): the full backup's zero pieces are not written. A file always is new. */
  targetIsZero?: boolean;
  /** What checkChunkedBackup found of this backup just before: not read again. */
  checked?: CheckedChunkedBackup;
}

/**
 * A pipe: the volume's `size` bytes in offset order, the chain's layers
 * merged (chunked-stream.ts), zeros written out; ended at the end.
 */
export interface ChunkedStreamTarget {
  stream: Writable;
  size: bigint;
}

export interface ChunkedFileTarget {
  file: string;
  size: bigint;
  overwrite?: boolean;
}

export interface ChunkedRestoreStats {
  /** The backups applied, the full one first. */
  backups: string[];
  objects: number;
  /** Bytes of the objects' files, as stored (compressed or not). */
  bytesRead: bigint;
  /** Bytes of data written to the target. */
  bytesWritten: bigint;
  /** Zero bytes of the full backup not written to a zero target. */
  bytesSkipped: bigint;
  elapsedMs: number;
}


/** Longest chain followed (a parent_id loop ends here too). */
const MAX_CHAIN = 10_000;
/** Pieces written at a time: the inflater's output and the file reads. */
const PIECE = 1 << 20;

const onFile = <T>(path: string, doing: string, op: () => Promise<T>): Promise<T> => onTargetFile('restore', path, doing, op);

/** The chain ending at the backup, the full one first. */
async function readChain(options: ChunkedLocation): Promise<StoredBackup[]> {
  const chain = [await readStoredBackup(options.root, options, 'restore')];
  const seen = new Set([options.backupId]);
  for (let parent = chain[0]!.metadata.parentId; parent !== null; parent = chain[0]!.metadata.parentId) {
    checkId('backup', parent, 'restore');
    if (seen.has(parent) || chain.length >= MAX_CHAIN) {
      throw new ChunkedBackupError({
        operation: 'restore', resource: chain[0]!.dir,
        detail: `the chain of parents loops or runs past ${MAX_CHAIN} backups at ${parent}`,
      });
    }
    seen.add(parent);
    try {
      chain.unshift(await readStoredBackup(options.root, { backupId: parent }, 'restore'));
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
      throw new NotFoundError({
        code: 'ENOENT', operation: 'restore', resource: join(options.root, defaultContainer(parent)),
        detail: `backup ${chain[0]!.metadata.backupId}'s parent ${parent} is not in the backup root (${error.message}): the chain is broken`,
      });
    }
  }
  return chain;
}

/** Every object's file is there: checked before anything is written. Returns each file's size. */
async function statObjects(chain: StoredBackup[]): Promise<Map<string, bigint>> {
  const sizes = new Map<string, bigint>();
  for (const { dir, metadata } of chain) {
    for (const object of metadata.objects) {
      const file = join(dir, object.name);
      sizes.set(file, BigInt((await onFile(file, 'finding the backup\'s object', () => stat(file))).size));
    }
  }
  return sizes;
}

/** Every object's data lies within the target: checked before anything is written. */
function checkBounds(chain: StoredBackup[], targetSize: bigint): void {
  for (const { dir, metadata } of chain) {
    for (const object of metadata.objects) {
      if (BigInt(object.offset + object.length) > targetSize) {
        throw new ChunkedBackupError({
          operation: 'restore', resource: join(dir, object.name),
          detail: `its data ends at byte ${object.offset + object.length}, past the target's ${targetSize}`,
        });
      }
    }
  }
}

/**
 * Where the pieces go: an image, or a file under its partial name. A piece
 * is written from its Buffer, which stays unchanged until it is written.
 */
interface Sink {
  spec: string;
  size: bigint;
  isZero: boolean;
  /** Resolves once the piece is on its way (its window has room), not written. */
  write(piece: Buffer, offset: number): Promise<void>;
  /** Resolves once every piece given so far is written; throws the first failure. */
  drain(): Promise<void>;
  /** After the last write: flushed (a file sized, synced and named), or (failed) writes stopped, a file removed. */
  finish(failed: boolean): Promise<void>;
}

async function openSink(target: Image | ChunkedFileTarget, targetIsZero: boolean, limits: EngineLimits,
  signal: AbortSignal | undefined): Promise<Sink> {
  if (!('file' in target)) {
    const size = (await target.stat()).size;
    // Zero pieces are never given (restoreObject skips them where the target is known to be zero).
    const writer = writeInOrder(target, { window: limits.concurrency, memory: BigInt(limits.memoryBytes), targetIsZero: false },
      signal, 'restore', target.spec);
    return {
      spec: target.spec, size, isZero: targetIsZero,
      write: (piece, offset) => writer.write(piece, BigInt(offset)),
      drain: () => writer.drain(),
      finish: async (failed) => { if (failed) await writer.stop(); else await writer.end(); },
    };
  }
  if (typeof target.file !== 'string' || target.file === '' || typeof target.size !== 'bigint' || target.size < 0n) {
    throw invalidArgument('restore', String(target.file), 'a file target is { file: path, size: bytes (bigint), overwrite? }');
  }
  const file = await openTargetFile(target.file, target.overwrite === true, 'restore');
  // The window of file writes: as many as the limits allow (at most PIECE bytes each), and one waiting.
  const writes = new PQueue({ concurrency: Math.max(1, Math.min(limits.concurrency, Math.floor(limits.memoryBytes / PIECE))) });
  let failure: { error: unknown } | undefined;
  const throwIfFailed = (): void => { if (failure) throw failure.error; };
  return {
    spec: target.file, size: target.size, isZero: true,
    write: async (piece, offset) => {
      throwIfFailed();
      await writes.onSizeLessThan(1);
      throwIfFailed();
      writes.add(() => onFile(target.file, 'cannot write', () => file.handle.write(piece, 0, piece.length, offset)))
        .catch((error: unknown) => { failure ??= { error }; });
    },
    drain: async () => {
      await writes.onIdle();
      throwIfFailed();
    },
    finish: async (failed) => {
      writes.clear();
      await writes.onIdle();
      if (!failed && failure !== undefined) {
        await closeTargetFile(file, true);
        throw failure.error;
      }
      if (!failed) {
        try {
          await onFile(target.file, 'cannot size the file', () => file.handle.truncate(Number(target.size)));
          await onFile(target.file, 'cannot sync the file', () => file.handle.sync());
        } catch (error) {
          await closeTargetFile(file, true);
          throw error;
        }
      }
      await closeTargetFile(file, failed);
    },
  };
}

const ZEROS = Buffer.alloc(PIECE);

/** Pieces are at most PIECE long (the streams' chunk sizes). */
function isZero(piece: Buffer): boolean {
  return piece.length <= PIECE && ZEROS.subarray(0, piece.length).equals(piece);
}

/** Where a backup of the layout is: what restoreChunked and checkChunkedBackup take. */
export type ChunkedLocation = Pick<ChunkedRestoreOptions, 'root' | 'backupId' | 'container' | 'prefix'>;

function checkLocation(location: ChunkedLocation, resource: string): void {
  checkId('backup', location.backupId, 'restore');
  if (typeof location.root !== 'string' || location.root === '') throw invalidArgument('restore', resource, 'root must be the backup root\'s path');
}

/** A backup of the layout read and checked (checkChunkedBackup), which restoreChunked then need not read again. */
export interface CheckedChunkedBackup {
  /** The backups of the chain, the full one first. */
  backups: string[];
  /** The volume's size: where the full backup's objects end (it covers the volume; Cinder refuses an incremental of a grown one). */
  size: bigint;
  chain: StoredBackup[];
  /** Each object file's size. */
  fileSizes: Map<string, bigint>;
}

/**
 * What a restore checks before it writes, without writing: the chain's
 * metadata documents, and every object's file and compression.
 */
export async function checkChunkedBackup(location: ChunkedLocation): Promise<CheckedChunkedBackup> {
  checkOptions(location, 'restore', 'location');
  checkLocation(location, `${String(location.root)} backup ${String(location.backupId)}`);
  const chain = await readChain(location);
  const fileSizes = await statObjects(chain);
  const size = chain[0]!.metadata.objects.reduce((end, o) => (BigInt(o.offset + o.length) > end ? BigInt(o.offset + o.length) : end), 0n);
  const checked = { backups: chain.map((b) => b.metadata.backupId), size, chain, fileSizes };
  issued.add(checked);
  return checked;
}

/** What checkChunkedBackup returned: restoreChunked takes its `checked` from there only. */
const issued = new WeakSet<CheckedChunkedBackup>();

/** The restore's target: an open image, or a file or stream of a given size. */
function checkTarget(target: unknown): void {
  if (target instanceof Image) return;
  const described = typeof target === 'object' && target !== null ? target as Partial<ChunkedFileTarget & ChunkedStreamTarget> : undefined;
  const sized = typeof described?.size === 'bigint' && described.size >= 0n;
  if (sized && typeof described?.file === 'string' && described.file !== '' &&
    (described.overwrite === undefined || typeof described.overwrite === 'boolean')) return;
  if (sized && typeof described?.stream?.write === 'function') return;
  throw invalidArgument('restore', 'arguments',
    `target must be an Image, { file, size, overwrite? } or { stream, size } (size a bigint), got ${describeValue(target)}`);
}

/** Objects of one backup restored at once. */
const OBJECTS_AT_ONCE = 8;

/** Whether no two objects cover the same byte of the volume. */
function disjoint(objects: readonly ChunkedObject[]): boolean {
  const sorted = objects.filter((o) => o.length > 0).sort((a, b) => a.offset - b.offset);
  return sorted.every((o, i) => i === 0 || sorted[i - 1]!.offset + sorted[i - 1]!.length <= o.offset);
}

export async function restoreChunked(options: ChunkedRestoreOptions): Promise<ChunkedRestoreStats> {
  const started = performance.now();
  checkOptions(options, 'restore');
  checkTarget(options.target);
  const { target, signal, onProgress } = options;
  const targetName = 'file' in target ? String(target.file) : 'stream' in target ? 'a stream' : target.spec;
  const resource = `${String(options.root)} backup ${String(options.backupId)} -> ${targetName}`;
  checkLocation(options, resource);
  const limits = checkEngineOptions(options, 'restore', resource, 16 << 20);
  checkFlag('targetIsZero', options.targetIsZero, 'restore', resource);
  if (signal?.aborted) throw cancelledError('restore', resource, signal);
  const given = options.checked;
  if (given !== undefined && !issued.has(given)) {
    throw invalidArgument('restore', resource, 'checked must be what checkChunkedBackup returned');
  }
  if (given !== undefined && given.backups.at(-1) !== options.backupId) {
    throw invalidArgument('restore', resource, `checked is backup ${String(given.backups.at(-1))}'s, not ${options.backupId}'s`);
  }
  const { chain, fileSizes: sizes } = given ?? await checkChunkedBackup(options);
  const targetSize = 'file' in target || 'stream' in target ? target.size : (await target.stat()).size;
  checkBounds(chain, targetSize);
  const total = 'stream' in target ? target.size
    : chain.reduce((sum, b) => sum + b.metadata.objects.reduce((s, o) => s + BigInt(o.length), 0n), 0n);
  const stats: ChunkedRestoreStats = {
    backups: chain.map((b) => b.metadata.backupId), objects: 0, bytesRead: 0n, bytesWritten: 0n, bytesSkipped: 0n, elapsedMs: 0,
  };
  let done = 0n;
  let reported = 0;
  const passed = (bytes: number, written: boolean): void => {
    stats[written ? 'bytesWritten' : 'bytesSkipped'] += BigInt(bytes);
    done += BigInt(bytes);
    if (onProgress !== undefined && performance.now() - reported >= 100) {
      reported = performance.now();
      onProgress({ done, total, bytesRead: stats.bytesRead });
    }
  };
  if ('stream' in target) {
    // Every object a byte is taken from is read whole (its md5 is of all of it).
    const read = new Set(layChain(chain).map((segment) => segment.file));
    stats.objects = read.size;
    stats.bytesRead = [...read].reduce((sum, file) => sum + sizes.get(file)!, 0n);
    await streamChain(chain, Number(target.size), target.stream, { signal, resource, onBytes: (bytes) => passed(bytes, true) });
    onProgress?.({ done: total, total, bytesRead: stats.bytesRead });
    stats.elapsedMs = performance.now() - started;
    return stats;
  }
  // Opened (a file made) only once the backup checks out.
  const sink = await openSink(target, options.targetIsZero === true, limits, signal);
  let objects: PQueue | undefined;
  let failure: { error: unknown } | undefined;
  try {
    for (const [layer, backup] of chain.entries()) {
      // Only below the full backup's layer is a zero target known to hold zeros.
      const skipZeros = layer === 0 && sink.isZero;
      // Objects of disjoint extents (what Cinder writes) several at once (an incremental has thousands of small
      // ones, each a file opened, read, inflated and checked: one at a time, that was latency, not work); objects
      // that overlap one after the other, in their order, as Cinder's restore applies them: each one's writes
      // landed before the next one's go out (two writes of one range in flight land in either order).
      const apart = disjoint(backup.metadata.objects);
      objects = new PQueue({ concurrency: apart ? OBJECTS_AT_ONCE : 1 });
      for (const object of backup.metadata.objects) {
        if (failure) break;
        await objects.onSizeLessThan(1);
        const file = join(backup.dir, object.name);
        objects.add(async () => {
          await restoreObject(file, object, { sink, skipZeros, signal, resource }, passed);
          if (!apart) await sink.drain();
          stats.objects++;
          stats.bytesRead += sizes.get(file)!;
        }).catch((error: unknown) => { failure ??= { error }; });
      }
      await objects.onIdle();
      if (failure) throw failure.error;
      // Every write of this layer landed before the next layer's, which may cover the same blocks, go out.
      await sink.drain();
    }
  } catch (error) {
    failure ??= { error };
  } finally {
    // The objects being restored and their writes still in flight settle before the caller may close or remove the target.
    objects?.clear();
    await objects?.onIdle();
    await sink.finish(failure !== undefined);
  }
  if (failure) throw failure.error;
  onProgress?.({ done: total, total, bytesRead: stats.bytesRead });
  stats.elapsedMs = performance.now() - started;
  return stats;
}

/**
 * Streams one object's file into the target at its offset: inflated when
 * compressed, checked as it passes (objectData), written through the
 * sink's window. A damaged object fails when its md5 does not match at its end
 * (its bytes are written by then: a failed restore's target is the
 * caller's to remove).
 */
async function restoreObject(file: string, object: ChunkedObject,
  job: { sink: Sink; skipZeros: boolean; signal: AbortSignal | undefined; resource: string },
  passed: (bytes: number, written: boolean) => void): Promise<void> {
  let at = 0;
  for await (const chunk of objectData(object, file)) {
    if (job.signal?.aborted) throw cancelledError('restore', job.resource, job.signal);
    const offset = object.offset + at;
    at += chunk.length;
    const zero = job.skipZeros && isZero(chunk);
    passed(chunk.length, !zero);
    if (!zero) await job.sink.write(chunk, offset);
  }
}
