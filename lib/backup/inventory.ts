/**
 * Reads a subject's backup images from the backup pool (no database): every
 * <key>.backup.<suffix> image (volume-<id>.backup.<suffix> for a volume), its backup snapshots (and those a cut
 * short removal left in the trash), and whether a run of ours that created
 * it is still unfinished.
 */
import type { Image } from '../ceph/image.js';
import type { Pool } from '../ceph/pool.js';
import type { SnapshotInfo, TrashedSnapshot } from '../ceph/snapshot.js';
import { BACKUP_INFO_PREFIX, decodeBackupInfos } from './backup-info.js';
import { backupSnapshots } from './chain.js';
import { openImageIfExists } from './open-image.js';
import type { BackupImage } from './layout.js';
import {
  parseBackupImageName, parseBackupSnapshotName, parseUnfinishedImageName, resolveSubject, type Subject,
} from './naming.js';

/**
 * Image metadata a delete sets on a chain image just before its last
 * backup snapshot goes: should the image outlive it (busy, or a killed
 * run), it is known to hold no backup (its head is a later backup's data,
 * not the full copy its name would suggest).
 */
export const INCOMPLETE_KEY = 'rbd-backup.incomplete';

/** Backup snapshots of an image in the trash namespace (by the name they had). */
export async function trashedBackupSnapshots(image: Image): Promise<TrashedSnapshot[]> {
  return (await image.listTrashedSnapshots()).filter((s) => parseBackupSnapshotName(s.originalName) !== undefined);
}

/** One image's facts, read one call at a time: a failed call leaves none in flight when the image closes. */
async function readImage(pool: Pool, subject: Subject, name: string): Promise<BackupImage | undefined> {
  const opened = await openImageIfExists(pool, name, { readOnly: true });
  // Removed between the listing and the open (a delete elsewhere).
  if (opened === undefined) return undefined;
  await using image = opened;
  const snapshots = await image.listSnapshots();
  const stat = await image.stat();
  const unfinished = parseUnfinishedImageName(subject, name);
  const trashed = await trashedBackupSnapshots(image);
  const infos = decodeBackupInfos(await image.listMetadata(BACKUP_INFO_PREFIX));
  const ordered = backupSnapshots(snapshots.map((s) => s.name)).map((n) => snapshots.find((s) => s.name === n)!);
  const idOf = (snapshot: SnapshotInfo): string => parseBackupSnapshotName(snapshot.name)!.backupId;
  const isBackup = (snapshot: SnapshotInfo): boolean => {
    const info = infos.get(idOf(snapshot));
    return info === undefined || (info.pendingSince === undefined && (info.snapshot ?? snapshot.name) === snapshot.name);
  };
  const complete = ordered.filter(isBackup);
  // Backup snapshots that are all pending (the others deleted): a chain
  // image holding no backup, never a legacy copy whose head is a backup.
  const onlyPending = complete.length === 0 && ordered.length > 0 ? idOf(ordered[0]) : undefined;
  const incomplete = unfinished ?? await image.getMetadata(INCOMPLETE_KEY) ?? onlyPending;
  return {
    name,
    suffix: unfinished ?? parseBackupImageName(subject, name)!,
    size: stat.size,
    createdAt: stat.createdAt,
    snapshots: complete,
    incomplete,
    trashed,
    infos,
    pending: ordered.filter((s) => !isBackup(s)).map((snapshot) => ({
      backupId: idOf(snapshot), snapshot, marked: infos.get(idOf(snapshot))!.pendingSince !== undefined,
    })),
  };
}

/** The subject's backup images (a string: a Cinder volume id). */
export async function readBackupImages(pool: Pool, of: Subject | string): Promise<BackupImage[]> {
  const subject = resolveSubject(of, 'readBackupImages');
  const names = (await pool.listImages()).filter((name) =>
    parseBackupImageName(subject, name) !== undefined || parseUnfinishedImageName(subject, name) !== undefined);
  // Settled, not Promise.all: a rejection must not leave the other reads
  // running while the caller goes on to close the pool.
  const settled = await Promise.allSettled(names.map((name) => readImage(pool, subject, name)));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<BackupImage | undefined>).value)
    .filter((image): image is BackupImage => image !== undefined);
}
