/**
 * Reads a volume's backup images from the backup pool (no database): every
 * volume-<id>.backup.<suffix> image, its backup snapshots (and those a cut
 * short removal left in the trash), and whether a run of ours that created
 * it is still unfinished.
 */
import { NotFoundError } from '../ceph/errors.js';
import type { Image } from '../ceph/image.js';
import type { Pool } from '../ceph/pool.js';
import type { TrashedSnapshot } from '../ceph/snapshot.js';
import { backupSnapshots } from './chain.js';
import type { BackupImage } from './layout.js';
import { parseBackupImageName, parseBackupSnapshotName } from './naming.js';

/**
 * Image metadata a full backup sets on the chain image it creates and
 * removes once the backup is complete: a snapshot-less image carrying it is
 * what a killed run left, not a legacy full copy.
 */
export const INCOMPLETE_KEY = 'rbd-backup.incomplete';

/** Backup snapshots of an image in the trash namespace (by the name they had). */
export async function trashedBackupSnapshots(image: Image): Promise<TrashedSnapshot[]> {
  return (await image.listTrashedSnapshots()).filter((s) => parseBackupSnapshotName(s.originalName) !== undefined);
}

export async function readBackupImages(pool: Pool, volumeId: string): Promise<BackupImage[]> {
  const names = (await pool.listImages()).filter((name) => parseBackupImageName(volumeId, name) !== undefined);
  const images = await Promise.all(names.map(async (name): Promise<BackupImage | undefined> => {
    let opened;
    try {
      opened = await pool.openImage(name, { readOnly: true });
    } catch (error) {
      // Removed between the listing and the open (a delete elsewhere).
      if (error instanceof NotFoundError) return undefined;
      throw error;
    }
    await using image = opened;
    const [snapshots, stat, incomplete, trashed] = await Promise.all([
      image.listSnapshots(), image.stat(), image.getMetadata(INCOMPLETE_KEY), trashedBackupSnapshots(image),
    ]);
    const order = backupSnapshots(snapshots.map((s) => s.name));
    return {
      name,
      suffix: parseBackupImageName(volumeId, name)!,
      size: stat.size,
      createdAt: stat.createdAt,
      snapshots: order.map((n) => snapshots.find((s) => s.name === n)!),
      incomplete,
      trashed,
    };
  }));
  return images.filter((image): image is BackupImage => image !== undefined);
}
