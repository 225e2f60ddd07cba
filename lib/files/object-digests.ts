/**
 * The digests of Cinder's chunked layout, computed by the addon on the
 * thread pool (OpenSSL's, as Node.js links it): SHA-256 per hash block for
 * the sha256file, MD5 of an object's data for the metadata. On the event
 * loop they cost ~4 ms a MiB together, which a backup would spend there
 * (all but the smallest pieces: HASH_AT_ONCE_BYTES).
 */
import { createHash, type Hash } from 'node:crypto';
import { nativeCall } from '../ceph/errors.js';
import { addon, type NativeMd5 } from '../ceph/native.js';

/**
 * Data up to this size is hashed at once, on the event loop (~45 us): a
 * trip through the thread pool's queue, behind the objects being written,
 * costs more than that, and an incremental of scattered changes hashes
 * thousands of such pieces one after the other.
 */
const HASH_AT_ONCE_BYTES = 64 << 10;

/** SHA-256 of each block of data (the last may be short), 32 bytes each, in order. */
export function sha256Blocks(data: Buffer, blockSize: number, operation: string, resource: string): Promise<Buffer> {
  if (data.length > HASH_AT_ONCE_BYTES) return nativeCall(operation, resource, () => addon.sha256Blocks(data, blockSize));
  const digests = Buffer.allocUnsafe(Math.ceil(data.length / blockSize) * 32);
  for (let at = 0, i = 0; at < data.length; at += blockSize, i++) {
    createHash('sha256').update(data.subarray(at, at + blockSize)).digest().copy(digests, i * 32);
  }
  return Promise.resolve(digests);
}

/**
 * MD5 of an object's data, given in order (one update at a time): by the
 * addon on the thread pool, or at once on the event loop for an object of
 * up to HASH_AT_ONCE_BYTES (its size given), where a native digest and a
 * trip through the pool per object cost more than the hashing.
 */
export class ObjectMd5 {
  /** One of the two. */
  readonly #native: NativeMd5 | undefined;
  readonly #inline: Hash | undefined;
  readonly #operation: string;
  readonly #resource: string;

  constructor(operation: string, resource: string, bytes = Infinity) {
    if (bytes <= HASH_AT_ONCE_BYTES) this.#inline = createHash('md5');
    else this.#native = new addon.Md5();
    this.#operation = operation;
    this.#resource = resource;
  }

  update(data: Buffer): Promise<void> {
    if (this.#inline !== undefined) {
      this.#inline.update(data);
      return Promise.resolve();
    }
    return nativeCall(this.#operation, this.#resource, () => this.#native!.update(data));
  }

  /** Lower-case hex, as Cinder's metadata lists it; ends this digest. */
  hex(): string {
    return this.#inline !== undefined ? this.#inline.digest('hex') : this.#native!.digest();
  }
}
