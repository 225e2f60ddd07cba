/**
 * The digests of Cinder's chunked layout, computed by the addon on the
 * thread pool (OpenSSL's, as Node.js links it): SHA-256 per hash block for
 * the sha256file, MD5 of an object's data for the metadata. On the event
 * loop they cost ~4 ms a MiB together, which a backup would spend there.
 */
import { nativeCall } from '../ceph/errors.js';
import { addon, type NativeMd5 } from '../ceph/native.js';

/** SHA-256 of each block of data (the last may be short), 32 bytes each, in order. */
export function sha256Blocks(data: Buffer, blockSize: number, operation: string, resource: string): Promise<Buffer> {
  return nativeCall(operation, resource, () => addon.sha256Blocks(data, blockSize));
}

/** MD5 of an object's data, given in order (one update at a time). */
export class ObjectMd5 {
  readonly #md5: NativeMd5 = new addon.Md5();
  readonly #operation: string;
  readonly #resource: string;

  constructor(operation: string, resource: string) {
    this.#operation = operation;
    this.#resource = resource;
  }

  update(data: Buffer): Promise<void> {
    return nativeCall(this.#operation, this.#resource, () => this.#md5.update(data));
  }

  /** Lower-case hex, as Cinder's metadata lists it; ends this digest. */
  hex(): string {
    return this.#md5.digest();
  }
}
