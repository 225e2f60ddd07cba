/**
 * Where a backup goes (lib/backup/chain.ts decideChain) over the volume's
 * backup images in both layouts (a pre-Train `.backup.base` chain, Train+
 * chain images `.backup.<full backup id>`, legacy full copies), how backup
 * snapshots are ordered, which source snapshots no chain image holds
 * (orphanSourceSnapshots), and which ones maxSourceSnapshots trims. No
 * cluster needed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { backupSnapshots, decideChain, orphanSourceSnapshots, snapshotsToTrim } from '../../lib/backup/chain.js';
import type { BackupImage } from '../../lib/backup/layout.js';
import { backupImageName, backupSnapshotName, baseImageName } from '../../lib/backup/naming.js';
import { CephError, NotFoundError } from '../../lib/ceph/errors.js';
import { InconsistentBackupError } from '../../lib/index.js';

/** backup.<id>.snap.<seconds>.0 */
const snap = (id: string, seconds: number): string => backupSnapshotName(id, new Date(seconds * 1000));

const s1 = snap('b1', 100);
const s2 = snap('b2', 200);
const s3 = snap('b3', 300);
const s4 = snap('b4', 400);

const VOLUME = 'v1';
const NEW = 'new';
/** The chain image a full backup with the new backup id creates. */
const NEW_IMAGE = backupImageName(VOLUME, NEW);

/** A backup image of volume v1 as inventory.ts reads it: its backup snapshots only, oldest first. */
function image(suffix: string, snapshots: string[], incomplete?: string): BackupImage {
  return {
    name: suffix === 'base' ? baseImageName(VOLUME) : backupImageName(VOLUME, suffix),
    suffix,
    size: 1n << 30n,
    createdAt: new Date(0),
    snapshots: backupSnapshots(snapshots).map((name, i) => ({
      id: BigInt(i + 1), name, size: 1n << 30n, timestamp: new Date(i * 1000), protected: false,
    })),
    incomplete,
    pending: [],
    trashed: [],
    infos: new Map(),
  };
}

function decide(images: BackupImage[], sourceSnapshots: string[], more: { parentId?: string; full?: boolean } = {}) {
  return decideChain({ subject: VOLUME, backupId: NEW, images, sourceSnapshots, operation: 'backup', ...more });
}

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

describe('decideChain: full backups create their own chain image', () => {
  test('first backup: no backup image at all', () => {
    assert.deepEqual(decide([], []), { mode: 'full', image: NEW_IMAGE, reason: 'first backup' });
    assert.deepEqual(decide([], ['manual', s1]), { mode: 'full', image: NEW_IMAGE, reason: 'first backup' });
  });

  test('first backup: backup images without any backup snapshot (a legacy copy, a snapshot-less base)', () => {
    assert.deepEqual(decide([image('b0', [])], [s1]), { mode: 'full', image: NEW_IMAGE, reason: 'first backup' });
    assert.deepEqual(decide([image('base', ['not-a-backup'])], [s1]),
      { mode: 'full', image: NEW_IMAGE, reason: 'first backup' });
  });

  test('the new chain image is volume-<volume id>.backup.<new backup id>, never .backup.base', () => {
    const decision = decide([image('base', [s1])], [], { full: true });
    assert.equal(decision.image, `volume-${VOLUME}.backup.${NEW}`);
    assert.notEqual(decision.image, baseImageName(VOLUME));
  });

  test('a full backup when requested, whatever the chains', () => {
    const requested = { mode: 'full', image: NEW_IMAGE, reason: 'requested' };
    assert.deepEqual(decide([image('b1', [s1, s2])], [s1, s2], { full: true }), requested);
    assert.deepEqual(decide([image('base', [s1])], [s1], { parentId: 'b1', full: true }), requested);
    assert.deepEqual(decide([], [], { full: true }), requested);
    // Even a parent that does not exist is not looked at.
    assert.deepEqual(decide([], [], { parentId: 'nope', full: true }), requested);
  });
});

describe('decideChain: incrementals continue the chain image holding their start', () => {
  test('a pre-Train .backup.base chain: from the newest common snapshot, into .backup.base', () => {
    assert.deepEqual(decide([image('base', [s1, s2, s3])], [s1, s2, s3]),
      { mode: 'incremental', image: baseImageName(VOLUME), fromSnapshot: s3, parentId: 'b3' });
  });

  test('a Train+ chain: into the full backup\'s chain image, not a new one', () => {
    assert.deepEqual(decide([image('b1', [s1, s2])], [s1, s2]),
      { mode: 'incremental', image: backupImageName(VOLUME, 'b1'), fromSnapshot: s2, parentId: 'b2' });
  });

  test('several chain images: into the one holding the newest common snapshot', () => {
    const images = [image('base', [s1]), image('b2', [s2, s3]), image('b4', [s4])];
    assert.deepEqual(decide(images, [s1, s2, s3, s4]),
      { mode: 'incremental', image: backupImageName(VOLUME, 'b4'), fromSnapshot: s4, parentId: 'b4' });
    // The newest chain's snapshot gone from the source: the chain before it continues.
    assert.deepEqual(decide(images, [s1, s2, s3]),
      { mode: 'incremental', image: backupImageName(VOLUME, 'b2'), fromSnapshot: s3, parentId: 'b3' });
    assert.deepEqual(decide(images, [s1]),
      { mode: 'incremental', image: baseImageName(VOLUME), fromSnapshot: s1, parentId: 'b1' });
  });

  test('the newest common one, ignoring snapshots on one side only', () => {
    // s4 only on the source (say a failed run), s3 only on the chain image (trimmed from the source).
    assert.deepEqual(decide([image('b1', [s1, s2, s3])], ['manual', s1, s2, s4]),
      { mode: 'incremental', image: backupImageName(VOLUME, 'b1'), fromSnapshot: s2, parentId: 'b2' });
  });

  test('the newest by time stamp, whatever the listing order', () => {
    assert.deepEqual(decide([image('b2', [s2, s3]), image('base', [s1])], [s3, s1, s2]),
      { mode: 'incremental', image: backupImageName(VOLUME, 'b2'), fromSnapshot: s3, parentId: 'b3' });
  });

  test('a legacy full copy and an unfinished image beside a chain do not matter', () => {
    const images = [image('b0', []), image('b1', [s1]), image('b9', [], 'b9')];
    assert.deepEqual(decide(images, [s1]),
      { mode: 'incremental', image: backupImageName(VOLUME, 'b1'), fromSnapshot: s1, parentId: 'b1' });
  });
});

describe('decideChain: a named parent', () => {
  test('incremental from that parent into its chain image, even when newer backups exist', () => {
    const images = [image('base', [s1, s2]), image('b3', [s3, s4])];
    assert.deepEqual(decide(images, [s1, s2, s3, s4], { parentId: 'b1' }),
      { mode: 'incremental', image: baseImageName(VOLUME), fromSnapshot: s1, parentId: 'b1' });
    assert.deepEqual(decide(images, [s1, s2, s3, s4], { parentId: 'b3' }),
      { mode: 'incremental', image: backupImageName(VOLUME, 'b3'), fromSnapshot: s3, parentId: 'b3' });
  });

  test('a parent whose snapshot is gone from the source: converted, naming the parent and its snapshot', () => {
    const decision = decide([image('b1', [s1, s2])], [s2], { parentId: 'b1' });
    assert.ok(decision.mode === 'converted', JSON.stringify(decision));
    assert.equal(decision.image, NEW_IMAGE, 'a new chain image, not the parent\'s');
    assert.match(decision.reason, /parent backup b1's snapshot/);
    assert.ok(decision.reason.includes(s1), decision.reason);
    assert.match(decision.reason, /no longer on the source volume/);
  });

  test('a parent not in the backup pool: NotFoundError naming it, not a silent full backup', () => {
    const cases: Array<[string, BackupImage[], string[]]> = [
      ['no backup image at all', [], [s1]],
      ['a chain without it', [image('b1', [s1])], [s1]],
      ['only a snapshot-less .backup.base', [image('base', [])], [s1]],
      ['only an unfinished image of that id', [image('nope', [], 'nope')], []],
    ];
    for (const [what, images, sourceSnapshots] of cases) {
      assert.throws(() => decide(images, sourceSnapshots, { parentId: 'nope' }), (error: unknown) => {
        assert.ok(error instanceof NotFoundError, `${what}: expected NotFoundError, got ${String(error)}`);
        assert.equal(error.code, 'ENOENT');
        assert.equal(error.operation, 'backup');
        assert.equal(error.resource, 'backup nope');
        assert.match(error.message, /parent backup nope is not among the backups of volume v1 in the backup pool/);
        return true;
      }, what);
    }
  });

  test('only the backup id of a snapshot name matters for a parent, not a prefix of it', () => {
    const other = snap('b1-x', 500);
    assert.throws(() => decide([image('b1-x', [other])], [other], { parentId: 'b1' }), NotFoundError);
  });

  test('a parent that is a legacy full copy (no snapshot to continue from): converted, saying so', () => {
    const decision = decide([image('b0', []), image('b1', [s1])], [s1], { parentId: 'b0' });
    assert.ok(decision.mode === 'converted', JSON.stringify(decision));
    assert.equal(decision.image, NEW_IMAGE);
    assert.match(decision.reason, /parent backup b0 is a legacy full copy/);
  });

  test('a parent with two snapshots (on one or on two chain images): InconsistentBackupError, nothing decided', () => {
    const older = snap('p', 10);
    const newer = snap('p', 20);
    for (const images of [[image('base', [older, newer])], [image('base', [older]), image('b2', [newer])]]) {
      assert.throws(() => decide(images, [older, newer], { parentId: 'p' }), (error: unknown) => {
        assert.ok(error instanceof InconsistentBackupError, `expected InconsistentBackupError, got ${String(error)}`);
        assert.ok(error instanceof CephError);
        assert.equal(error.code, 'EUCLEAN');
        assert.equal(error.errno, 117);
        assert.equal(error.resource, 'backup p');
        assert.match(error.message, /parent backup p has 2 snapshots/);
        assert.ok(error.message.includes(older) && error.message.includes(newer), error.message);
        return true;
      });
    }
  });
});

describe('decideChain: a broken chain becomes a full backup in a new chain image', () => {
  test('no common snapshot: converted, saying so', () => {
    for (const [images, sourceSnapshots] of [
      [[image('base', [s1, s2])], []],
      [[image('b1', [s1, s2])], [s3]],
      [[image('base', [s1]), image('b2', [s2])], ['manual', s4]],
    ] as Array<[BackupImage[], string[]]>) {
      const decision = decide(images, sourceSnapshots);
      assert.ok(decision.mode === 'converted', JSON.stringify(decision));
      assert.equal(decision.image, NEW_IMAGE);
      assert.match(decision.reason, /chain broken/);
      assert.match(decision.reason, /no backup snapshot is on both the source volume and a chain image/);
    }
  });
});

describe('orphanSourceSnapshots', () => {
  test('backup snapshots on the source that no chain image holds, whatever their backup id, oldest first', () => {
    const images = [image('base', [s1]), image('b2', [s2])];
    const killed = snap('killed', 250);
    assert.deepEqual(orphanSourceSnapshots([s4, 'manual', s1, killed, s2, s3], images), [killed, s3, s4]);
  });

  test('none when every backup snapshot is on a chain image; other snapshots are never orphans', () => {
    assert.deepEqual(orphanSourceSnapshots(['manual', s1, s2], [image('b1', [s1, s2])]), []);
    assert.deepEqual(orphanSourceSnapshots(['manual', 'other'], []), []);
  });

  test('without any chain image every backup snapshot is an orphan', () => {
    assert.deepEqual(orphanSourceSnapshots([s2, s1], []), [s1, s2]);
    assert.deepEqual(orphanSourceSnapshots([s1], [image('b1', []), image('b9', [], 'b9')]), [s1]);
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
