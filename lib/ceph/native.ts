/**
 * The compiled addon (a local build in build/Release, else the prebuilt one
 * in prebuilds/<platform>-<arch>) and the shapes of its internal classes.
 * Users never see these: lib/ceph wraps each in a class that validates input
 * and turns failures into typed errors.
 */
import { createRequire } from 'node:module';
import { arch, platform } from 'node:process';
import { fileURLToPath } from 'node:url';

export interface NativeConnectOptions {
  user: string;
  /** The cluster name librados expands $cluster with (rados_create2). */
  cluster: string;
  /** Ceph configuration file; '' reads librados' default places. */
  conf?: string;
  /** Applied with rados_conf_set after the file, in order. */
  settings: Array<[string, string]>;
}

/** A client watching an image's header (rbd_watchers_list), as `rbd status` lists it. */
export interface ImageWatcher {
  /** The client's address, e.g. '127.0.0.1:0/1283590212'. */
  address: string;
  /** Its global id: the <gid> of client.<gid>, Cluster.instanceId() of a connection. */
  id: bigint;
  cookie: bigint;
}

/** A snapshot in the trash namespace: its UUID name, and the name it had. */
export interface TrashedSnapshot {
  id: bigint;
  name: string;
  originalName: string;
}

export interface NativeCluster {
  fsid(): Promise<string>;
  listPools(): Promise<string[]>;
  createPool(name: string): Promise<void>;
  deletePool(name: string): Promise<void>;
  openPool(name: string, namespace?: string): Promise<NativePool>;
  instanceId(): bigint;
  blocklistAdd(address: string, expireSeconds: number): Promise<void>;
  waitForLatestOsdMap(): Promise<void>;
  openImageCount(): number;
  close(): Promise<void>;
}

export interface NativeCreateOptions {
  features?: bigint;
  order?: number;
  stripeUnit?: bigint;
  stripeCount?: bigint;
  cloneFormat?: number;
}

export interface NativeLockers {
  exclusive: boolean;
  tag: string;
  lockers: Array<{ client: string; cookie: string; address: string }>;
}

export interface NativeNotifyReply {
  acks: Array<{ gid: bigint; cookie: bigint; reply: Buffer }>;
  timeouts: Array<{ gid: bigint; cookie: bigint }>;
}

export interface NativeWatch {
  id(): bigint;
  check(): Promise<number>;
  close(): Promise<void>;
}

export interface NativePool {
  listImages(): Promise<string[]>;
  createImage(name: string, size: bigint, options: NativeCreateOptions): Promise<void>;
  removeImage(name: string): Promise<void>;
  renameImage(from: string, to: string): Promise<void>;
  openImage(name: string, snapshot: string | null, readOnly: boolean): Promise<NativeImage>;
  clone(parent: NativePool, parentImage: string, parentSnapshot: string, child: string,
    options: NativeCreateOptions): Promise<void>;
  readObject(name: string): Promise<Buffer>;
  writeObject(name: string, data: Buffer, exclusive: boolean): Promise<void>;
  removeObject(name: string): Promise<void>;
  objectExists(name: string): Promise<boolean>;
  lockObject(name: string, lockName: string, cookie: string, description: string, durationMs: number,
    renew: boolean): Promise<void>;
  unlockObject(name: string, lockName: string, cookie: string): Promise<void>;
  listLockers(name: string, lockName: string): Promise<NativeLockers>;
  breakLock(name: string, lockName: string, client: string, cookie: string): Promise<void>;
  watchObject(name: string, timeoutSeconds: number): Promise<NativeWatch>;
  notifyObject(name: string, timeoutMs: number, payload: Buffer | null): Promise<NativeNotifyReply>;
  openImageCount(): number;
  close(): Promise<void>;
}

export interface NativeStat {
  size: bigint;
  objectSize: bigint;
  objectCount: bigint;
  order: number;
  blockNamePrefix: string;
  features: bigint;
  stripeUnit: bigint;
  stripeCount: bigint;
  createdAtMs: number;
}

export interface NativeSnapshot {
  id: bigint;
  name: string;
  size: bigint;
  timestampMs: number;
  protected: boolean;
}

export interface NativeParent {
  pool: string;
  namespace: string;
  image: string;
  imageId: string;
  snapshot: string;
  snapshotId: bigint;
  trash: boolean;
}

/** A clone of a snapshot (rbd_list_children3). */
export interface ChildImage {
  pool: string;
  namespace: string;
  image: string;
  imageId: string;
  /** The clone was moved to the trash (it still holds the snapshot). */
  trash: boolean;
}

export interface NativeExtents {
  /** offset, length pairs */
  ranges: BigUint64Array;
  exists: Uint8Array;
}

export interface NativeCancelToken {
  cancel(): void;
  readonly cancelled: boolean;
}

/** A delivering transfer's acknowledgements (native/outlet.h). */
export interface NativeOutlet {
  /** That many delivered pieces, of that many bytes, are the consumer's now: they leave the job's window. */
  taken(ops: number, bytes: number): void;
}

/**
 * What JavaScript gives a writing transfer (native/inlet.h): each piece is
 * written from its own Buffer, which must stay unchanged until the job is
 * done with it (the transfer's onWritten says when room was made).
 */
export interface NativeInlet {
  /** data (of that length) or, with null, zeroes at offset; false once the job has ended (nothing was taken). */
  give(data: Buffer | null, offset: bigint, length: bigint): boolean;
  /** Whether the job's window takes another piece now. */
  room(): boolean;
  /** Pieces given and not yet written. */
  pending(): number;
  /** Nothing more will be given: the job ends once the rest is written. */
  end(): void;
}

/** What a delivering transfer read: one read's pieces, back to back in data, or a hole (no data). */
export interface NativeDelivered {
  offset: bigint;
  length: bigint;
  /** Not to be read before copied has resolved. */
  data?: Buffer;
  /** Resolves once the bytes are in data (copied on the thread pool). */
  copied?: Promise<void>;
  /** Image offset and length of each piece of data. */
  pieces?: BigUint64Array;
  /** With plan.zeroRuns: [start, end) pairs of data's zero runs, as positions in data. */
  zeroRuns?: Float64Array;
}

export interface NativeImage {
  stat(): Promise<NativeStat>;
  resize(size: bigint): Promise<void>;
  read(offset: bigint, length: bigint): Promise<Buffer>;
  /** The ranges read at once (librbd aio, submitted by one job of the thread pool); one Buffer per range. */
  readMany(offsets: bigint[], lengths: bigint[]): Promise<Buffer[]>;
  write(data: Buffer, offset: bigint): Promise<void>;
  writeZeroes(offset: bigint, length: bigint): Promise<void>;
  discard(offset: bigint, length: bigint): Promise<void>;
  flush(): Promise<void>;
  getMetadata(key: string): Promise<string | undefined>;
  setMetadata(key: string, value: string): Promise<void>;
  removeMetadata(key: string): Promise<void>;
  lock(cookie: string): Promise<void>;
  unlock(cookie: string): Promise<void>;
  parent(): Promise<NativeParent | null>;
  flatten(onProgress: ((done: number, total: number) => void) | undefined,
    cancel: NativeCancelToken): Promise<void>;
  listSnapshots(): Promise<NativeSnapshot[]>;
  createSnapshot(name: string): Promise<void>;
  removeSnapshot(name: string): Promise<void>;
  listTrashedSnapshots(): Promise<TrashedSnapshot[]>;
  removeSnapshotById(id: bigint): Promise<void>;
  listChildren(): Promise<ChildImage[]>;
  protectSnapshot(name: string): Promise<void>;
  unprotectSnapshot(name: string): Promise<void>;
  isSnapshotProtected(name: string): Promise<boolean>;
  snapshotExists(name: string): Promise<boolean>;
  headerHasSnapshot(name: string): Promise<boolean>;
  rollbackSnapshot(name: string): Promise<void>;
  diffRange(fromSnapshot: string | null, offset: bigint, length: bigint,
    includeParent: boolean, wholeObject: boolean): Promise<NativeExtents>;
  hasExtents(): Promise<boolean>;
  listWatchers(): Promise<ImageWatcher[]>;
  listMetadata(): Promise<Array<[string, string]>>;
  close(): Promise<void>;
}

export interface NativeTransferPlan {
  fromSnapshot?: string;
  /**
   * The snapshot the source is open at. Named, its objects are read
   * directly (all extents of an object in one operation) when that reads
   * what librbd would: not for clones, striped, format 1 or migrating images.
   */
  snapshot?: string;
  length: bigint;
  step: bigint;
  /** The first diff call's span; each next one is four times longer, up to step. Default: step. */
  firstStep?: bigint;
  ioSize: bigint;
  window: number;
  memory: bigint;
  wholeObject: boolean;
  targetIsZero: boolean;
  zeroGaps: boolean;
  /** Changed extents of one block at most this far apart are read and written as one. Default 0. */
  mergeGap?: bigint;
  /**
   * The extents are this image's changes since fromSnapshot (a handle of
   * its own, neither source nor target), each read from the source
   * whether the listed image holds data there or not. Exact extents only
   * (no wholeObject, no zeroGaps).
   */
  listed?: NativeImage;
  /**
   * Once the transfer stops (a failure or a cancel), how long its operations
   * still in flight get to complete before the job gives up on them and
   * leaves the image they are queued on open for good. Default 30000.
   */
  drainMs?: number;
  /**
   * Hash the end snapshot's blocks of this size (a power of two dividing
   * ioSize) into digests, which holds the table to update: 8 bytes
   * (little-endian XXH3-64, 0 = unknown) per block of length. Every block
   * the transfer touches is read whole; untouched ones keep their entry.
   */
  digestBlock?: bigint;
  digests?: Buffer;
  /** Blocks hashed besides those the listing touches. */
  extraBlocks?: bigint[];
  /** Hash only the extraBlocks: list nothing. */
  noListing?: boolean;
  /** Resume at this offset (a multiple of digestBlock): everything below is on the target. Default 0. */
  start?: bigint;
  /**
   * Hand what is read to onData in offset order (holes as pieces without
   * data) instead of writing it: no target, listed image, digests, zeroGaps
   * or start. Each piece stays in the window until the outlet is told it
   * was taken.
   */
  deliver?: boolean;
  /** With deliver: read whole blocks of this size (dividing ioSize) around every extent, holes included. */
  align?: bigint;
  /** With deliver: find the zero runs of minZeroRun bytes or more in what is read. */
  zeroRuns?: boolean;
  /** Zero runs inside read data shorter than this are written (or delivered) as data. Default 64 KiB. */
  minZeroRun?: bigint;
}

export interface NativeTransferStats {
  bytesRead: bigint;
  bytesWritten: bigint;
  bytesZeroed: bigint;
  bytesSkipped: bigint;
  extents: number;
  ops: number;
  /** Of those, reads that went straight to the snapshot's objects (one per object). */
  objectReads: number;
  /** Why the source's objects were read through librbd instead, when they were. */
  directReadRefused?: string;
  elapsedMs: number;
  /** With digestBlock: the blocks read and hashed, and the updated table. */
  blocksHashed?: number;
  digests?: Buffer;
}

/**
 * A transfer's progress: every source byte below done is handled; with
 * digests, the final table entries of the blocks that came to lie below
 * done since the last report, from block digestsFrom on.
 */
export type NativeTransferProgress = (done: bigint, total: bigint, bytesRead: bigint, digestsFrom: number, digests: Buffer | undefined) => void;

export type NativeCodecKind = 'zstd-compress' | 'zstd-decompress' | 'bz2-compress' | 'bz2-decompress';

export interface NativeCodec {
  /**
   * What the stream makes of input (at most outputCap bytes: call again
   * with the rest of the input until it is consumed and the output comes
   * back short); with finish (the end of the input), done once the stream
   * is complete. One run at a time.
   */
  run(input: Buffer, finish: boolean, outputCap: number): Promise<{ output: Buffer; consumed: number; done: boolean }>;
}

export interface NativeMd5 {
  update(data: Buffer): Promise<void>;
  /** Lower-case hex. */
  digest(): string;
}

interface Addon {
  connect(options: NativeConnectOptions): Promise<NativeCluster>;
  /** XXH3-128 of data, 16 bytes in xxHash's canonical (big-endian) order. */
  digest128(data: Buffer): Buffer;
  /** The digest table entries (XXH3-64, 0 stored as 1) of data's blocks; the last block may be short. */
  blockDigests(data: Buffer, blockSize: number): BigUint64Array;
  /** Synchronously closes every open handle (for process exit). */
  closeAll(): void;
  /**
   * A null target hashes only (plan.digestBlock required) or delivers what it reads (plan.deliver, outlet and
   * onData required); a null source writes what the inlet is given (onWritten called when pieces were written).
   */
  transfer(source: NativeImage | null, target: NativeImage | null, plan: NativeTransferPlan,
    cancel: NativeCancelToken, onProgress: NativeTransferProgress, outlet?: NativeOutlet | NativeInlet,
    onData?: ((read: NativeDelivered[]) => void) | (() => void)): Promise<NativeTransferStats>;
  CancelToken: new () => NativeCancelToken;
  Outlet: new () => NativeOutlet;
  Inlet: new () => NativeInlet;
  /** syncfs(2) of the file system holding path, on the thread pool. */
  syncFileSystem(path: string): Promise<void>;
  /** SHA-256 of each blockSize block of data (the last may be short), 32 bytes each, on the thread pool. */
  sha256Blocks(data: Buffer, blockSize: number): Promise<Buffer>;
  /** MD5 of what is given to update() in order (one update at a time); digest() ends it. */
  Md5: new () => NativeMd5;
  /**
   * A short object of a backup into files, on the thread pool: the md5 of
   * data, data (or its packed form, when smaller: compressed here for
   * 'zlib', given as a Buffer for other algorithms) written to partial,
   * created exclusively, then renamed to path; partial removed on failure.
   */
  storeObject(partial: string, path: string, data: Buffer, packing: 'none' | 'zlib' | Buffer): Promise<{ md5: string; bytes: number; compressed: boolean }>;
  /** A streaming zstd or bz2 (de)compressor (lib/files/codec.ts). */
  Codec: new (kind: NativeCodecKind) => NativeCodec;
  /**
   * The wrapper classes, which only the addon instantiates (connect(), openPool(), openImage(),
   * watchObject()): exported so that a test can compare their prototypes with these interfaces.
   */
  classes: {
    NativeCluster: { prototype: NativeCluster };
    NativePool: { prototype: NativePool };
    NativeImage: { prototype: NativeImage };
    NativeWatch: { prototype: NativeWatch };
  };
}

const require = createRequire(import.meta.url);
// dist/lib/ceph/native.js -> the package root, where node-gyp-build looks.
const packageRoot = fileURLToPath(new URL('../../../', import.meta.url));

const BUILD_HINT = 'To build it from source, install a C++ compiler, make, python3 and the ' +
  'librbd-dev, librados-dev, libxxhash-dev, libzstd-dev and libbz2-dev packages (librbd-devel, librados-devel, ' +
  'xxhash-devel, libzstd-devel and bzip2-devel on RPM systems), ' +
  'then run `npm rebuild ceph-rbd-backup`.';

/**
 * What to do about an addon that node-gyp-build could not find or that the
 * dynamic loader refused, with the loader's own words at the end. A plain
 * Error, not a CephError: no Ceph operation failed and there is no errno,
 * and a caller whose import failed could not reach the error classes to
 * test `instanceof` anyway.
 */
function addonLoadError(cause: unknown): Error {
  const reason = (cause instanceof Error ? cause.message : String(cause)).trim().split('\n')[0];
  let advice: string;
  if (/No native build was found/.test(reason)) {
    advice = `ceph-rbd-backup: no native addon fits this system (${platform}-${arch}): none was ` +
      'built here (an install with --ignore-scripts skips the build), and the package ships a ' +
      `prebuilt one for linux-x64 with glibc only. ${BUILD_HINT}`;
  } else if (/lib(rbd|rados)\.so\.\d+: cannot open shared object file/.test(reason)) {
    advice = 'ceph-rbd-backup: the native addon needs librbd.so.1 and librados.so.2 (Ceph 16.2 ' +
      '"Pacific" or later), which this machine lacks: install the librbd1 and librados2 packages.';
  } else if (/undefined symbol: (rbd|rados)_/.test(reason)) {
    advice = 'ceph-rbd-backup: the librbd1/librados2 on this machine are older than Ceph 16.2 ' +
      '"Pacific", the oldest release the addon works with: upgrade them.';
  } else {
    advice = `ceph-rbd-backup: the native addon does not load on this system. ${BUILD_HINT}`;
  }
  return new Error(`${advice}\n  (${reason})`, { cause });
}

function loadAddon(): Addon {
  const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
  try {
    return nodeGypBuild(packageRoot) as Addon;
  } catch (error) {
    throw addonLoadError(error);
  }
}

export const addon: Addon = loadAddon();

// process.exit() skips the addon's environment cleanup hook; without this,
// images left open would keep their watch and exclusive lock on the cluster
// for half a minute after the process is gone.
process.once('exit', () => addon.closeAll());
