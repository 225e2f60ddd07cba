/** Options shared by the transfer engine's operations, and their checks. */
import { checkCancelOptions } from '../ceph/cancel.js';
import { checkOptions, toIntInRange } from '../ceph/validate.js';

export interface Progress {
  /** Bytes of the source (by offset) fully handled so far. */
  done: bigint;
  /** Bytes of the source to cover. */
  total: bigint;
  /** Bytes read from the source so far. */
  bytesRead: bigint;
}

export interface EngineOptions {
  /** Most I/O operations in flight. Default 64. */
  concurrency?: number;
  /**
   * Most bytes of data buffers in flight; this bounds memory whatever the
   * volume size. Default 64 MiB (16 reads of 4 MiB) for the native paths
   * (transferDiff, copyImage) and 16 MiB for the paths whose data passes
   * through JavaScript (exportDiff, importDiff, exportRaw), whose buffers
   * live until garbage collection: expect about three times this there.
   */
  memoryBytes?: number | bigint;
  /** Aborting stops the operation promptly; it fails with a CancelledError. */
  signal?: AbortSignal;
  /** Called now and then (at most every 100 ms), not once per extent. */
  onProgress?: (progress: Progress) => void;
  /**
   * transferDiff and copyImage of a snapshot: how often the progress is
   * recorded on the target, for a later run to pick up from (resume.ts).
   * Default 1000 ms (longer for a digest table above 1 MiB).
   */
  checkpointMs?: number;
}

export const DEFAULT_CONCURRENCY = 64;
export const DEFAULT_MEMORY_BYTES = 64 << 20;
export const DEFAULT_STREAM_MEMORY_BYTES = 16 << 20;
/** Largest single read or write: big enough to stream, small enough to bound memory. */
export const MAX_IO_SIZE = 4n << 20n;

export interface EngineLimits {
  concurrency: number;
  memoryBytes: number;
}

export function checkEngineOptions(options: EngineOptions, operation: string, resource: string,
  defaultMemoryBytes = DEFAULT_MEMORY_BYTES): EngineLimits {
  checkOptions(options, operation);
  const concurrency = toIntInRange('concurrency', options.concurrency ?? DEFAULT_CONCURRENCY, 1, 1024,
    operation, resource);
  const given = options.memoryBytes ?? defaultMemoryBytes;
  // A bigint past 2^53 turns into an inexact number, which the range refuses anyway.
  const memoryBytes = toIntInRange('memoryBytes', typeof given === 'bigint' ? Number(given) : given,
    Number(MAX_IO_SIZE), 2 ** 40, operation, resource);
  checkCancelOptions(options, operation, resource);
  if (options.checkpointMs !== undefined) toIntInRange('checkpointMs', options.checkpointMs, 10, 3600_000, operation, resource);
  return { concurrency, memoryBytes };
}

export function ioSizeFor(objectSize: bigint): bigint {
  return objectSize < MAX_IO_SIZE ? objectSize : MAX_IO_SIZE;
}
