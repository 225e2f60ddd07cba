/**
 * The backups of one volume as its backup images hold them, in every layout
 * Cinder's Ceph driver has written: chain images (any
 * volume-<id>.backup.<suffix> holding backup snapshots: `.backup.base`
 * before Train, one per full backup since), legacy full copies (no backup
 * snapshot; their head is the backup), and images a run of ours left
 * unfinished. Pure: inventory.ts reads the images.
 */
import { NotFoundError } from '../ceph/errors.js';
import type { SnapshotInfo, TrashedSnapshot } from '../ceph/snapshot.js';
import type { BackupInfo } from './backup-info.js';
import { InconsistentBackupError } from './errors.js';
import { backupImageName, describeSubject, parseBackupSnapshotName, resolveSubject, type Subject } from './naming.js';

export interface BackupImage {
  name: string;
  /** 'base' or the backup id its name carries. */
  suffix: string;
  size: bigint;
  createdAt: Date;
  /** Its backup snapshots, oldest first. */
  snapshots: SnapshotInfo[];
  /**
   * Set when it holds no complete backup, whatever its snapshots: a full
   * backup's chain image under its unfinished name (the backup id), or one
   * a delete emptied (the last backup's id).
   */
  incomplete: string | undefined;
  /** Backup snapshots in the trash namespace: a removal an OSD fault cut short left them. */
  trashed: TrashedSnapshot[];
  /** What the pool keeps of its backups beside their snapshots, by backup id (backup-info.ts). */
  infos: ReadonlyMap<string, BackupInfo>;
  /**
   * Backup snapshots that are no backup (backup-info.ts): of a backup
   * still pending, or of a backup id whose complete info names another
   * snapshot. Not in `snapshots`.
   */
  pending: PendingSnapshot[];
}

export interface PendingSnapshot {
  backupId: string;
  snapshot: SnapshotInfo;
  /** The backup id's info is the pending mark (it goes with the snapshot), not a complete backup's. */
  marked: boolean;
}

export interface BackupPoint {
  backupId: string;
  image: BackupImage;
  /** Its snapshot on a chain image; undefined for a legacy full copy (restored from its head). */
  snapshot: SnapshotInfo | undefined;
  /** The backup before it on the same chain image; null for the first and for legacy copies. */
  parentId: string | null;
  createdAt: Date;
  size: bigint;
  /** Its name, description and bytes written, when the pool keeps them. */
  info: BackupInfo | undefined;
}

/** Its head is not any backup's data once it holds a backup snapshot. */
export function isChainImage(image: BackupImage): boolean {
  return image.snapshots.length > 0 && image.incomplete === undefined;
}

/** A snapshot-less image that is a backup's full copy (not debris of ours, not an unnamed `.backup.base` copy). */
function isLegacyCopy(image: BackupImage): boolean {
  return image.snapshots.length === 0 && image.incomplete === undefined && image.suffix !== 'base';
}

/** Images that a run of ours did not finish, or a delete emptied: no backup is in them. */
export function unfinishedImages(images: readonly BackupImage[]): BackupImage[] {
  return images.filter((image) => image.incomplete !== undefined);
}

export function snapshotTime(snapshot: SnapshotInfo): Date {
  const seconds = parseBackupSnapshotName(snapshot.name)?.seconds ?? NaN;
  return Number.isFinite(seconds) ? new Date(seconds * 1000) : snapshot.timestamp;
}

/** Every backup of the volume, oldest first. */
export function backupPoints(images: readonly BackupImage[]): BackupPoint[] {
  const points: BackupPoint[] = [];
  for (const image of images) {
    if (isChainImage(image)) {
      let parentId: string | null = null;
      for (const snapshot of image.snapshots) {
        const backupId = parseBackupSnapshotName(snapshot.name)!.backupId;
        points.push({
          backupId, image, snapshot, parentId, createdAt: snapshotTime(snapshot), size: snapshot.size, info: image.infos.get(backupId),
        });
        parentId = backupId;
      }
    } else if (isLegacyCopy(image)) {
      points.push({
        backupId: image.suffix, image, snapshot: undefined, parentId: null, createdAt: image.createdAt, size: image.size,
        info: undefined,
      });
    }
  }
  // Stable: within a chain, snapshot order already is time order.
  return points.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime());
}

/** The chain images holding a snapshot of backupId, with that snapshot. */
function holdersOf(images: readonly BackupImage[], backupId: string, operation: string, subject: string) {
  const holders: Array<{ image: BackupImage; snapshot: SnapshotInfo }> = [];
  for (const image of images.filter(isChainImage)) {
    const own = image.snapshots.filter((s) => parseBackupSnapshotName(s.name)?.backupId === backupId);
    // Cinder's rule (_get_backup_snap_name): a backup has at most one snapshot.
    if (own.length > 1) {
      throw new InconsistentBackupError({
        operation, resource: image.name,
        detail: `backup ${backupId} has ${own.length} snapshots (${own.map((s) => s.name).join(', ')}) on ${image.name}; expected one`,
      });
    }
    if (own.length === 1) holders.push({ image, snapshot: own[0] });
  }
  if (holders.length > 1) {
    throw new InconsistentBackupError({
      operation, resource: subject,
      detail: `backup ${backupId} has a snapshot on ${holders.length} chain images (${holders.map((h) => `${h.image.name}@${h.snapshot.name}`).join(', ')}); expected one`,
    });
  }
  return holders[0];
}

export interface BackupLookup {
  /** Whose backup it is (a string: a Cinder volume id). */
  subject: Subject | string;
  backupId: string;
  /** The chain image the record's service_metadata names, already checked to be the subject's. */
  namedImage: string | undefined;
  /** The record is of a backup taken from a volume snapshot (Cinder copies those into `.backup.base`). */
  fromVolumeSnapshot: boolean;
}

/**
 * Where a backup's data is: its snapshot on a chain image, or the head of a
 * legacy full copy, never the head of a chain image, which later
 * incrementals have changed.
 */
export function locateBackup(images: readonly BackupImage[], lookup: BackupLookup, operation: string):
  { image: BackupImage; snapshot: SnapshotInfo | undefined } {
  const { backupId, namedImage } = lookup;
  const subject = resolveSubject(lookup.subject, operation);
  const holder = holdersOf(images, backupId, operation, describeSubject(subject));
  const notFound = (detail: string): NotFoundError => new NotFoundError({
    code: 'ENOENT', operation, resource: `backup ${backupId}`, detail,
  });
  if (namedImage !== undefined) {
    const named = images.find((image) => image.name === namedImage);
    if (holder && holder.image !== named) {
      throw new InconsistentBackupError({
        operation, resource: `backup ${backupId}`,
        detail: `the record names chain image ${namedImage}, but the backup's snapshot is on ${holder.image.name} (${holder.snapshot.name})`,
      });
    }
    if (holder) return holder;
    if (!named) throw notFound(`its image ${namedImage} does not exist in the backup pool`);
    // Cinder writes service_metadata only for backups into chain images
    // (_backup_rbd), never for a legacy full copy: a named image without
    // backup snapshots is a chain whose backups are gone (deleted, or an
    // unfinished run's), and its head is no backup's data.
    throw notFound(isChainImage(named)
      ? `its chain image ${namedImage} has no snapshot of backup ${backupId} (deleted already?)`
      : `its chain image ${namedImage} holds no backup snapshot${named.incomplete === undefined ? '' : ` (left by backup ${named.incomplete}, which did not finish)`}`);
  }
  if (holder) return holder;
  const own = images.find((image) => image.suffix === backupId && isLegacyCopy(image));
  if (own) return { image: own, snapshot: undefined };
  const base = images.find((image) => image.suffix === 'base');
  if (lookup.fromVolumeSnapshot && base && !isChainImage(base) && base.incomplete === undefined) {
    return { image: base, snapshot: undefined };
  }
  throw notFound(`no snapshot of it is on any backup image of ${describeSubject(subject)} and no legacy copy ${backupImageName(subject, backupId)} exists`);
}
