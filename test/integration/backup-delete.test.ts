/**
 * BackupEngine.delete against a real cluster: a backup's snapshot leaves
 * its chain image, a chain image goes only with its last backup snapshot
 * (each chain on its own, `.backup.base` included), the .meta object goes,
 * a legacy full copy goes whole, the source snapshot goes too when the
 * source pool is given; after every delete, in every order, the remaining
 * backups still restore byte for byte; deleting again removes nothing.
 */
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import {
  BackupEngine, BusyError, InvalidArgumentError, NotFoundError, backupImageName,
  baseImageName, metaObjectName, type BackupRecord, type BackupResult, type Cluster, type Pool,
} from '../../lib/index.js';
import { lockObjectName, VolumeLock } from '../../lib/backup/lock.js';
import { INCOMPLETE_KEY } from '../../lib/backup/inventory.js';
import { connect, rbd, uniqueName } from '../support/clusters.js';
import {
  BACKUP_POOL, POOL, VolumeFixtures, backupImagesOf, randomRanges, removeObjectQuietly, snapshotSha, snapshotsOf,
  volumeSha, useBackupTestbed,
} from '../support/backup-fixtures.js';

const MiB = 1024 * 1024;

let cluster: Cluster;
let backups: Pool;
/** Keeps every source snapshot (maxSourceSnapshots 0): every backup compares with its own. */
let engine: BackupEngine;
let fx: VolumeFixtures;

useBackupTestbed((testbed) => ({ cluster, backups, keepAll: engine, fx } = testbed));

// ---- helpers -------------------------------------------------------------

function chainSnapshots(image: string): Promise<string[] | undefined> {
  return snapshotsOf(backups, image);
}

function backupImages(volumeId: string): Promise<string[]> {
  return backupImagesOf(backups, volumeId);
}

async function sourceSnapshots(volumeId: string): Promise<string[]> {
  return fx.withVolume(volumeId, async (image) => (await image.listSnapshots()).map((s) => s.name));
}

/** Three backups of a new 16 MiB volume (one chain image), changed between them, each with a .meta object. */
async function threeBackups(t: TestContext): Promise<{ id: string; results: BackupResult[] }> {
  const size = 16 * MiB;
  const id = await fx.newVolume(t, size);
  const results: BackupResult[] = [];
  for (let i = 0; i < 3; i++) {
    await fx.writeRandom(id, randomRanges(size, 4));
    if (i === 1) await fx.withVolume(id, (image) => image.discard(4 * MiB, 4 * MiB));
    const backupId = uniqueName('b');
    t.after(() => removeObjectQuietly(backups, metaObjectName(backupId)));
    results.push(await engine.backup({
      pool: POOL, volumeId: id, backupId, volumeMetadata: { 'volume-metadata': { index: i } },
    }));
  }
  assert.deepEqual(results.map((r) => r.baseImage), results.map(() => results[0].baseImage));
  return { id, results };
}

/** Restores into a new volume (removed at the end of the test) and compares with the source snapshot. */
async function assertRestores(t: TestContext, record: BackupRecord, volumeId: string, snapshot: string): Promise<void> {
  const target = fx.targetId(t);
  const restored = await engine.restore({ backup: record, target: { volume: { pool: POOL, id: target } } });
  assert.equal(restored.path, 'diff');
  assert.equal(await volumeSha(target), await snapshotSha(volumeId, snapshot),
    `backup ${record.id} restores to ${snapshot}`);
}

/** The volume has no backup image left in the pool. */
function noBackupImages(volumeId: string, backupId: string): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof NotFoundError, `expected NotFoundError, got ${String(error)}`);
    assert.equal(error.code, 'ENOENT');
    assert.equal(error.operation, 'delete');
    assert.equal(error.resource, `${BACKUP_POOL}/backup ${backupId}`);
    assert.match(error.message, new RegExp(`volume ${volumeId} has no backup images here`));
    return true;
  };
}

/** The volume has backup images, none holding this backup. */
function notOnAnyImage(volumeId: string, backupId: string): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof NotFoundError, `expected NotFoundError, got ${String(error)}`);
    assert.equal(error.code, 'ENOENT');
    assert.equal(error.operation, 'delete');
    assert.equal(error.resource, `backup ${backupId}`);
    assert.match(error.message, new RegExp(`no snapshot of it is on any backup image of volume ${volumeId}`));
    return true;
  };
}

/** The record names a chain image that has no snapshot of the backup (any more): deleted already. */
function namesChainWithout(chain: string, backupId: string): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof NotFoundError, `expected NotFoundError, got ${String(error)}`);
    assert.equal(error.code, 'ENOENT');
    assert.equal(error.operation, 'delete');
    assert.equal(error.resource, `backup ${backupId}`);
    assert.ok(error.message.includes(`its chain image ${chain} has no snapshot of backup ${backupId}`), error.message);
    return true;
  };
}

const blankRecord = (id: string, volumeId: string, serviceMetadata: string | null): BackupRecord => ({
  id, volume_id: volumeId, container: BACKUP_POOL, service: 'cinder.backup.drivers.ceph.CephBackupDriver',
  service_metadata: serviceMetadata, size: 1, object_count: 0, parent_id: null, status: 'available', display_name: null,
  display_description: null, created_at: '2016-01-12T08:30:00Z', updated_at: null,
  data_timestamp: '2016-01-12T08:30:00Z', availability_zone: null, snapshot_id: null, num_dependent_backups: 0,
});

// ---- tests ---------------------------------------------------------------

describe('deleting three backups of one chain image in every order', () => {
  const orders: Array<[string, number[]]> = [
    ['oldest first', [0, 1, 2]],
    ['newest first', [2, 1, 0]],
    ['middle first', [1, 0, 2]],
    ['middle, then newest', [1, 2, 0]],
  ];
  for (const [what, order] of orders) {
    test(`${what}: the rest still restore, the chain image goes with the last, the .meta objects go`,
      { timeout: 180_000 }, async (t) => {
        const { id, results } = await threeBackups(t);
        const chain = results[0].baseImage;
        const remaining = new Set([0, 1, 2]);
        for (const index of order) {
          const { record, snapshot } = results[index];
          assert.equal(await backups.objectExists(metaObjectName(record.id)), true);
          const deleted = await engine.delete(record);
          remaining.delete(index);
          assert.deepEqual(deleted.removedSnapshots, [snapshot]);
          assert.equal(deleted.removedMetadata, true);
          assert.equal(deleted.removedSourceSnapshot, undefined, 'no source pool given: the source is not touched');
          assert.equal(await backups.objectExists(metaObjectName(record.id)), false, '.meta removed');
          const left = [...remaining].map((i) => results[i].snapshot);
          if (remaining.size > 0) {
            assert.deepEqual(deleted.removedImages, [], 'the chain image stays while backups remain');
            assert.deepEqual(await chainSnapshots(chain), left);
            assert.deepEqual((await engine.listBackups(id)).map((l) => l.record.id),
              [...remaining].map((i) => results[i].record.id));
            for (const i of remaining) await assertRestores(t, results[i].record, id, results[i].snapshot);
            // Deleting it again removes nothing: its record names a chain image that no longer has it.
            await assert.rejects(engine.delete(record), namesChainWithout(chain, record.id), 'deleting twice');
            assert.deepEqual(await chainSnapshots(chain), left);
          } else {
            assert.deepEqual(deleted.removedImages, [chain]);
            assert.equal(await chainSnapshots(chain), undefined, 'the chain image is gone with its last backup');
            assert.deepEqual(await backupImages(id), []);
            assert.equal(await backups.objectExists(lockObjectName(id)), false, 'the lock object is gone too');
            assert.deepEqual(await engine.listBackups(id), []);
            await assert.rejects(engine.delete(record), noBackupImages(id, record.id), 'deleting twice');
            assert.equal(await backups.objectExists(lockObjectName(id)), false, 'and no lock object is made again');
          }
        }
        // The source volume is untouched by deletes.
        assert.deepEqual(await sourceSnapshots(id), results.map((r) => r.snapshot));
      });
  }

  test('after deleting the newest, the next backup continues from the newest left and removes the orphaned source snapshot',
    { timeout: 120_000 }, async (t) => {
      const { id, results } = await threeBackups(t);
      await engine.delete(results[2].record);
      await fx.writeRandom(id, randomRanges(16 * MiB, 3));
      const next = await engine.backup({ pool: POOL, volumeId: id });
      assert.equal(next.mode, 'incremental');
      assert.equal(next.fromSnapshot, results[1].snapshot);
      assert.equal(next.baseImage, results[0].baseImage);
      // No chain image holds the deleted backup's source snapshot: the backup removed it.
      assert.deepEqual(await sourceSnapshots(id), [results[0].snapshot, results[1].snapshot, next.snapshot]);
      await assertRestores(t, next.record, id, next.snapshot);
      await assertRestores(t, results[0].record, id, results[0].snapshot);
      // Everything deleted: a fresh start is a first (full) backup again, in a new chain image.
      for (const result of [results[0], results[1], next]) await engine.delete(result.record);
      assert.deepEqual(await backupImages(id), []);
      const fresh = await engine.backup({ pool: POOL, volumeId: id });
      assert.equal(fresh.mode, 'full');
      assert.equal(fresh.convertedToFull, undefined);
      assert.equal(fresh.baseImage, backupImageName(id, fresh.record.id));
      assert.deepEqual(await sourceSnapshots(id), [fresh.snapshot], 'the orphaned source snapshots went');
      await assertRestores(t, fresh.record, id, fresh.snapshot);
    });
});

describe('chain images of both layouts', () => {
  test('two chain images: each goes with its own last backup; the lock object with the volume\'s last image',
    { timeout: 180_000 }, async (t) => {
      const id = await fx.newVolume(t, 16 * MiB);
      await fx.writeRandom(id, randomRanges(16 * MiB, 4));
      const a1 = await engine.backup({ pool: POOL, volumeId: id });
      await fx.writeRandom(id, randomRanges(16 * MiB, 4));
      const a2 = await engine.backup({ pool: POOL, volumeId: id });
      await fx.writeRandom(id, randomRanges(16 * MiB, 4));
      const b1 = await engine.backup({ pool: POOL, volumeId: id, full: true });
      await fx.writeRandom(id, randomRanges(16 * MiB, 4));
      const b2 = await engine.backup({ pool: POOL, volumeId: id });
      assert.deepEqual(await backupImages(id), [a1.baseImage, b1.baseImage].sort());
      assert.equal(b2.baseImage, b1.baseImage);

      // The full backup of the second chain goes first: its incremental stays and restores.
      assert.deepEqual(await engine.delete(b1.record),
        { removedSnapshots: [b1.snapshot], removedImages: [], removedMetadata: false, removedDigests: true, removedSourceSnapshot: undefined });
      await assertRestores(t, b2.record, id, b2.snapshot);
      // The first chain's backups go: its image goes with the last, the other chain is untouched.
      await engine.delete(a2.record);
      const lastOfA = await engine.delete(a1.record);
      assert.deepEqual(lastOfA.removedImages, [a1.baseImage]);
      assert.deepEqual(await backupImages(id), [b1.baseImage]);
      assert.equal(await backups.objectExists(lockObjectName(id)), true, 'the volume still has backups');
      assert.deepEqual((await engine.listBackups(id)).map((l) => l.record.id), [b2.record.id]);
      await assertRestores(t, b2.record, id, b2.snapshot);
      const last = await engine.delete(b2.record);
      assert.deepEqual(last.removedImages, [b1.baseImage]);
      assert.deepEqual(await backupImages(id), []);
      assert.equal(await backups.objectExists(lockObjectName(id)), false);
    });

  test('a pre-Train .backup.base chain: its backups go one by one (records with or without service_metadata), the image with the last',
    { timeout: 120_000 }, async (t) => {
      const id = await fx.newVolume(t, 16 * MiB);
      await fx.writeRandom(id, randomRanges(16 * MiB, 4));
      const first = await engine.backup({ pool: POOL, volumeId: id });
      await rbd('a', ['rename', `${BACKUP_POOL}/${first.baseImage}`, `${BACKUP_POOL}/${baseImageName(id)}`]);
      await fx.writeRandom(id, randomRanges(16 * MiB, 4));
      const second = await engine.backup({ pool: POOL, volumeId: id });
      assert.equal(second.baseImage, baseImageName(id));
      // Pre-Train records carry no service_metadata.
      const deleted = await engine.delete({ ...first.record, service_metadata: null });
      assert.deepEqual(deleted.removedSnapshots, [first.snapshot]);
      assert.deepEqual(deleted.removedImages, []);
      assert.deepEqual(await chainSnapshots(baseImageName(id)), [second.snapshot]);
      await assertRestores(t, second.record, id, second.snapshot);
      const last = await engine.delete(second.record);
      assert.deepEqual(last.removedImages, [baseImageName(id)]);
      assert.deepEqual(await backupImages(id), []);
    });
});

describe('the source snapshot', () => {
  test('with the source pool given, the backup\'s source snapshot goes too; other snapshots stay', { timeout: 120_000 },
    async (t) => {
      const id = await fx.newVolume(t, 16 * MiB);
      await fx.writeRandom(id, randomRanges(16 * MiB, 3));
      const first = await engine.backup({ pool: POOL, volumeId: id });
      await fx.withVolume(id, (image) => image.createSnapshot('manual-snapshot'));
      await fx.writeRandom(id, randomRanges(16 * MiB, 3));
      const second = await engine.backup({ pool: POOL, volumeId: id });
      const deleted = await engine.delete(first.record, { sourcePool: POOL });
      assert.equal(deleted.removedSourceSnapshot, first.snapshot);
      assert.deepEqual(deleted.removedSnapshots, [first.snapshot]);
      assert.deepEqual(await sourceSnapshots(id), ['manual-snapshot', second.snapshot]);
      await assertRestores(t, second.record, id, second.snapshot);
      // A source snapshot already gone is fine: the backup still goes.
      await fx.withVolume(id, (image) => image.removeSnapshot(second.snapshot));
      const last = await engine.delete(second.record, { sourcePool: POOL });
      assert.equal(last.removedSourceSnapshot, undefined);
      assert.deepEqual(last.removedImages, [first.baseImage]);
      assert.deepEqual(await sourceSnapshots(id), ['manual-snapshot']);
    });

  test('a bad source pool name: InvalidArgumentError, nothing removed', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    const only = await engine.backup({ pool: POOL, volumeId: id });
    for (const sourcePool of ['a/b', '']) {
      await assert.rejects(engine.delete(only.record, { sourcePool }), InvalidArgumentError, sourcePool);
    }
    assert.deepEqual(await chainSnapshots(only.baseImage), [only.snapshot]);
    assert.deepEqual(await sourceSnapshots(id), [only.snapshot]);
  });
});

describe('other deletes', () => {
  test('a legacy full copy: its image is removed, the chain-image backups stay', { timeout: 120_000 }, async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    await fx.writeRandom(id, randomRanges(8 * MiB, 3));
    const chained = await engine.backup({ pool: POOL, volumeId: id });
    const legacyId = uniqueName('legacy');
    await rbd('a', ['cp', '--no-progress', `${POOL}/volume-${id}@${chained.snapshot}`,
      `${BACKUP_POOL}/${backupImageName(id, legacyId)}`]);
    await backups.writeObject(metaObjectName(legacyId), JSON.stringify({ version: 2 }));
    t.after(() => removeObjectQuietly(backups, metaObjectName(legacyId)));
    const legacy: BackupRecord = { ...chained.record, id: legacyId, service_metadata: null };
    assert.deepEqual((await engine.listBackups(id)).map((l) => [l.record.id, l.full, l.snapshot]),
      [[chained.record.id, true, chained.snapshot], [legacyId, true, undefined]]);

    const deleted = await engine.delete(legacy, { sourcePool: POOL });
    assert.deepEqual(deleted, {
      removedSnapshots: [], removedImages: [backupImageName(id, legacyId)], removedMetadata: true, removedDigests: false, removedSourceSnapshot: undefined,
    });
    assert.equal(await backups.imageExists(backupImageName(id, legacyId)), false);
    assert.deepEqual(await chainSnapshots(chained.baseImage), [chained.snapshot]);
    assert.deepEqual(await sourceSnapshots(id), [chained.snapshot], 'a legacy copy has no source snapshot to remove');
    await assertRestores(t, chained.record, id, chained.snapshot);
    await assert.rejects(engine.delete(legacy), notOnAnyImage(id, legacyId));
  });

  test('a legacy full copy of a volume with no chain image', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    await fx.writeRandom(id, randomRanges(8 * MiB, 2));
    await fx.withVolume(id, (image) => image.createSnapshot('s'));
    const legacyId = uniqueName('legacy');
    await rbd('a', ['cp', '--no-progress', `${POOL}/volume-${id}@s`, `${BACKUP_POOL}/${backupImageName(id, legacyId)}`]);
    const deleted = await engine.delete(blankRecord(legacyId, id, null));
    assert.deepEqual(deleted.removedImages, [backupImageName(id, legacyId)]);
    assert.equal(deleted.removedMetadata, false);
    assert.deepEqual(await backupImages(id), []);
    assert.equal(await backups.objectExists(lockObjectName(id)), false, 'no backups left: no lock object');
  });

  test('a protected backup snapshot is unprotected and removed', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    await fx.writeRandom(id, randomRanges(8 * MiB, 2));
    const first = await engine.backup({ pool: POOL, volumeId: id });
    const second = await engine.backup({ pool: POOL, volumeId: id });
    await rbd('a', ['snap', 'protect', `${BACKUP_POOL}/${first.baseImage}@${first.snapshot}`]);
    const deleted = await engine.delete(first.record);
    assert.deepEqual(deleted.removedSnapshots, [first.snapshot]);
    assert.deepEqual(await chainSnapshots(first.baseImage), [second.snapshot]);
    await assertRestores(t, second.record, id, second.snapshot);
  });

  test('a chain image left without snapshots (an earlier delete could not remove it) goes on the retry', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    await fx.writeRandom(id, randomRanges(8 * MiB, 2));
    const backupId = uniqueName('b');
    t.after(() => removeObjectQuietly(backups, metaObjectName(backupId)));
    const only = await engine.backup({ pool: POOL, volumeId: id, backupId, volumeMetadata: {} });
    // What a delete whose image removal stayed busy leaves behind: the
    // snapshot gone, the chain image, its lock object and the .meta still there.
    await rbd('a', ['snap', 'rm', `${BACKUP_POOL}/${only.baseImage}@${only.snapshot}`]);
    const deleted = await engine.delete(only.record);
    assert.deepEqual(deleted,
      { removedSnapshots: [], removedImages: [only.baseImage], removedMetadata: true, removedDigests: true, removedSourceSnapshot: undefined });
    assert.deepEqual(await backupImages(id), [], 'the chain image is gone');
    assert.equal(await backups.objectExists(lockObjectName(id)), false);
    assert.equal(await backups.objectExists(metaObjectName(backupId)), false);
  });

  test('a chain image left without snapshots by the retried delete of a later backup goes on that retry',
    { timeout: 120_000 },
    async (t) => {
      const id = await fx.newVolume(t, 8 * MiB);
      await fx.writeRandom(id, randomRanges(8 * MiB, 2));
      const first = await engine.backup({ pool: POOL, volumeId: id });
      await fx.writeRandom(id, [[0, 8 * MiB]]);
      const second = await engine.backup({ pool: POOL, volumeId: id });
      await engine.delete(first.record);
      // The delete of the second (the chain's last) backup marked the image, removed its
      // snapshot, and the image removal stayed busy.
      await rbd('a', ['image-meta', 'set', `${BACKUP_POOL}/${first.baseImage}`, INCOMPLETE_KEY, second.record.id]);
      await rbd('a', ['snap', 'rm', `${BACKUP_POOL}/${first.baseImage}@${second.snapshot}`]);
      // The image's head holds the second backup's data: it is no backup of the first one.
      const target = fx.targetId(t);
      await assert.rejects(engine.restore({ backup: first.record, target: { volume: { pool: POOL, id: target } } }),
        NotFoundError, 'the deleted first backup is not restored from the chain head');
      assert.deepEqual(await engine.listBackups(id), [], 'the deleted first backup is not listed as a legacy copy');
      const retried = await engine.delete(second.record);
      assert.deepEqual(retried.removedImages, [first.baseImage]);
      assert.deepEqual(await backupImages(id), []);
    });

  test('an unknown backup id: NotFoundError, nothing removed', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    const only = await engine.backup({ pool: POOL, volumeId: id });
    const unknown = uniqueName('unknown');
    await assert.rejects(engine.delete({ ...only.record, id: unknown, service_metadata: null }), notOnAnyImage(id, unknown));
    // A record naming the chain image, which has no snapshot of it: deleted already, or never there.
    await assert.rejects(engine.delete({ ...only.record, id: unknown }), namesChainWithout(only.baseImage, unknown));
    assert.deepEqual(await chainSnapshots(only.baseImage), [only.snapshot]);
    await assertRestores(t, only.record, id, only.snapshot);
  });

  test('a volume without any backup: NotFoundError', async () => {
    const id = uniqueName('nobackups');
    try {
      for (const serviceMetadata of [JSON.stringify({ base: baseImageName(id) }), JSON.stringify({ base: backupImageName(id, 'b1') })]) {
        await assert.rejects(engine.delete(blankRecord('b1', id, serviceMetadata)), noBackupImages(id, 'b1'));
      }
    } finally {
      await removeObjectQuietly(backups, lockObjectName(id));
    }
  });

  test('a delete that finds nothing leaves no lock object behind', async () => {
    const id = uniqueName('nobackups');
    try {
      await assert.rejects(engine.delete(blankRecord('b1', id, null)), NotFoundError);
      assert.equal(await backups.objectExists(lockObjectName(id)), false);
    } finally {
      await removeObjectQuietly(backups, lockObjectName(id));
    }
  });

  test('bad ids in the record, or a record naming another volume\'s or a non-backup image: InvalidArgumentError',
    async (t) => {
      const id = await fx.newVolume(t, 8 * MiB);
      const only = await engine.backup({ pool: POOL, volumeId: id });
      const other = await fx.newVolume(t, 8 * MiB);
      const theirs = await engine.backup({ pool: POOL, volumeId: other });
      const record = blankRecord('b1', 'v1', null);
      for (const bad of [{ id: '../x' }, { id: 'A' }, { volume_id: 'a/b' }, { volume_id: 'a@b' },
        { volume_id: '', service_metadata: null }]) {
        await assert.rejects(engine.delete({ ...record, ...bad }), InvalidArgumentError, JSON.stringify(bad));
      }
      await assert.rejects(engine.delete(null as unknown as BackupRecord), InvalidArgumentError);
      for (const base of [theirs.baseImage, `volume-${other}`, `volume-${id}`, '../x']) {
        await assert.rejects(engine.delete({ ...only.record, id: theirs.record.id, service_metadata: JSON.stringify({ base }) }),
          InvalidArgumentError, base);
      }
      assert.deepEqual(await chainSnapshots(only.baseImage), [only.snapshot]);
      assert.deepEqual(await chainSnapshots(theirs.baseImage), [theirs.snapshot]);
      assert.deepEqual(await fx.withVolume(other, async (image) => (await image.listSnapshots()).map((s) => s.name)),
        [theirs.snapshot]);
    });

  test('while a backup of the volume holds its lock: BusyError with lockWaitMs 0, nothing removed', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    const only = await engine.backup({ pool: POOL, volumeId: id });
    // A live holder: it watches the lock object and answers notifies.
    const holder = await connect('a');
    const holderPool = await holder.pool(BACKUP_POOL);
    const lock = await VolumeLock.acquire(holderPool, id, 'test holder', { waitMs: 0, ttlMs: 60_000 });
    try {
      const impatient = new BackupEngine({ source: cluster, lockWaitMs: 0 });
      await assert.rejects(impatient.delete(only.record), (error: unknown) => {
        assert.ok(error instanceof BusyError, `expected BusyError, got ${String(error)}`);
        assert.equal(error.operation, 'delete');
        assert.equal(error.resource, `volume ${id}`);
        assert.match(error.message, /is held by test holder/);
        return true;
      });
      assert.deepEqual(await chainSnapshots(only.baseImage), [only.snapshot]);
    } finally {
      await lock.release();
      await holderPool.close();
      await holder.close();
    }
    await engine.delete(only.record);
    assert.deepEqual(await backupImages(id), []);
  });
});
