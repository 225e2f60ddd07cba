/**
 * exportRaw: an image (or a snapshot of it) as raw bytes, the way
 * `rbd export` writes them: into a file (written sparsely: holes are left
 * unwritten and the file is sized at the end) or sequentially into a Node
 * Writable (holes as zeros, honouring back-pressure). File-system failures
 * are CephErrors naming the path, and a file this call created is removed
 * again when the export fails or is cancelled.
 */
import { once } from 'node:events';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { fromSystem, invalidArgument } from '../ceph/errors.js';
import { checkName } from '../ceph/validate.js';
import type { Image } from '../ceph/image.js';
import {
  checkEngineOptions, DEFAULT_STREAM_MEMORY_BYTES, ioSizeFor, MAX_IO_SIZE, type EngineLimits, type EngineOptions,
} from './options.js';
import { readInOrder } from './ordered-reader.js';
import { logEngine } from './log.js';

export interface ExportRawOptions extends EngineOptions {
  /** The snapshot to export; absent = the image's head. */
  snapshot?: string;
  /** A file path (created; an existing file is refused unless overwrite) or a Writable (ended at the end). */
  to: string | Writable;
  overwrite?: boolean;
}

export interface ExportRawStats {
  size: bigint;
  bytesRead: number;
  elapsedMs: number;
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
  path: string;
  handle: FileHandle;
  /** Made by this export (not an existing file overwritten): removed again if the export fails. */
  created: boolean;
}

async function onFile<T>(path: string, doing: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (error) {
    throw fromSystem(error, 'exportRaw', path, doing);
  }
}

async function openFile(path: string, overwrite: boolean): Promise<TargetFile> {
  try {
    return { path, handle: await open(path, 'wx'), created: true };
  } catch (error) {
    if (!overwrite || (error as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw fromSystem(error, 'exportRaw', path, 'cannot create the file');
    }
  }
  return { path, handle: await onFile(path, 'cannot open the file', () => open(path, 'w')), created: false };
}

/** Closes the file; after a failed export, removes it if the export created it (a retry would be refused). */
async function closeFile(file: TargetFile, failed: boolean): Promise<void> {
  if (!failed) {
    await onFile(file.path, 'cannot close the file', () => file.handle.close());
    return;
  }
  // The export's own error is the one to report; these are only logged.
  try {
    await file.handle.close();
    if (file.created) await unlink(file.path);
  } catch (error) {
    logEngine('exportRaw: cleaning up %s after a failure: %o', file.path, error);
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
  let position = 0n;
  let bytesRead = 0;
  let lastReport = 0;
  const pieces = readInOrder(view, {
    ioSize: ioSizeFor(objectSize), limits, signal: options.signal, operation: 'exportRaw', resource,
  });
  for await (const piece of pieces) {
    if (file) {
      const { data } = piece;
      if (data) await onFile(file.path, 'cannot write', () => file.handle.write(data, 0, data.length, Number(piece.offset)));
    } else {
      const stream = out as Writable;
      if (piece.offset > position) await writeZeroes(stream, piece.offset - position);
      if (piece.data) await writeAll(stream, piece.data);
      else await writeZeroes(stream, piece.length);
    }
    if (piece.data) bytesRead += piece.data.length;
    position = piece.offset + piece.length;
    if (options.onProgress && performance.now() - lastReport > 100) {
      lastReport = performance.now();
      options.onProgress({ done: Number(position), total: Number(size), bytesRead });
    }
  }
  if (file) {
    // The holes were never written: sizing the file makes them read as zeros.
    await onFile(file.path, 'cannot size the file', () => file.handle.truncate(Number(size)));
    await onFile(file.path, 'cannot sync the file', () => file.handle.sync());
  } else {
    const stream = out as Writable;
    if (size > position) await writeZeroes(stream, size - position);
    stream.end();
    await once(stream, 'finish');
  }
  options.onProgress?.({ done: Number(size), total: Number(size), bytesRead });
  return { size, bytesRead };
}
