/**
 * Where a backup starts (lib/backup/chain.ts decideChain), how backup
 * snapshots are ordered, which base snapshots are a backup's restore points,
 * and which source snapshots maxSourceSnapshots trims. No cluster needed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { backupSnapshots, decideChain, restorePoints, snapshotsToTrim } from '../../lib/backup/chain.js';
import { backupSnapshotName } from '../../lib/backup/naming.js';

/** backup.<id>.snap.<seconds>.0 */
const snap = (id: string, seconds: number): string => backupSnapshotName(id, new Date(seconds * 1000));

const s1 = snap('b1', 100);
const s2 = snap('b2', 200);
const s3 = snap('b3', 300);
const s4 = snap('b4', 400);

describe('backupSnapshots', () => {
  test('keeps only backup snapshots', () => {
    assert.deepEqual(backupSnapshots(['manual', s1, 'backup.b1', s2, 'backup.B.snap.1']), [s1, s2]);
  });

  test('orders by time stamp, not by creation order', () => {
    assert.deepEqual(backupSnapshots([s3, s1, s4, s2]), [s1, s2, s3, s4]);
  });

  test('compares stamps as numbers, not as text', () => {
    const nine = 'backup.a.snap.9.5';
    const ten = 'backup.b.snap.10.0';
    const hundred = 'backup.c.snap.100.25';
    assert.deepEqual(backupSnapshots([hundred, ten, nine]), [nine, ten, hundred]);
    assert.deepEqual(backupSnapshots(['backup.x.snap.1714557600.5', 'backup.y.snap.1714557600.123']),
      ['backup.y.snap.1714557600.123', 'backup.x.snap.1714557600.5']);
  });

  test('equal stamps and stamps that are not numbers keep creation order', () => {
    assert.deepEqual(backupSnapshots(['backup.b.snap.5.0', 'backup.a.snap.5.0']), ['backup.b.snap.5.0', 'backup.a.snap.5.0']);
    assert.deepEqual(backupSnapshots(['backup.b.snap.x', 'backup.a.snap.y']), ['backup.b.snap.x', 'backup.a.snap.y']);
  });

  test('an empty list is empty', () => {
    assert.deepEqual(backupSnapshots([]), []);
  });
});

describe('decideChain', () => {
  test('first backup: no base image', () => {
    assert.deepEqual(decideChain({ sourceSnapshots: [], baseSnapshots: undefined }),
      { mode: 'full', reason: 'first backup' });
  });

  test('first backup: a base image without backup snapshots', () => {
    assert.deepEqual(decideChain({ sourceSnapshots: ['manual'], baseSnapshots: [] }),
      { mode: 'full', reason: 'first backup' });
    assert.deepEqual(decideChain({ sourceSnapshots: [s1], baseSnapshots: ['not-a-backup'] }),
      { mode: 'full', reason: 'first backup' });
  });

  test('a full backup when requested, whatever the chain', () => {
    assert.deepEqual(decideChain({ sourceSnapshots: [s1, s2], baseSnapshots: [s1, s2], full: true }),
      { mode: 'full', reason: 'requested' });
    assert.deepEqual(decideChain({ sourceSnapshots: [s1], baseSnapshots: [s1], parentId: 'b1', full: true }),
      { mode: 'full', reason: 'requested' });
    assert.deepEqual(decideChain({ sourceSnapshots: [], baseSnapshots: undefined, full: true }),
      { mode: 'full', reason: 'requested' });
  });

  test('incremental from the newest snapshot on both sides', () => {
    assert.deepEqual(decideChain({ sourceSnapshots: [s1, s2, s3], baseSnapshots: [s1, s2, s3] }),
      { mode: 'incremental', fromSnapshot: s3, parentId: 'b3' });
  });

  test('incremental: the newest common one, ignoring snapshots on one side only', () => {
    // s4 only on the source (say a failed run), s3 only on the base (trimmed from the source).
    assert.deepEqual(decideChain({ sourceSnapshots: ['manual', s1, s2, s4], baseSnapshots: [s1, s2, s3] }),
      { mode: 'incremental', fromSnapshot: s2, parentId: 'b2' });
  });

  test('incremental: the newest by time stamp, whatever the listing order', () => {
    assert.deepEqual(decideChain({ sourceSnapshots: [s3, s1, s2], baseSnapshots: [s2, s3, s1] }),
      { mode: 'incremental', fromSnapshot: s3, parentId: 'b3' });
  });

  test('incremental from a named parent, even when newer backups exist', () => {
    assert.deepEqual(decideChain({ sourceSnapshots: [s1, s2, s3], baseSnapshots: [s1, s2, s3], parentId: 'b1' }),
      { mode: 'incremental', fromSnapshot: s1, parentId: 'b1' });
  });

  test('a named parent with two common snapshots: the newer one', () => {
    const older = snap('p', 10);
    const newer = snap('p', 20);
    assert.deepEqual(decideChain({ sourceSnapshots: [newer, older], baseSnapshots: [older, newer], parentId: 'p' }),
      { mode: 'incremental', fromSnapshot: newer, parentId: 'p' });
  });

  test('a named parent missing from the source: converted, naming the parent', () => {
    const decision = decideChain({ sourceSnapshots: [s2], baseSnapshots: [s1, s2], parentId: 'b1' });
    assert.equal(decision.mode, 'converted');
    assert.ok(decision.mode === 'converted');
    assert.match(decision.reason, /parent backup b1/);
    assert.match(decision.reason, /not on both the source volume and the backup base image/);
  });

  test('a named parent missing from the base: converted', () => {
    const decision = decideChain({ sourceSnapshots: [s1, s2], baseSnapshots: [s2], parentId: 'b1' });
    assert.equal(decision.mode, 'converted');
    assert.ok(decision.mode === 'converted');
    assert.match(decision.reason, /parent backup b1/);
  });

  test('a named parent that no backup ever had: converted', () => {
    const decision = decideChain({ sourceSnapshots: [s1], baseSnapshots: [s1], parentId: 'nope' });
    assert.ok(decision.mode === 'converted', JSON.stringify(decision));
    assert.match(decision.reason, /parent backup nope/);
  });

  test('a named parent without a base image: converted, not a silent first backup', () => {
    for (const baseSnapshots of [undefined, [], ['manual']]) {
      const decision = decideChain({ sourceSnapshots: [s1], baseSnapshots, parentId: 'b1' });
      assert.ok(decision.mode === 'converted', JSON.stringify(decision));
      assert.match(decision.reason, /parent backup b1 has no snapshot on the backup base image/);
    }
  });

  test('broken chain (no common snapshot): converted, saying so', () => {
    for (const [sourceSnapshots, baseSnapshots] of [
      [[], [s1, s2]],
      [[s3], [s1, s2]],
      [['manual'], [s1]],
    ] as Array<[string[], string[]]>) {
      const decision = decideChain({ sourceSnapshots, baseSnapshots });
      assert.ok(decision.mode === 'converted', JSON.stringify(decision));
      assert.match(decision.reason, /chain broken/);
      assert.match(decision.reason, /no backup snapshot is on both the source volume and the backup base image/);
    }
  });

  test('only the backup id of a snapshot name matters for a parent, not a prefix of it', () => {
    const other = snap('b1-x', 500);
    const decision = decideChain({ sourceSnapshots: [other], baseSnapshots: [other], parentId: 'b1' });
    assert.equal(decision.mode, 'converted');
  });
});

describe('restorePoints', () => {
  test('the base snapshots of this backup id only', () => {
    const other = snap('b1-x', 150);
    assert.deepEqual(restorePoints(['manual', s1, other, s2], 'b1'), [s1]);
    assert.deepEqual(restorePoints([s1, s2], 'b3'), []);
    const again = snap('b1', 999);
    assert.deepEqual(restorePoints([s1, s2, again], 'b1'), [s1, again]);
  });
});

describe('snapshotsToTrim', () => {
  test('0 keeps all', () => {
    assert.deepEqual(snapshotsToTrim([s1, s2, s3, s4], 0), []);
  });

  test('the oldest go, the newest keep stay', () => {
    assert.deepEqual(snapshotsToTrim([s1, s2, s3, s4], 2), [s1, s2]);
    assert.deepEqual(snapshotsToTrim([s1, s2, s3, s4], 3), [s1]);
    assert.deepEqual(snapshotsToTrim([s1, s2, s3, s4], 1), [s1, s2, s3]);
  });

  test('by time stamp, whatever the listing order', () => {
    assert.deepEqual(snapshotsToTrim([s4, s2, s1, s3], 2), [s1, s2]);
  });

  test('never touches snapshots that are not backup snapshots', () => {
    assert.deepEqual(snapshotsToTrim(['manual', s1, 'other', s2, s3], 1), [s1, s2]);
    assert.deepEqual(snapshotsToTrim(['manual', 'other'], 1), []);
  });

  test('nothing when there are no more than keep', () => {
    assert.deepEqual(snapshotsToTrim([s1, s2], 2), []);
    assert.deepEqual(snapshotsToTrim([s1], 5), []);
    assert.deepEqual(snapshotsToTrim([], 1), []);
  });
});
