/**
 * An open RBD image, at its head or at a snapshot: the TypeScript face of
 * native/image.cc, native/snapshot.cc and native/diff.cc. Every call runs
 * off the JavaScript thread and returns a Promise.
 */
import type { ImageWatcher, NativeImage } from './native.js';
import { invalidArgument, nativeCall } from './errors.js';
import { checkFlag, checkName, checkOptions, describeValue, toU64 } from './validate.js';
import { checkImageSize, type ImageLayout } from './limits.js';
import { featureNames, type FeatureName } from './features.js';
import { toParentInfo, toSnapshotInfo, type ChildImage, type ParentInfo, type SnapshotInfo, type TrashedSnapshot } from './snapshot.js';
import { iterateDiff, OBJECTS_PER_CALL, type DiffExtent, type DiffOptions } from './diff.js';
import { withCancel } from './cancel.js';
import type { Pool } from './pool.js';

export type { ImageWatcher };

export interface ImageStat {
  size: bigint;
  objectSize: bigint;
  objectCount: bigint;
  order: number;
  blockNamePrefix: string;
  features: FeatureName[];
  featureBits: bigint;
  stripeUnit: bigint;
  stripeCount: bigint;
  /** rbd_get_create_timestamp */
  createdAt: Date;
}

export interface FlattenOptions {
  /** Called with objects done and total, coalesced (not once per object). */
  onProgress?: (done: number, total: number) => void;
  /** Aborting stops the flatten; it fails with a CancelledError. */
  signal?: AbortSignal;
}

/** One read takes at most this many bytes; read larger ranges in pieces. */
export const MAX_READ_BYTES = 1 << 30;
/** The most ranges one readMany takes. */
export const MAX_READ_MANY = 1024;

export class Image {
  readonly #native: NativeImage;
  readonly pool: Pool;
  readonly name: string;
  /** The snapshot the image was opened at, if any. */
  readonly snapshot: string | undefined;

  /** @internal made by Pool.openImage() */
  constructor(native: NativeImage, pool: Pool, name: string, snapshot: string | undefined) {
    this.#native = native;
    this.pool = pool;
    this.name = name;
    this.snapshot = snapshot;
  }

  /** 'pool/image' or 'pool/image@snap', as errors name it. */
  get spec(): string {
    const base = `${this.pool.spec}/${this.name}`;
    return this.snapshot === undefined ? base : `${base}@${this.snapshot}`;
  }

  /** @internal the native image, for the transfer engine of this package */
  get native(): NativeImage {
    return this.#native;
  }

  #call<T>(operation: string, call: (native: NativeImage) => Promise<T>, resource = this.spec): Promise<T> {
    return nativeCall(operation, resource, () => call(this.#native)).catch((error: unknown) => {
      this.pool.cluster.afterFailure(error);
      throw error;
    });
  }

  #snap(name: string, operation: string): string {
    const resource = `${this.pool.spec}/${this.name}@${String(name)}`;
    checkName('snapshot', name, operation, resource);
    return resource;
  }

  #range(operation: string, offset: unknown, length: unknown): [bigint, bigint] {
    return [toU64('offset', offset, operation, this.spec), toU64('length', length, operation, this.spec)];
  }

  /** rbd_stat, rbd_get_features, rbd_get_stripe_unit/count, rbd_get_create_timestamp */
  async stat(): Promise<ImageStat> {
    const { createdAtMs, ...s } = await this.#call('stat', (n) => n.stat());
    return { ...s, features: featureNames(s.features), featureBits: s.features, createdAt: new Date(createdAtMs) };
  }

  /** rbd_resize; sizes beyond what librbd can represent for this image's layout (lib/ceph/limits.ts) are refused first. */
  async resize(size: number | bigint): Promise<void> {
    const bytes = toU64('size', size, 'resize', this.spec);
    checkImageSize(bytes, await this.#layout('resize'), 'resize', this.spec);
    return this.#call('resize', (n) => n.resize(bytes));
  }

  /** The object size and striping (rbd_stat and rbd_get_stripe_unit/count); failures name the operation that needed them. */
  async #layout(operation: string): Promise<ImageLayout> {
    const { objectSize, stripeUnit, stripeCount } = await this.#call(operation, (n) => n.stat());
    return { objectSize, stripeUnit, stripeCount };
  }

  /** rbd_snap_list, with rbd_snap_get_timestamp and rbd_snap_is_protected per snapshot */
  async listSnapshots(): Promise<SnapshotInfo[]> {
    return (await this.#call('listSnapshots', (n) => n.listSnapshots())).map(toSnapshotInfo);
  }

  /**
   * rbd_snap_create2, with quiesce (librbd asks the image's watchers, such
   * as rbd-nbd with quiesce hooks, to freeze their file system first). Not
   * without: Pacific's librbd (16.2.15) reports success when the header
   * write of a snapshot created with RBD_SNAP_CREATE_SKIP_QUIESCE timed
   * out, and no snapshot exists (reproduced with an OSD marked down during
   * the creation); with quiesce the timeout is returned.
   */
  async createSnapshot(name: string): Promise<void> {
    const resource = this.#snap(name, 'createSnapshot');
    return this.#call('createSnapshot', (n) => n.createSnapshot(name), resource);
  }

  /** rbd_snap_remove */
  async removeSnapshot(name: string): Promise<void> {
    const resource = this.#snap(name, 'removeSnapshot');
    return this.#call('removeSnapshot', (n) => n.removeSnapshot(name), resource);
  }

  /**
   * The snapshots in the trash namespace, with the names they had
   * (rbd_snap_list, rbd_snap_get_trash_namespace): removed while a clone of
   * them lives, or by a removal an OSD fault cut short (those stay for good).
   */
  async listTrashedSnapshots(): Promise<TrashedSnapshot[]> {
    return this.#call('listTrashedSnapshots', (n) => n.listTrashedSnapshots());
  }

  /** rbd_snap_remove_by_id: also a trashed snapshot (refused while a clone of it lives). */
  async removeSnapshotById(id: bigint): Promise<void> {
    const snapshotId = toU64('snapshot id', id, 'removeSnapshotById', this.spec);
    return this.#call('removeSnapshotById', (n) => n.removeSnapshotById(snapshotId), `${this.spec}@{id ${snapshotId}}`);
  }

  /**
   * rbd_list_children3: the clones of the snapshot this handle is open at
   * (clones in the trash too: they still need it). Open the image at the
   * snapshot to ask.
   */
  async listChildren(): Promise<ChildImage[]> {
    if (this.snapshot === undefined) {
      throw invalidArgument('listChildren', this.spec, 'open the image at the snapshot whose clones are wanted');
    }
    return this.#call('listChildren', (n) => n.listChildren());
  }

  /** rbd_snap_protect */
  async protectSnapshot(name: string): Promise<void> {
    const resource = this.#snap(name, 'protectSnapshot');
    return this.#call('protectSnapshot', (n) => n.protectSnapshot(name), resource);
  }

  /** rbd_snap_unprotect: fails with BusyError while clones of it exist. */
  async unprotectSnapshot(name: string): Promise<void> {
    const resource = this.#snap(name, 'unprotectSnapshot');
    return this.#call('unprotectSnapshot', (n) => n.unprotectSnapshot(name), resource);
  }

  /** rbd_snap_is_protected */
  async isSnapshotProtected(name: string): Promise<boolean> {
    const resource = this.#snap(name, 'isSnapshotProtected');
    return this.#call('isSnapshotProtected', (n) => n.isSnapshotProtected(name), resource);
  }

  /** rbd_snap_exists */
  async snapshotExists(name: string): Promise<boolean> {
    const resource = this.#snap(name, 'snapshotExists');
    return this.#call('snapshotExists', (n) => n.snapshotExists(name), resource);
  }

  /**
   * Whether the image's header, read from its OSD now (rbd.get_snapcontext),
   * lists the snapshot this handle knows by that name. snapshotExists
   * answers from the handle's memory, which librbd updates as soon as its
   * snapshot creation reports success; this is the check that the snapshot
   * is really there. A format 1 image: as snapshotExists.
   */
  async headerHasSnapshot(name: string): Promise<boolean> {
    const resource = this.#snap(name, 'headerHasSnapshot');
    return this.#call('headerHasSnapshot', (n) => n.headerHasSnapshot(name), resource);
  }

  /** rbd_snap_rollback: the image head becomes the snapshot's content (and size) again. */
  async rollbackSnapshot(name: string): Promise<void> {
    const resource = this.#snap(name, 'rollbackSnapshot');
    return this.#call('rollbackSnapshot', (n) => n.rollbackSnapshot(name), resource);
  }

  /** rbd_get_parent: the clone's parent, or null for an image without one. */
  async parent(): Promise<ParentInfo | null> {
    return toParentInfo(await this.#call('parent', (n) => n.parent()));
  }

  /** rbd_flatten_with_progress: copies the parent's data in; the image then has no parent. */
  async flatten(options: FlattenOptions = {}): Promise<void> {
    const { onProgress, signal } = checkOptions(options, 'flatten');
    return withCancel(signal, 'flatten', this.spec,
      (token, progress) => this.#call('flatten', (n) => n.flatten(progress, token)), onProgress);
  }

  /**
   * rbd_diff_iterate2: the extents changed since fromSnapshot (or all data
   * when absent) up to this image's head or open snapshot, as batches of
   * extents in offset order.
   */
  diff(options: DiffOptions = {}): AsyncGenerator<DiffExtent[]> {
    // An async generator: bad options surface from the first next(), as a rejection.
    return this.#diff(options);
  }

  async* #diff(options: DiffOptions): AsyncGenerator<DiffExtent[]> {
    const from = checkOptions(options, 'diff').fromSnapshot;
    if (from !== undefined) this.#snap(from, 'diff');
    const { size, objectSize } = await this.#call('diff', (n) => n.stat());
    const start = toU64('offset', options.offset ?? 0, 'diff', this.spec);
    const length = options.length === undefined
      ? (size > start ? size - start : 0n)
      : toU64('length', options.length, 'diff', this.spec);
    if (start + length > size) {
      throw invalidArgument('diff', this.spec,
        `range of ${length} bytes at offset ${start} passes the end of the image (size ${size})`);
    }
    try {
      yield* iterateDiff({
        native: this.#native,
        resource: this.spec,
        fromSnapshot: from ?? null,
        start,
        end: start + length,
        step: objectSize * OBJECTS_PER_CALL,
        includeParent: checkFlag('includeParent', options.includeParent, 'diff', this.spec) ?? true,
        wholeObject: checkFlag('wholeObject', options.wholeObject, 'diff', this.spec) ?? false,
      });
    } catch (error) {
      this.pool.cluster.afterFailure(error);
      throw error;
    }
  }

  /** Whether any data exists in the image (or its parent): rbd_diff_iterate2 stopping at the first extent. */
  async hasExtents(): Promise<boolean> {
    return this.#call('hasExtents', (n) => n.hasExtents());
  }

  /**
   * rbd_watchers_list: the clients watching the image header, as `rbd
   * status` lists them. Every client that opened the image for writing
   * watches it (a mapped or attached volume, and this handle when it is not
   * read-only).
   */
  async listWatchers(): Promise<ImageWatcher[]> {
    return this.#call('listWatchers', (n) => n.listWatchers());
  }

  /** An aio read (rbd_aio_read2; no thread of the pool waits for it) into a Buffer allocated once. A read past the end of the image is an InvalidArgumentError. */
  async read(offset: number | bigint, length: number | bigint): Promise<Buffer> {
    const [off, len] = this.#range('read', offset, length);
    if (len > BigInt(MAX_READ_BYTES)) {
      throw invalidArgument('read', this.spec, `one read takes at most ${MAX_READ_BYTES} bytes, asked for ${len}`);
    }
    return this.#call('read', (n) => n.read(off, len));
  }

  /**
   * Several ranges read at once (librbd's aio reads, all in flight
   * together, submitted by one short job of the pool and settled when the
   * last completes): one call for many small reads. At most MAX_READ_MANY
   * ranges and MAX_READ_BYTES in all; each range gets its Buffer.
   */
  async readMany(ranges: ReadonlyArray<{ offset: number | bigint; length: number | bigint }>): Promise<Buffer[]> {
    if (!Array.isArray(ranges) || ranges.length === 0 || ranges.length > MAX_READ_MANY) {
      throw invalidArgument('read', this.spec, `readMany takes 1 to ${MAX_READ_MANY} ranges`);
    }
    const offsets: bigint[] = [];
    const lengths: bigint[] = [];
    let total = 0n;
    for (const range of ranges) {
      const [off, len] = this.#range('read', range?.offset, range?.length);
      if (len === 0n) throw invalidArgument('read', this.spec, 'readMany takes ranges of 1 byte or more');
      total += len;
      offsets.push(off);
      lengths.push(len);
    }
    if (total > BigInt(MAX_READ_BYTES)) {
      throw invalidArgument('read', this.spec, `one readMany takes at most ${MAX_READ_BYTES} bytes in all, asked for ${total}`);
    }
    return this.#call('read', (n) => n.readMany(offsets, lengths));
  }

  /** An aio write (rbd_aio_write2; no thread of the pool waits for it). A write past the end of the image is an InvalidArgumentError. */
  async write(data: Buffer, offset: number | bigint): Promise<void> {
    if (!Buffer.isBuffer(data)) throw invalidArgument('write', this.spec, 'data must be a Buffer');
    const off = toU64('offset', offset, 'write', this.spec);
    return this.#call('write', (n) => n.write(data, off));
  }

  /** rbd_write_zeroes */
  async writeZeroes(offset: number | bigint, length: number | bigint): Promise<void> {
    const [off, len] = this.#range('writeZeroes', offset, length);
    return this.#call('writeZeroes', (n) => n.writeZeroes(off, len));
  }

  /** rbd_discard, in pieces below 2 GiB */
  async discard(offset: number | bigint, length: number | bigint): Promise<void> {
    const [off, len] = this.#range('discard', offset, length);
    return this.#call('discard', (n) => n.discard(off, len));
  }

  /** rbd_flush */
  async flush(): Promise<void> {
    return this.#call('flush', (n) => n.flush());
  }

  /** rbd_metadata_get: undefined when the key is not set. */
  async getMetadata(key: string): Promise<string | undefined> {
    checkName('metadata key', key, 'getMetadata', this.spec, { allowSeparators: true });
    return this.#call('getMetadata', (n) => n.getMetadata(key));
  }

  /**
   * rbd_metadata_list: the image's metadata (as `rbd image-meta list`
   * shows it), the keys starting with prefix when one is given.
   */
  async listMetadata(prefix = ''): Promise<Map<string, string>> {
    if (typeof prefix !== 'string') throw invalidArgument('listMetadata', this.spec, `prefix must be a string, got ${describeValue(prefix)}`);
    const pairs = await this.#call('listMetadata', (n) => n.listMetadata());
    return new Map(pairs.filter(([key]) => key.startsWith(prefix)));
  }

  /** rbd_metadata_set */
  async setMetadata(key: string, value: string): Promise<void> {
    checkName('metadata key', key, 'setMetadata', this.spec, { allowSeparators: true });
    if (typeof value !== 'string' || value.includes('\0')) {
      throw invalidArgument('setMetadata', this.spec, 'metadata value must be a string without NUL');
    }
    return this.#call('setMetadata', (n) => n.setMetadata(key, value));
  }

  /** rbd_metadata_remove */
  async removeMetadata(key: string): Promise<void> {
    checkName('metadata key', key, 'removeMetadata', this.spec, { allowSeparators: true });
    return this.#call('removeMetadata', (n) => n.removeMetadata(key));
  }

  /**
   * rados_lock_exclusive on the image's header object, under the lock name
   * 'rbd-backup': an advisory lock that other holders (another client, or
   * another cookie) get a BusyError for. Unlike `rbd lock add` it does not
   * collide with librbd's automatic exclusive-lock, so writes keep working.
   */
  async lock(cookie: string): Promise<void> {
    checkName('lock cookie', cookie, 'lock', this.spec, { allowSeparators: true });
    return this.#call('lock', (n) => n.lock(cookie));
  }

  /** rados_unlock: NotFoundError when this client holds no lock with this cookie. */
  async unlock(cookie: string): Promise<void> {
    checkName('lock cookie', cookie, 'unlock', this.spec, { allowSeparators: true });
    return this.#call('unlock', (n) => n.unlock(cookie));
  }

  /** rbd_close; refused with a BusyError while calls on this image are in flight. Closing twice is harmless. */
  async close(): Promise<void> {
    return this.#call('close', (n) => n.close());
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
