/**
 * Deletion of one backup, in whichever layout holds it: its snapshot leaves
 * its chain image, the chain image goes with its last backup snapshot
 * (retried while it is still busy), a legacy full copy goes whole, and the
 * .meta object goes too. Any backup of a chain can go on its own: an RBD
 * snapshot does not depend on its neighbours. With the source pool given,
 * the backup's snapshot leaves the source volume as well.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { BusyError, invalidArgument, NotFoundError } from '../ceph/errors.js';
import type { Pool } from '../ceph/pool.js';
import { checkFlag, checkKnownKeys, checkName, everyKeyOf, optionalOptions } from '../ceph/validate.js';
import { removeBackupInfo } from './backup-info.js';
import { refuseIfCloned } from './clones.js';
import { backupSnapshots } from './chain.js';
import { callBudget } from './budget.js';
import { OperationScope, undo } from './cleanup.js';
import { checkBackupPath, type ResolvedConfig } from './config.js';
import { INCOMPLETE_KEY, readBackupImages } from './inventory.js';
import { isChainImage, locateBackup, type BackupImage } from './layout.js';
import { lockObjectName, VolumeLock } from './lock.js';
import { logBackup } from './log.js';
import { removeDigests } from './digests.js';
import { removeMetaObject } from './meta.js';
import { describeSubject, parseBackupSnapshotName, sourceImageName, type Subject } from './naming.js';
import { recordLocation, type BackupRecord } from './record.js';

export interface DeleteOptions {
  /**
   * The pool of the backup's source volume: its snapshot of the backup is
   * removed too (it can start no incremental once the backup is gone). Left
   * out, the next backup of the volume removes it. A named image's backup
   * knows its pool (and namespace): this must be that pool.
   */
  sourcePool?: string;
  /** The call's time budget, clean-up included. Default: three op timeouts of the connections (see budget.ts). */
  timeoutMs?: number;
  /** A backup in files (a record of Cinder's NFS or POSIX driver, or of a backup into files): its backup root. Default: the engine's backupPath. */
  backupPath?: string;
  /** A backup in files: delete the incrementals restoring on top of it too; without, such a delete is refused naming them. */
  withDependents?: boolean;
}

/** Every option delete takes: another is refused, not ignored. */
export const DELETE_OPTIONS = everyKeyOf<DeleteOptions>()(['sourcePool', 'timeoutMs', 'backupPath', 'withDependents']);

export interface DeleteResult {
  removedSnapshots: string[];
  /** Images removed: the chain image with its last backup, or a legacy image. */
  removedImages: string[];
  removedMetadata: boolean;
  /** Its digests object (backup.<id>.digests) was removed. */
  removedDigests: boolean;
  /** The backup's snapshot removed from the source volume, if it was. */
  removedSourceSnapshot: string | undefined;
  /** A backup in files: the backups removed, its dependents (withDependents) first. */
  removedBackups?: string[];
}

const BUSY_RETRIES = 10;

async function removeImageRetrying(pool: Pool, name: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await pool.removeImage(name);
      return;
    } catch (error) {
      // A watcher from a handle closed a moment ago lingers briefly.
      if (!(error instanceof BusyError) || attempt >= BUSY_RETRIES) throw error;
      await sleep(250 * attempt);
    }
  }
}

/** Removes one located backup (the caller holds the volume lock). */
export async function removeBackup(pool: Pool, found: { image: BackupImage; snapshot: { name: string; protected: boolean } | undefined },
  backupId: string, operation: string): Promise<Omit<DeleteResult, 'removedSourceSnapshot'>> {
  const result = { removedSnapshots: [] as string[], removedImages: [] as string[], removedMetadata: false, removedDigests: false };
  const { image, snapshot } = found;
  let removeImage = !isChainImage(image);
  if (snapshot !== undefined) {
    if (snapshot.protected) await refuseIfCloned(pool, image.name, snapshot.name, backupId, operation);
    await using chain = await pool.openImage(image.name);
    if (snapshot.protected) await chain.unprotectSnapshot(snapshot.name);
    // Complete backups only, as they are now (a prune removes several one
    // after the other): a pending one's snapshot is no backup.
    const notBackups = new Set(image.pending.map((p) => p.snapshot.name));
    const lastBackup = backupSnapshots((await chain.listSnapshots()).map((s) => s.name))
      .every((name) => name === snapshot.name || notBackups.has(name));
    if (lastBackup) {
      // Its last backup: should the image outlive it (busy, or a killed
      // run), the mark keeps it from passing for a legacy full copy of the
      // backup its name carries, and the next backup or gc removes it.
      await chain.setMetadata(INCOMPLETE_KEY, backupId);
    }
    await chain.removeSnapshot(snapshot.name);
    result.removedSnapshots.push(snapshot.name);
    await removeBackupInfo(chain, backupId);
    // A chain image's head is no backup: it goes with its last backup
    // snapshot, and with the snapshots of pending backups still on it.
    removeImage = lastBackup;
    if (lastBackup) {
      for (const left of backupSnapshots((await chain.listSnapshots()).map((s) => s.name))) await chain.removeSnapshot(left);
    }
  }
  if (removeImage) {
    await removeImageRetrying(pool, image.name);
    result.removedImages.push(image.name);
  }
  result.removedMetadata = await removeMetaObject(pool, backupId);
  result.removedDigests = await removeDigests(pool, backupId);
  return result;
}

/**
 * The source pool a caller named for a subject's source snapshots: a
 * volume's is wherever the caller says (Cinder's names carry no pool), a
 * named image's is its own, and another is refused.
 */
export function checkSourcePool(subject: Subject, sourcePool: string | undefined, operation: string): string | undefined {
  if (sourcePool === undefined) return undefined;
  checkName('pool', sourcePool, operation, sourcePool);
  if (subject.kind === 'image' && sourcePool !== subject.pool) {
    throw invalidArgument(operation, describeSubject(subject),
      `the source pool given is ${sourcePool}, but the backups are of an image in pool ${subject.pool}; give ${subject.pool} or leave it out`);
  }
  return sourcePool;
}

/** The backup's snapshot leaves the source volume; a protected one (cloned from) stays. */
export async function removeSourceSnapshot(config: ResolvedConfig, sourcePool: string, subject: Subject,
  snapshot: string): Promise<boolean> {
  let removed = false;
  await undo(`remove source snapshot ${snapshot}`, async () => {
    await using pool = await config.source.pool(sourcePool, subject.kind === 'image' ? subject.namespace : '');
    let volume;
    try {
      volume = await pool.openImage(sourceImageName(subject));
    } catch (error) {
      if (error instanceof NotFoundError) return;
      throw error;
    }
    await using opened = volume;
    if (!(await opened.snapshotExists(snapshot))) return;
    await opened.removeSnapshot(snapshot);
    removed = true;
  });
  return removed;
}

export async function runDelete(config: ResolvedConfig, backup: BackupRecord, given?: DeleteOptions): Promise<DeleteResult> {
  const operation = 'delete';
  const options = optionalOptions(given, operation);
  checkKnownKeys(options, DELETE_OPTIONS, operation);
  const location = recordLocation(backup, operation);
  const { backupId, subject } = location;
  const sourcePool = checkSourcePool(subject, options.sourcePool, operation);
  const resource = `backup ${backupId}`;
  // Of a backup in files only; still refused when it could not be one.
  checkBackupPath(options.backupPath, operation, resource);
  checkFlag('withDependents', options.withDependents, operation, resource);
  const budget = callBudget(options.timeoutMs, [config.source, config.backupCluster], operation, resource);

  return OperationScope.run({ operation, resource, timeoutMs: budget.timeoutMs }, async (scope) => {
    scope.doing = 'reading the volume\'s backups';
    const pool = await scope.adopt(config.backupCluster.pool(location.container ?? config.backupPool));
    // Nothing to lock (and no lock object to create) for a volume without backups here.
    if ((await readBackupImages(pool, subject)).length === 0) {
      // Its .meta stays: a record naming the wrong volume must not remove another backup's.
      throw new NotFoundError({
        code: 'ENOENT', operation, resource: `${pool.spec}/backup ${backupId}`,
        detail: `${describeSubject(subject)} has no backup images here`,
      });
    }
    scope.doing = 'taking the volume\'s lock';
    const lock = await VolumeLock.acquire(pool, subject, operation, {
      waitMs: config.lockWaitMs, ttlMs: config.lockTtlMs, signal: scope.signal,
    });
    scope.defer(`release the volume lock ${pool.spec}/${lockObjectName(subject)}`, pool, () => lock.release(), 'lock');
    scope.guardBy(lock);
    const images = await readBackupImages(pool, subject);
    const named = images.find((image) => image.name === location.namedImage);
    // A chain image the record names that holds no backup snapshot any more
    // (its last delete found it busy, or a run was killed) goes now, as
    // Cinder's _try_delete_base_image removes a base image without snapshots.
    const elsewhere = images.some((image) => image.snapshots.some((s) => parseBackupSnapshotName(s.name)?.backupId === backupId));
    // Only an image that is debris by our mark, or that carries this very
    // backup's id: a snapshot-less image of another name may be another
    // backup's legacy copy.
    const emptied = named !== undefined && !isChainImage(named) && (named.incomplete !== undefined || named.suffix === backupId);
    const found = emptied && !elsewhere
      ? { image: named, snapshot: undefined }
      : locateBackup(images, location, operation);
    scope.checkpoint();
    scope.doing = 'removing the backup';
    const removed = await removeBackup(pool, found, backupId, operation);
    if (removed.removedImages.length === images.length) {
      // The volume has no backups left; its lock object goes too (while
      // still locked, so no other run is using it).
      scope.defer(`remove the lock object ${pool.spec}/${lockObjectName(subject)}`, pool, () => lock.retire());
    }
    scope.checkpoint();
    const removedSourceSnapshot = sourcePool !== undefined && found.snapshot !== undefined &&
      await removeSourceSnapshot(config, sourcePool, subject, found.snapshot.name)
      ? found.snapshot.name : undefined;
    const result = { ...removed, removedSourceSnapshot };
    logBackup('deleted backup %s: %o', backupId, result);
    return result;
  });
}
