/**
 * One backup of one volume, laid out as Cinder's Ceph driver lays it out
 * since Train: a full backup creates its own chain image
 * volume-<id>.backup.<backup id>, an incremental continues the chain image
 * holding its parent's snapshot (`.backup.base` chains of older releases
 * included); one snapshot per backup on the source and, carried over by the
 * transfer, on the chain image. Phases: open and lock, choose the chain,
 * transfer, finish. On failure nothing half-made remains.
 */
import { randomUUID } from 'node:crypto';
import { AlreadyExistsError, BusyError, CephError, invalidArgument, NotFoundError } from '../ceph/errors.js';
import { cancelledError, checkCancelOptions } from '../ceph/cancel.js';
import type { Image } from '../ceph/image.js';
import type { Pool } from '../ceph/pool.js';
import { checkCallback, checkFlag, checkName, describeValue } from '../ceph/validate.js';
import { DigestTable, digestBlockFor } from '../engine/digest-table.js';
import { ioSizeFor } from '../engine/options.js';
import { clearResume, findResume } from '../engine/resume.js';
import { transferDiff, type DigestStart, type TransferStats } from '../engine/transfer.js';
import type { Progress } from '../engine/options.js';
import { backupInfoKey, encodeBackupInfo } from './backup-info.js';
import { backupSnapshots, decideChain, snapshotsToTrim, type ChainDecision } from './chain.js';
import { callBudget, transferAllowanceMs } from './budget.js';
import { OperationScope, removeImageWithSnapshots, undo } from './cleanup.js';
import { BASE_IMAGE_FEATURES, type ResolvedConfig } from './config.js';
import { readBackupImages, trashedBackupSnapshots } from './inventory.js';
import { backupPoints, type BackupImage, type BackupPoint } from './layout.js';
import { findLeftovers, removeLeftovers } from './leftovers.js';
import { continues, findResumableBackup, keepResumable, type ResumableBackup } from './resume-backup.js';
import { backupIdNote, heldForBackup, lockObjectName, VolumeLock, type LockHolder } from './lock.js';
import { logBackup } from './log.js';
import { RESTORING_KEY } from './restore-lock.js';
import { readDigests, removeDigests, writeDigests, type BackupDigests } from './digests.js';
import { readMetaObject, removeMetaObject } from './meta.js';
import {
  backupImageName, backupSnapshotName, checkId, describeSubject, imageSpec, imageSubject, metaObjectName, sourceImageName,
  unfinishedImageName, volumeImageName, volumeSubject, type Subject,
} from './naming.js';
import { isoTime, newRecord, type BackupRecord } from './record.js';
import type { FilesBackupSummary } from './files-backup.js';

/**
 * What to back up: a Cinder volume by its id (the image volume-<volumeId>
 * in pool), or any RBD image by its name (in pool and namespace), exactly
 * one of the two.
 */
export type BackupRequest = BackupOptions & (
  | { volumeId: string; image?: never; namespace?: never }
  | { image: string; /** Default: the pool's default namespace. */ namespace?: string; volumeId?: never });

export interface BackupOptions {
  /** The source pool holding the volume or image. */
  pool: string;
  /** Default: a new UUID. */
  backupId?: string;
  /**
   * Back up into this backup root, in the chunked layout of Cinder's POSIX
   * and NFS drivers, instead of the backup pool (a Cinder volume only).
   * Default: the engine's backupPath when its backupTo is 'files'.
   */
  backupPath?: string;
  /** Of a backup into files: zlib (or gzip), zstd, bz2 or none. Default: the engine's compression. */
  compression?: string;
  /** Make an incremental from this backup's snapshot (in the chain image holding it). */
  parentId?: string;
  /** A full backup (a new chain image) even when an incremental is possible. */
  full?: boolean;
  /** Written to backup.<backupId>.meta (Cinder's version 2 metadata object). */
  volumeMetadata?: VolumeMetadata;
  displayName?: string;
  displayDescription?: string;
  /**
   * When another live run holds the volume's lock: 'wait' (up to the
   * engine's lockWaitMs) or 'skip' (fail at once with a BusyError naming the
   * holder). Default 'wait'. A dead holder's lock is broken either way.
   */
  onBusy?: 'wait' | 'skip';
  /** Called when a live holder of the volume's lock is waited for. */
  onLockWait?: (holder: LockHolder) => void;
  /**
   * The call's time budget, clean-up included: past it, it rejects with a
   * TimeoutError listing what it left. Default: three op timeouts of the
   * connections plus a second per 16 MiB of the volume (see budget.ts).
   */
  timeoutMs?: number;
  signal?: AbortSignal;
  onProgress?: (progress: Progress) => void;
}

export interface VolumeMetadata {
  'volume-base-metadata'?: unknown;
  'volume-metadata'?: unknown;
  'volume-glance-metadata'?: unknown;
}

export interface BackupResult {
  record: BackupRecord;
  /** The backup's snapshot, on the source volume and on the chain image. */
  snapshot: string;
  /** Where the incremental started; undefined for a full backup. */
  fromSnapshot: string | undefined;
  mode: 'full' | 'incremental';
  /** Why an incremental became a full backup, when it did. */
  convertedToFull: string | undefined;
  /** The chain image holding it (the record's service_metadata base). */
  baseImage: string;
  stats: TransferStats;
  /** Its block digests (backup.<id>.digests), unless the engine's digests option is off. */
  digests: DigestsSummary | undefined;
  /**
   * Where it picked up the transfer of a killed run of the same backup id
   * (that run's snapshot and chain image were kept); bytes below were not
   * moved again. Undefined when it started at the beginning.
   */
  resumedFrom: bigint | undefined;
  /**
   * Set when the last run of this backup id had already completed it (the
   * retry after a kill found it whole, or the same request made again with
   * nothing done to the volume's backups since): this call moved nothing,
   * and the record is that backup's.
   */
  alreadyComplete?: true;
  /** A backup into files: where and how it is stored (baseImage is then its container's directory). */
  files?: FilesBackupSummary;
}

export interface DigestsSummary {
  blockSize: bigint;
  blocks: number;
  /** Blocks of an incremental whose chain's earlier backups were not hashed: verify cannot check them. */
  unknownBlocks: number;
  /** XXH3-128 of the table (hex): one digest of the whole point in time. */
  pointDigest: string;
}

interface Opened {
  volume: Image;
  sourcePool: Pool;
  backupPool: Pool;
  lock: VolumeLock;
  /** The volume's backup images, read under the lock while the volume was being opened. */
  found: BackupImage[];
  /** The request's signal, aborted also when the volume lock is lost or the call's time is up. */
  signal: AbortSignal;
  /**
   * The last run that took the volume's lock before this one was one of
   * this very backup id (one killed, whose lock this run broke, or one that
   * let go of it).
   */
  lastRunOfId: boolean;
}

export async function openSource(pool: Pool, subject: Subject, operation: string): Promise<Image> {
  const name = sourceImageName(subject);
  try {
    return await pool.openImage(name);
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
    throw new NotFoundError({
      code: 'ENOENT', operation, resource: `${pool.spec}/${name}`,
      detail: `${subject.kind === 'volume' ? `volume ${subject.volumeId}` : `image ${name}`} does not exist in pool ${pool.spec}`,
    });
  }
}

/** The subject a request names: exactly one of volumeId and image. */
export function requestSubject(request: BackupRequest, operation: string): Subject {
  if (request === null || typeof request !== 'object' || Array.isArray(request)) {
    throw invalidArgument(operation, 'request', `a backup request is required ({ pool, volumeId } or { pool, image, namespace? }), got ${describeValue(request)}`);
  }
  const { volumeId, image, namespace } = request as { volumeId?: unknown; image?: unknown; namespace?: unknown };
  if ((volumeId === undefined) === (image === undefined)) {
    throw invalidArgument(operation, String(request.pool),
      `give exactly one of volumeId (a Cinder volume) and image (any RBD image), got ${volumeId === undefined ? 'neither' : 'both'}`);
  }
  if (volumeId !== undefined) {
    if (namespace !== undefined) throw invalidArgument(operation, String(request.pool), 'namespace goes with image, not with volumeId');
    return volumeSubject(volumeId, operation);
  }
  return imageSubject({ pool: request.pool, namespace, image }, operation);
}

/** What a run does when another live run holds the volume: wait for it (the default) or skip at once. */
export function checkOnBusy(onBusy: unknown, operation: string, resource: string): void {
  if (onBusy !== undefined && onBusy !== 'wait' && onBusy !== 'skip') {
    throw invalidArgument(operation, resource, `onBusy must be 'wait' or 'skip', got ${describeValue(onBusy)}`);
  }
}

/**
 * What a backup request holds besides its subject and ids, checked before
 * anything is made (a volumeMetadata JSON cannot write would otherwise
 * fail the backup after its transfer).
 */
export function checkBackupOptions(request: BackupRequest, operation: string, resource: string): void {
  checkCancelOptions(request, operation, resource);
  checkCallback('onLockWait', request.onLockWait, operation, resource);
  checkOnBusy(request.onBusy, operation, resource);
  checkFlag('full', request.full, operation, resource);
  for (const key of ['displayName', 'displayDescription'] as const) {
    const value: unknown = request[key];
    if (value !== undefined && value !== null && typeof value !== 'string') {
      throw invalidArgument(operation, resource, `${key} must be a string, got ${describeValue(value)}`);
    }
  }
  const metadata: unknown = request.volumeMetadata;
  if (metadata === undefined) return;
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) {
    throw invalidArgument(operation, resource,
      `volumeMetadata must be an object such as { "volume-metadata": {...} } (Cinder's version 2 metadata), got ${describeValue(metadata)}`);
  }
  try {
    JSON.stringify(metadata);
  } catch (error) {
    throw invalidArgument(operation, resource, `volumeMetadata must be what JSON can write (no bigint, no cycle): ${(error as Error).message}`);
  }
}

async function openAndLock(scope: OperationScope, config: ResolvedConfig, request: BackupRequest,
  ids: { subject: Subject; backupId: string }, operation: string): Promise<Opened> {
  const { subject, backupId } = ids;
  scope.doing = 'opening the volume';
  const sourcePool = await scope.adopt(config.source.pool(request.pool, subject.kind === 'image' ? subject.namespace : ''));
  const backupPool = await scope.adopt(config.backupCluster.pool(config.backupPool));
  // Opening an image takes a dozen round trips: the volume opens while the
  // lock is taken and the backups are read (opening changes nothing, so it
  // need not wait for the lock). The scope closes it whatever happens, once
  // the open has settled.
  const opening = scope.adopt(openSource(sourcePool, subject, operation));
  const settled = opening.then(() => undefined, () => undefined);
  try {
    scope.doing = 'taking the volume\'s lock';
    // The backup id goes into the lock's description: a retry whose
    // previous holder was a run of the same backup knows it is one.
    const lock = await VolumeLock.acquire(backupPool, subject, operation, {
      waitMs: config.lockWaitMs, ttlMs: config.lockTtlMs, onBusy: request.onBusy, onWait: request.onLockWait, signal: scope.signal,
      note: backupIdNote(backupId), readPrevious: true,
    });
    const lastRunOfId = heldForBackup(lock.previous, backupId);
    scope.defer(`release the volume lock ${backupPool.spec}/${lockObjectName(subject)}`, backupPool, () => lock.release(), 'lock');
    scope.guardBy(lock);
    // A failed first backup (or one of a volume that does not exist) leaves
    // the volume without backups: its lock object goes too (while still
    // locked, so no other run is using it). Registered before anything can
    // fail, run after the new chain image is gone.
    scope.onFailure(`remove the lock object ${backupPool.spec}/${lockObjectName(subject)} of a volume without backups`,
      backupPool, async () => {
        if ((await readBackupImages(backupPool, subject)).length === 0) await lock.retire();
      });
    scope.doing = 'reading the volume\'s backups';
    const found = await readBackupImages(backupPool, subject);
    const signal = AbortSignal.any([request.signal, lock.lost, scope.signal].filter((s): s is AbortSignal => s !== undefined));
    return { volume: await opening, sourcePool, backupPool, lock, found, signal, lastRunOfId };
  } finally {
    await settled;
  }
}

/**
 * A run of this backup id that had completed the backup when it was
 * killed (its chain image named; its lock let go of, or not yet), before
 * the process could say so: the retry the CLI tells the operator to run
 * finds it whole. It is that run's backup, not a reuse of the id, when the
 * last run to take the volume's lock before this one was a run of this id
 * (the lock object keeps the last holder's description, which names it),
 * the backup's snapshot is still the volume's newest (nothing was backed
 * up since) and this request asks for what that backup is (the same kind,
 * parent, names and volume metadata). A second retry finds it so too: the
 * id stays idempotent until another operation takes the volume's lock.
 */
async function completedByLastRun(opened: Opened, request: BackupRequest, sourceSnapshots: string[],
  backupId: string): Promise<BackupPoint | undefined> {
  if (!opened.lastRunOfId) return undefined;
  const { found } = opened;
  const point = backupPoints(found.filter((image) => image.incomplete === undefined)).find((p) => p.backupId === backupId);
  if (point?.snapshot === undefined || point.info === undefined || point.info.pendingSince !== undefined) return undefined;
  if (backupSnapshots(sourceSnapshots).at(-1) !== point.snapshot.name) return undefined;
  let meta: unknown;
  try {
    meta = await readMetaObject(opened.backupPool, backupId);
  } catch (error) {
    // A .meta object that is not JSON is not what this request would write.
    if (error instanceof CephError && error.code === 'EINVAL') return undefined;
    throw error;
  }
  const { displayName, displayDescription } = point.info;
  const made = { parentId: point.parentId, displayName, displayDescription, volumeMeta: meta === undefined ? null : JSON.stringify(meta) };
  return asksFor(request, made) ? point : undefined;
}

/**
 * Whether a backup request asks for the backup that was made so (as a
 * retry of the run that made it would): the same kind (a request for a
 * full backup, of a full one), the same parent if it names one, the same
 * names, and the same volume metadata (as its version 2 JSON).
 */
export function asksFor(request: BackupRequest, made: {
  parentId: string | null; displayName: string | null; displayDescription: string | null; volumeMeta: string | null;
}): boolean {
  return (request.full !== true || made.parentId === null)
    && (request.parentId === undefined || request.parentId === made.parentId)
    && (request.displayName ?? null) === made.displayName
    && (request.displayDescription ?? null) === made.displayDescription
    && (request.volumeMetadata === undefined ? null : JSON.stringify({ version: 2, ...request.volumeMetadata })) === made.volumeMeta;
}

async function chooseChain(scope: OperationScope, opened: Opened, request: BackupRequest,
  ids: { subject: Subject; backupId: string }, operation: string): Promise<{ decision: ChainDecision; resuming: ResumableBackup | undefined }
  | { completed: BackupPoint }> {
  const { subject, backupId } = ids;
  const { found } = opened;
  const [snapshots, restoring] = await Promise.all([opened.volume.listSnapshots(), opened.volume.listMetadata(RESTORING_KEY)]);
  const completed = await completedByLastRun(opened, request, snapshots.map((s) => s.name), backupId);
  if (completed !== undefined) {
    logBackup('%s: backup %s is already complete (the last run of it had finished it); nothing to do', describeSubject(subject), backupId);
    return { completed };
  }
  if (restoring.size > 0) {
    // RESTORING_KEY and RESTORING_INTO_KEY: a restore into it did not finish.
    const [[key, restoredBackup]] = [...restoring];
    throw new BusyError({
      code: 'EBUSY', operation, resource: describeSubject(subject),
      detail: `it is marked ${key} (a restore of backup ${restoredBackup} into it has not finished): its data is not a whole point in time; run that restore again, then back it up`,
    });
  }
  const listed = snapshots.map((s) => s.name);
  const leftovers = findLeftovers(found, { names: listed, trashed: await trashedBackupSnapshots(opened.volume) });
  const images = found.filter((image) => !leftovers.images.includes(image));
  // Decided before the leftovers go (no leftover is a chain image a
  // decision can take): what a killed run of this very backup left stays
  // when this run makes the same backup, and continues its transfer.
  let decision: ChainDecision | undefined;
  let refusal: unknown;
  try {
    decision = decide(opened, request, { subject, backupId, images, sourceSnapshots: listed }, operation);
  } catch (error) {
    refusal = error;
  }
  const resumable = decision === undefined || request.backupId === undefined ? undefined
    : await findResumableBackup(opened.backupPool, subject, backupId, found, leftovers, snapshots);
  const resuming = resumable !== undefined && continues(resumable, decision!) ? resumable : undefined;
  if (resuming !== undefined) {
    logBackup('%s: backup %s was killed during its transfer into %s; continuing it from its snapshot %s', describeSubject(subject),
      backupId, resuming.image, resuming.snapshot.name);
  }
  scope.checkpoint();
  await removeLeftovers(opened.backupPool, opened.volume, resuming === undefined ? leftovers : keepResumable(leftovers, resuming), subject);
  if (decision === undefined) {
    // A reuse of an id refused: this run did nothing, and must not become
    // the run of that id that the next one finds last (completedByLastRun).
    if (refusal instanceof AlreadyExistsError) await opened.lock.restorePrevious();
    throw refusal;
  }
  if (decision.mode === 'converted') logBackup('%s: %s; taking a full backup instead', describeSubject(subject), decision.reason);
  return { decision, resuming };
}

function decide(opened: Opened, request: BackupRequest, facts: {
  subject: Subject; backupId: string; images: BackupImage[]; sourceSnapshots: string[];
}, operation: string): ChainDecision {
  const { subject, backupId, images } = facts;
  // A backup id names one backup: a second one under it would give the
  // pool two restore points for it, and no restore could choose.
  const reused = backupPoints(images).find((point) => point.backupId === backupId)
    ?? images.find((image) => image.name === backupImageName(subject, backupId));
  if (reused !== undefined) {
    throw new AlreadyExistsError({
      code: 'EEXIST', operation, resource: describeSubject(subject),
      detail: `backup id ${backupId} is already used (${opened.backupPool.spec}/${'image' in reused ? reused.image.name : reused.name}): give another id`,
    });
  }
  return decideChain({ ...facts, parentId: request.parentId, full: request.full, operation });
}

/**
 * A killed or failed transfer leaves writes on the chain image head past its
 * newest snapshot; an incremental from that snapshot would carry them into
 * the next one. Put the head back first when it differs.
 */
async function ensureCleanHead(chain: Image, fromSnapshot: string): Promise<void> {
  const snap = (await chain.listSnapshots()).find((s) => s.name === fromSnapshot);
  let dirty = snap !== undefined && snap.size !== (await chain.stat()).size;
  if (!dirty) {
    for await (const batch of chain.diff({ fromSnapshot, wholeObject: true })) {
      if (batch.length > 0) {
        dirty = true;
        break;
      }
    }
  }
  if (dirty) {
    logBackup('chain image %s head changed since %s (an interrupted run); rolling back', chain.spec, fromSnapshot);
    await chain.rollbackSnapshot(fromSnapshot);
    // What an interrupted transfer recorded of its progress is undone with it.
    await clearResume(chain);
  }
}

/**
 * Whether the progress record a killed run of this backup left on the
 * chain image holds for this transfer (the same snapshots by id, digests
 * and size): only then does its head stay as that run left it.
 */
async function resumesOnChain(volume: Image, chain: Image, snapshot: string, fromSnapshot: string, size: bigint,
  digests: DigestStart | undefined): Promise<boolean> {
  if ((await chain.stat()).size !== size) return false;
  const found = await findResume(volume, chain, { kind: 'diff', snapshot, fromSnapshot, length: size, digestBlock: digests?.table.blockSize });
  return found?.point !== undefined;
}

/**
 * The chain image to write into: the parent's, or a new one, which carries
 * its unfinished name until the backup is complete, so that no reader ever
 * takes what a killed run left for a backup (the one a killed run of this
 * backup left, when this run continues it).
 */
async function openChainImage(scope: OperationScope, config: ResolvedConfig, opened: Opened,
  decision: ChainDecision, ids: { subject: Subject; backupId: string }, size: bigint, resuming: ResumableBackup | undefined): Promise<Image> {
  const { backupPool } = opened;
  if (decision.mode === 'incremental') {
    scope.doing = 'opening the chain image';
    return scope.adopt(backupPool.openImage(decision.image));
  }
  scope.doing = resuming === undefined ? 'creating the chain image' : 'opening the unfinished chain image';
  const unfinished = unfinishedImageName(ids.subject, ids.backupId);
  let chain: Image | undefined;
  // Registered first: a creation that timed out may still have happened.
  // Under either name: a rename the call's time ran out on may have been
  // done (no other image has this backup's name: chooseChain checked).
  scope.onFailure(`remove the new chain image ${backupPool.spec}/${unfinished}`, backupPool, async () => {
    await chain?.close();
    for (const name of [unfinished, decision.image]) {
      await removeImageWithSnapshots(backupPool, name, scope).catch((error: unknown) => {
        if (!(error instanceof NotFoundError)) throw error;
      });
    }
  });
  if (resuming === undefined) {
    await backupPool.createImage(unfinished, size, {
      features: BASE_IMAGE_FEATURES,
      ...(config.stripeUnit > 0n ? { stripeUnit: config.stripeUnit } : {}),
      ...(config.stripeCount > 0n ? { stripeCount: config.stripeCount } : {}),
    });
  }
  chain = await scope.adopt(backupPool.openImage(unfinished));
  return chain;
}

async function writeMeta(scope: OperationScope, pool: Pool, backupId: string, metadata: VolumeMetadata): Promise<void> {
  // Undone even when the write fails: one that timed out may still have
  // been applied. Not when it was refused because one was there already:
  // that one is not ours.
  let ours = true;
  scope.onFailure(`remove the new ${pool.spec}/${metaObjectName(backupId)} object`, pool, async () => {
    if (ours) await removeMetaObject(pool, backupId);
  });
  try {
    await pool.writeObject(metaObjectName(backupId), JSON.stringify({ version: 2, ...metadata }), { exclusive: true });
  } catch (error) {
    if (error instanceof AlreadyExistsError) ours = false;
    throw error;
  }
}

/**
 * Where this backup's digests start: a full backup's image reads as zeros;
 * an incremental's unchanged blocks are its parent's. A parent without
 * usable digests leaves them unknown (verify says how many).
 */
async function digestStart(pool: Pool, decision: ChainDecision, size: bigint, objectSize: bigint): Promise<DigestStart> {
  const ioSize = ioSizeFor(objectSize);
  if (decision.mode !== 'incremental') return { table: DigestTable.zeros(size, digestBlockFor(size, ioSize)) };
  const unknown = (why: string): DigestStart => {
    logBackup('backup from %s: %s; its unchanged blocks get no digest (a full backup starts a verifiable chain)', decision.fromSnapshot, why);
    const blockSize = digestBlockFor(size, ioSize);
    return { table: new DigestTable(size, blockSize, Buffer.alloc(Number(DigestTable.blocksOf(size, blockSize)) * 8)) };
  };
  let parent: BackupDigests | undefined;
  try {
    parent = await readDigests(pool, decision.parentId, decision.fromSnapshot);
  } catch (error) {
    if (error instanceof CephError && error.code === 'EBADMSG') return unknown(error.message);
    throw error;
  }
  if (parent === undefined) return unknown(`backup ${decision.parentId} has no digests`);
  if (ioSize % parent.table.blockSize !== 0n) return unknown(`the parent's ${parent.table.blockSize}-byte digest blocks do not divide the volume's ${ioSize}-byte reads`);
  return parent.table.resizedTo(size);
}

/**
 * Housekeeping after a complete backup: its failure must not undo the
 * backup. ours: as snapshotsToTrim's (the backup pool's snapshots by default).
 */
export async function trimSourceSnapshots(volume: Image, keep: number, ours?: (names: readonly string[]) => string[]): Promise<void> {
  if (keep <= 0) return;
  await undo('trim source snapshots', async () => {
    const names = (await volume.listSnapshots()).map((s) => s.name);
    for (const old of snapshotsToTrim(names, keep, ours)) {
      await undo(`trim source snapshot ${old}`, () => volume.removeSnapshot(old));
    }
  });
}

export async function runBackup(config: ResolvedConfig, request: BackupRequest): Promise<BackupResult> {
  const operation = 'backup';
  const subject = requestSubject(request, operation);
  const backupId = checkId('backup', request.backupId ?? randomUUID(), operation);
  if (request.parentId !== undefined) checkId('backup', request.parentId, operation);
  if (request.compression !== undefined) {
    throw invalidArgument(operation, describeSubject(subject), 'compression is of backups into files: give backupPath too, or leave it out');
  }
  const resource = subject.kind === 'volume' ? `${String(request.pool)}/${volumeImageName(subject.volumeId)}` : imageSpec(subject);
  checkName('pool', request.pool, operation, resource);
  checkBackupOptions(request, operation, resource);
  const budget = callBudget(request.timeoutMs, [config.source, config.backupCluster], operation, resource);
  if (request.signal?.aborted) throw cancelledError(operation, describeSubject(subject), request.signal);

  return OperationScope.run({ operation, resource, timeoutMs: budget.timeoutMs }, async (scope) => {
    const opened = await openAndLock(scope, config, request, { subject, backupId }, operation);
    const chosen = await chooseChain(scope, opened, request, { subject, backupId }, operation);
    if ('completed' in chosen) return alreadyComplete(config, request, subject, chosen.completed);
    const { decision, resuming } = chosen;
    const stat = await opened.volume.stat();
    // Continuing a killed run: its snapshot is the point in time backed up.
    const size = resuming?.snapshot.size ?? stat.size;
    const { objectSize } = stat;
    if (budget.grows) scope.extend(transferAllowanceMs(size));
    const fromSnapshot = decision.mode === 'incremental' ? decision.fromSnapshot : undefined;
    const snapshot = resuming?.snapshot.name ?? backupSnapshotName(backupId);
    const { volume, sourcePool } = opened;
    // Registered first: a snapshot whose creation timed out may still have been made.
    scope.onFailure(`remove the new source snapshot ${volume.spec}@${snapshot}`, sourcePool, async () => {
      if (await volume.snapshotExists(snapshot)) await volume.removeSnapshot(snapshot);
    });
    // Independent, and each a dozen round trips or more: the volume is
    // snapshotted while the chain image is opened (or made). Both settle
    // before a failure of either goes to the clean-up.
    const chainOpening = openChainImage(scope, config, opened, decision, { subject, backupId }, size, resuming);
    const digestsReading = config.digests ? digestStart(opened.backupPool, decision, size, objectSize) : Promise.resolve(undefined);
    scope.doing = 'opening the chain image and snapshotting the volume';
    const [opening, snapshotting, reading] = await Promise.allSettled([
      chainOpening, resuming === undefined ? volume.createSnapshot(snapshot) : Promise.resolve(), digestsReading]);
    if (opening.status === 'rejected') throw opening.reason;
    if (snapshotting.status === 'rejected') throw snapshotting.reason;
    if (reading.status === 'rejected') throw reading.reason;
    const chain = opening.value;
    if (decision.mode === 'incremental'
      && !(resuming !== undefined && await resumesOnChain(volume, chain, snapshot, decision.fromSnapshot, size, reading.value))) {
      await ensureCleanHead(chain, decision.fromSnapshot);
    }
    // The transfer creates it last; a failure after that must not leave it.
    scope.onFailure(`remove the new chain snapshot ${chain.spec}@${snapshot}`, opened.backupPool, async () => {
      if (await chain.snapshotExists(snapshot)) await chain.removeSnapshot(snapshot);
    });
    logBackup('backup %s of %s: %s into %s from %s', backupId, describeSubject(subject), decision.mode, decision.image, fromSnapshot ?? '(start)');
    const info = {
      displayName: request.displayName ?? null, displayDescription: request.displayDescription ?? null, bytesWritten: null, snapshot,
    };
    if (decision.mode === 'incremental') {
      // In a chain image that stays, a snapshot of this backup is no backup
      // until the mark is replaced below. Left on failure: an OSD stalled
      // past the op timeout can still write the snapshot after librbd gave
      // up on it (and gave its id back, so it holds no data); the next
      // backup or gc removes such a snapshot with its mark.
      scope.doing = 'marking the backup pending';
      await chain.setMetadata(backupInfoKey(backupId), encodeBackupInfo({ ...info, pendingSince: new Date() }));
    }
    scope.doing = 'transferring the data';
    const stats = await transferDiff({
      source: volume, snapshot, fromSnapshot, target: chain,
      signal: opened.signal, onProgress: request.onProgress,
      concurrency: config.ioConcurrency, memoryBytes: config.memoryBytes, checkpointMs: config.checkpointMs,
      ...(reading.value === undefined ? {} : { digests: reading.value }),
    });

    scope.doing = 'finishing the backup';
    if (request.volumeMetadata !== undefined) await writeMeta(scope, opened.backupPool, backupId, request.volumeMetadata);
    if (stats.digests !== undefined) {
      // Undone even when the write fails: one that timed out may still land.
      scope.onFailure(`remove the new digests of backup ${backupId}`, opened.backupPool, async () => {
        await removeDigests(opened.backupPool, backupId);
      });
      await writeDigests(opened.backupPool, backupId, snapshot, stats.digests);
    }
    if (decision.mode === 'incremental') {
      // Asked of the header again just before the backup stands: in a
      // chain image that other handles write to, nothing else proves the
      // snapshot is still there (the transfer checked it once).
      if (!(await chain.headerHasSnapshot(snapshot))) {
        throw new CephError({
          code: 'EIO', operation, resource,
          detail: `the chain image ${chain.spec} lost the backup's snapshot ${snapshot} before the backup was recorded`,
        });
      }
    }
    // Beside its snapshot, so that a listing from the pool alone still names
    // it; in a chain image that stays, this ends its pending mark, which a
    // failure from here on puts back (the snapshot is removed then).
    await chain.setMetadata(backupInfoKey(backupId), encodeBackupInfo({ ...info, bytesWritten: stats.bytesWritten }));
    if (decision.mode === 'incremental') {
      scope.onFailure(`mark backup ${backupId} pending again on ${chain.spec}`, opened.backupPool, () =>
        chain.setMetadata(backupInfoKey(backupId), encodeBackupInfo({ ...info, pendingSince: new Date() })));
    } else {
      scope.checkpoint();
      // rbd_rename wants the image closed here (its header watch would stay on the old name).
      await chain.close();
      await opened.backupPool.renameImage(unfinishedImageName(subject, backupId), decision.image);
    }
    scope.commit();
    // Housekeeping in the clean-up's time: the backup stands whether or not it gets done.
    scope.defer(`trim the old backup snapshots of ${volume.spec}`, sourcePool, () => trimSourceSnapshots(volume, config.maxSourceSnapshots));
    return result(config, request, { backupId, subject, size, decision, snapshot, fromSnapshot, stats });
  });
}

/** The statistics of a call that moved nothing (of a volume of that size). */
export function nothingMoved(size: bigint): TransferStats {
  return { bytesRead: 0n, bytesWritten: 0n, bytesZeroed: 0n, bytesSkipped: 0n, extents: 0, ops: 0, objectReads: 0, elapsedMs: 0, size };
}

/** The result of a backup a killed run of the same id had completed: nothing moved by this call. */
function alreadyComplete(config: ResolvedConfig, request: BackupRequest, subject: Subject, point: BackupPoint): BackupResult {
  const full = point.parentId === null;
  const decision: ChainDecision = full
    ? { mode: 'full', image: point.image.name, reason: 'requested' }
    : { mode: 'incremental', image: point.image.name, parentId: point.parentId!, fromSnapshot: '' };
  const done = result(config, request, {
    backupId: point.backupId, subject, size: point.size, decision, snapshot: point.snapshot!.name, fromSnapshot: undefined,
    stats: nothingMoved(point.size),
  });
  return { ...done, record: { ...done.record, created_at: isoTime(point.createdAt), data_timestamp: isoTime(point.createdAt) }, alreadyComplete: true };
}

function result(config: ResolvedConfig, request: BackupRequest, done: {
  backupId: string; subject: Subject; size: bigint; decision: ChainDecision; snapshot: string;
  fromSnapshot: string | undefined; stats: TransferStats;
}): BackupResult {
  const { backupId, subject, size, decision, snapshot, fromSnapshot, stats } = done;
  const now = new Date();
  return {
    record: newRecord({
      id: backupId, subject, container: config.backupPool, baseImage: decision.image, sizeBytes: size,
      parentId: decision.mode === 'incremental' ? decision.parentId : null,
      createdAt: now, updatedAt: now,
      displayName: request.displayName, displayDescription: request.displayDescription,
    }),
    snapshot, fromSnapshot, baseImage: decision.image, stats, resumedFrom: stats.resumedFrom,
    digests: stats.digests === undefined ? undefined : {
      blockSize: stats.digests.blockSize, blocks: stats.digests.count,
      unknownBlocks: stats.digests.unknownBlocks(), pointDigest: stats.digests.pointDigest(),
    },
    convertedToFull: decision.mode === 'converted' ? decision.reason : undefined,
    mode: decision.mode === 'incremental' ? 'incremental' : 'full',
  };
}
