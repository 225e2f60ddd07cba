/**
 * Decisions over snapshot names, kept free of I/O so they can be tested on
 * their own: where an incremental backup starts, and which snapshot of a
 * base image is a backup's restore point.
 */
import { parseBackupSnapshotName } from './naming.js';

export type ChainDecision =
  | { mode: 'full'; reason: 'first backup' | 'requested' }
  | { mode: 'incremental'; fromSnapshot: string; parentId: string }
  /** There were backups, but the chain to the source is broken: full instead. */
  | { mode: 'converted'; reason: string };

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

export function decideChain(options: {
  sourceSnapshots: readonly string[];
  baseSnapshots: readonly string[] | undefined;
  parentId?: string;
  full?: boolean;
}): ChainDecision {
  const { sourceSnapshots, baseSnapshots, parentId } = options;
  if (options.full) return { mode: 'full', reason: 'requested' };
  const onBase = new Set(backupSnapshots(baseSnapshots ?? []));
  if (baseSnapshots === undefined || onBase.size === 0) {
    if (parentId !== undefined) {
      return { mode: 'converted', reason: `parent backup ${parentId} has no snapshot on the backup base image` };
    }
    return { mode: 'full', reason: 'first backup' };
  }
  const common = backupSnapshots(sourceSnapshots).filter((name) => onBase.has(name));
  if (parentId !== undefined) {
    const parentSnaps = common.filter((name) => parseBackupSnapshotName(name)!.backupId === parentId);
    if (parentSnaps.length === 0) {
      return {
        mode: 'converted',
        reason: `parent backup ${parentId}'s snapshot is not on both the source volume and the backup base image`,
      };
    }
    return { mode: 'incremental', fromSnapshot: parentSnaps[parentSnaps.length - 1], parentId };
  }
  if (common.length === 0) {
    return {
      mode: 'converted',
      reason: 'no backup snapshot is on both the source volume and the backup base image (chain broken)',
    };
  }
  const fromSnapshot = common[common.length - 1];
  return { mode: 'incremental', fromSnapshot, parentId: parseBackupSnapshotName(fromSnapshot)!.backupId };
}

/** The base image snapshots that belong to backupId. */
export function restorePoints(baseSnapshots: readonly string[], backupId: string): string[] {
  return baseSnapshots.filter((name) => parseBackupSnapshotName(name)?.backupId === backupId);
}

/**
 * Backup snapshots to remove from the source so that at most keep remain
 * (0 = keep all); the newest stay.
 */
export function snapshotsToTrim(sourceSnapshots: readonly string[], keep: number): string[] {
  if (keep <= 0) return [];
  const ordered = backupSnapshots(sourceSnapshots);
  return ordered.slice(0, Math.max(0, ordered.length - keep));
}
