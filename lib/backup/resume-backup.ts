/**
 * A backup that picks up where a killed run of the same backup id left
 * off. That run left its snapshot on the source (no chain image holds it
 * yet), and its chain image with the transfer's progress record
 * (engine/resume.ts): a full backup's image under its unfinished name, or,
 * for an incremental, the chain image whose head the transfer was writing,
 * with the backup's pending mark naming that snapshot. Both are kept
 * instead of being removed as leftovers when the retry would make the same
 * backup (the same chain decision); the transfer then proves the record
 * against the snapshots' ids before it skips anything.
 */
import type { Pool } from '../ceph/pool.js';
import type { SnapshotInfo } from '../ceph/snapshot.js';
import { readResumeRecord } from '../engine/resume.js';
import type { ChainDecision } from './chain.js';
import type { BackupImage } from './layout.js';
import type { Leftovers } from './leftovers.js';
import { parseBackupSnapshotName, unfinishedImageName, type Subject } from './naming.js';

export interface ResumableBackup {
  kind: 'full' | 'incremental';
  /** The chain image the killed run was writing (a full backup's under its unfinished name). */
  image: string;
  /** The killed run's snapshot of the source, which this run transfers. */
  snapshot: SnapshotInfo;
  /** The from-snapshot its progress record names (an incremental's). */
  fromSnapshot: string | undefined;
}

/** The progress record's snapshot names, when the image has a record (unchecked: compared below). */
async function recordedSnapshots(pool: Pool, image: string): Promise<{ snapshot: unknown; from: unknown } | undefined> {
  await using opened = await pool.openImage(image, { readOnly: true });
  const record = await readResumeRecord(opened);
  return record === undefined ? undefined : { snapshot: record.snapshot, from: (record.from as { name?: unknown } | undefined)?.name };
}

/**
 * What a killed run of backupId left that this run might continue: its one
 * orphan source snapshot, and the unfinished chain image of a full backup
 * or the chain image marked pending for it without a snapshot of it yet.
 */
export function resumeCandidate(subject: Subject, backupId: string, found: readonly BackupImage[], leftovers: Leftovers,
  sourceSnapshots: readonly SnapshotInfo[]): { kind: ResumableBackup['kind']; image: string; snapshot: SnapshotInfo } | undefined {
  const orphans = leftovers.snapshots.filter((name) => parseBackupSnapshotName(name)?.backupId === backupId);
  // Two runs of the id were killed: which one recorded its progress is not worth guessing.
  if (orphans.length !== 1) return undefined;
  const snapshot = sourceSnapshots.find((s) => s.name === orphans[0]);
  if (snapshot === undefined) return undefined;
  const unfinished = leftovers.images.find((image) => image.name === unfinishedImageName(subject, backupId));
  if (unfinished !== undefined) {
    // Killed after its transfer made the snapshot on the image (before its rename): nothing is left to continue.
    const made = [...unfinished.snapshots, ...unfinished.pending.map((p) => p.snapshot)].some((s) => s.name === snapshot.name);
    return made ? undefined : { kind: 'full', image: unfinished.name, snapshot };
  }
  const marked = found.filter((image) => !leftovers.images.includes(image)).find((image) =>
    image.infos.get(backupId)?.pendingSince !== undefined && image.infos.get(backupId)?.snapshot === snapshot.name
    && !image.pending.some((p) => p.backupId === backupId));
  return marked === undefined ? undefined : { kind: 'incremental', image: marked.name, snapshot };
}

/** The candidate, when its chain image has a progress record of a transfer of its snapshot (from a snapshot for an incremental). */
export async function findResumableBackup(pool: Pool, subject: Subject, backupId: string,
  found: readonly BackupImage[], leftovers: Leftovers, sourceSnapshots: readonly SnapshotInfo[]): Promise<ResumableBackup | undefined> {
  const candidate = resumeCandidate(subject, backupId, found, leftovers, sourceSnapshots);
  if (candidate === undefined) return undefined;
  const recorded = await recordedSnapshots(pool, candidate.image);
  if (recorded?.snapshot !== candidate.snapshot.name) return undefined;
  const fromSnapshot = typeof recorded.from === 'string' ? recorded.from : undefined;
  return (fromSnapshot !== undefined) === (candidate.kind === 'incremental') ? { ...candidate, fromSnapshot } : undefined;
}

/** Whether this run makes the backup the killed run was making: the same kind, chain image and from-snapshot. */
export function continues(resumable: ResumableBackup, decision: ChainDecision): boolean {
  if (resumable.kind === 'full') return decision.mode !== 'incremental';
  return decision.mode === 'incremental' && decision.image === resumable.image && decision.fromSnapshot === resumable.fromSnapshot;
}

/** The leftovers without what this run continues. */
export function keepResumable(leftovers: Leftovers, resumable: ResumableBackup): Leftovers {
  return {
    ...leftovers,
    snapshots: leftovers.snapshots.filter((name) => name !== resumable.snapshot.name),
    images: leftovers.images.filter((image) => image.name !== resumable.image),
  };
}
