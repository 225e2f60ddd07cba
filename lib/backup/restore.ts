/**
 * Restore of one backup from exactly its own point in time (its snapshot on
 * its chain image, or a legacy full copy's head), choosing between the diff
 * path (allowed only when the five conditions of conditions.ts hold) and the
 * chunked full copy. Nothing is changed before every check has passed.
 */
import { randomUUID } from 'node:crypto';
import type { Writable } from 'node:stream';
import { CephError, invalidArgument, NotFoundError } from '../ceph/errors.js';
import type { Image } from '../ceph/image.js';
import type { SnapshotInfo } from '../ceph/snapshot.js';
import type { Pool } from '../ceph/pool.js';
import { checkFlag, checkKnownKeys, checkName, describeValue, everyKeyOf } from '../ceph/validate.js';
import { checkCancelOptions } from '../ceph/cancel.js';
import { copyImage } from '../engine/copy.js';
import { exportRaw } from '../engine/raw-export.js';
import { checkExportPath } from '../engine/target-file.js';
import type { Progress } from '../engine/options.js';
import { convergeToSnapshot } from '../engine/converge.js';
import { transferDiff } from '../engine/transfer.js';
import { DigestTable } from '../engine/digest-table.js';
import { hashImage } from '../engine/hash-image.js';
import { checkChunkedBackup, restoreChunked } from '../files/chunked-restore.js';
import { callBudget, transferAllowanceMs } from './budget.js';
import { OperationScope, removeImageWithSnapshots } from './cleanup.js';
import { checkBackupPath, type ResolvedConfig } from './config.js';
import { decideRestore, type RestoreDecision } from './conditions.js';
import { chooseCommonSnapshot } from './in-place.js';
import { readBackupImages } from './inventory.js';
import { locateBackup } from './layout.js';
import { heldForBackup, lockObjectName, restoreLockObjectName, VolumeLock, type LockHolder } from './lock.js';
import { checkInstantOptions, flattenInBackground, refuseExistingTarget, refuseInstant, restoreInstantly,
  type BackgroundFlatten, type FlattenMode } from './instant-restore.js';
import { isHalfRestored, lockRestoreTarget, RESTORING_INTO_KEY, RESTORING_KEY } from './restore-lock.js';
import { requireDigests } from './digests.js';
import { VerificationError } from './errors.js';
import { logBackup } from './log.js';
import { checkId, imageSubject, sourceImageName, subjectOfBackupImage, volumeSubject, type Subject } from './naming.js';
import { isFileLayoutRecord, recordLocation, type BackupRecord, type RecordLocation } from './record.js';
import { refuseTarget, type ExistingTarget } from './restore-target.js';

/** Where a restore writes: exactly one of a volume, a named image, a file or a stream. */
export type RestoreTarget =
  /** volume-<id> in pool (created when missing; id defaults to a new UUID). */
  | { volume: { pool: string; id?: string }; image?: never; file?: never; stream?: never }
  /** The image name in pool (and namespace), created when missing; not a Cinder volume's name (volume-<id>: give volume). */
  | { image: { pool: string; namespace?: string; name: string }; volume?: never; file?: never; stream?: never }
  /** A local file, as a raw image; an existing file is refused. */
  | { file: string; volume?: never; image?: never; stream?: never }
  /** A Writable, as a raw image; ended at the end. */
  | { stream: Writable; volume?: never; image?: never; file?: never };

export interface RestoreRequest {
  backup: BackupRecord;
  target: RestoreTarget;
  /**
   * The call's time budget, clean-up included: past it, it rejects with a
   * TimeoutError listing what it left. Default: three op timeouts of the
   * connections plus a second per 16 MiB of the backup (see budget.ts).
   */
  timeoutMs?: number;
  /**
   * Write into a target volume that already holds data, that another
   * client has open, or that is the backup's own source volume (each
   * refused otherwise). Default false.
   */
  force?: boolean;
  /**
   * Check everything and decide the path, change nothing: the result says
   * which path the restore would take and which condition decides it; a
   * restore that would be refused rejects as it would. Default false.
   */
  dryRun?: boolean;
  /**
   * Clone the restore point instead of copying it: the volume is usable as
   * soon as the call returns, reads of what it does not hold yet going to
   * the backup. The target pool must be in the backup's cluster, the
   * target volume must not exist, and the backup must be a snapshot on a
   * chain image. The backup cannot be deleted or pruned while the clone
   * reads from it. Default false.
   */
  instant?: boolean;
  /**
   * When a restore into the backup's own volume would copy everything and
   * the volume still has a backup snapshot the chain image also has, only
   * what differs moves: the extents the volume changed since that snapshot
   * and those the chain changed between it and the restore point. false:
   * the full copy. Default true.
   */
  inPlace?: boolean;
  /**
   * With instant: when the clone gets its own copy of the data.
   * 'background' (default) after the call returns (RestoreResult.flattening
   * follows it); 'now' before the call returns; 'never' leaves a clone.
   */
  flatten?: FlattenMode;
  /**
   * Hash the restored bytes as they are written and compare them with the
   * backup's stored digests: a mismatch fails the restore with a
   * VerificationError (a volume it created is removed), a backup without
   * digests is refused (DigestsError) before anything is written. An
   * in-place restore reads the whole volume afterwards to check it; a
   * file or stream is checked before it gets its name or its end. Not
   * with instant (nothing is copied). Default false.
   */
  verify?: boolean;
  /**
   * A backup of Cinder's NFS or POSIX driver (its record's service): the
   * backup root its container is under. Default: the engine's backupPath.
   */
  backupPath?: string;
  signal?: AbortSignal;
  /** Progress of the copy, or of the flatten of an instant restore (in the background too). */
  onProgress?: (progress: Progress) => void;
}

export interface RestoreResult {
  /** Nothing was written: the path is the one the restore would take. */
  dryRun: boolean;
  /**
   * 'instant': the volume is a clone of the restore point (flattened when
   * flatten was 'now'); 'in-place': converged from commonSnapshot; 'files':
   * from Cinder's chunked file layout (restoreChunked), each object's md5
   * checked.
   */
  path: 'diff' | 'full' | 'instant' | 'in-place' | 'files';
  /** For an in-place restore: the snapshot the volume and the chain image both had. */
  commonSnapshot: string | undefined;
  /** For a full copy or an in-place restore: the first of the five conditions that failed (no diff path), and why. */
  failedCondition: { number: 1 | 2 | 3 | 4 | 5; reason: string } | undefined;
  /** Where the data came from: chain image @ restore point, or a legacy image. */
  source: string;
  /** The target: pool/volume-<id>, pool[/namespace]/image, a file path, or 'stream'. */
  target: string;
  /** The target volume's id; undefined for any other target. */
  targetVolumeId: string | undefined;
  size: bigint;
  /** Bytes read from the backup by this call (none for an instant restore: librbd's flatten reads). */
  bytesRead: bigint;
  elapsedMs: number;
  /** The flatten an instant restore left running (flatten: 'background'); undefined otherwise. */
  flattening: BackgroundFlatten | undefined;
  /** With verify: the blocks compared with the backup's digests (all matched, or the restore failed). */
  verifiedBlocks: number | undefined;
  /**
   * Where it picked up the work of a restore of the same backup into the
   * same volume that was killed or failed (bytes below were not read again).
   */
  resumedFrom: bigint | undefined;
}

interface Source {
  image: Image;
  /** undefined for a legacy image, copied at its head. */
  snapshot: string | undefined;
  spec: string;
  size: bigint;
  /** Its snapshot, as condition 2 counts restore points. */
  restorePoints: string[];
  /** The chain image's complete backups' snapshots (a pending one is no backup to converge from). */
  backupSnapshots: SnapshotInfo[];
}

/** An RBD target is named as a backup subject is: a volume id (in pool) or a named image (its pool and namespace). */
type CheckedTarget =
  | { kind: 'rbd'; pool: string; namespace: string; subject: Subject }
  | { kind: 'raw'; to: string | Writable; name: string };

function checkTarget(target: unknown, backupId: string, operation: string): CheckedTarget {
  const resource = `backup ${backupId}`;
  if (!target || typeof target !== 'object') {
    throw invalidArgument(operation, resource, 'a target is required: { volume: { pool, id? } }, { image: { pool, namespace?, name } }, { file } or { stream }');
  }
  const given = (['volume', 'image', 'file', 'stream'] as const).filter((key) => (target as Record<string, unknown>)[key] !== undefined);
  if (given.length !== 1) {
    throw invalidArgument(operation, resource,
      `the target must name exactly one of volume, image, file or stream, got ${given.length === 0 ? 'none' : given.join(' and ')}`);
  }
  const { volume, image, file, stream } = target as {
    volume?: { pool?: unknown; id?: unknown }; image?: { pool?: unknown; namespace?: unknown; name?: unknown };
    file?: unknown; stream?: Writable;
  };
  if (volume !== undefined) {
    if (!volume || typeof volume !== 'object') throw invalidArgument(operation, resource, 'target.volume must be { pool, id? }');
    const pool = checkName('pool', volume.pool, operation, String(volume.pool));
    return { kind: 'rbd', pool, namespace: '', subject: volumeSubject(checkId('volume', volume.id ?? randomUUID(), operation), operation) };
  }
  if (image !== undefined) {
    if (!image || typeof image !== 'object') throw invalidArgument(operation, resource, 'target.image must be { pool, namespace?, name }');
    const subject = imageSubject({ pool: image.pool, namespace: image.namespace, image: image.name }, operation);
    // A chain image's head is no backup's data, but its snapshots are; it is never a restore's target.
    if (subjectOfBackupImage(subject.image) !== undefined) {
      throw invalidArgument(operation, resource,
        `target.image ${subject.image} is named as a backup image (<volume or image>.backup.<backup id>): restore into an image of another name`);
    }
    return { kind: 'rbd', pool: subject.pool, namespace: subject.namespace, subject };
  }
  if (file !== undefined) {
    if (typeof file !== 'string' || file === '' || file.includes('\0')) {
      throw invalidArgument(operation, resource, `target.file must be a path (a non-empty string without NUL), got ${describeValue(file)}`);
    }
    return { kind: 'raw', to: file, name: file };
  }
  if (typeof stream !== 'object' || stream === null || typeof stream.write !== 'function') {
    throw invalidArgument(operation, resource, `target.stream must be a Writable, got ${describeValue(stream)}`);
  }
  // Its writes would never be taken (nor fail): the export would wait for it until the call's time ran out.
  if (stream.destroyed === true || stream.writableEnded === true) {
    throw invalidArgument(operation, resource, 'target.stream must be open: it is already ended or destroyed');
  }
  return { kind: 'raw', to: stream, name: 'stream' };
}

async function openSource(scope: OperationScope, pool: Pool, location: RecordLocation,
  operation: string): Promise<Source> {
  const images = await readBackupImages(pool, location.subject);
  const found = locateBackup(images, location, operation);
  const image = await scope.adopt(pool.openImage(found.image.name, { readOnly: true }));
  const snapshot = found.snapshot?.name;
  return {
    image, snapshot,
    spec: `${pool.spec}/${found.image.name}${snapshot === undefined ? '' : `@${snapshot}`}`,
    size: found.snapshot?.size ?? found.image.size,
    restorePoints: snapshot === undefined ? [] : [snapshot],
    backupSnapshots: found.image.snapshots,
  };
}

/**
 * The target as refuseTarget judges it: its data is a restore's of this
 * backup when that restore marked it, or when it died after its last write
 * (marks removed, its lock not yet released): then only its dead lock says so.
 */
function withDeadRestore(inspected: ExistingTarget, backupId: string, deadLockHolder: LockHolder | undefined): ExistingTarget {
  const diedAfterWriting = heldForBackup(deadLockHolder?.description, backupId);
  return { ...inspected, unfinishedRestore: inspected.unfinishedRestore ?? (diedAfterWriting ? backupId : undefined) };
}

/**
 * The target volume, locked against other restores into it: created (and
 * marked as being restored) when missing, made again when a killed restore
 * left it half-restored.
 */
/** What decides whether a restore may write into an existing volume, read through a read-only handle (which watches nothing). */
async function inspectTarget(pool: Pool, name: string, backup: { size: bigint; subject: Subject },
  target: Subject): Promise<ExistingTarget> {
  await using image = await pool.openImage(name, { readOnly: true });
  const { size } = await image.stat();
  const hasExtents = await image.hasExtents();
  const otherWatchers = await image.listWatchers();
  const unfinishedRestore = await image.getMetadata(RESTORING_INTO_KEY);
  return {
    spec: `${pool.spec}/${name}`, otherWatchers, hasExtents, unfinishedRestore, isSource: target.key === backup.subject.key, size,
    backupSize: backup.size,
  };
}

async function openTargetVolume(scope: OperationScope, config: ResolvedConfig, targetPool: Pool, target: Subject,
  backup: { size: bigint; id: string; subject: Subject }, request: RestoreRequest,
  operation: string): Promise<{ volume: Image; created: boolean; hasExtents: boolean }> {
  const size = backup.size;
  const backupId = backup.id;
  const name = sourceImageName(target);
  const { broken, resuming } = await lockRestoreTarget(scope, config, targetPool, target, backupId, true);
  let created = false;
  let hasExtents = false;
  let volume: Image | undefined;
  // A volume this restore created (or a restore of this backup did, whose
  // progress it picks up) and could not fill is worth nothing.
  const removeOnFailure = (): void => scope.onFailure(`remove the volume this restore created, ${targetPool.spec}/${name}`, targetPool, async () => {
    await volume?.close();
    await removeImageWithSnapshots(targetPool, name, scope).catch((error: unknown) => {
      if (!(error instanceof NotFoundError)) throw error;
    });
  });
  if (resuming) {
    // It holds only what that restore wrote of this backup: as good as new.
    removeOnFailure();
    created = true;
  } else if (await targetPool.imageExists(name)) {
    const existing = withDeadRestore(await inspectTarget(targetPool, name, backup, target), backupId, broken);
    const refusal = refuseTarget(existing, request.force === true, operation);
    if (refusal) throw refusal;
    hasExtents = existing.hasExtents;
  } else {
    // Registered first: a creation that timed out may still have happened.
    removeOnFailure();
    scope.checkpoint();
    await targetPool.createImage(name, size);
    created = true;
  }
  volume = await scope.adopt(targetPool.openImage(name));
  await volume.setMetadata(created ? RESTORING_KEY : RESTORING_INTO_KEY, backupId);
  return { volume, created, hasExtents };
}

/** The restored bytes' digests against the backup's: any difference fails the restore. */
function checkRestored(stored: DigestTable, restored: DigestTable | undefined, targetSpec: string, operation: string): number {
  const mismatches = stored.compare(restored!);
  if (mismatches.length > 0) {
    const first = mismatches[0]!;
    throw new VerificationError({
      operation, resource: targetSpec,
      detail: `the restored bytes differ from the backup's digests in ${mismatches.length} range(s), the first ${first.length} bytes at offset ${first.offset}: the backup's data or its digests are damaged (verify the backup with mode deep)`,
    }, mismatches);
  }
  return stored.count - stored.unknownBlocks();
}

async function restoreIntoVolume(scope: OperationScope, config: ResolvedConfig, request: RestoreRequest,
  source: Source, target: { pool: string; namespace: string; subject: Subject }, location: RecordLocation, operation: string,
  stored: DigestTable | undefined) {
  const targetPool = await scope.adopt(config.source.pool(target.pool, target.namespace));
  const targetName = sourceImageName(target.subject);
  const targetSpec = `${targetPool.spec}/${targetName}`;
  if (target.subject.key === location.subject.key) await lockBackedUpVolume(scope, config, source.image.pool, location.subject);
  const { volume, created, hasExtents } = await openTargetVolume(scope, config, targetPool, target.subject,
    { size: source.size, id: location.backupId, subject: location.subject }, request, operation);
  const { size: targetSize } = await volume.stat();
  const decision = decideRestore({
    baseExists: true, restorePoints: source.restorePoints, targetIsRbd: true,
    targetIsSource: target.subject.key === location.subject.key, targetHasExtents: hasExtents,
  });
  const common = created ? undefined : await commonSnapshotOf(volume, source, decision, request);
  logBackup('restore %s -> %s: %s', source.spec, targetSpec, decision.path === 'diff' ? 'diff'
    : `${common === undefined ? 'full copy' : `in place from ${common}`} (condition ${decision.condition}: ${decision.reason})`);
  const engine = {
    signal: withRequest(scope, request), onProgress: request.onProgress,
    concurrency: config.ioConcurrency, memoryBytes: config.memoryBytes, checkpointMs: config.checkpointMs,
  };
  // Whole histories: the restored image starts out as zeros.
  const digests = stored === undefined ? {} : { digests: { table: DigestTable.zeros(source.size, stored.blockSize) } };
  let bytesRead: bigint;
  let verifiedBlocks: number | undefined;
  let resumedFrom: bigint | undefined;
  if (common !== undefined) {
    scope.doing = 'moving what differs';
    const stats = await convergeToSnapshot({ source: source.image, snapshot: source.snapshot!, common, target: volume, ...engine });
    bytesRead = stats.bytesRead;
    if (config.restoreDiscardExcessBytes && targetSize > stats.size) await volume.discard(stats.size, targetSize - stats.size);
    if (stored !== undefined) {
      // Only what differed moved: the whole volume is read to check it.
      scope.doing = 'verifying the volume';
      await volume.flush();
      const hashed = await hashImage({ image: volume, blockSize: stored.blockSize, length: stored.size, ...engine });
      verifiedBlocks = checkRestored(stored, hashed.table, targetSpec, operation);
      bytesRead += hashed.bytesRead;
    }
  } else if (decision.path === 'diff') {
    const restoring = volume;
    // The transfer sizes the volume to the backup; it gets its own size
    // back whether the restore works or not (without hiding why not).
    if (targetSize !== source.size) {
      scope.onFailure(`give ${restoring.spec} its own size back (${targetSize} bytes)`, targetPool, async () => {
        scope.stillLocked(restoring.spec);
        await restoring.resize(targetSize);
      });
    }
    scope.doing = 'transferring the data';
    const stats = await transferDiff({ source: source.image, snapshot: decision.restorePoint, target: restoring, ...engine, ...digests });
    bytesRead = stats.bytesRead;
    resumedFrom = stats.resumedFrom;
    if (stored !== undefined) verifiedBlocks = checkRestored(stored, stats.digests, targetSpec, operation);
    // The transfer leaves the restore point's snapshot on the target; the volume does not want it.
    await restoring.removeSnapshot(decision.restorePoint);
    if (targetSize !== source.size) await restoring.resize(targetSize);
  } else {
    scope.doing = 'copying the data';
    const stats = await copyImage({
      source: source.image, ...(source.snapshot === undefined ? {} : { snapshot: source.snapshot }), target: volume,
      chunkSize: config.chunkSize, discardExcess: config.restoreDiscardExcessBytes, ...engine, ...digests,
    });
    bytesRead = stats.bytesRead;
    resumedFrom = stats.resumedFrom;
    if (stored !== undefined) verifiedBlocks = checkRestored(stored, stats.digests, targetSpec, operation);
  }
  await stillThere(source, common, volume, operation);
  scope.checkpoint();
  await volume.removeMetadata(created ? RESTORING_KEY : RESTORING_INTO_KEY);
  return { decision, common, targetSpec, bytesRead, verifiedBlocks, resumedFrom };
}

/**
 * A restore into the backup's own volume holds the volume's backup lock
 * too: a backup meanwhile would take a half-restored volume for a whole
 * one (and its trim could remove the snapshot an in-place restore reads).
 */
async function lockBackedUpVolume(scope: OperationScope, config: ResolvedConfig, backupPool: Pool, subject: Subject): Promise<void> {
  scope.doing = 'taking the volume\'s backup lock';
  const lock = await VolumeLock.acquire(backupPool, subject, scope.operation, {
    waitMs: config.lockWaitMs, ttlMs: config.lockTtlMs, signal: scope.signal,
  });
  scope.defer(`release the volume lock ${backupPool.spec}/${lockObjectName(subject)}`, backupPool, () => lock.release(), 'lock');
}

/**
 * After the data moved: the snapshots it was read from are still on their
 * images' headers. A delete or prune of the backup (or a backup's trim of
 * the volume's snapshot) during the restore would have had the OSD trim
 * their data, and a trimmed snapshot's objects read as absent, i.e. zeros;
 * one still listed on its header was never trimmed.
 */
async function stillThere(source: Source, common: string | undefined, volume: Image | undefined, operation: string): Promise<void> {
  const checks: Array<[Image, string]> = [
    ...(source.snapshot === undefined ? [] : [[source.image, source.snapshot] as [Image, string]]),
    ...(common === undefined ? [] : [[source.image, common], [volume!, common]] as Array<[Image, string]>),
  ];
  for (const [image, snapshot] of checks) {
    if (!(await image.headerHasSnapshot(snapshot))) {
      throw new CephError({
        code: 'EIO', operation, resource: `${image.spec}@${snapshot}`,
        detail: 'the snapshot the restore read from was removed while it ran (a delete or prune of the backup?): what it read cannot be trusted; restore again',
      });
    }
  }
}

/**
 * For a restore that would copy everything into the backup's own volume:
 * the snapshot the volume and the chain image both have, to converge from.
 * Only there: the volume's backup snapshots were made by its backups, while
 * another volume's could be one a failed restore's transfer left behind
 * (librbd may write a snapshot after giving up on it, without its data).
 */
async function commonSnapshotOf(volume: Image, source: Source, decision: RestoreDecision,
  request: RestoreRequest): Promise<string | undefined> {
  if (decision.path !== 'full' || decision.condition !== 4 || request.inPlace === false ||
    source.snapshot === undefined) return undefined;
  const choice = chooseCommonSnapshot(await volume.listSnapshots(), source.backupSnapshots, source.snapshot);
  if ('reason' in choice) {
    logBackup('restore into %s: a full copy, not in place: %s', volume.spec, choice.reason);
    return undefined;
  }
  return choice.common;
}

/**
 * A dry run: the checks and the decision of a restore, with nothing
 * written, created or locked (a volume a killed restore half-restored
 * counts as the new volume the restore would make of it).
 */
async function planRestore(scope: OperationScope, config: ResolvedConfig, request: RestoreRequest, source: Source,
  target: CheckedTarget, location: RecordLocation): Promise<{ decision: RestoreDecision; common?: string | undefined; targetName: string }> {
  const operation = scope.operation;
  scope.doing = 'checking the target';
  if (target.kind === 'raw') {
    if (typeof target.to === 'string') await checkExportPath(target.to);
    const decision = decideRestore({
      baseExists: true, restorePoints: source.restorePoints, targetIsRbd: false, targetIsSource: false, targetHasExtents: undefined,
    });
    return { decision, targetName: target.name };
  }
  const targetPool = await scope.adopt(config.source.pool(target.pool, target.namespace));
  const name = sourceImageName(target.subject);
  const exists = await targetPool.imageExists(name) && await isHalfRestored(targetPool, name) === undefined;
  let hasExtents = false;
  if (exists) {
    const existing = withDeadRestore(
      await inspectTarget(targetPool, name, { size: source.size, subject: location.subject }, target.subject),
      location.backupId, await VolumeLock.deadHolder(targetPool, restoreLockObjectName(target.subject)));
    const refusal = refuseTarget(existing, request.force === true, operation);
    if (refusal) throw refusal;
    hasExtents = existing.hasExtents;
  }
  const decision = decideRestore({
    baseExists: true, restorePoints: source.restorePoints, targetIsRbd: true,
    targetIsSource: target.subject.key === location.subject.key, targetHasExtents: hasExtents,
  });
  let common: string | undefined;
  if (exists) {
    await using volume = await targetPool.openImage(name, { readOnly: true });
    common = await commonSnapshotOf(volume, source, decision, request);
  }
  return { decision, common, targetName: `${targetPool.spec}/${name}` };
}

/** The transfer stops when the caller aborts or the call's time is up. */
function withRequest(scope: OperationScope, request: RestoreRequest): AbortSignal {
  return request.signal ? AbortSignal.any([request.signal, scope.signal]) : scope.signal;
}

/** Every key of a restore request: another (a typo of dryRun or force) is refused, not ignored. */
const RESTORE_REQUEST_KEYS = everyKeyOf<RestoreRequest>()(['backup', 'target', 'timeoutMs', 'force', 'dryRun', 'instant', 'inPlace',
  'flatten', 'verify', 'backupPath', 'signal', 'onProgress']);

export async function runRestore(config: ResolvedConfig, request: RestoreRequest): Promise<RestoreResult> {
  const operation = 'restore';
  if (!request || typeof request !== 'object') throw invalidArgument(operation, 'request', 'a restore request is required');
  checkKnownKeys(request, RESTORE_REQUEST_KEYS, operation, 'the restore request');
  const location = recordLocation(request.backup, operation);
  const target = checkTarget(request.target, location.backupId, operation);
  const resource = `backup ${location.backupId}`;
  const instant = checkInstantOptions(request, operation, resource);
  checkFlag('inPlace', request.inPlace, operation, resource);
  checkFlag('verify', request.verify, operation, resource);
  checkFlag('dryRun', request.dryRun, operation, resource);
  checkFlag('force', request.force, operation, resource);
  checkCancelOptions(request, operation, resource);
  const givenRoot = checkBackupPath(request.backupPath, operation, resource);
  if (request.verify === true && instant !== undefined) {
    throw invalidArgument(operation, resource, 'an instant restore copies nothing to verify as it goes: verify the backup (mode deep) first, or restore without instant');
  }
  const budget = callBudget(request.timeoutMs, [config.source, config.backupCluster], operation, resource);
  if (isFileLayoutRecord(request.backup)) {
    const root = givenRoot ?? config.backupPath;
    checkFilesRestore(request, root, operation, resource);
    return OperationScope.run({ operation, resource, timeoutMs: budget.timeoutMs }, async (scope) => {
      const started = performance.now();
      const done = await restoreFromFiles(scope, config, request, { location, target, root: root!, grows: budget.grows });
      return { dryRun: request.dryRun === true,
        targetVolumeId: target.kind === 'rbd' && target.subject.kind === 'volume' ? target.subject.volumeId : undefined,
        elapsedMs: performance.now() - started, ...done };
    });
  }
  return OperationScope.run({ operation, resource, timeoutMs: budget.timeoutMs }, async (scope) => {
    const started = performance.now();
    scope.doing = 'opening the backup';
    const backupPool = await scope.adopt(config.backupCluster.pool(location.container ?? config.backupPool));
    const source = await openSource(scope, backupPool, location, operation);
    const checked = { location, target, source, grows: budget.grows };
    const done = instant === undefined
      ? await restoreWithin(scope, config, request, checked)
      : await restoreByClone(scope, config, request, { ...checked, mode: instant });
    return {
      dryRun: request.dryRun === true,
      source: source.spec,
      targetVolumeId: target.kind === 'rbd' && target.subject.kind === 'volume' ? target.subject.volumeId : undefined,
      elapsedMs: performance.now() - started,
      ...done,
    };
  });
}

/** What a restore of a backup in Cinder's file layout takes: a backup root, and no instant restore (nothing to clone). */
function checkFilesRestore(request: RestoreRequest, root: string | undefined, operation: string, resource: string): void {
  const service = String(request.backup.service);
  if (root === undefined) {
    throw invalidArgument(operation, resource,
      `the backup is in Cinder's chunked file layout (its record's service is ${service}): give its backup root (backupPath, the CLI's --backup-path), the share's mount point`);
  }
  if (request.instant === true) {
    throw invalidArgument(operation, resource, 'an instant restore clones an RBD snapshot, and a backup in files has none: restore without instant');
  }
}

/**
 * A backup of Cinder's NFS or POSIX driver into a volume or image (made,
 * or with force overwritten, under the target's restore lock as any
 * restore's, grown to the backup's size when smaller), a raw file of its
 * size, or a stream of its bytes in order (the layers merged), written by
 * restoreChunked; the full backup's zeros are skipped on a new volume or
 * file.
 */
async function restoreFromFiles(scope: OperationScope, config: ResolvedConfig, request: RestoreRequest, checked: {
  location: RecordLocation; target: CheckedTarget; root: string; grows: boolean;
}): Promise<RestoreOutcome & Pick<RestoreResult, 'source'>> {
  const { location, target, root } = checked;
  const record = request.backup;
  const operation = scope.operation;
  if (!Number.isSafeInteger(record.size) || record.size <= 0) {
    throw invalidArgument(operation, scope.resource, `the record's size must be the volume's size in GiB, got ${describeValue(record.size)}`);
  }
  const source = `${root}/${String(record.container)} (${String(record.service_metadata)})`;
  const files = { root, backupId: location.backupId, container: record.container, prefix: record.service_metadata ?? undefined };
  scope.doing = 'reading the backup\'s metadata';
  // Checked before anything is made. The size is where the full backup's
  // objects end (exact where the volume is not a whole number of GiB, as
  // the record counts), within the record's.
  const recordBytes = BigInt(record.size) << 30n;
  const backup = await checkChunkedBackup(files);
  const dataSize = backup.size;
  const size = dataSize > 0n && dataSize <= recordBytes ? dataSize : recordBytes;
  if (checked.grows) scope.extend(transferAllowanceMs(size));
  const engine = {
    signal: withRequest(scope, request), onProgress: request.onProgress,
    concurrency: config.ioConcurrency, ...(config.memoryBytes === undefined ? {} : { memoryBytes: config.memoryBytes }),
  };
  const outcome = { path: 'files' as const, source, size, commonSnapshot: undefined, failedCondition: undefined,
    flattening: undefined, verifiedBlocks: undefined, resumedFrom: undefined };
  if (target.kind === 'raw') {
    const to = target.to;
    const name = typeof to === 'string' ? to : 'a stream';
    if (request.dryRun === true) {
      if (typeof to === 'string') await checkExportPath(to);
      return { ...outcome, target: name, bytesRead: 0n };
    }
    scope.doing = 'restoring the backup\'s files';
    const stats = await restoreChunked({
      ...files, checked: backup, target: typeof to === 'string' ? { file: to, size } : { stream: to, size }, ...engine,
    });
    scope.commit();
    return { ...outcome, target: name, bytesRead: stats.bytesRead };
  }
  const targetPool = await scope.adopt(config.source.pool(target.pool, target.namespace));
  const targetSpec = `${targetPool.spec}/${sourceImageName(target.subject)}`;
  if (request.dryRun === true) return { ...outcome, target: targetSpec, bytesRead: 0n };
  const { volume, created } = await openTargetVolume(scope, config, targetPool, target.subject,
    { size, id: location.backupId, subject: location.subject }, request, operation);
  if ((await volume.stat()).size < size) await volume.resize(size);
  scope.doing = 'restoring the backup\'s files';
  const stats = await restoreChunked({ ...files, checked: backup, target: volume, targetIsZero: created, ...engine });
  scope.checkpoint();
  await volume.removeMetadata(created ? RESTORING_KEY : RESTORING_INTO_KEY);
  scope.commit();
  logBackup('restore %s -> %s: %d objects of %d backup(s)', source, targetSpec, stats.objects, stats.backups.length);
  return { ...outcome, target: targetSpec, bytesRead: stats.bytesRead };
}

/** What each way of restoring says of itself in the result. */
type RestoreOutcome = Pick<RestoreResult, 'path' | 'commonSnapshot' | 'failedCondition' | 'target' | 'size' | 'bytesRead' | 'flattening' | 'verifiedBlocks' | 'resumedFrom'>;

interface CheckedRestore {
  location: RecordLocation;
  target: CheckedTarget;
  source: Source;
  grows: boolean;
}

async function restoreWithin(scope: OperationScope, config: ResolvedConfig, request: RestoreRequest,
  checked: CheckedRestore): Promise<RestoreOutcome> {
  const { location, target, source } = checked;
  const operation = scope.operation;
  if (checked.grows) scope.extend(transferAllowanceMs(source.size));
  let decision: RestoreDecision;
  let common: string | undefined;
  let targetName: string;
  let bytesRead = 0n;
  let size = source.size;
  let verifiedBlocks: number | undefined;
  let resumedFrom: bigint | undefined;
  // Before anything is written: a backup without (sound) digests cannot be verified.
  const stored = request.verify === true
    ? await requireDigests(source.image.pool, location.backupId, source, operation, scope.resource)
    : undefined;
  if (request.dryRun === true) {
    ({ decision, common, targetName } = await planRestore(scope, config, request, source, target, location));
  } else if (target.kind === 'raw') {
    decision = decideRestore({
      baseExists: true, restorePoints: source.restorePoints, targetIsRbd: false, targetIsSource: false,
      targetHasExtents: undefined,
    });
    scope.doing = 'exporting the data';
    const stats = await exportRaw(source.image, {
      ...(source.snapshot === undefined ? {} : { snapshot: source.snapshot }), to: target.to,
      signal: withRequest(scope, request), onProgress: request.onProgress,
      concurrency: config.ioConcurrency, memoryBytes: config.memoryBytes,
      ...(stored === undefined ? {} : { digestBlock: stored.blockSize }),
      // Before the file gets its name (or the stream its end): what was read is checked first.
      beforeFinish: async (exported) => {
        await stillThere(source, undefined, undefined, operation);
        if (stored !== undefined) verifiedBlocks = checkRestored(stored, exported.digests, target.name, operation);
      },
    });
    ({ size, bytesRead } = stats);
    targetName = target.name;
  } else {
    ({ decision, common, targetSpec: targetName, bytesRead, verifiedBlocks, resumedFrom } =
      await restoreIntoVolume(scope, config, request, source, target, location, operation, stored));
  }
  scope.commit();
  return {
    path: common === undefined ? decision.path : 'in-place',
    commonSnapshot: common,
    failedCondition: decision.path === 'full' ? { number: decision.condition, reason: decision.reason } : undefined,
    target: targetName,
    size,
    bytesRead,
    flattening: undefined,
    verifiedBlocks,
    resumedFrom,
  };
}

async function restoreByClone(scope: OperationScope, config: ResolvedConfig, request: RestoreRequest,
  checked: CheckedRestore & { mode: FlattenMode }): Promise<RestoreOutcome> {
  const { location, target, source, mode } = checked;
  const operation = scope.operation;
  await refuseInstant(config, source, target.kind === 'rbd', operation, scope.resource);
  // A flatten before returning copies the whole volume.
  if (checked.grows && mode === 'now') scope.extend(transferAllowanceMs(source.size));
  const rbdTarget = target as Extract<CheckedTarget, { kind: 'rbd' }>;
  const snapshot = source.snapshot!;
  const backup = { pool: source.image.pool, image: source.image.name, snapshot };
  let targetName: string;
  if (request.dryRun === true) {
    scope.doing = 'checking the target';
    const targetPool = await scope.adopt(config.source.pool(rbdTarget.pool, rbdTarget.namespace));
    const name = sourceImageName(rbdTarget.subject);
    if (await isHalfRestored(targetPool, name) === undefined) await refuseExistingTarget(targetPool, name, operation);
    targetName = `${targetPool.spec}/${name}`;
  } else {
    ({ targetSpec: targetName } = await restoreInstantly({
      scope, config, backup, target: rbdTarget, backupId: location.backupId, mode,
      signal: withRequest(scope, request), onProgress: request.onProgress,
    }));
  }
  scope.commit();
  const flattening = request.dryRun !== true && mode === 'background'
    ? flattenInBackground(config, { pool: rbdTarget.pool, namespace: rbdTarget.namespace, name: sourceImageName(rbdTarget.subject) },
      { pool: backup.pool.name, image: backup.image, snapshot }, request.onProgress)
    : undefined;
  return {
    path: 'instant',
    commonSnapshot: undefined,
    failedCondition: undefined,
    target: targetName,
    size: source.size,
    bytesRead: 0n,
    flattening,
    verifiedBlocks: undefined,
    resumedFrom: undefined,
  };
}
