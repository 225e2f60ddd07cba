/**
 * gc: finds and removes, across a backup pool (and the pools of the source
 * volumes when named), what killed runs left and no later run of the same
 * volume has removed yet: unfinished chain images, source snapshots no chain
 * image holds, dead holders' locks, and volumes a killed restore created and
 * half-filled. A volume a live run is working on is skipped, never touched.
 */
import { BusyError, TimeoutError } from '../ceph/errors.js';
import type { Pool } from '../ceph/pool.js';
import { checkFlag, checkKnownKeys, checkName, everyKeyOf, optionalOptions } from '../ceph/validate.js';
import { callBudget } from './budget.js';
import { OperationScope, removeImageWithSnapshots } from './cleanup.js';
import type { ResolvedConfig } from './config.js';
import { openImageIfExists } from './open-image.js';
import { readBackupImages, trashedBackupSnapshots } from './inventory.js';
import { findLeftovers, removeLeftovers } from './leftovers.js';
import { lockObjectName, VolumeLock, type LockHolder } from './lock.js';
import { logBackup } from './log.js';
import {
  describeSubject, imageSpec, imageSubject, restoreLockObjectName, sourceImageName, subjectOfBackupImage, volumeOfVolumeImage,
  volumeSubject, type Subject,
} from './naming.js';
import { isHalfRestored } from './restore-lock.js';

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

/** Every option gc takes: another (a typo of dryRun) is refused, not ignored. */
export const GC_OPTIONS = everyKeyOf<GcOptions>()(['dryRun', 'sourcePool', 'timeoutMs']);

export interface GcResult {
  /** Unfinished chain images, and half-restored volumes (pool/name). */
  removedImages: string[];
  /** Source snapshots no chain image holds, and backup snapshots left in the trash (pool/image@snapshot). */
  removedSnapshots: string[];
  /** Locks of holders that answered no notify, broken after fencing them. */
  brokenLocks: Array<{ object: string; holder: LockHolder }>;
  /**
   * Volumes and named images a live run holds, left alone: a volume by its
   * id, a named image by pool[/namespace]/name in `image` (its volumeId '',
   * as in its records).
   */
  skipped: Array<{ volumeId: string; image?: string; reason: string }>;
  dryRun: boolean;
}

/** How a result names a subject: its volume id, or its image's pool[/namespace]/name. */
function named(subject: Subject): { volumeId: string; image?: string } {
  return subject.kind === 'volume' ? { volumeId: subject.volumeId } : { volumeId: '', image: imageSpec(subject) };
}

/**
 * The subject's own image, when it is in the source pool gc was given: a
 * volume's is wherever that pool is (Cinder's names carry no pool), a named
 * image's only when that is its pool.
 */
async function openSourceIfAny(scope: OperationScope, config: ResolvedConfig, sourcePool: Pool | undefined, subject: Subject) {
  if (!sourcePool) return undefined;
  let pool = sourcePool;
  if (subject.kind === 'image') {
    if (subject.pool !== sourcePool.name) return undefined;
    if (subject.namespace !== '') pool = await scope.adopt(config.source.pool(subject.pool, subject.namespace));
  }
  return openImageIfExists(pool, sourceImageName(subject));
}

async function collectVolume(scope: OperationScope, config: ResolvedConfig, backupPool: Pool, sourcePool: Pool | undefined,
  subject: Subject, result: GcResult): Promise<void> {
  scope.doing = `looking at ${describeSubject(subject)}`;
  let lock: VolumeLock | undefined;
  if (result.dryRun) {
    const holder = await VolumeLock.liveHolder(backupPool, lockObjectName(subject));
    if (holder) {
      result.skipped.push({ ...named(subject), reason: `its lock is held by ${holder.description} (${holder.client} at ${holder.address})` });
      return;
    }
  } else {
    try {
      lock = await VolumeLock.acquire(backupPool, subject, 'gc', {
        waitMs: 0, ttlMs: config.lockTtlMs, onBusy: 'skip',
        onBreak: (holder) => result.brokenLocks.push({ object: `${backupPool.spec}/${lockObjectName(subject)}`, holder }),
      });
    } catch (error) {
      if (!(error instanceof BusyError)) throw error;
      result.skipped.push({ ...named(subject), reason: error.message });
      return;
    }
    const held = lock;
    scope.defer(`release the volume lock ${backupPool.spec}/${lockObjectName(subject)}`, backupPool, () => held.release(), 'lock');
    scope.guardBy(held);
  }
  const found = await openSourceIfAny(scope, config, sourcePool, subject);
  const volume = found && await scope.adopt(Promise.resolve(found));
  const images = await readBackupImages(backupPool, subject);
  const leftovers = findLeftovers(images, volume
    ? { names: (await volume.listSnapshots()).map((s) => s.name), trashed: await trashedBackupSnapshots(volume) }
    : undefined);
  // Source snapshots are listed only when the source image is at hand.
  const at = (snapshot: string): string => `${volume!.spec}@${snapshot}`;
  if (result.dryRun) {
    result.removedImages.push(...leftovers.images.map((i) => `${backupPool.spec}/${i.name}`));
    result.removedSnapshots.push(...leftovers.snapshots.map(at), ...leftovers.trashed.map(({ image, snapshot }) =>
      `${image === undefined ? volume!.spec : `${backupPool.spec}/${image}`}@${snapshot.name}`),
    ...leftovers.pending.map((p) => `${backupPool.spec}/${p.image}@${p.snapshot}`));
    return;
  }
  scope.checkpoint();
  const removed = await removeLeftovers(backupPool, volume, leftovers, subject);
  result.removedImages.push(...removed.removedImages.map((name) => `${backupPool.spec}/${name}`));
  result.removedSnapshots.push(...removed.removedSnapshots.map(at), ...removed.removedTrashed, ...removed.removedPending);
  const held = lock;
  if (held && removed.removedImages.length === images.length) {
    // Nothing of this volume is left here: its lock object goes too (while still locked).
    scope.defer(`remove the lock object ${backupPool.spec}/${lockObjectName(subject)}`, backupPool, () => held.retire());
  }
}

async function collectHalfRestored(scope: OperationScope, config: ResolvedConfig, pool: Pool, name: string, target: Subject,
  result: GcResult): Promise<void> {
  scope.doing = `looking at ${pool.spec}/${name}`;
  const backupId = await isHalfRestored(pool, name);
  if (backupId === undefined) return;
  if (result.dryRun) {
    if (!(await VolumeLock.liveHolder(pool, restoreLockObjectName(target)))) result.removedImages.push(`${pool.spec}/${name}`);
    return;
  }
  let lock: VolumeLock;
  try {
    lock = await VolumeLock.acquire(pool, target, 'gc', {
      waitMs: 0, ttlMs: config.lockTtlMs, onBusy: 'skip', object: restoreLockObjectName(target),
      onBreak: (holder) => result.brokenLocks.push({ object: `${pool.spec}/${restoreLockObjectName(target)}`, holder }),
    });
  } catch (error) {
    if (!(error instanceof BusyError)) throw error;
    result.skipped.push({ ...named(target), reason: error.message });
    return;
  }
  const lockObject = `${pool.spec}/${restoreLockObjectName(target)}`;
  scope.defer(`release the restore lock ${lockObject}`, pool, () => lock.release(), 'lock');
  scope.guardBy(lock);
  scope.defer(`remove the restore lock object ${lockObject}`, pool, () => lock.retire());
  // Looked at again under the lock: a restore may have finished meanwhile.
  if (await isHalfRestored(pool, name) === undefined) return;
  scope.checkpoint();
  logBackup('gc: removing %s/%s, half-restored from backup %s by a restore that did not finish', pool.spec, name, backupId);
  await removeImageWithSnapshots(pool, name);
  result.removedImages.push(`${pool.spec}/${name}`);
}

/** An image of the source pool as a restore target names it: a volume, or a named image; undefined for a name no target can have. */
function restoreTargetOf(pool: Pool, name: string): Subject | undefined {
  const volumeId = volumeOfVolumeImage(name);
  if (volumeId !== undefined) return volumeSubject(volumeId, 'gc');
  try {
    return imageSubject({ pool: pool.name, namespace: pool.namespace, image: name }, 'gc');
  } catch {
    // Too long for its restore lock's name: no restore can have written it.
    return undefined;
  }
}

export async function runGc(config: ResolvedConfig, given?: GcOptions): Promise<GcResult> {
  const operation = 'gc';
  const options = optionalOptions(given, operation);
  checkKnownKeys(options, GC_OPTIONS, operation);
  checkFlag('dryRun', options.dryRun, operation, config.backupPool);
  if (options.sourcePool !== undefined) checkName('pool', options.sourcePool, operation, options.sourcePool);
  const budget = callBudget(options.timeoutMs, [config.source, config.backupCluster], operation, config.backupPool);
  const result: GcResult = { removedImages: [], removedSnapshots: [], brokenLocks: [], skipped: [], dryRun: options.dryRun === true };
  return OperationScope.run({ operation, resource: config.backupPool, timeoutMs: budget.timeoutMs }, async (scope) => {
    scope.doing = 'listing the pools';
    const backupPool = await scope.adopt(config.backupCluster.pool(config.backupPool));
    const sourcePool = options.sourcePool === undefined ? undefined : await scope.adopt(config.source.pool(options.sourcePool));
    const subjects = new Map<string, Subject>();
    for (const name of await backupPool.listImages()) {
      const subject = subjectOfBackupImage(name);
      if (subject !== undefined) subjects.set(subject.key, subject);
    }
    // Restore targets: volumes, and images a restore into a named image may have made.
    const targets = sourcePool ? (await sourcePool.listImages()).flatMap((name) => {
      const target = restoreTargetOf(sourcePool, name);
      return target ? [{ name, target }] : [];
    }) : [];
    if (budget.grows) scope.extend((subjects.size + targets.length) * budget.opTimeoutMs);
    for (const subject of subjects.values()) {
      // One volume's failure (a busy image) must not keep gc from the others.
      await scope.nested(describeSubject(subject), (inner) => collectVolume(inner, config, backupPool, sourcePool, subject, result))
        .catch((error: unknown) => {
          if (error instanceof TimeoutError && scope.signal.aborted) throw error;
          result.skipped.push({ ...named(subject), reason: `failed: ${(error as Error).message}` });
        });
    }
    for (const { name, target } of targets) {
      await scope.nested(`${sourcePool!.spec}/${name}`, (inner) => collectHalfRestored(inner, config, sourcePool!, name, target, result));
    }
    logBackup('gc%s: %o', result.dryRun ? ' (dry run)' : '', result);
    return result;
  });
}
