/**
 * A pool (optionally a namespace in it) opened for I/O: the TypeScript face
 * of native/pool.cc (rados_ioctx_t, rbd_list2, rbd_create4, rbd_remove,
 * rbd_open, rbd_clone3 and whole-object rados calls).
 */
import type { NativeCreateOptions, NativePool } from './native.js';
import { invalidArgument, nativeCall } from './errors.js';
import { checkName, toIntInRange, toU64 } from './validate.js';
import { checkImageSize, DEFAULT_ORDER, MAX_ORDER, MAX_STRIPE, MIN_ORDER, type ImageLayout } from './limits.js';
import { featureBits, type FeatureName } from './features.js';
import { Image } from './image.js';
import type { Cluster } from './cluster.js';

export interface CreateImageOptions {
  /** Feature names; default: librbd's rbd_default_features. */
  features?: readonly FeatureName[];
  /** Object size as a power of two (12..25); default 22 (4 MiB). */
  order?: number;
  /** Stripe unit in bytes; 0 or absent = the object size. */
  stripeUnit?: number | bigint;
  /** Stripe count; 0 or absent = 1. */
  stripeCount?: number | bigint;
}

export interface OpenImageOptions {
  /** Open the image at this snapshot; such a handle is always read-only. */
  snapshot?: string;
  /** Open without taking the exclusive lock or allowing writes. */
  readOnly?: boolean;
}

export interface CloneParent {
  /** The parent's pool: an open Pool of the same cluster, or a pool name. */
  pool: Pool | string;
  image: string;
  snapshot: string;
}

export interface WriteObjectOptions {
  /** Fail with AlreadyExistsError instead of replacing an existing object. */
  exclusive?: boolean;
}

export interface ObjectLock {
  /** The lock's name on the object. */
  name: string;
  /** Tells this holder's lock from others'. */
  cookie: string;
  description?: string;
  /** Expiry in milliseconds; 0 or absent = none. */
  durationMs?: number;
  /** Extend a lock this client holds with this cookie. */
  renew?: boolean;
}

export class Pool {
  readonly #native: NativePool;
  readonly cluster: Cluster;
  readonly name: string;
  readonly namespace: string;

  /** @internal made by Cluster.pool() */
  constructor(native: NativePool, cluster: Cluster, name: string, namespace: string) {
    this.#native = native;
    this.cluster = cluster;
    this.name = name;
    this.namespace = namespace;
  }

  /** 'pool' or 'pool/namespace', as errors name it. */
  get spec(): string {
    return this.namespace ? `${this.name}/${this.namespace}` : this.name;
  }

  /** @internal the native pool, for cross-pool calls of this package */
  get native(): NativePool {
    return this.#native;
  }

  #image(name: string, operation: string): string {
    const resource = `${this.spec}/${String(name)}`;
    checkName('image', name, operation, resource);
    return resource;
  }

  /** rbd_list2 */
  async listImages(): Promise<string[]> {
    return nativeCall('listImages', this.spec, () => this.#native.listImages());
  }

  async imageExists(name: string): Promise<boolean> {
    this.#image(name, 'imageExists');
    return (await this.listImages()).includes(name);
  }

  /** rbd_create4; sizes beyond what librbd can represent (lib/ceph/limits.ts) are refused first. */
  async createImage(name: string, size: number | bigint, options: CreateImageOptions = {}): Promise<void> {
    const resource = this.#image(name, 'createImage');
    const bytes = toU64('size', size, 'createImage', resource);
    const native = createOptions(options, 'createImage', resource);
    checkImageSize(bytes, layoutOf(native), 'createImage', resource);
    return nativeCall('createImage', resource, () => this.#native.createImage(name, bytes, native));
  }

  /** rbd_remove: fails with HasSnapshotsError while the image has snapshots. */
  async removeImage(name: string): Promise<void> {
    const resource = this.#image(name, 'removeImage');
    return nativeCall('removeImage', resource, () => this.#native.removeImage(name));
  }

  /** rbd_open / rbd_open_read_only */
  async openImage(name: string, options: OpenImageOptions = {}): Promise<Image> {
    let resource = this.#image(name, 'openImage');
    const snapshot = options.snapshot;
    if (snapshot !== undefined) {
      resource += `@${String(snapshot)}`;
      checkName('snapshot', snapshot, 'openImage', resource);
    }
    // librbd lets a read-write handle at a snapshot create and remove
    // snapshots; a view of a snapshot should change nothing.
    const readOnly = snapshot !== undefined || (options.readOnly ?? false);
    const native = await nativeCall('openImage', resource,
      () => this.#native.openImage(name, snapshot ?? null, readOnly));
    return new Image(native, this, name, snapshot);
  }

  /**
   * rbd_clone3: a copy-on-write child of parent@snapshot in this pool. The
   * parent may live in another pool of the same cluster; its snapshot must
   * be protected unless the cluster allows clone v2.
   */
  async clone(parent: CloneParent, childName: string, options: CreateImageOptions = {}): Promise<void> {
    const resource = this.#image(childName, 'clone');
    if (!parent || typeof parent !== 'object' ||
      !(typeof parent.pool === 'string' || parent.pool instanceof Pool)) {
      throw invalidArgument('clone', resource, 'parent must be { pool: Pool | pool name, image, snapshot }');
    }
    const parentPool = typeof parent.pool === 'string'
      ? await this.cluster.pool(parent.pool)
      : parent.pool;
    try {
      if (parentPool.cluster !== this.cluster) {
        throw invalidArgument('clone', resource, 'a clone and its parent must be in the same cluster');
      }
      const parentSpec = `${parentPool.spec}/${String(parent.image)}@${String(parent.snapshot)}`;
      checkName('image', parent.image, 'clone', parentSpec);
      checkName('snapshot', parent.snapshot, 'clone', parentSpec);
      const native = createOptions(options, 'clone', resource);
      await nativeCall('clone', `${parentSpec} -> ${resource}`, () => this.#native.clone(
        parentPool.native, parent.image, parent.snapshot, childName, native));
    } finally {
      if (parentPool !== parent.pool) await parentPool.close();
    }
  }

  /** Whole-object read of a small metadata object (at most 64 MiB). */
  async readObject(name: string): Promise<Buffer> {
    const resource = this.#object(name, 'readObject');
    return nativeCall('readObject', resource, () => this.#native.readObject(name));
  }

  /** Whole-object write; with exclusive, an existing object is never replaced. */
  async writeObject(name: string, data: Buffer | string, options: WriteObjectOptions = {}): Promise<void> {
    const resource = this.#object(name, 'writeObject');
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    if (!Buffer.isBuffer(bytes)) {
      throw invalidArgument('writeObject', resource, 'data must be a Buffer or a string');
    }
    return nativeCall('writeObject', resource,
      () => this.#native.writeObject(name, bytes, options.exclusive ?? false));
  }

  async removeObject(name: string): Promise<void> {
    const resource = this.#object(name, 'removeObject');
    return nativeCall('removeObject', resource, () => this.#native.removeObject(name));
  }

  async objectExists(name: string): Promise<boolean> {
    const resource = this.#object(name, 'objectExists');
    return nativeCall('objectExists', resource, () => this.#native.objectExists(name));
  }

  /**
   * rados_lock_exclusive on an object (created empty if missing): held until
   * unlockObject, or for durationMs when given (0 = no expiry), so a holder
   * that dies does not keep it forever. renew extends a lock this client
   * already holds under the same cookie, and fails with NotFoundError when
   * it was lost. BusyError when another client or cookie holds it.
   */
  async lockObject(name: string, lock: ObjectLock): Promise<void> {
    const resource = this.#object(name, 'lockObject');
    checkName('lock cookie', lock.cookie, 'lockObject', resource, { allowSeparators: true });
    checkName('lock cookie', lock.name, 'lockObject', resource, { allowSeparators: true });
    const durationMs = toIntInRange('durationMs', lock.durationMs ?? 0, 0, 2 ** 40, 'lockObject', resource);
    return nativeCall('lockObject', resource, () => this.#native.lockObject(name, lock.name, lock.cookie,
      lock.description ?? '', durationMs, lock.renew ?? false));
  }

  /** rados_unlock: NotFoundError when this client holds no such lock. */
  async unlockObject(name: string, lock: Pick<ObjectLock, 'name' | 'cookie'>): Promise<void> {
    const resource = this.#object(name, 'unlockObject');
    return nativeCall('unlockObject', resource, () => this.#native.unlockObject(name, lock.name, lock.cookie));
  }

  #object(name: string, operation: string): string {
    const resource = `${this.spec}/${String(name)}`;
    checkName('object', name, operation, resource);
    return resource;
  }

  /** rados_ioctx_destroy; refused with a BusyError while images of this pool are open. */
  async close(): Promise<void> {
    return nativeCall('close', this.spec, () => this.#native.close());
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function createOptions(options: CreateImageOptions, operation: string, resource: string): NativeCreateOptions {
  const native: NativeCreateOptions = {};
  if (options.features !== undefined) {
    if (!Array.isArray(options.features)) {
      throw invalidArgument(operation, resource, 'features must be an array of feature names');
    }
    native.features = featureBits(options.features, operation, resource);
  }
  if (options.order !== undefined) {
    native.order = toIntInRange('order', options.order, MIN_ORDER, MAX_ORDER, operation, resource);
  }
  // 0 means "the pool's default", which is what leaving the option unset says.
  if (options.stripeUnit !== undefined) {
    const unit = toStripe('stripeUnit', options.stripeUnit, operation, resource);
    if (unit !== 0n) native.stripeUnit = unit;
  }
  if (options.stripeCount !== undefined) {
    const count = toStripe('stripeCount', options.stripeCount, operation, resource);
    if (count !== 0n) native.stripeCount = count;
  }
  // librbd takes both or neither: fill in the documented default of the other.
  if (native.stripeUnit !== undefined && native.stripeCount === undefined) native.stripeCount = 1n;
  if (native.stripeCount !== undefined && native.stripeUnit === undefined) {
    native.stripeUnit = 1n << BigInt(native.order ?? DEFAULT_ORDER);
  }
  return native;
}

function toStripe(what: string, value: unknown, operation: string, resource: string): bigint {
  const stripe = toU64(what, value, operation, resource);
  if (stripe > MAX_STRIPE) throw invalidArgument(operation, resource, `${what} ${stripe} is larger than 2^32-1`);
  return stripe;
}

/** The layout librbd gives an image created with these options (without an order: rbd_default_order's 4 MiB). */
function layoutOf(native: NativeCreateOptions): ImageLayout {
  const objectSize = 1n << BigInt(native.order ?? DEFAULT_ORDER);
  return { objectSize, stripeUnit: native.stripeUnit ?? objectSize, stripeCount: native.stripeCount ?? 1n };
}
