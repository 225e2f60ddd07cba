/**
 * exportRaw: an image (or a snapshot of it) as raw bytes, the way
 * `rbd export` writes them: into a file (written sparsely: holes are left
 * unwritten and the file is sized at the end) or sequentially into a Node
 * Writable (holes as zeros, honouring back-pressure).
 */
import { once } from 'node:events';
import { open } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { invalidArgument } from '../ceph/errors.js';
import { checkName } from '../ceph/validate.js';
import type { Image } from '../ceph/image.js';
import { checkEngineOptions, DEFAULT_STREAM_MEMORY_BYTES, ioSizeFor, MAX_IO_SIZE, type EngineOptions } from './options.js';
import { readInOrder } from './ordered-reader.js';

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

export async function exportRaw(image: Image, options: ExportRawOptions): Promise<ExportRawStats> {
  const { snapshot, to } = options;
  const resource = `${image.pool.spec}/${image.name}${snapshot === undefined ? '' : `@${String(snapshot)}`}`;
  if (snapshot !== undefined) checkName('snapshot', snapshot, 'exportRaw', resource);
  const limits = checkEngineOptions(options, 'exportRaw', resource, DEFAULT_STREAM_MEMORY_BYTES);
  if (typeof to !== 'string' && (typeof to !== 'object' || to === null || typeof to.write !== 'function')) {
    throw invalidArgument('exportRaw', resource, 'to must be a file path or a Writable');
  }
  const started = performance.now();
  const view = await image.pool.openImage(image.name, { ...(snapshot === undefined ? {} : { snapshot }), readOnly: true });
  const file = typeof to === 'string' ? await open(to, options.overwrite ? 'w' : 'wx') : undefined;
  try {
    const { size, objectSize } = await view.stat();
    let position = 0n;
    let bytesRead = 0;
    let lastReport = 0;
    const pieces = readInOrder(view, {
      ioSize: ioSizeFor(objectSize), limits, signal: options.signal, operation: 'exportRaw', resource,
    });
    for await (const piece of pieces) {
      if (file) {
        if (piece.data) await file.write(piece.data, 0, piece.data.length, Number(piece.offset));
      } else {
        const stream = to as Writable;
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
      await file.truncate(Number(size));
      await file.sync();
    } else {
      const stream = to as Writable;
      if (size > position) await writeZeroes(stream, size - position);
      stream.end();
      await once(stream, 'finish');
    }
    options.onProgress?.({ done: Number(size), total: Number(size), bytesRead });
    return { size, bytesRead, elapsedMs: performance.now() - started };
  } finally {
    await file?.close();
    await view.close();
  }
}
