/**
 * exportRaw: an image (or a snapshot of it) as raw bytes, the way
 * `rbd export` writes them: into a file (written sparsely: holes are left
 * unwritten and the file is sized at the end) or sequentially into a Node
 * Writable (holes as zeros, honouring back-pressure). A file is written
 * under a partial name beside it and gets its own name only when complete,
 * so a failed, cancelled or killed export never leaves a file that looks
 * whole; file-system failures are CephErrors naming the path.
 */
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { link, lstat, open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { cephError, fromSystem, invalidArgument, type CephError } from '../ceph/errors.js';
import { checkName } from '../ceph/validate.js';
import type { Image } from '../ceph/image.js';
import {
  checkEngineOptions, DEFAULT_STREAM_MEMORY_BYTES, ioSizeFor, MAX_IO_SIZE, type EngineLimits, type EngineOptions,
} from './options.js';
import { BlockHasher } from './block-hasher.js';
import type { DigestTable } from './digest-table.js';
import { readInOrder } from './ordered-reader.js';
import { logEngine } from './log.js';

export interface ExportRawOptions extends EngineOptions {
  /** The snapshot to export; absent = the image's head. */
  snapshot?: string;
  /**
   * A file path (an existing file is refused unless overwrite; written as
   * `.<name>.partial-<random>` beside it and renamed when complete) or a
   * Writable (ended at the end).
   */
  to: string | Writable;
  overwrite?: boolean;
  /** Hash the exported bytes in blocks of this size; the stats then hold their digest table. */
  digestBlock?: bigint;
  /**
   * Called once every byte is written (a file synced), before the file gets
   * its name or the stream is ended: a rejection fails the export, so no
   * file appears and the stream is never ended as if complete.
   */
  beforeFinish?: (stats: Omit<ExportRawStats, 'elapsedMs'>) => Promise<void>;
}

export interface ExportRawStats {
  size: bigint;
  bytesRead: bigint;
  elapsedMs: number;
  /** With digestBlock: the digests of the bytes exported. */
  digests?: DigestTable;
}

const ZEROES = Buffer.alloc(Number(MAX_IO_SIZE));

async function writeAll(stream: Writable, data: Buffer): Promise<void> {
  if (!stream.write(data)) await once(stream, 'drain');
}

async function writeZeroes(stream: Writable, length: bigint): Promise<void> {
  for (let left = length; left > 0n;) {
    const piece = left < BigInt(ZEROES.length) ? Number(left) : ZEROES.length;
    await writeAll(stream, ZEROES.subarray(0, piece));
    left -= BigInt(piece);
  }
}

interface TargetFile {
  /** The file asked for: it appears only once the export is complete. */
  path: string;
  /** Where the bytes go until then, beside it (a rename cannot cross file systems). */
  partial: string;
  handle: FileHandle;
  overwrite: boolean;
}

async function onFile<T>(path: string, doing: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (error) {
    throw fromSystem(error, 'exportRaw', path, doing);
  }
}

/** A refusal as the file system would give it, saying what to do. */
function refusal(path: string, code: 'EEXIST' | 'ENOENT' | 'ENOTDIR', detail: string): CephError {
  return cephError({ code, errno: { EEXIST: 17, ENOENT: 2, ENOTDIR: 20 }[code], operation: 'exportRaw', resource: path, detail });
}

function alreadyExists(path: string): CephError {
  return refusal(path, 'EEXIST', 'cannot create the file: it already exists and is not overwritten; remove it or give another path');
}

/**
 * Refuses a path the export could not give its name to, before anything
 * is read: an existing file (unless overwrite), a directory that is not
 * there. Also what a restore's dry run and the CLI check first.
 */
export async function checkExportPath(path: string, overwrite = false): Promise<void> {
  if (!overwrite && await onFile(path, 'cannot create the file', () => exists(path))) throw alreadyExists(path);
  const directory = dirname(resolve(path));
  const dir = await stat(directory).catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystem(error, 'exportRaw', path, 'cannot create the file');
    throw refusal(path, 'ENOENT', `cannot create the file: the directory ${directory} does not exist; create it or give another path`);
  });
  if (!dir.isDirectory()) throw refusal(path, 'ENOTDIR', `cannot create the file: ${directory} is not a directory`);
}

async function openFile(path: string, overwrite: boolean): Promise<TargetFile> {
  await checkExportPath(path, overwrite);
  // A dot file with a random suffix: never taken for the export itself,
  // and two exports to one path do not write into each other's.
  const partial = join(dirname(path), `.${basename(path)}.partial-${randomBytes(4).toString('hex')}`);
  const handle = await onFile(path, 'cannot create the file', () => open(partial, 'wx'));
  return { path, partial, handle, overwrite };
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

/**
 * Gives a complete export its name: linked, so that a file made there
 * meanwhile is not overwritten (renamed where the file system has no hard
 * links, or when overwriting is asked for).
 */
async function publish(file: TargetFile): Promise<void> {
  if (file.overwrite) {
    await onFile(file.path, 'cannot rename the finished file into place', () => rename(file.partial, file.path));
    return;
  }
  try {
    await link(file.partial, file.path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw alreadyExists(file.path);
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') {
      throw fromSystem(error, 'exportRaw', file.path, 'cannot move the finished file into place');
    }
    if (await exists(file.path)) throw alreadyExists(file.path);
    await onFile(file.path, 'cannot rename the finished file into place', () => rename(file.partial, file.path));
    return;
  }
  await unlink(file.partial).catch((error: unknown) => logEngine('exportRaw: removing %s: %o', file.partial, error));
}

/**
 * Closes the file and gives it its name; after a failed export (or when
 * that fails), the partial file goes, so nothing is left at either name.
 */
async function closeFile(file: TargetFile, failed: boolean): Promise<void> {
  if (!failed) {
    try {
      await onFile(file.path, 'cannot close the file', () => file.handle.close());
      await publish(file);
      return;
    } catch (error) {
      await unlink(file.partial).catch(() => undefined);
      throw error;
    }
  }
  // The export's own error is the one to report; these are only logged.
  try {
    await file.handle.close();
    await unlink(file.partial);
  } catch (error) {
    logEngine('exportRaw: cleaning up %s after a failure: %o', file.partial, error);
  }
}

export async function exportRaw(image: Image, options: ExportRawOptions): Promise<ExportRawStats> {
  const { snapshot, to } = options;
  const resource = `${image.pool.spec}/${image.name}${snapshot === undefined ? '' : `@${String(snapshot)}`}`;
  if (snapshot !== undefined) checkName('snapshot', snapshot, 'exportRaw', resource);
  const limits = checkEngineOptions(options, 'exportRaw', resource, DEFAULT_STREAM_MEMORY_BYTES);
  if (typeof to !== 'string' && (typeof to !== 'object' || to === null || typeof to.write !== 'function')) {
    throw invalidArgument('exportRaw', resource, 'to must be a file path or a Writable');
  }
  const started = performance.now();
  // The file first: when it cannot be made, no image view was opened to leak.
  const file = typeof to === 'string' ? await openFile(to, options.overwrite ?? false) : undefined;
  let failed = true;
  try {
    const view = await image.pool.openImage(image.name, { ...(snapshot === undefined ? {} : { snapshot }), readOnly: true });
    try {
      const stats = await copyOut(view, file ?? (to as Writable), limits, options, resource);
      failed = false;
      return { ...stats, elapsedMs: performance.now() - started };
    } finally {
      await view.close();
    }
  } finally {
    if (file) await closeFile(file, failed);
  }
}

async function copyOut(view: Image, out: TargetFile | Writable, limits: EngineLimits, options: ExportRawOptions,
  resource: string): Promise<Omit<ExportRawStats, 'elapsedMs'>> {
  const file = 'handle' in out ? out : undefined;
  const { size, objectSize } = await view.stat();
  const hasher = options.digestBlock === undefined ? undefined : new BlockHasher(size, options.digestBlock);
  let position = 0n;
  let bytesRead = 0n;
  let lastReport = 0;
  const pieces = readInOrder(view, {
    ioSize: ioSizeFor(objectSize), limits, signal: options.signal, operation: 'exportRaw', resource,
  });
  for await (const piece of pieces) {
    if (hasher) {
      if (piece.offset > position) hasher.feed(undefined, piece.offset - position);
      hasher.feed(piece.data, piece.length);
    }
    if (file) {
      const { data } = piece;
      if (data) await onFile(file.path, 'cannot write', () => file.handle.write(data, 0, data.length, Number(piece.offset)));
    } else {
      const stream = out as Writable;
      if (piece.offset > position) await writeZeroes(stream, piece.offset - position);
      if (piece.data) await writeAll(stream, piece.data);
      else await writeZeroes(stream, piece.length);
    }
    if (piece.data) bytesRead += BigInt(piece.data.length);
    position = piece.offset + piece.length;
    if (options.onProgress && performance.now() - lastReport > 100) {
      lastReport = performance.now();
      options.onProgress({ done: position, total: size, bytesRead });
    }
  }
  if (hasher && size > position) hasher.feed(undefined, size - position);
  const stats = { size, bytesRead, ...(hasher === undefined ? {} : { digests: hasher.table }) };
  if (file) {
    // The holes were never written: sizing the file makes them read as zeros.
    await onFile(file.path, 'cannot size the file', () => file.handle.truncate(Number(size)));
    await onFile(file.path, 'cannot sync the file', () => file.handle.sync());
    await options.beforeFinish?.(stats);
  } else {
    const stream = out as Writable;
    if (size > position) await writeZeroes(stream, size - position);
    await options.beforeFinish?.(stats);
    stream.end();
    await once(stream, 'finish');
  }
  options.onProgress?.({ done: size, total: size, bytesRead });
  return stats;
}
