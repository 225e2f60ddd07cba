/** Options shared by the transfer engine's operations, and their checks. */
import { invalidArgument } from '../ceph/errors.js';
import { toIntInRange } from '../ceph/validate.js';

export interface Progress {
  /** Bytes of the source (by offset) fully handled so far. */
  done: number;
  /** Bytes of the source to cover. */
  total: number;
  /** Bytes read from the source so far. */
  bytesRead: number;
}

export interface EngineOptions {
  /** Most I/O operations in flight (each holds at most one buffer). Default 16. */
  concurrency?: number;
  /** Aborting stops the operation promptly; it fails with a CancelledError. */
  signal?: AbortSignal;
  /** Called now and then (at most every 100 ms), not once per extent. */
  onProgress?: (progress: Progress) => void;
}

export const DEFAULT_CONCURRENCY = 16;
/** Largest single read or write: big enough to stream, small enough to bound memory. */
export const MAX_IO_SIZE = 4n << 20n;

export function checkEngineOptions(options: EngineOptions, operation: string, resource: string): number {
  const concurrency = toIntInRange('concurrency', options.concurrency ?? DEFAULT_CONCURRENCY, 1, 1024,
    operation, resource);
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
    throw invalidArgument(operation, resource, 'onProgress must be a function');
  }
  return concurrency;
}

export function ioSizeFor(objectSize: bigint): bigint {
  return objectSize < MAX_IO_SIZE ? objectSize : MAX_IO_SIZE;
}
