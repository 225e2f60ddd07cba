/**
 * Backup layouts of every Cinder release (lib/backup/layout.ts): which
 * images are chains, legacy copies or debris (and what of it the next run
 * removes: lib/backup/leftovers.ts), the listing, and where each backup's
 * data is. No cluster needed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { backupPoints, locateBackup, unfinishedImages, type BackupImage } from '../../lib/backup/layout.js';
import { InconsistentBackupError } from '../../lib/backup/errors.js';
import {
  parseBackupImageName, parseUnfinishedImageName, subjectOfBackupImage, unfinishedImageName, volumeSubject,
} from '../../lib/backup/naming.js';
import { NotFoundError } from '../../lib/ceph/errors.js';
import type { SnapshotInfo, TrashedSnapshot } from '../../lib/ceph/snapshot.js';
import { findLeftovers } from '../../lib/backup/leftovers.js';

const V = 'vol1';
let nextId = 1n;

function snap(backupId: string, seconds: number): SnapshotInfo {
  return {
    id: nextId++, name: `backup.${backupId}.snap.${seconds}.5`, size: 1n << 30n,
    timestamp: new Date(seconds * 1000), protected: false,
  };
}

function image(suffix: string, snapshots: SnapshotInfo[], extra: Partial<BackupImage> = {}): BackupImage {
  return {
    name: `volume-${V}.backup.${suffix}`, suffix, size: 1n << 30n, createdAt: new Date(1000), snapshots,
    incomplete: undefined, trashed: [], infos: new Map(), pending: [], ...extra,
  };
}

const lookup = (backupId: string, namedImage?: string) =>
  ({ subject: V, backupId, namedImage, fromVolumeSnapshot: false });

describe('backupPoints', () => {
  test('every backup of every chain, oldest first, parents within their chain', () => {
    const images = [
      image('base', [snap('old1', 100), snap('old2', 200)]),
      image('f1', [snap('f1', 300), snap('i1', 400), snap('i2', 600)]),
      image('f2', [snap('f2', 500)]),
      image('legacy1', [], { createdAt: new Date(550_000) }),
    ];
    const points = backupPoints(images);
    assert.deepEqual(points.map((p) => [p.backupId, p.parentId, p.image.suffix]), [
      ['old1', null, 'base'], ['old2', 'old1', 'base'], ['f1', null, 'f1'], ['i1', 'f1', 'f1'],
      ['f2', null, 'f2'], ['legacy1', null, 'legacy1'], ['i2', 'i1', 'f1'],
    ]);
    assert.equal(points.find((p) => p.backupId === 'legacy1')!.snapshot, undefined);
  });

  test('images a run of ours did not finish and a snapshot-less .backup.base hold no listed backup', () => {
    const debris = image('b9', [], { incomplete: 'b9' });
    const images = [debris, image('base', [])];
    assert.deepEqual(backupPoints(images), []);
    assert.deepEqual(unfinishedImages(images), [debris]);
  });
});

describe('locateBackup', () => {
  const chainF1 = image('f1', [snap('f1', 300), snap('i1', 400)]);
  const base = image('base', [snap('old1', 100)]);
  const legacy = image('legacy1', []);
  const images = [chainF1, base, legacy];

  test('a backup in a chain is its snapshot there, never the chain head', () => {
    for (const named of [undefined, chainF1.name]) {
      const found = locateBackup(images, lookup('f1', named), 'restore');
      assert.equal(found.image, chainF1);
      assert.equal(found.snapshot?.name, chainF1.snapshots[0].name);
    }
    assert.equal(locateBackup(images, lookup('old1'), 'restore').snapshot?.name, base.snapshots[0].name);
  });

  test('a legacy full copy is its head', () => {
    const found = locateBackup(images, lookup('legacy1'), 'restore');
    assert.equal(found.image, legacy);
    assert.equal(found.snapshot, undefined);
  });

  test('a record naming a chain image that lacks the snapshot is refused, naming both', () => {
    // The snapshot is on another image: the pool contradicts the record.
    assert.throws(() => locateBackup(images, lookup('old1', chainF1.name), 'restore'),
      (e: unknown) => e instanceof InconsistentBackupError && /volume-vol1\.backup\.f1/.test(e.message) && /volume-vol1\.backup\.base/.test(e.message));
    // On no image at all: deleted already.
    assert.throws(() => locateBackup(images, lookup('nope', chainF1.name), 'restore'),
      (e: unknown) => e instanceof NotFoundError && /volume-vol1\.backup\.f1/.test(e.message) && /backup nope/.test(e.message));
  });

  test('a named image without backup snapshots is never a legacy copy: its head is no backup', () => {
    // What a delete leaves when removing the emptied chain image fails (Cinder writes
    // service_metadata only for chain backups, never for a legacy copy).
    const emptied = image('b1', []);
    assert.throws(() => locateBackup([emptied], lookup('b1', emptied.name), 'restore'), NotFoundError);
    const marked = image('b1', [], { incomplete: 'b2' });
    assert.throws(() => locateBackup([marked], lookup('b1'), 'restore'), NotFoundError);
    assert.deepEqual(backupPoints([marked]), []);
  });

  test('a snapshot on two chain images, or two snapshots of one backup, is refused', () => {
    const twice = [image('f1', [snap('x', 1)]), image('f2', [snap('x', 2)])];
    assert.throws(() => locateBackup(twice, lookup('x'), 'restore'), InconsistentBackupError);
    const doubled = [image('f1', [snap('x', 1), snap('x', 2)])];
    assert.throws(() => locateBackup(doubled, lookup('x'), 'restore'), InconsistentBackupError);
  });

  test('a named image that is missing, unfinished or another backup\'s legacy copy is not found', () => {
    assert.throws(() => locateBackup(images, lookup('zz', `volume-${V}.backup.gone`), 'restore'), NotFoundError);
    const debris = image('b9', [], { incomplete: 'b9' });
    assert.throws(() => locateBackup([debris], lookup('b9', debris.name), 'restore'), NotFoundError);
    assert.throws(() => locateBackup([debris], lookup('b9'), 'restore'), NotFoundError);
    assert.throws(() => locateBackup(images, lookup('other', legacy.name), 'restore'), NotFoundError);
    assert.throws(() => locateBackup(images, lookup('unknown'), 'restore'), NotFoundError);
  });

  test('a backup of a volume snapshot is the head of a snapshot-less .backup.base', () => {
    const plainBase = image('base', []);
    assert.equal(locateBackup([plainBase], { ...lookup('s1'), fromVolumeSnapshot: true }, 'restore').image, plainBase);
    assert.throws(() => locateBackup([plainBase], lookup('s1'), 'restore'), NotFoundError);
  });
});

describe('unfinished chain image names', () => {
  test('carry the backup id, are no backup image name, and still name their volume', () => {
    assert.equal(unfinishedImageName('v1', 'b1'), 'volume-v1.backup.b1.unfinished');
    assert.equal(parseUnfinishedImageName('v1', 'volume-v1.backup.b1.unfinished'), 'b1');
    assert.equal(parseUnfinishedImageName('v1', 'volume-v1.backup.base.unfinished'), undefined);
    assert.equal(parseUnfinishedImageName('v2', 'volume-v1.backup.b1.unfinished'), undefined);
    assert.equal(parseBackupImageName('v1', 'volume-v1.backup.b1.unfinished'), undefined);
    assert.deepEqual(subjectOfBackupImage('volume-v1.backup.b1.unfinished'), volumeSubject('v1', 'test'));
    assert.deepEqual(subjectOfBackupImage('volume-v1.backup.base'), volumeSubject('v1', 'test'));
    assert.equal(subjectOfBackupImage('volume-v1.backup.b1.other'), undefined);
    assert.equal(subjectOfBackupImage('volume-v1'), undefined);
  });

  test('an image marked incomplete holds no backup even with snapshots', () => {
    const killed = image('b1', [snap('b1', 10)], { incomplete: 'b1' });
    assert.deepEqual(backupPoints([killed]), []);
    assert.deepEqual(unfinishedImages([killed]), [killed]);
    assert.throws(() => locateBackup([killed], lookup('b1'), 'restore'), NotFoundError);
  });
});

describe('findLeftovers', () => {
  const trash = (id: bigint, originalName: string): TrashedSnapshot => ({ id, name: `uuid-${id}`, originalName });

  test('orphan source snapshots, unfinished images, and trashed backup snapshots of the volume and of the images that stay', () => {
    const kept = image('f1', [snap('f1', 100)], { trashed: [trash(7n, 'backup.x.snap.1.5')] });
    // An unfinished image goes whole, its trash with it.
    const debris = image('b9', [], { incomplete: 'b9', trashed: [trash(8n, 'backup.b9.snap.2.5')] });
    const found = findLeftovers([kept, debris], {
      names: [kept.snapshots[0]!.name, 'backup.orphan.snap.3.5', 'manual'],
      trashed: [trash(9n, 'backup.y.snap.4.5')],
    });
    assert.deepEqual(found.snapshots, ['backup.orphan.snap.3.5']);
    assert.deepEqual(found.images, [debris]);
    assert.deepEqual(found.trashed.map((t) => [t.image, t.snapshot.id]), [[undefined, 9n], [kept.name, 7n]]);
  });

  test('without the source volume, only the backup pool\'s', () => {
    const kept = image('f1', [snap('f1', 100)], { trashed: [trash(7n, 'backup.x.snap.1.5')] });
    const found = findLeftovers([kept], undefined);
    assert.deepEqual(found.snapshots, []);
    assert.deepEqual(found.trashed.map((t) => [t.image, t.snapshot.id]), [[kept.name, 7n]]);
  });
});
