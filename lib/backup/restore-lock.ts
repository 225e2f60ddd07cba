/**
 * What keeps restores into one volume apart and lets a retry know what a
 * killed one left: the target's restore lock, and the marks a restore puts
 * on a volume until it holds the whole backup.
 */
import { RESUME_KEY } from '../engine/resume.js';
import type { Pool } from '../ceph/pool.js';
import { removeImageWithSnapshots, type OperationScope } from './cleanup.js';
import type { ResolvedConfig } from './config.js';
import { backupIdNote, restoreLockObjectName, VolumeLock, type LockHolder } from './lock.js';
import { logBackup } from './log.js';
import { sourceImageName, type Subject } from './naming.js';
import { openImageIfExists } from './open-image.js';

/**
 * Image metadata a restore sets on a volume it creates, until the volume
 * holds the whole backup: a volume carrying it that no live restore is
 * working on was left by a killed one, and is removed.
 */
export const RESTORING_KEY = 'rbd-backup.restoring';

/**
 * Image metadata a restore sets on an existing volume it writes into, until
 * the volume holds the whole backup: the data a failed restore left there is
 * its own, so a retry may overwrite it without force. Such a volume is never
 * removed (the restore did not create it).
 */
export const RESTORING_INTO_KEY = 'rbd-backup.restoring-into';

/** Whether a transfer into the image recorded progress there (engine/resume.ts). */
async function hasProgress(pool: Pool, name: string): Promise<boolean> {
  await using image = await pool.openImage(name, { readOnly: true });
  return (await image.getMetadata(RESUME_KEY)) !== undefined;
}

/** Whether the volume carries RESTORING_KEY: a half-restored volume of a dead restore, when its restore lock is ours. */
export async function isHalfRestored(pool: Pool, name: string): Promise<string | undefined> {
  const image = await openImageIfExists(pool, name, { readOnly: true });
  if (image === undefined) return undefined;
  await using opened = image;
  return await opened.getMetadata(RESTORING_KEY);
}

/**
 * Takes the target's restore lock for the rest of the call (no two
 * restores write one volume) and removes the half-restored volume a killed
 * restore left under the target's name, unless (resumable) it was a
 * restore of the same backup that recorded its progress there: then the
 * volume stays for this restore to pick up from (`resuming`). Returns also
 * the holder of a dead restore lock it broke, which may say whose data the
 * volume holds.
 */
export async function lockRestoreTarget(scope: OperationScope, config: ResolvedConfig, targetPool: Pool,
  target: Subject, backupId: string, resumable = false): Promise<{ broken: LockHolder | undefined; resuming: boolean }> {
  const name = sourceImageName(target);
  const lockObject = restoreLockObjectName(target);
  scope.doing = 'taking the target\'s restore lock';
  let broken: LockHolder | undefined;
  const lock = await VolumeLock.acquire(targetPool, target, scope.operation, {
    waitMs: config.lockWaitMs, ttlMs: config.lockTtlMs, object: lockObject, signal: scope.signal,
    note: backupIdNote(backupId), onBreak: (holder) => { broken = holder; },
  });
  scope.defer(`release the restore lock ${targetPool.spec}/${lockObject}`, targetPool, () => lock.release(), 'lock');
  // Another restore may take the volume over once this one's lock is lost: the undo steps then leave it alone.
  scope.guardBy(lock);
  // Removed while still locked, so no other restore is using it.
  scope.defer(`remove the restore lock object ${targetPool.spec}/${lockObject}`, targetPool, () => lock.retire());
  scope.doing = 'preparing the target volume';
  const leftBy = await isHalfRestored(targetPool, name);
  if (leftBy !== undefined) {
    if (resumable && leftBy === backupId && await hasProgress(targetPool, name)) {
      logBackup('%s/%s: a killed restore of backup %s left it half-restored with its progress; picking up there', targetPool.spec, name, leftBy);
      return { broken, resuming: true };
    }
    logBackup('%s/%s: removing the half-restored volume a killed restore of backup %s left', targetPool.spec, name, leftBy);
    scope.checkpoint();
    await removeImageWithSnapshots(targetPool, name);
  }
  return { broken, resuming: false };
}
