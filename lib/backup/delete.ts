/**
 * Deletion of one backup: its snapshot leaves the base image, the base
 * image goes with its last backup snapshot (retried while it is still
 * busy) or when it holds no snapshot at all, a legacy image goes whole, and
 * the .meta object goes too.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { BusyError, invalidArgument, NotFoundError } from '../ceph/errors.js';
import type { Pool } from '../ceph/pool.js';
import { backupSnapshots, restorePoints } from './chain.js';
import type { ResolvedConfig } from './config.js';
import { lockObjectName, VolumeLock } from './lock.js';
import { logBackup } from './log.js';
import { removeMetaObject } from './meta.js';
import { baseImageName, checkId, legacyImageName } from './naming.js';
import { recordBaseImage, type BackupRecord } from './record.js';

export interface DeleteResult {
  removedSnapshots: string[];
  /** Images removed: the base image with its last backup, or a legacy image. */
  removedImages: string[];
  removedMetadata: boolean;
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

export async function runDelete(config: ResolvedConfig, backup: BackupRecord): Promise<DeleteResult> {
  const operation = 'delete';
  if (!backup || typeof backup !== 'object') throw invalidArgument(operation, 'backup', 'a backup record is required');
  const backupId = checkId('backup', backup.id, operation);
  const volumeId = backup.volume_id ? checkId('volume', backup.volume_id, operation) : undefined;
  const baseName = recordBaseImage(backup) ?? (volumeId ? baseImageName(volumeId) : undefined);
  const pool = await config.backupCluster.pool(
    typeof backup.container === 'string' && backup.container ? backup.container : config.backupPool);
  const result: DeleteResult = { removedSnapshots: [], removedImages: [], removedMetadata: false };
  let lock: VolumeLock | undefined;
  try {
    const legacyName = volumeId ? legacyImageName(volumeId, backupId) : undefined;
    const notFound = (): NotFoundError => new NotFoundError({
      code: 'ENOENT', operation, resource: `${pool.spec}/${baseName ?? `backup ${backupId}`}`,
      detail: `no snapshot or image of backup ${backupId} was found${result.removedMetadata ? ' (its .meta object was removed)' : ''}`,
    });
    // Nothing to lock (and no lock object to create) for a volume without backups here.
    const present = await pool.listImages();
    if (!present.some((name) => name === baseName || name === legacyName)) throw notFound();
    if (volumeId) {
      lock = await VolumeLock.acquire(pool, volumeId, operation, { waitMs: config.lockWaitMs, ttlMs: config.lockTtlMs });
    }
    const images = await pool.listImages();
    if (baseName && images.includes(baseName)) {
      const base = await pool.openImage(baseName);
      let remaining: string[];
      let hadSnapshots: boolean;
      try {
        const snapshots = await base.listSnapshots();
        hadSnapshots = snapshots.length > 0;
        for (const name of restorePoints(snapshots.map((s) => s.name), backupId)) {
          if (snapshots.find((s) => s.name === name)?.protected) await base.unprotectSnapshot(name);
          await base.removeSnapshot(name);
          result.removedSnapshots.push(name);
        }
        remaining = backupSnapshots((await base.listSnapshots()).map((s) => s.name));
      } finally {
        await base.close();
      }
      // The base image goes with its last backup, and also when it holds no
      // snapshot at all: then an earlier delete removed the last backup but
      // not the image (it was busy), or a first backup was killed, and
      // nothing else would ever remove it.
      if (remaining.length === 0 && (result.removedSnapshots.length > 0 || !hadSnapshots)) {
        await removeImageRetrying(pool, baseName);
        result.removedImages.push(baseName);
        // The volume has no backups left; its lock object goes too (while
        // still locked, so no other run is using it).
        if (volumeId) await pool.removeObject(lockObjectName(volumeId)).catch(() => undefined);
      }
    }
    if (legacyName && images.includes(legacyName)) {
      await removeImageRetrying(pool, legacyName);
      result.removedImages.push(legacyName);
    }
    result.removedMetadata = await removeMetaObject(pool, backupId);
    if (result.removedSnapshots.length === 0 && result.removedImages.length === 0) throw notFound();
    logBackup('deleted backup %s: %o', backupId, result);
    return result;
  } finally {
    await lock?.release().catch(() => undefined);
    await pool.close();
  }
}
