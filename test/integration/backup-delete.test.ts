/**
 * BackupEngine.delete against a real cluster: a backup's snapshot leaves
 * the base image, the base image goes only with the last backup snapshot,
 * the .meta object goes, a legacy backup's image goes whole; after every
 * delete, in every order, the remaining backups still restore byte for
 * byte; deleting twice is a NotFoundError.
 */
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import {
  BackupEngine, BusyError, InvalidArgumentError, NotFoundError, baseImageName, legacyImageName, metaObjectName,
  type BackupRecord, type BackupResult, type Cluster, type Pool,
} from '../../lib/index.js';
import { lockObjectName } from '../../lib/backup/lock.js';
import { connect, rbd, uniqueName } from '../support/clusters.js';
import {
  BACKUP_POOL, POOL, VolumeFixtures, randomRanges, removeObjectQuietly, snapshotSha, snapshotsOf, volumeSha,
  useBackupTestbed,
} from '../support/backup-fixtures.js';

const MiB = 1024 * 1024;

let cluster: Cluster;
let backups: Pool;
let engine: BackupEngine;
let fx: VolumeFixtures;

useBackupTestbed((testbed) => ({ cluster, backups, engine, fx } = testbed));

// ---- helpers -------------------------------------------------------------

function baseSnapshots(volumeId: string): Promise<string[] | undefined> {
  return snapshotsOf(backups, baseImageName(volumeId));
}

/** Three backups of a new 16 MiB volume, changed between them, each with a .meta object. */
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
  return { id, results };
}

/** Restores into a new volume (removed at the end of the test) and compares with the source snapshot. */
async function assertRestores(t: TestContext, record: BackupRecord, volumeId: string, snapshot: string): Promise<void> {
  const target = fx.targetId(t);
  const restored = await engine.restore({ backup: record, targetPool: POOL, targetVolumeId: target });
  assert.equal(restored.path, 'diff');
  assert.equal(await volumeSha(target), await snapshotSha(volumeId, snapshot),
    `backup ${record.id} restores to ${snapshot}`);
}

function notFound(volumeId: string, backupId: string): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof NotFoundError, `expected NotFoundError, got ${String(error)}`);
    assert.equal(error.code, 'ENOENT');
    assert.equal(error.operation, 'delete');
    assert.equal(error.resource, `${BACKUP_POOL}/${baseImageName(volumeId)}`);
    assert.match(error.message, new RegExp(`no snapshot or image of backup ${backupId} was found`));
    return true;
  };
}

// ---- tests ---------------------------------------------------------------

describe('deleting three backups in every order', () => {
  const orders: Array<[string, number[]]> = [
    ['oldest first', [0, 1, 2]],
    ['newest first', [2, 1, 0]],
    ['middle first', [1, 0, 2]],
    ['middle, then newest', [1, 2, 0]],
  ];
  for (const [what, order] of orders) {
    test(`${what}: the rest still restore, the base goes with the last, the .meta objects go`,
      { timeout: 180_000 }, async (t) => {
        const { id, results } = await threeBackups(t);
        const remaining = new Set([0, 1, 2]);
        for (const index of order) {
          const { record, snapshot } = results[index];
          assert.equal(await backups.objectExists(metaObjectName(record.id)), true);
          const deleted = await engine.delete(record);
          remaining.delete(index);
          assert.deepEqual(deleted.removedSnapshots, [snapshot]);
          assert.equal(deleted.removedMetadata, true);
          assert.equal(await backups.objectExists(metaObjectName(record.id)), false, '.meta removed');
          const left = [...remaining].map((i) => results[i].snapshot);
          if (remaining.size > 0) {
            assert.deepEqual(deleted.removedImages, [], 'the base stays while backups remain');
            assert.deepEqual(await baseSnapshots(id), left);
            assert.deepEqual((await engine.listBackups(id)).map((l) => l.record.id),
              [...remaining].map((i) => results[i].record.id));
            for (const i of remaining) await assertRestores(t, results[i].record, id, results[i].snapshot);
          } else {
            assert.deepEqual(deleted.removedImages, [baseImageName(id)]);
            assert.equal(await baseSnapshots(id), undefined, 'the base image is gone with its last backup');
            assert.equal(await backups.objectExists(lockObjectName(id)), false, 'the lock object is gone too');
            assert.deepEqual(await engine.listBackups(id), []);
          }
          await assert.rejects(engine.delete(record), notFound(id, record.id), 'deleting twice');
        }
        // The source volume is untouched by deletes.
        assert.deepEqual(await fx.withVolume(id, async (image) => (await image.listSnapshots()).map((s) => s.name)),
          results.map((r) => r.snapshot));
      });
  }

  test('after deleting the newest, the next backup continues from the newest left and restores', { timeout: 120_000 },
    async (t) => {
      const { id, results } = await threeBackups(t);
      await engine.delete(results[2].record);
      await fx.writeRandom(id, randomRanges(16 * MiB, 3));
      const next = await engine.backup({ pool: POOL, volumeId: id });
      assert.equal(next.mode, 'incremental');
      assert.equal(next.fromSnapshot, results[1].snapshot);
      await assertRestores(t, next.record, id, next.snapshot);
      await assertRestores(t, results[0].record, id, results[0].snapshot);
      // Everything deleted: a fresh start is a first (full) backup again.
      for (const result of [results[0], results[1], next]) await engine.delete(result.record);
      assert.equal(await baseSnapshots(id), undefined);
      const fresh = await engine.backup({ pool: POOL, volumeId: id });
      assert.equal(fresh.mode, 'full');
      assert.equal(fresh.convertedToFull, undefined);
      await assertRestores(t, fresh.record, id, fresh.snapshot);
    });
});

describe('other deletes', () => {
  test('a legacy backup: its image is removed, the diff-format backups stay', { timeout: 120_000 }, async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    await fx.writeRandom(id, randomRanges(8 * MiB, 3));
    const diffBackup = await engine.backup({ pool: POOL, volumeId: id });
    const legacyId = uniqueName('legacy');
    await rbd('a', ['cp', '--no-progress', `${POOL}/volume-${id}@${diffBackup.snapshot}`,
      `${BACKUP_POOL}/${legacyImageName(id, legacyId)}`]);
    await backups.writeObject(metaObjectName(legacyId), JSON.stringify({ version: 2 }));
    t.after(() => removeObjectQuietly(backups, metaObjectName(legacyId)));
    const legacy: BackupRecord = { ...diffBackup.record, id: legacyId, service_metadata: null };
    assert.deepEqual((await engine.listBackups(id)).map((l) => l.record.id), [diffBackup.record.id, legacyId]);

    const deleted = await engine.delete(legacy);
    assert.deepEqual(deleted, { removedSnapshots: [], removedImages: [legacyImageName(id, legacyId)], removedMetadata: true });
    assert.equal(await backups.imageExists(legacyImageName(id, legacyId)), false);
    assert.deepEqual(await baseSnapshots(id), [diffBackup.snapshot]);
    await assertRestores(t, diffBackup.record, id, diffBackup.snapshot);
    await assert.rejects(engine.delete(legacy), NotFoundError);
  });

  test('a legacy backup of a volume with no base image', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    await fx.writeRandom(id, randomRanges(8 * MiB, 2));
    await fx.withVolume(id, (image) => image.createSnapshot('s'));
    const legacyId = uniqueName('legacy');
    await rbd('a', ['cp', '--no-progress', `${POOL}/volume-${id}@s`, `${BACKUP_POOL}/${legacyImageName(id, legacyId)}`]);
    const record: BackupRecord = {
      id: legacyId, volume_id: id, container: BACKUP_POOL, service: 'cinder.backup.drivers.ceph.CephBackupDriver',
      service_metadata: null, size: 1, object_count: 0, parent_id: null, status: 'available', display_name: null,
      display_description: null, created_at: '2016-01-12T08:30:00Z', updated_at: null,
      data_timestamp: '2016-01-12T08:30:00Z', availability_zone: null, snapshot_id: null, num_dependent_backups: 0,
    };
    const deleted = await engine.delete(record);
    assert.deepEqual(deleted.removedImages, [legacyImageName(id, legacyId)]);
    assert.equal(deleted.removedMetadata, false);
    assert.deepEqual((await backups.listImages()).filter((n) => n.startsWith(`volume-${id}.`)), []);
  });

  test('a protected backup snapshot is unprotected and removed', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    await fx.writeRandom(id, randomRanges(8 * MiB, 2));
    const first = await engine.backup({ pool: POOL, volumeId: id });
    const second = await engine.backup({ pool: POOL, volumeId: id });
    await rbd('a', ['snap', 'protect', `${BACKUP_POOL}/${baseImageName(id)}@${first.snapshot}`]);
    const deleted = await engine.delete(first.record);
    assert.deepEqual(deleted.removedSnapshots, [first.snapshot]);
    assert.deepEqual(await baseSnapshots(id), [second.snapshot]);
    await assertRestores(t, second.record, id, second.snapshot);
  });

  test('a base image left without snapshots (an earlier delete could not remove it) goes on the retry', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    await fx.writeRandom(id, randomRanges(8 * MiB, 2));
    const backupId = uniqueName('b');
    t.after(() => removeObjectQuietly(backups, metaObjectName(backupId)));
    const only = await engine.backup({ pool: POOL, volumeId: id, backupId, volumeMetadata: {} });
    // What a delete whose image removal stayed busy leaves behind: the
    // snapshot gone, the base image, its lock object and the .meta still there.
    await rbd('a', ['snap', 'rm', `${BACKUP_POOL}/${baseImageName(id)}@${only.snapshot}`]);
    const deleted = await engine.delete(only.record);
    assert.deepEqual(deleted, { removedSnapshots: [], removedImages: [baseImageName(id)], removedMetadata: true });
    assert.equal(await baseSnapshots(id), undefined, 'the base image is gone');
    assert.equal(await backups.objectExists(lockObjectName(id)), false);
    assert.equal(await backups.objectExists(metaObjectName(backupId)), false);
  });

  test('an unknown backup id: NotFoundError, nothing removed', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    const only = await engine.backup({ pool: POOL, volumeId: id });
    const unknown = uniqueName('unknown');
    await assert.rejects(engine.delete({ ...only.record, id: unknown }), notFound(id, unknown));
    assert.deepEqual(await baseSnapshots(id), [only.snapshot]);
  });

  test('a volume without any backup: NotFoundError', async () => {
    const id = uniqueName('nobackups');
    const record: BackupRecord = {
      id: 'b1', volume_id: id, container: BACKUP_POOL, service: 'cinder.backup.drivers.ceph.CephBackupDriver',
      service_metadata: JSON.stringify({ base: baseImageName(id) }), size: 1, object_count: 0, parent_id: null,
      status: 'available', display_name: null, display_description: null, created_at: '', updated_at: null,
      data_timestamp: '', availability_zone: null, snapshot_id: null, num_dependent_backups: 0,
    };
    try {
      await assert.rejects(engine.delete(record), notFound(id, 'b1'));
    } finally {
      await removeObjectQuietly(backups, lockObjectName(id));
    }
  });

  test('a delete that finds nothing leaves no lock object behind', async () => {
    const id = uniqueName('nobackups');
    try {
      await assert.rejects(engine.delete({
        id: 'b1', volume_id: id, container: BACKUP_POOL, service: 'cinder.backup.drivers.ceph.CephBackupDriver',
        service_metadata: null, size: 1, object_count: 0, parent_id: null, status: 'available', display_name: null,
        display_description: null, created_at: '', updated_at: null, data_timestamp: '', availability_zone: null,
        snapshot_id: null, num_dependent_backups: 0,
      }), NotFoundError);
      assert.equal(await backups.objectExists(lockObjectName(id)), false);
    } finally {
      await removeObjectQuietly(backups, lockObjectName(id));
    }
  });

  test('bad ids in the record: InvalidArgumentError', async () => {
    const record: BackupRecord = {
      id: 'b1', volume_id: 'v1', container: BACKUP_POOL, service: 'cinder.backup.drivers.ceph.CephBackupDriver',
      service_metadata: null, size: 1, object_count: 0, parent_id: null, status: 'available', display_name: null,
      display_description: null, created_at: '', updated_at: null, data_timestamp: '', availability_zone: null,
      snapshot_id: null, num_dependent_backups: 0,
    };
    for (const bad of [{ id: '../x' }, { id: 'A' }, { volume_id: 'a/b' }, { volume_id: 'a@b' }]) {
      await assert.rejects(engine.delete({ ...record, ...bad }), InvalidArgumentError, JSON.stringify(bad));
    }
    await assert.rejects(engine.delete(null as unknown as BackupRecord), InvalidArgumentError);
  });

  test('while a backup of the volume holds its lock: BusyError with lockWaitMs 0, nothing removed', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    const only = await engine.backup({ pool: POOL, volumeId: id });
    const holder = await connect('a');
    const holderPool = await holder.pool(BACKUP_POOL);
    const lock = { name: 'rbd-backup', cookie: 'test-holder' };
    await holderPool.lockObject(lockObjectName(id), { ...lock, durationMs: 60_000 });
    try {
      const impatient = new BackupEngine({ source: cluster, lockWaitMs: 0 });
      await assert.rejects(impatient.delete(only.record), (error: unknown) => {
        assert.ok(error instanceof BusyError, `expected BusyError, got ${String(error)}`);
        assert.equal(error.operation, 'delete');
        assert.equal(error.resource, `volume ${id}`);
        return true;
      });
      assert.deepEqual(await baseSnapshots(id), [only.snapshot]);
    } finally {
      await holderPool.unlockObject(lockObjectName(id), lock);
      await holderPool.close();
      await holder.close();
    }
    await engine.delete(only.record);
    assert.equal(await baseSnapshots(id), undefined);
  });
});
