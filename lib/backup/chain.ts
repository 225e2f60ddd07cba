/**
 * Where a backup goes, decided over snapshot names and the volume's backup
 * images as Cinder's Ceph driver decides it (_backup_rbd): a full backup
 * starts a chain image of its own, an incremental continues the chain image
 * holding its parent's snapshot. Also which source snapshots are of no use
 * any more. Free of I/O so it can be tested on its own.
 */
import { NotFoundError } from '../ceph/errors.js';
import { InconsistentBackupError } from './errors.js';
import { isChainImage, type BackupImage } from './layout.js';
import { backupImageName, describeSubject, parseBackupSnapshotName, resolveSubject, type Subject } from './naming.js';

export type ChainDecision =
  | { mode: 'full'; image: string; reason: 'first backup' | 'requested' }
  | { mode: 'incremental'; image: string; fromSnapshot: string; parentId: string }
  /** There were backups, but none can be continued from the source: full instead. */
  | { mode: 'converted'; image: string; reason: string };

/**
 * Backup snapshots among names (in creation order), oldest first by their
 * time stamp; creation order breaks ties and orders stamps that are not
 * numbers.
 */
export function backupSnapshots(names: readonly string[]): string[] {
  return names
    .map((name, index) => ({ name, index, parsed: parseBackupSnapshotName(name) }))
    .filter((entry) => entry.parsed !== undefined)
    .sort((a, b) => {
      const sa = a.parsed!.seconds;
      const sb = b.parsed!.seconds;
      if (Number.isFinite(sa) && Number.isFinite(sb) && sa !== sb) return sa - sb;
      return a.index - b.index;
    })
    .map((entry) => entry.name);
}

/** The chain image holding each backup snapshot name. */
function chainOf(images: readonly BackupImage[]): Map<string, BackupImage> {
  const holders = new Map<string, BackupImage>();
  for (const image of images.filter(isChainImage)) {
    for (const snapshot of image.snapshots) holders.set(snapshot.name, image);
  }
  return holders;
}

export function decideChain(options: {
  /** Whose backup it is (a string: a Cinder volume id). */
  subject: Subject | string;
  backupId: string;
  images: readonly BackupImage[];
  sourceSnapshots: readonly string[];
  parentId?: string;
  full?: boolean;
  operation: string;
}): ChainDecision {
  const { images, sourceSnapshots, parentId, operation } = options;
  const subject = resolveSubject(options.subject, operation);
  const image = backupImageName(subject, options.backupId);
  if (options.full) return { mode: 'full', image, reason: 'requested' };
  const onChain = chainOf(images);
  const onSource = new Set(sourceSnapshots);
  if (parentId !== undefined) {
    const parentSnaps = [...onChain.keys()].filter((name) => parseBackupSnapshotName(name)!.backupId === parentId);
    if (parentSnaps.length > 1) {
      throw new InconsistentBackupError({
        operation, resource: `backup ${parentId}`,
        detail: `parent backup ${parentId} has ${parentSnaps.length} snapshots (${parentSnaps.map((n) => `${onChain.get(n)!.name}@${n}`).join(', ')}); expected one`,
      });
    }
    const [parentSnap] = parentSnaps;
    if (parentSnap === undefined) {
      if (images.some((i) => i.suffix === parentId && i.snapshots.length === 0 && i.incomplete === undefined)) {
        return { mode: 'converted', image, reason: `parent backup ${parentId} is a legacy full copy, which has no snapshot to continue from` };
      }
      throw new NotFoundError({
        code: 'ENOENT', operation, resource: `backup ${parentId}`,
        detail: `parent backup ${parentId} is not among the backups of ${describeSubject(subject)} in the backup pool; check the id, or leave the parent out to continue from the newest backup`,
      });
    }
    if (!onSource.has(parentSnap)) {
      return {
        mode: 'converted', image,
        reason: `parent backup ${parentId}'s snapshot ${parentSnap} is no longer on the source volume`,
      };
    }
    return { mode: 'incremental', image: onChain.get(parentSnap)!.name, fromSnapshot: parentSnap, parentId };
  }
  if (onChain.size === 0) return { mode: 'full', image, reason: 'first backup' };
  const common = backupSnapshots(sourceSnapshots).filter((name) => onChain.has(name));
  if (common.length === 0) {
    return {
      mode: 'converted', image,
      reason: 'no backup snapshot is on both the source volume and a chain image (chain broken)',
    };
  }
  const fromSnapshot = common[common.length - 1];
  return {
    mode: 'incremental', image: onChain.get(fromSnapshot)!.name, fromSnapshot,
    parentId: parseBackupSnapshotName(fromSnapshot)!.backupId,
  };
}

/**
 * Backup snapshots on the source that no chain image holds: left by a run
 * that was killed or by a deleted backup, no incremental can start from
 * them, and they only cost the volume space.
 */
export function orphanSourceSnapshots(sourceSnapshots: readonly string[], images: readonly BackupImage[]): string[] {
  const onChain = chainOf(images);
  return backupSnapshots(sourceSnapshots).filter((name) => !onChain.has(name));
}

/**
 * Backup snapshots to remove from the source so that at most keep remain
 * (0 = keep all); the newest stay. ours picks the snapshots that count,
 * oldest first: the backup pool's (backupSnapshots), or those of backups
 * into files.
 */
export function snapshotsToTrim(sourceSnapshots: readonly string[], keep: number,
  ours: (names: readonly string[]) => string[] = backupSnapshots): string[] {
  if (keep <= 0) return [];
  const ordered = ours(sourceSnapshots);
  return ordered.slice(0, Math.max(0, ordered.length - keep));
}
