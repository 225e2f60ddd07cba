/**
 * A pool (optionally a namespace in it) opened for I/O: the TypeScript face
 * of native/pool.cc (rados_ioctx_t, rbd_list2, rbd_create4, rbd_remove,
 * rbd_open, rbd_clone3 and whole-object rados calls), native/object_lock.cc
 * (rados_lock_exclusive, rados_unlock, rados_list_lockers, rados_break_lock)
 * and native/watch.cc (rados_watch3, rados_notify2).
 */
import type { NativeCreateOptions, NativePool } from './native.js';
import { invalidArgument, nativeCall } from './errors.js';
import { checkFlag, checkName, checkOptions, toIntInRange, toU64 } from './validate.js';
import { checkImageSize, DEFAULT_ORDER, MAX_ORDER, MAX_STRIPE, MIN_ORDER, type ImageLayout } from './limits.js';
import { featureBits, type FeatureName } from './features.js';
import { Image } from './image.js';
import { ObjectWatch } from './watch.js';
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

export interface CloneOptions extends CreateImageOptions {
  /**
   * 1: the parent snapshot must be protected and cannot be unprotected
   * while the clone depends on it; 2: no protection needed (the snapshot
   * goes to the trash when removed under a clone). Default: librbd's
   * rbd_default_clone_format ('auto': 2 when the cluster's minimum client
   * allows it).
   */
  cloneFormat?: 1 | 2;
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

/** One holder of an object lock, as rados_list_lockers reports it. */
export interface ObjectLocker {
  /** The holder's connection: 'client.<gid>', gid being its Cluster.instanceId(). */
  client: string;
  cookie: string;
  /** The holder's address (e.g. 'v1:127.0.0.1:0/1283590212'), what Cluster.blocklistAdd takes. */
  address: string;
}

export interface ObjectLockers {
  exclusive: boolean;
  /** The tag of a shared lock; '' for an exclusive one. */
  tag: string;
  lockers: ObjectLocker[];
}

export interface WatchObjectOptions {
  /**
   * Seconds the OSD keeps the watch without hearing from this client
   * (rados_watch3's timeout; librados' default is 30): a killed holder's
   * watch ends that long after it died. librados pings each watch once per
   * objecter_tick_interval (5 s by default) and a watch left unpinged for
   * its timeout lapses even though its holder lives, so a timeout below
   * twice that interval is refused (InvalidArgumentError): for a shorter
   * one, connect with `options: { objecter_tick_interval: '1' }`. 1..3600.
   */
  timeoutSeconds: number;
}

export interface NotifyObjectOptions {
  /**
   * How long the OSD waits for the watchers' acks. The OSD counts whole
   * seconds: this is rounded up to one. 1..600000.
   */
  timeoutMs: number;
  /** Sent to every watcher (at most 1 MiB); default empty. */
  payload?: Buffer | string;
}

/** A watcher that acknowledged a notify. */
export interface NotifyAck {
  /** The watcher's connection: its Cluster.instanceId(). */
  gid: bigint;
  /** The watch's ObjectWatch.id. */
  cookie: bigint;
  /** What the watcher acked with (empty from an ObjectWatch). */
  reply: Buffer;
}

/** A watcher the OSD still had that did not ack in time (dead, partitioned, or slow). */
export interface NotifyTimeout {
  gid: bigint;
  cookie: bigint;
}

export interface NotifyResult {
  acks: NotifyAck[];
  timeouts: NotifyTimeout[];
}

/** The longest per-watch timeout accepted: an hour. */
const MAX_WATCH_TIMEOUT_SECONDS = 3600;
/** The longest notify timeout accepted: ten minutes. */
const MAX_NOTIFY_TIMEOUT_MS = 600_000;
const MAX_NOTIFY_PAYLOAD = 1 << 20;

/** How rados_list_lockers names a holder: the entity type and its global id. */
const LOCK_HOLDER = /^client\.[0-9]{1,20}$/;

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
    return this.#call('listImages', this.spec, () => this.#native.listImages());
  }

  async imageExists(name: string): Promise<boolean> {
    this.#image(name, 'imageExists');
    return (await this.listImages()).includes(name);
  }

  /** rbd_create4; sizes beyond what librbd can represent (lib/ceph/limits.ts) are refused first. */
  async createImage(name: string, size: number | bigint, options: CreateImageOptions = {}): Promise<void> {
    const resource = this.#image(name, 'createImage');
    checkOptions(options, 'createImage');
    const bytes = toU64('size', size, 'createImage', resource);
    const native = createOptions(options, 'createImage', resource);
    checkImageSize(bytes, layoutOf(native), 'createImage', resource);
    return this.#call('createImage', resource, () => this.#native.createImage(name, bytes, native));
  }

  /** rbd_remove: fails with HasSnapshotsError while the image has snapshots. */
  async removeImage(name: string): Promise<void> {
    const resource = this.#image(name, 'removeImage');
    return this.#call('removeImage', resource, () => this.#native.removeImage(name));
  }

  /** rbd_rename; AlreadyExistsError when an image has the new name. */
  async renameImage(name: string, newName: string): Promise<void> {
    const resource = this.#image(name, 'renameImage');
    this.#image(newName, 'renameImage');
    return nativeCall('renameImage', resource, () => this.#native.renameImage(name, newName));
  }

  /** rbd_open / rbd_open_read_only */
  async openImage(name: string, options: OpenImageOptions = {}): Promise<Image> {
    let resource = this.#image(name, 'openImage');
    const snapshot = checkOptions(options, 'openImage').snapshot;
    if (snapshot !== undefined) {
      resource += `@${String(snapshot)}`;
      checkName('snapshot', snapshot, 'openImage', resource);
    }
    // librbd lets a read-write handle at a snapshot create and remove
    // snapshots; a view of a snapshot should change nothing.
    const asked = checkFlag('readOnly', options.readOnly, 'openImage', resource);
    const readOnly = snapshot !== undefined || (asked ?? false);
    const native = await this.#call('openImage', resource,
      () => this.#native.openImage(name, snapshot ?? null, readOnly));
    return new Image(native, this, name, snapshot);
  }

  /**
   * rbd_clone3: a copy-on-write child of parent@snapshot in this pool. The
   * parent may live in another pool of the same cluster; its snapshot must
   * be protected unless the cluster allows clone v2.
   */
  async clone(parent: CloneParent, childName: string, options: CloneOptions = {}): Promise<void> {
    const resource = this.#image(childName, 'clone');
    checkOptions(options, 'clone');
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
      if (options.cloneFormat !== undefined) {
        if (options.cloneFormat !== 1 && options.cloneFormat !== 2) {
          throw invalidArgument('clone', resource, `cloneFormat must be 1 or 2, got ${String(options.cloneFormat)}`);
        }
        native.cloneFormat = options.cloneFormat;
      }
      await this.#call('clone', `${parentSpec} -> ${resource}`, () => this.#native.clone(
        parentPool.native, parent.image, parent.snapshot, childName, native));
    } finally {
      if (parentPool !== parent.pool) await parentPool.close();
    }
  }

  /** Whole-object read of a small metadata object (at most 64 MiB). */
  async readObject(name: string): Promise<Buffer> {
    const resource = this.#object(name, 'readObject');
    return this.#call('readObject', resource, () => this.#native.readObject(name));
  }

  /** Whole-object write; with exclusive, an existing object is never replaced. */
  async writeObject(name: string, data: Buffer | string, options: WriteObjectOptions = {}): Promise<void> {
    const resource = this.#object(name, 'writeObject');
    checkOptions(options, 'writeObject');
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    if (!Buffer.isBuffer(bytes)) {
      throw invalidArgument('writeObject', resource, 'data must be a Buffer or a string');
    }
    return this.#call('writeObject', resource,
      () => this.#native.writeObject(name, bytes, checkFlag('exclusive', options.exclusive, 'writeObject', resource) ?? false));
  }

  async removeObject(name: string): Promise<void> {
    const resource = this.#object(name, 'removeObject');
    return this.#call('removeObject', resource, () => this.#native.removeObject(name));
  }

  async objectExists(name: string): Promise<boolean> {
    const resource = this.#object(name, 'objectExists');
    return this.#call('objectExists', resource, () => this.#native.objectExists(name));
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
    checkOptions(lock, 'lockObject', 'lock');
    checkName('lock cookie', lock.cookie, 'lockObject', resource, { allowSeparators: true });
    checkName('lock', lock.name, 'lockObject', resource, { allowSeparators: true });
    const durationMs = toIntInRange('durationMs', lock.durationMs ?? 0, 0, 2 ** 40, 'lockObject', resource);
    return this.#call('lockObject', resource, () => this.#native.lockObject(name, lock.name, lock.cookie,
      lock.description ?? '', durationMs, checkFlag('renew', lock.renew, 'lockObject', resource) ?? false));
  }

  /** rados_unlock: NotFoundError when this client holds no such lock. */
  async unlockObject(name: string, lock: Pick<ObjectLock, 'name' | 'cookie'>): Promise<void> {
    const resource = this.#object(name, 'unlockObject');
    checkOptions(lock, 'unlockObject', 'lock');
    checkName('lock cookie', lock.cookie, 'unlockObject', resource, { allowSeparators: true });
    checkName('lock', lock.name, 'unlockObject', resource, { allowSeparators: true });
    return this.#call('unlockObject', resource, () => this.#native.unlockObject(name, lock.name, lock.cookie));
  }

  /**
   * rados_list_lockers: who holds the lock named lockName on the object. An
   * object that does not exist, or holds no such lock, gives no lockers.
   */
  async listLockers(name: string, lockName: string): Promise<ObjectLockers> {
    const resource = this.#object(name, 'listLockers');
    checkName('lock', lockName, 'listLockers', resource, { allowSeparators: true });
    return this.#call('listLockers', resource, () => this.#native.listLockers(name, lockName));
  }

  /**
   * rados_break_lock: removes another holder's lock (client and cookie as
   * listLockers reports them). NotFoundError when that holder no longer has
   * it. Breaking a lock does not stop its holder: fence it first
   * (Cluster.blocklistAdd) if it may still be alive.
   */
  async breakLock(name: string, lockName: string, client: string, cookie: string): Promise<void> {
    const resource = this.#object(name, 'breakLock');
    checkName('lock', lockName, 'breakLock', resource, { allowSeparators: true });
    checkName('lock cookie', cookie, 'breakLock', resource, { allowSeparators: true });
    if (typeof client !== 'string' || !LOCK_HOLDER.test(client)) {
      throw invalidArgument('breakLock', resource,
        `lock holder must be 'client.<id>' as listLockers reports it, got ${JSON.stringify(String(client))}`);
    }
    return this.#call('breakLock', resource, () => this.#native.breakLock(name, lockName, client, cookie));
  }

  /**
   * rados_watch3: watches an existing object (NotFoundError otherwise) until
   * the ObjectWatch is closed. Every notify on the object is acked at once,
   * from librados' thread. This pool refuses close() while the watch is
   * open.
   */
  async watchObject(name: string, options: WatchObjectOptions): Promise<ObjectWatch> {
    const resource = this.#object(name, 'watchObject');
    const timeoutSeconds = toIntInRange('timeoutSeconds', options?.timeoutSeconds, 1, MAX_WATCH_TIMEOUT_SECONDS,
      'watchObject', resource);
    const native = await this.#call('watchObject', resource, () => this.#native.watchObject(name, timeoutSeconds));
    return new ObjectWatch(native, this, name);
  }

  /**
   * rados_notify2: notifies the object's watchers and waits up to timeoutMs
   * for their acks. Watchers that did not ack in time are listed in
   * timeouts, not thrown (librados reports ETIMEDOUT then, with the same
   * reply); a watch that already lapsed on the OSD is in neither list.
   * NotFoundError for a missing object.
   */
  async notifyObject(name: string, options: NotifyObjectOptions): Promise<NotifyResult> {
    const resource = this.#object(name, 'notifyObject');
    const timeoutMs = toIntInRange('timeoutMs', options?.timeoutMs, 1, MAX_NOTIFY_TIMEOUT_MS, 'notifyObject',
      resource);
    const payload = typeof options.payload === 'string' ? Buffer.from(options.payload) : options.payload;
    if (payload !== undefined && !Buffer.isBuffer(payload)) {
      throw invalidArgument('notifyObject', resource, 'payload must be a Buffer or a string');
    }
    if (payload !== undefined && payload.length > MAX_NOTIFY_PAYLOAD) {
      throw invalidArgument('notifyObject', resource, `payload is larger than ${MAX_NOTIFY_PAYLOAD} bytes`);
    }
    // librados hands the OSD whole seconds (rounded down, and 0 becomes the
    // OSD's 30 s default): round up so the wait is never shorter than asked.
    const wholeSecondsMs = Math.ceil(timeoutMs / 1000) * 1000;
    return this.#call('notifyObject', resource,
      () => this.#native.notifyObject(name, wholeSecondsMs, payload ?? null));
  }

  /** One native call; after a timeout, the cluster fetches the newest OSD map. */
  #call<T>(operation: string, resource: string, call: () => Promise<T>): Promise<T> {
    return nativeCall(operation, resource, call).catch((error: unknown) => {
      this.cluster.afterFailure(error);
      throw error;
    });
  }

    #object(name: string, operation: string): string {
    const resource = `${this.spec}/${String(name)}`;
    checkName('object', name, operation, resource);
    return resource;
  }

  /** rados_ioctx_destroy; refused with a BusyError while images or watches of this pool are open. */
  async close(): Promise<void> {
    return this.#call('close', this.spec, () => this.#native.close());
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
