/**
 * One backup of one volume, with Cinder's Ceph semantics: a
 * volume-<id>.backup.base image in the backup pool, one snapshot per backup
 * on the source and (carried over by the transfer) on the base image, and
 * incrementals as snapshot-to-snapshot diffs. On failure nothing half-made
 * remains: the new source snapshot goes, and so does a base image this run
 * created.
 */
import { randomUUID } from 'node:crypto';
import { AlreadyExistsError, NotFoundError } from '../ceph/errors.js';
import { cancelledError } from '../ceph/cancel.js';
import type { Image } from '../ceph/image.js';
import type { Pool } from '../ceph/pool.js';
import { checkName } from '../ceph/validate.js';
import { transferDiff, type TransferStats } from '../engine/transfer.js';
import type { Progress } from '../engine/options.js';
import { decideChain, snapshotsToTrim } from './chain.js';
import { removeImageWithSnapshots, undo } from './cleanup.js';
import { BASE_IMAGE_FEATURES, type ResolvedConfig } from './config.js';
import { lockObjectName, VolumeLock } from './lock.js';
import { logBackup } from './log.js';
import { removeMetaObject } from './meta.js';
import {
  backupSnapshotName, baseImageName, checkId, metaObjectName, parseBackupSnapshotName, volumeImageName,
} from './naming.js';
import { newRecord, type BackupRecord } from './record.js';

export interface BackupRequest {
  /** The source pool holding volume-<volumeId>. */
  pool: string;
  volumeId: string;
  /** Default: a new UUID. */
  backupId?: string;
  /** Make an incremental from this backup's snapshot. */
  parentId?: string;
  /** A full backup even when an incremental is possible. */
  full?: boolean;
  /** Written to backup.<backupId>.meta (Cinder's version 2 metadata object). */
  volumeMetadata?: VolumeMetadata;
  displayName?: string;
  displayDescription?: string;
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
  /** The backup's snapshot, on the source volume and on the base image. */
  snapshot: string;
  /** Where the incremental started; undefined for a full backup. */
  fromSnapshot: string | undefined;
  mode: 'full' | 'incremental';
  /** Why an incremental became a full backup, when it did. */
  convertedToFull: string | undefined;
  baseImage: string;
  stats: TransferStats;
}


/**
 * A killed or failed transfer leaves writes on the base image head past its
 * newest snapshot; an incremental from that snapshot would carry them into
 * the next one. Put the head back first when it differs.
 */
async function ensureCleanHead(base: Image, fromSnapshot: string): Promise<void> {
  const snap = (await base.listSnapshots()).find((s) => s.name === fromSnapshot);
  let dirty = snap !== undefined && snap.size !== (await base.stat()).size;
  if (!dirty) {
    for await (const batch of base.diff({ fromSnapshot, wholeObject: true })) {
      if (batch.length > 0) {
        dirty = true;
        break;
      }
    }
  }
  if (dirty) {
    logBackup('base %s head changed since %s (an interrupted run); rolling back', base.spec, fromSnapshot);
    await base.rollbackSnapshot(fromSnapshot);
  }
}

export async function runBackup(config: ResolvedConfig, request: BackupRequest): Promise<BackupResult> {
  const operation = 'backup';
  const volumeId = checkId('volume', request.volumeId, operation);
  const backupId = checkId('backup', request.backupId ?? randomUUID(), operation);
  if (request.parentId !== undefined) checkId('backup', request.parentId, operation);
  checkName('pool', request.pool, operation, `${String(request.pool)}/${volumeImageName(volumeId)}`);
  if (request.signal?.aborted) throw cancelledError(operation, `volume ${volumeId}`, request.signal);
  const volumeName = volumeImageName(volumeId);
  const baseName = baseImageName(volumeId);

  const sourcePool = await config.source.pool(request.pool);
  const opened: Array<Image | Pool> = [sourcePool];
  let lock: VolumeLock | undefined;
  try {
    const backupPool = await config.backupCluster.pool(config.backupPool);
    opened.push(backupPool);
    let volume: Image;
    try {
      volume = await sourcePool.openImage(volumeName);
    } catch (error) {
      if (error instanceof NotFoundError) {
        throw new NotFoundError({
          code: 'ENOENT', operation, resource: `${sourcePool.spec}/${volumeName}`,
          detail: `volume ${volumeId} does not exist in pool ${sourcePool.spec}`,
        });
      }
      throw error;
    }
    opened.push(volume);
    lock = await VolumeLock.acquire(backupPool, volumeId, operation,
      { waitMs: config.lockWaitMs, ttlMs: config.lockTtlMs });
    const signal = request.signal ? AbortSignal.any([request.signal, lock.lost]) : lock.lost;

    const baseExists = await backupPool.imageExists(baseName);
    let base: Image | undefined = baseExists ? await backupPool.openImage(baseName) : undefined;
    if (base) opened.push(base);
    const ofThisBackup = (name: string): boolean => parseBackupSnapshotName(name)?.backupId === backupId;
    let sourceSnapshots = (await volume.listSnapshots()).map((s) => s.name);
    const baseSnapshots = base ? (await base.listSnapshots()).map((s) => s.name) : undefined;
    // A backup id names one backup: a second one under it would give the
    // base image two restore points for it, and no restore could choose.
    const reused = (baseSnapshots ?? []).find(ofThisBackup);
    if (reused !== undefined) {
      throw new AlreadyExistsError({
        code: 'EEXIST', operation, resource: `volume ${volumeId}`,
        detail: `backup id ${backupId} is already used (snapshot ${reused} of ${backupPool.spec}/${baseName})`,
      });
    }
    // The base snapshot is made only once every byte is written, so
    // without it this id holds no backup here: a source snapshot of it is
    // what an interrupted run of this same backup (killed, or whose
    // clean-up failed) or a deleted backup of that id left behind.
    // Removing it lets the retry succeed instead of refusing the id forever.
    for (const leftover of sourceSnapshots.filter(ofThisBackup)) {
      logBackup('backup %s of volume %s: removing %s, left by an earlier run that did not finish', backupId, volumeId, leftover);
      await volume.removeSnapshot(leftover);
    }
    sourceSnapshots = sourceSnapshots.filter((name) => !ofThisBackup(name));
    const decision = decideChain({ sourceSnapshots, baseSnapshots, parentId: request.parentId, full: request.full });
    const fromSnapshot = decision.mode === 'incremental' ? decision.fromSnapshot : undefined;
    const convertedToFull = decision.mode === 'converted' ? decision.reason : undefined;
    if (convertedToFull) logBackup('volume %s: %s; taking a full backup instead', volumeId, convertedToFull);

    const snapshot = backupSnapshotName(backupId);
    const { size } = await volume.stat();
    let createdBase = false;
    let createdSnapshot = false;
    let metaWritten = false;
    try {
      if (!base) {
        await backupPool.createImage(baseName, size, {
          features: BASE_IMAGE_FEATURES,
          ...(config.stripeUnit > 0n ? { stripeUnit: config.stripeUnit } : {}),
          ...(config.stripeCount > 0n ? { stripeCount: config.stripeCount } : {}),
        });
        createdBase = true;
        base = await backupPool.openImage(baseName);
        opened.push(base);
      } else if (fromSnapshot) {
        await ensureCleanHead(base, fromSnapshot);
      }
      await volume.createSnapshot(snapshot);
      createdSnapshot = true;
      logBackup('backup %s of volume %s: %s from %s', backupId, volumeId, decision.mode, fromSnapshot ?? '(start)');
      const stats = await transferDiff({
        source: volume, snapshot, fromSnapshot, target: base,
        signal, onProgress: request.onProgress,
        concurrency: config.ioConcurrency, memoryBytes: config.memoryBytes,
      });
      if (request.volumeMetadata !== undefined) {
        // Set before the write: one that fails (a timeout) may still have
        // been applied, and must be undone too.
        metaWritten = true;
        try {
          await backupPool.writeObject(metaObjectName(backupId),
            JSON.stringify({ version: 2, ...request.volumeMetadata }), { exclusive: true });
        } catch (error) {
          // Refused because one was there already: that one is not ours.
          if (error instanceof AlreadyExistsError) metaWritten = false;
          throw error;
        }
      }
      // The backup is complete: trimming old source snapshots is
      // housekeeping, and its failure must not undo the backup.
      await undo('trim source snapshots', async () => {
        const names = (await volume.listSnapshots()).map((s) => s.name);
        for (const old of snapshotsToTrim(names, config.maxSourceSnapshots)) {
          await undo(`trim source snapshot ${old}`, () => volume.removeSnapshot(old));
        }
      });
      const now = new Date();
      const record = newRecord({
        id: backupId, volumeId, container: config.backupPool, baseImage: baseName, sizeBytes: size,
        parentId: decision.mode === 'incremental' ? decision.parentId : null,
        createdAt: now, updatedAt: now,
        displayName: request.displayName, displayDescription: request.displayDescription,
      });
      return {
        record, snapshot, fromSnapshot, baseImage: baseName, stats, convertedToFull,
        mode: fromSnapshot ? 'incremental' : 'full',
      };
    } catch (error) {
      logBackup('backup %s of volume %s failed: %s; cleaning up', backupId, volumeId, (error as Error).message);
      if (metaWritten) await undo('remove the new .meta object', async () => { await removeMetaObject(backupPool, backupId); });
      if (createdSnapshot) await undo('remove the new source snapshot', () => volume.removeSnapshot(snapshot));
      const failedBase = base;
      if (failedBase && !createdBase && await failedBase.snapshotExists(snapshot).catch(() => false)) {
        await undo('remove the new base snapshot', () => failedBase.removeSnapshot(snapshot));
      }
      if (createdBase) {
        if (failedBase) {
          await undo('close the new base image', () => failedBase.close());
          opened.splice(opened.indexOf(failedBase), 1);
        }
        await undo('remove the new base image', () => removeImageWithSnapshots(backupPool, baseName));
        // The volume has no backups after all: its lock object goes too
        // (while still locked, so no other run is using it).
        await undo('remove the lock object', () => backupPool.removeObject(lockObjectName(volumeId)));
      }
      throw error;
    }
  } finally {
    // The lock lives on an object of the backup pool: release it while that is still open.
    if (lock) await undo('release the volume lock', () => lock!.release());
    for (const handle of opened.reverse()) await undo('close', () => handle.close());
  }
}
