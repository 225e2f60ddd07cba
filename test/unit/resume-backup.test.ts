/**
 * Which leftovers of a killed backup a retry with the same id continues
 * (lib/backup/resume-backup.ts): the pure choice, before any record is
 * read. No cluster needed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { BackupImage } from '../../lib/backup/layout.js';
import { findLeftovers } from '../../lib/backup/leftovers.js';
import { continues, keepResumable, resumeCandidate, type ResumableBackup } from '../../lib/backup/resume-backup.js';
import { volumeSubject } from '../../lib/backup/naming.js';
import type { SnapshotInfo } from '../../lib/ceph/snapshot.js';
import type { BackupInfo } from '../../lib/backup/backup-info.js';

const V = volumeSubject('vol1', 'test');
let nextId = 1n;

function snap(backupId: string, seconds: number): SnapshotInfo {
  return { id: nextId++, name: `backup.${backupId}.snap.${seconds}.5`, size: 1n << 30n, timestamp: new Date(seconds * 1000), protected: false };
}

function image(name: string, snapshots: SnapshotInfo[], extra: Partial<BackupImage> = {}): BackupImage {
  return {
    name, suffix: name.split('.backup.')[1]!, size: 1n << 30n, createdAt: new Date(1000), snapshots,
    incomplete: undefined, trashed: [], infos: new Map(), pending: [], ...extra,
  };
}

const pendingMark = (snapshot: string): BackupInfo =>
  ({ displayName: null, displayDescription: null, bytesWritten: null, pendingSince: new Date(5000), snapshot });

describe('resumeCandidate', () => {
  const f1 = snap('f1', 100);
  const killed = snap('k2', 200);
  const chainName = 'volume-vol1.backup.f1';

  test('a killed full backup: its unfinished image and its orphan source snapshot', () => {
    const unfinished = image('volume-vol1.backup.k2.unfinished', [], { incomplete: 'k2' });
    const chain = image(chainName, [f1]);
    const source = [f1, killed];
    const leftovers = findLeftovers([chain, unfinished], { names: source.map((s) => s.name), trashed: [] });
    assert.deepEqual(resumeCandidate(V, 'k2', [chain, unfinished], leftovers, source), { kind: 'full', image: unfinished.name, snapshot: killed });
    // Another id's retry continues nothing of it.
    assert.equal(resumeCandidate(V, 'other', [chain, unfinished], leftovers, source), undefined);
    // Killed after its transfer had made the snapshot on the image, before the rename: nothing to continue (it starts clean).
    const transferred = image('volume-vol1.backup.k2.unfinished', [killed], { incomplete: 'k2' });
    const after = findLeftovers([chain, transferred], { names: source.map((s) => s.name), trashed: [] });
    assert.deepEqual(after.snapshots, [killed.name], 'an unfinished image holds no backup: its snapshot\'s source twin is an orphan');
    assert.equal(resumeCandidate(V, 'k2', [chain, transferred], after, source), undefined);
  });

  test('a killed incremental: the chain image marked pending for its snapshot, which the chain does not have yet', () => {
    const chain = image(chainName, [f1], { infos: new Map([['k2', pendingMark(killed.name)]]) });
    const source = [f1, killed];
    const leftovers = findLeftovers([chain], { names: source.map((s) => s.name), trashed: [] });
    assert.deepEqual(resumeCandidate(V, 'k2', [chain], leftovers, source), { kind: 'incremental', image: chainName, snapshot: killed });
  });

  test('nothing to continue: a mark naming another snapshot, a chain already holding the snapshot, two orphans of the id, none', () => {
    const source = [f1, killed];
    const names = { names: source.map((s) => s.name), trashed: [] };
    const otherMark = image(chainName, [f1], { infos: new Map([['k2', pendingMark('backup.k2.snap.150.5')]]) });
    assert.equal(resumeCandidate(V, 'k2', [otherMark], findLeftovers([otherMark], names), source), undefined);
    const holding = image(chainName, [f1], {
      infos: new Map([['k2', pendingMark(killed.name)]]), pending: [{ backupId: 'k2', snapshot: killed, marked: true }],
    });
    assert.equal(resumeCandidate(V, 'k2', [holding], findLeftovers([holding], names), source), undefined);
    const twice = [f1, killed, snap('k2', 300)];
    const marked = image(chainName, [f1], { infos: new Map([['k2', pendingMark(killed.name)]]) });
    assert.equal(resumeCandidate(V, 'k2', [marked], findLeftovers([marked], { names: twice.map((s) => s.name), trashed: [] }), twice), undefined);
    assert.equal(resumeCandidate(V, 'k2', [marked], findLeftovers([marked], { names: [f1.name], trashed: [] }), [f1]), undefined);
  });
});

describe('continues and keepResumable', () => {
  const killed = snap('k3', 400);
  const full: ResumableBackup = { kind: 'full', image: 'volume-vol1.backup.k3.unfinished', snapshot: killed, fromSnapshot: undefined };
  const incremental: ResumableBackup = { kind: 'incremental', image: 'volume-vol1.backup.f1', snapshot: killed, fromSnapshot: 'backup.f1.snap.100.5' };

  test('the same backup: a full one again, or an incremental into the same chain image from the same snapshot', () => {
    assert.equal(continues(full, { mode: 'full', image: 'volume-vol1.backup.k3', reason: 'first backup' }), true);
    assert.equal(continues(full, { mode: 'converted', image: 'volume-vol1.backup.k3', reason: 'chain broken' }), true);
    assert.equal(continues(full, { mode: 'incremental', image: 'volume-vol1.backup.f1', fromSnapshot: 'backup.f1.snap.100.5', parentId: 'f1' }), false);
    assert.equal(continues(incremental, { mode: 'incremental', image: 'volume-vol1.backup.f1', fromSnapshot: 'backup.f1.snap.100.5', parentId: 'f1' }), true);
    assert.equal(continues(incremental, { mode: 'incremental', image: 'volume-vol1.backup.f1', fromSnapshot: 'backup.i2.snap.150.5', parentId: 'i2' }), false);
    assert.equal(continues(incremental, { mode: 'full', image: 'volume-vol1.backup.k3', reason: 'requested' }), false);
  });

  test('the continued snapshot and image stay; every other leftover goes', () => {
    const unfinished = image(full.image, [], { incomplete: 'k3' });
    const other = image('volume-vol1.backup.b9.unfinished', [], { incomplete: 'b9' });
    const leftovers = findLeftovers([unfinished, other], { names: [killed.name, 'backup.x.snap.1.5'], trashed: [] });
    const kept = keepResumable(leftovers, full);
    assert.deepEqual(kept.snapshots, ['backup.x.snap.1.5']);
    assert.deepEqual(kept.images.map((i) => i.name), [other.name]);
  });
});
