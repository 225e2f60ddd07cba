/**
 * In-place restore: a restore into a volume that still has a backup
 * snapshot the chain image also has (the backup's own volume after a bad
 * change, typically) converges the volume from that snapshot
 * (lib/engine/convergeToSnapshot) instead of copying everything. Which
 * snapshot: the one nearest the restore point on the chain, so that the
 * chain's changes in between are fewest; the newer of two as near, since
 * the volume has changed less since it. Pure: restore.ts gathers the facts.
 */
import { parseBackupSnapshotName } from './naming.js';

export interface SnapshotFact {
  name: string;
  id: bigint;
  size: bigint;
}

export type CommonSnapshotChoice = { common: string } | { reason: string };

export function chooseCommonSnapshot(volume: readonly SnapshotFact[], chain: readonly SnapshotFact[],
  restorePoint: string): CommonSnapshotChoice {
  const ordered = [...chain].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const at = ordered.findIndex((s) => s.name === restorePoint);
  if (at < 0) return { reason: 'the chain image has no snapshot of the restore point' };
  const point = ordered[at];
  const onVolume = new Map(volume.map((s) => [s.name, s]));
  const candidates = ordered
    .map((snapshot, index) => ({ snapshot, distance: Math.abs(index - at) }))
    // The same name and size on both: the backup made the chain's from the volume's.
    .filter(({ snapshot }) => parseBackupSnapshotName(snapshot.name) !== undefined &&
      onVolume.get(snapshot.name)?.size === snapshot.size)
    // An older restore point larger than the snapshot would be listed past the snapshot's end.
    .filter(({ snapshot }) => !(point.id < snapshot.id && point.size > snapshot.size));
  if (candidates.length === 0) return { reason: 'the volume has no backup snapshot that the chain image also has (of the same size)' };
  candidates.sort((a, b) => a.distance - b.distance || (a.snapshot.id > b.snapshot.id ? -1 : 1));
  return { common: candidates[0].snapshot.name };
}
