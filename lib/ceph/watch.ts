/**
 * A watch on one RADOS object: the TypeScript face of native/watch.cc
 * (rados_watch3, rados_watch_check, rados_unwatch2). The native side acks
 * every notify on librados' own thread, so a notifier sees this client alive
 * for as long as the watch is open and the process runs.
 */
import type { NativeWatch } from './native.js';
import { nativeCall } from './errors.js';
import type { Pool } from './pool.js';

export class ObjectWatch {
  readonly #native: NativeWatch;
  readonly pool: Pool;
  /** The watched object. */
  readonly object: string;
  /** The watch cookie: the `cookie` notify acks and timeouts carry for this watch. */
  readonly id: bigint;

  /** @internal made by Pool.watchObject() */
  constructor(native: NativeWatch, pool: Pool, object: string) {
    this.#native = native;
    this.pool = pool;
    this.object = object;
    this.id = native.id();
  }

  /** 'pool/object', as errors name it. */
  get spec(): string {
    return `${this.pool.spec}/${this.object}`;
  }

  /**
   * rados_watch_check: milliseconds since the OSD last confirmed the watch.
   * Rejects with the error librados reported on it (ENOTCONN once it lapsed,
   * a BlocklistedError once this client was fenced); such a watch stays dead:
   * close it and watch again.
   */
  async check(): Promise<number> {
    return nativeCall('checkWatch', this.spec, () => this.#native.check());
  }

  /**
   * rados_unwatch2 and rados_watch_flush, off the JavaScript thread. Refused
   * with a BusyError while a check() is in flight; closing twice is harmless.
   */
  async close(): Promise<void> {
    return nativeCall('closeWatch', this.spec, () => this.#native.close());
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
