/**
 * What killed runs leave in a volume's backups: source snapshots that no
 * chain image holds (whatever backup id they carry), chain images whose
 * first backup never finished, backup snapshots whose removal an OSD
 * fault cut short, left in the trash namespace, and the snapshots (and old
 * marks) of incrementals that never completed. The next backup of the
 * volume and `gc` remove them, under the volume's lock, so no run that made
 * them is alive.
 */
import type { Image } from '../ceph/image.js';
import type { Pool } from '../ceph/pool.js';
import type { TrashedSnapshot } from '../ceph/snapshot.js';
import { removeBackupInfo } from './backup-info.js';
import { orphanSourceSnapshots } from './chain.js';
import { INCOMPLETE_KEY } from './inventory.js';
import { removeImageWithSnapshots, undo } from './cleanup.js';
import { unfinishedImages, type BackupImage } from './layout.js';
import { logBackup } from './log.js';
import { removeDigests } from './digests.js';
import { removeMetaObject } from './meta.js';
import { describeSubject, parseUnfinishedImageName, type Subject } from './naming.js';

export interface Leftovers {
  /** Backup snapshots on the source volume that no chain image holds. */
  snapshots: string[];
  /** Chain images a run created and never finished. */
  images: BackupImage[];
  /** Trashed backup snapshots: on the source volume (image undefined) and on the chain images that stay. */
  trashed: Array<{ image: string | undefined; snapshot: TrashedSnapshot }>;
  /**
   * Snapshots of backups that never completed, in chain images that stay
   * (with the pending mark, which goes with its snapshot; a mark alone
   * stays: a stalled OSD may still write the snapshot it stands for).
   */
  pending: Array<{ image: string; backupId: string; snapshot: string; marked: boolean }>;
}

/** The source volume's snapshots, user and trashed, when it is at hand. */
export interface SourceSnapshots {
  names: readonly string[];
  trashed: readonly TrashedSnapshot[];
}

export function findLeftovers(images: readonly BackupImage[], source: SourceSnapshots | undefined): Leftovers {
  const unfinished = unfinishedImages(images);
  return {
    pending: images.filter((i) => !unfinished.includes(i)).flatMap((i) => i.pending
      .map((p) => ({ image: i.name, backupId: p.backupId, snapshot: p.snapshot.name, marked: p.marked }))),
    snapshots: source ? orphanSourceSnapshots(source.names, images) : [],
    images: unfinished,
    trashed: [
      ...(source?.trashed ?? []).map((snapshot) => ({ image: undefined, snapshot })),
      // An unfinished image goes whole, its trash with it.
      ...images.filter((i) => !unfinished.includes(i)).flatMap((i) => i.trashed.map((snapshot) => ({ image: i.name, snapshot }))),
    ],
  };
}

/**
 * Removes them; a source snapshot that cannot go (protected: something was
 * cloned from it) stays, and is not reported as removed.
 */
export async function removeLeftovers(backupPool: Pool, volume: Image | undefined, leftovers: Leftovers,
  subject: Subject): Promise<{ removedSnapshots: string[]; removedImages: string[]; removedTrashed: string[]; removedPending: string[] }> {
  const removedSnapshots: string[] = [];
  for (const orphan of volume ? leftovers.snapshots : []) {
    logBackup('%s: removing source snapshot %s, which no chain image holds (a killed run or a deleted backup left it)', describeSubject(subject), orphan);
    await undo(`remove source snapshot ${orphan}`, async () => {
      await volume!.removeSnapshot(orphan);
      removedSnapshots.push(orphan);
    });
  }
  const removedTrashed: string[] = [];
  for (const { image, snapshot } of leftovers.trashed) {
    if (image === undefined && !volume) continue;
    const where = image === undefined ? volume!.spec : `${backupPool.spec}/${image}`;
    logBackup('%s: removing %s@%s, backup snapshot %s left in the trash by a removal cut short', describeSubject(subject), where,
      snapshot.name, snapshot.originalName);
    // A trashed snapshot a clone still uses cannot go yet; it is tried again next time.
    await undo(`remove trashed snapshot ${where}@${snapshot.name}`, async () => {
      if (image === undefined) {
        await volume!.removeSnapshotById(snapshot.id);
      } else {
        await using chain = await backupPool.openImage(image);
        await chain.removeSnapshotById(snapshot.id);
      }
      removedTrashed.push(`${where}@${snapshot.name}`);
    });
  }
  const removedPending: string[] = [];
  for (const { image, backupId, snapshot, marked } of leftovers.pending) {
    logBackup('%s: %s@%s is no backup (backup %s did not complete with it); removing it', describeSubject(subject), image, snapshot, backupId);
    await undo(`remove ${image}@${snapshot}`, async () => {
      await using chain = await backupPool.openImage(image);
      await chain.removeSnapshot(snapshot);
      removedPending.push(`${backupPool.spec}/${image}@${snapshot}`);
      // Marked: the backup never completed, so its digests (written just
      // before it would have) are no one's. Unmarked, the id belongs to a
      // complete backup, whose digests stay.
      if (marked) {
        await removeBackupInfo(chain, backupId);
        await removeDigests(backupPool, backupId);
      }
    });
  }
  const removedImages: string[] = [];
  for (const image of leftovers.images) {
    logBackup('%s: removing %s, which holds no backup (left by backup %s)', describeSubject(subject), image.name, image.incomplete);
    // One that cannot go now (busy) must not fail the backup that found it: the next run tries again.
    await undo(`remove ${image.name}`, async () => {
      if (parseUnfinishedImageName(subject, image.name) === undefined) {
        // Stored before its snapshots go: one whose backups were all
        // pending is only known to hold none while they are there.
        await using emptied = await backupPool.openImage(image.name);
        await emptied.setMetadata(INCOMPLETE_KEY, image.incomplete!);
      }
      await removeImageWithSnapshots(backupPool, image.name);
      removedImages.push(image.name);
      // A run that did not finish may have written its .meta; under this
      // name the image (and so the backup id) is ours for sure.
      if (parseUnfinishedImageName(subject, image.name) !== undefined) {
        await removeMetaObject(backupPool, image.incomplete!);
        await removeDigests(backupPool, image.incomplete!);
      }
    });
  }
  return { removedSnapshots, removedImages, removedTrashed, removedPending };
}
