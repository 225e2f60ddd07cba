/**
 * Instant restore: the restore point, a snapshot on a chain image, is
 * protected and cloned into the target pool, so the volume is usable as
 * soon as the call returns (reads of what it does not hold yet go to the
 * backup), then flattened now, in the background or never. The
 * clone/flatten workflow OpenStack runs on Ceph (Nova disks and Glance
 * images, Cinder volumes from snapshots), put to restoring. Only within the
 * backup's cluster: a clone cannot reach into another one.
 */
import { AlreadyExistsError, BusyError, CephError, invalidArgument, NotFoundError } from '../ceph/errors.js';
import type { Cluster } from '../ceph/cluster.js';
import type { Image } from '../ceph/image.js';
import type { Pool } from '../ceph/pool.js';
import type { Progress } from '../engine/options.js';
import { unprotectIfUnused } from './clones.js';
import { removeImageWithSnapshots, undo, type OperationScope } from './cleanup.js';
import type { ResolvedConfig } from './config.js';
import { logBackup } from './log.js';
import { sourceImageName, type Subject } from './naming.js';
import { lockRestoreTarget, RESTORING_KEY } from './restore-lock.js';

export type FlattenMode = 'background' | 'now' | 'never';
export const FLATTEN_MODES: readonly FlattenMode[] = ['background', 'now', 'never'];

/** The flatten an instant restore with flatten: 'background' left running. */
export interface BackgroundFlatten {
  /**
   * Fulfilled once the volume holds all its data itself (and the backup's
   * snapshot is unprotected when no other clone reads from it); rejected
   * with the CephError that stopped it (CancelledError after cancel()),
   * the volume then still a whole, usable clone. Rejections are handled
   * already: leaving it unobserved never ends the process.
   */
  readonly done: Promise<void>;
  /** Stops the flatten; the volume stays a clone of the backup. */
  cancel(): void;
}

/** The flatten mode of an instant restore, or undefined for a restore that copies. */
export function checkInstantOptions(request: { instant?: unknown; flatten?: unknown }, operation: string,
  resource: string): FlattenMode | undefined {
  if (request.instant === undefined || request.instant === false) {
    if (request.flatten !== undefined) throw invalidArgument(operation, resource, 'flatten goes with instant: true');
    return undefined;
  }
  if (request.instant !== true) throw invalidArgument(operation, resource, 'instant must be true or false');
  const mode = request.flatten ?? 'background';
  if (!FLATTEN_MODES.includes(mode as FlattenMode)) {
    throw invalidArgument(operation, resource, `flatten must be one of ${FLATTEN_MODES.join(', ')}, got ${String(mode)}`);
  }
  return mode as FlattenMode;
}

async function sameCluster(a: Cluster, b: Cluster): Promise<boolean> {
  return a === b || (await a.fsid()) === (await b.fsid());
}

/** Refuses, before anything changes, what an instant restore cannot do. */
export async function refuseInstant(config: ResolvedConfig, backup: { snapshot: string | undefined; spec: string },
  targetIsRbd: boolean, operation: string, resource: string): Promise<void> {
  if (!targetIsRbd) {
    throw invalidArgument(operation, resource, 'an instant restore makes an RBD volume; for a file or a stream, restore without instant');
  }
  if (backup.snapshot === undefined) {
    throw invalidArgument(operation, resource,
      `${backup.spec} is a full copy without a snapshot (an old layout): there is nothing to clone; restore without instant`);
  }
  if (!(await sameCluster(config.source, config.backupCluster))) {
    throw invalidArgument(operation, resource,
      'an instant restore clones the backup, so the target pool must be in the backup\'s cluster, and the volumes\' cluster is another one: restore without instant');
  }
}

/** Refuses an existing target: a clone is a new image. */
export async function refuseExistingTarget(targetPool: Pool, name: string, operation: string): Promise<void> {
  if (!(await targetPool.imageExists(name))) return;
  throw new AlreadyExistsError({
    code: 'EEXIST', operation, resource: `${targetPool.spec}/${name}`,
    detail: 'an instant restore makes the volume as a clone of the backup, and this one exists: remove it, or restore without instant (force overwrites it)',
  });
}

/**
 * Flattens the clone, reporting progress in bytes as a copy does (nothing
 * is counted as read: librbd does the reading), the end included (librbd's
 * last report may be short of it).
 */
async function flattenClone(volume: Image, signal: AbortSignal, onProgress: ((progress: Progress) => void) | undefined): Promise<void> {
  const { size, objectSize } = await volume.stat();
  await volume.flatten({
    signal,
    ...(onProgress === undefined ? {} : {
      onProgress: (done: number) => {
        const bytes = BigInt(done) * objectSize;
        onProgress({ done: bytes < size ? bytes : size, total: size, bytesRead: 0n });
      },
    }),
  });
  onProgress?.({ done: size, total: size, bytesRead: 0n });
}

/** Clones tried when the snapshot's protection is lifted under them each time. */
const MAX_CLONE_ATTEMPTS = 3;

async function protect(chain: Image, snapshot: string): Promise<boolean> {
  if (await chain.isSnapshotProtected(snapshot)) return false;
  try {
    await chain.protectSnapshot(snapshot);
    return true;
  } catch (error) {
    // Another instant restore of the same backup protected it first.
    if (error instanceof BusyError && await chain.isSnapshotProtected(snapshot)) return false;
    throw error;
  }
}

export interface InstantRestore {
  scope: OperationScope;
  config: ResolvedConfig;
  /** The chain image and its restore-point snapshot, in the backup pool. */
  backup: { pool: Pool; image: string; snapshot: string };
  target: { pool: string; namespace: string; subject: Subject };
  backupId: string;
  mode: FlattenMode;
  signal: AbortSignal;
  onProgress: ((progress: Progress) => void) | undefined;
}

/**
 * The clone, made under the target's restore lock, flattened before the
 * call returns when mode is 'now'. A failure removes the clone and lifts
 * the protection it added.
 */
export async function restoreInstantly(job: InstantRestore): Promise<{ targetSpec: string }> {
  const { scope, config, backup, target } = job;
  const targetPool = await scope.adopt(config.source.pool(target.pool, target.namespace));
  const name = sourceImageName(target.subject);
  const targetSpec = `${targetPool.spec}/${name}`;
  await lockRestoreTarget(scope, config, targetPool, target.subject, job.backupId);
  await refuseExistingTarget(targetPool, name, scope.operation);

  scope.doing = 'protecting the backup\'s snapshot';
  const chain = await scope.adopt(backup.pool.openImage(backup.image));
  // The two undo steps run on different pools' lanes, at once: the
  // unprotect waits for the clone's removal, or it would still see the clone.
  let cloneHandled = (): void => undefined;
  const cloneRemoval = new Promise<void>((resolve) => { cloneHandled = resolve; });
  let protectedHere = false;
  const protectForClone = async (): Promise<void> => {
    if (!(await protect(chain, backup.snapshot)) || protectedHere) return;
    protectedHere = true;
    scope.onFailure(`unprotect ${chain.spec}@${backup.snapshot} unless a clone reads from it`, backup.pool, async () => {
      await cloneRemoval;
      await unprotectIfUnused(chain, backup.snapshot);
    });
  };
  await protectForClone();
  // Registered first: a clone whose creation timed out may still have been made.
  scope.onFailure(`remove the clone ${targetSpec}`, targetPool, async () => {
    try {
      scope.stillLocked(targetSpec);
      await removeImageWithSnapshots(targetPool, name, scope).catch((error: unknown) => {
        if (!(error instanceof NotFoundError)) throw error;
      });
    } finally {
      cloneHandled();
    }
  });
  scope.checkpoint();
  scope.doing = 'cloning the backup';
  // Format 1 clones need the snapshot protected and keep it so while they
  // depend on it: a delete of the backup cannot slip in between.
  // Through the target's connection: the two may be separate connections to one cluster.
  const parentPool = backup.pool.cluster === targetPool.cluster ? backup.pool : backup.pool.name;
  for (let attempt = 1; ; attempt++) {
    try {
      await targetPool.clone({ pool: parentPool, image: backup.image, snapshot: backup.snapshot }, name, { cloneFormat: 1 });
      break;
    } catch (error) {
      // Found protected by another instant restore of this backup, whose
      // flatten ended and lifted the protection before this clone was made
      // (librbd refuses a format 1 clone of an unprotected snapshot).
      const lifted = error instanceof CephError && error.code === 'EINVAL' && !(await chain.isSnapshotProtected(backup.snapshot));
      if (!lifted || attempt === MAX_CLONE_ATTEMPTS) throw error;
      logBackup('instant restore: %s@%s was unprotected before the clone (another restore\'s flatten ended); protecting it again',
        chain.spec, backup.snapshot);
      await protectForClone();
    }
  }
  logBackup('instant restore: %s@%s cloned to %s', chain.spec, backup.snapshot, targetSpec);
  // Marked as any volume a restore makes until the call is done: a clone a
  // killed call left is removed by the next restore into it, or by gc.
  const clone = await scope.adopt(targetPool.openImage(name));
  await clone.setMetadata(RESTORING_KEY, job.backupId);
  if (job.mode === 'now') {
    scope.doing = 'flattening the clone';
    await flattenClone(clone, job.signal, job.onProgress);
    await undo(`unprotect ${chain.spec}@${backup.snapshot}`, async () => { await unprotectIfUnused(chain, backup.snapshot); });
  }
  scope.checkpoint();
  await clone.removeMetadata(RESTORING_KEY);
  return { targetSpec };
}

/**
 * The flatten of a clone an instant restore made, after the call returned:
 * its own handles, closed when it ends.
 */
export function flattenInBackground(config: ResolvedConfig, clone: { pool: string; namespace: string; name: string },
  backup: { pool: string; image: string; snapshot: string }, onProgress?: (progress: Progress) => void): BackgroundFlatten {
  const controller = new AbortController();
  const done = (async () => {
    {
      await using pool = await config.source.pool(clone.pool, clone.namespace);
      await using volume = await pool.openImage(clone.name);
      await flattenClone(volume, controller.signal, onProgress);
      logBackup('instant restore: %s flattened', volume.spec);
    }
    await undo(`unprotect ${backup.pool}/${backup.image}@${backup.snapshot}`, async () => {
      await using pool = await config.backupCluster.pool(backup.pool);
      await using chain = await pool.openImage(backup.image);
      await unprotectIfUnused(chain, backup.snapshot);
    });
  })();
  done.catch((error: unknown) => logBackup('background flatten of %s/%s stopped: %s', clone.pool, clone.name, String(error)));
  return { done, cancel: () => controller.abort() };
}
