/**
 * gc: finds and removes, across a backup pool (and the pools of the source
 * volumes when named), what killed runs left and no later run of the same
 * volume has removed yet: unfinished chain images, source snapshots no chain
 * image holds, dead holders' locks, and volumes a killed restore created and
 * half-filled. A volume a live run is working on is skipped, never touched.
 */
import { BusyError, NotFoundError, TimeoutError } from '../ceph/errors.js';
import type { Pool } from '../ceph/pool.js';
import { checkName } from '../ceph/validate.js';
import { callBudget } from './budget.js';
import { OperationScope, removeImageWithSnapshots } from './cleanup.js';
import type { ResolvedConfig } from './config.js';
import { readBackupImages, trashedBackupSnapshots } from './inventory.js';
import { findLeftovers, removeLeftovers } from './leftovers.js';
import { lockObjectName, restoreLockObjectName, VolumeLock, type LockHolder } from './lock.js';
import { logBackup } from './log.js';
import { volumeImageName, volumeOfBackupImage, volumeOfVolumeImage } from './naming.js';
import { isHalfRestored } from './restore.js';

export interface GcOptions {
  /** Report, remove nothing (and break no lock). */
  dryRun?: boolean;
  /**
   * The pool of the source volumes: their orphan backup snapshots go too,
   * and half-restored volumes there are found.
   */
  sourcePool?: string;
  /**
   * The call's time budget, clean-up included. Default: three op timeouts
   * of the connections, plus one per volume it looks at (see budget.ts).
   */
  timeoutMs?: number;
}

export interface GcResult {
  /** Unfinished chain images, and half-restored volumes (pool/name). */
  removedImages: string[];
  /** Source snapshots no chain image holds, and backup snapshots left in the trash (pool/image@snapshot). */
  removedSnapshots: string[];
  /** Locks of holders that answered no notify, broken after fencing them. */
  brokenLocks: Array<{ object: string; holder: LockHolder }>;
  /** Volumes a live run holds, left alone. */
  skipped: Array<{ volumeId: string; reason: string }>;
  dryRun: boolean;
}

async function openVolumeIfAny(pool: Pool | undefined, volumeId: string) {
  if (!pool) return undefined;
  try {
    return await pool.openImage(volumeImageName(volumeId));
  } catch (error) {
    if (error instanceof NotFoundError) return undefined;
    throw error;
  }
}

async function collectVolume(scope: OperationScope, config: ResolvedConfig, backupPool: Pool, sourcePool: Pool | undefined,
  volumeId: string, result: GcResult): Promise<void> {
  scope.doing = `looking at volume ${volumeId}`;
  let lock: VolumeLock | undefined;
  if (result.dryRun) {
    const holder = await VolumeLock.liveHolder(backupPool, lockObjectName(volumeId));
    if (holder) {
      result.skipped.push({ volumeId, reason: `its lock is held by ${holder.description} (${holder.client} at ${holder.address})` });
      return;
    }
  } else {
    try {
      lock = await VolumeLock.acquire(backupPool, volumeId, 'gc', {
        waitMs: 0, ttlMs: config.lockTtlMs, onBusy: 'skip',
        onBreak: (holder) => result.brokenLocks.push({ object: `${backupPool.spec}/${lockObjectName(volumeId)}`, holder }),
      });
    } catch (error) {
      if (!(error instanceof BusyError)) throw error;
      result.skipped.push({ volumeId, reason: error.message });
      return;
    }
    const held = lock;
    scope.defer(`release the volume lock ${backupPool.spec}/${lockObjectName(volumeId)}`, backupPool, () => held.release(), 'lock');
  }
  const found = await openVolumeIfAny(sourcePool, volumeId);
  const volume = found && await scope.adopt(Promise.resolve(found));
  const images = await readBackupImages(backupPool, volumeId);
  const leftovers = findLeftovers(images, volume
    ? { names: (await volume.listSnapshots()).map((s) => s.name), trashed: await trashedBackupSnapshots(volume) }
    : undefined);
  const at = (snapshot: string): string => `${sourcePool!.spec}/${volumeImageName(volumeId)}@${snapshot}`;
  if (result.dryRun) {
    result.removedImages.push(...leftovers.images.map((i) => `${backupPool.spec}/${i.name}`));
    result.removedSnapshots.push(...leftovers.snapshots.map(at), ...leftovers.trashed.map(({ image, snapshot }) =>
      `${image === undefined ? `${sourcePool!.spec}/${volumeImageName(volumeId)}` : `${backupPool.spec}/${image}`}@${snapshot.name}`));
    return;
  }
  scope.checkpoint();
  const removed = await removeLeftovers(backupPool, volume, leftovers, volumeId);
  result.removedImages.push(...removed.removedImages.map((name) => `${backupPool.spec}/${name}`));
  result.removedSnapshots.push(...removed.removedSnapshots.map(at), ...removed.removedTrashed);
  const held = lock;
  if (held && removed.removedImages.length === images.length) {
    // Nothing of this volume is left here: its lock object goes too (while still locked).
    scope.defer(`remove the lock object ${backupPool.spec}/${lockObjectName(volumeId)}`, backupPool, () => held.retire());
  }
}

async function collectHalfRestored(scope: OperationScope, config: ResolvedConfig, pool: Pool, name: string, volumeId: string,
  result: GcResult): Promise<void> {
  scope.doing = `looking at ${pool.spec}/${name}`;
  const backupId = await isHalfRestored(pool, name);
  if (backupId === undefined) return;
  if (result.dryRun) {
    if (!(await VolumeLock.liveHolder(pool, restoreLockObjectName(volumeId)))) result.removedImages.push(`${pool.spec}/${name}`);
    return;
  }
  let lock: VolumeLock;
  try {
    lock = await VolumeLock.acquire(pool, volumeId, 'gc', {
      waitMs: 0, ttlMs: config.lockTtlMs, onBusy: 'skip', object: restoreLockObjectName(volumeId),
      onBreak: (holder) => result.brokenLocks.push({ object: `${pool.spec}/${restoreLockObjectName(volumeId)}`, holder }),
    });
  } catch (error) {
    if (!(error instanceof BusyError)) throw error;
    result.skipped.push({ volumeId, reason: error.message });
    return;
  }
  const lockObject = `${pool.spec}/${restoreLockObjectName(volumeId)}`;
  scope.defer(`release the restore lock ${lockObject}`, pool, () => lock.release(), 'lock');
  scope.defer(`remove the restore lock object ${lockObject}`, pool, () => lock.retire());
  // Looked at again under the lock: a restore may have finished meanwhile.
  if (await isHalfRestored(pool, name) === undefined) return;
  scope.checkpoint();
  logBackup('gc: removing %s/%s, half-restored from backup %s by a restore that did not finish', pool.spec, name, backupId);
  await removeImageWithSnapshots(pool, name);
  result.removedImages.push(`${pool.spec}/${name}`);
}

export async function runGc(config: ResolvedConfig, options: GcOptions = {}): Promise<GcResult> {
  const operation = 'gc';
  if (options.sourcePool !== undefined) checkName('pool', options.sourcePool, operation, options.sourcePool);
  const budget = callBudget(options.timeoutMs, [config.source, config.backupCluster], operation, config.backupPool);
  const result: GcResult = { removedImages: [], removedSnapshots: [], brokenLocks: [], skipped: [], dryRun: options.dryRun === true };
  return OperationScope.run({ operation, resource: config.backupPool, timeoutMs: budget.timeoutMs }, async (scope) => {
    scope.doing = 'listing the pools';
    const backupPool = await scope.adopt(config.backupCluster.pool(config.backupPool));
    const sourcePool = options.sourcePool === undefined ? undefined : await scope.adopt(config.source.pool(options.sourcePool));
    const volumeIds = new Set<string>();
    for (const name of await backupPool.listImages()) {
      const volumeId = volumeOfBackupImage(name);
      if (volumeId !== undefined) volumeIds.add(volumeId);
    }
    const volumes = sourcePool ? (await sourcePool.listImages()).filter((name) => volumeOfVolumeImage(name) !== undefined) : [];
    if (budget.grows) scope.extend((volumeIds.size + volumes.length) * budget.opTimeoutMs);
    for (const volumeId of volumeIds) {
      // One volume's failure (a busy image) must not keep gc from the others.
      await scope.nested(`volume ${volumeId}`, (inner) => collectVolume(inner, config, backupPool, sourcePool, volumeId, result))
        .catch((error: unknown) => {
          if (error instanceof TimeoutError && scope.signal.aborted) throw error;
          result.skipped.push({ volumeId, reason: `failed: ${(error as Error).message}` });
        });
    }
    for (const name of volumes) {
      await scope.nested(`${sourcePool!.spec}/${name}`,
        (inner) => collectHalfRestored(inner, config, sourcePool!, name, volumeOfVolumeImage(name)!, result));
    }
    logBackup('gc%s: %o', result.dryRun ? ' (dry run)' : '', result);
    return result;
  });
}
