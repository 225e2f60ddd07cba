/**
 * BackupEngine.backup against a real cluster, with Cinder's Ceph backup
 * semantics (DESIGN.md section 4): the base image volume-<id>.backup.base
 * with one snapshot per backup, full then incremental backups, chains broken
 * and converted to full backups, source snapshot trimming, the .meta
 * object, cancellation leaving nothing behind, the per-volume lock, typed
 * refusals, and backupMany.
 *
 * Every data check compares sha256 of `rbd export` of the source snapshot
 * with `rbd export` of the restored volume.
 */
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AlreadyExistsError, BackupEngine, BusyError, CancelledError, CephError, InvalidArgumentError, NotFoundError,
  backupSnapshotName, baseImageName, metaObjectName, parseBackupSnapshotName,
  type BackupRecord, type BackupResult, type Cluster, type Pool, type RestoreResult,
} from '../../lib/index.js';
import { lockObjectName } from '../../lib/backup/lock.js';
import { connect, rbd, rbdExportSha256, uniqueName } from '../support/clusters.js';
import {
  BACKUP_POOL, POOL, VOLUME_FEATURES, VolumeFixtures, randomRanges, removeImagePatiently, removeObjectQuietly,
  snapshotSha, snapshotsOf, volumeSha, useBackupTestbed,
} from '../support/backup-fixtures.js';

const MiB = 1024 * 1024;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

let cluster: Cluster;
let volumes: Pool;
let backups: Pool;
let engine: BackupEngine;
let fx: VolumeFixtures;

useBackupTestbed((testbed) => ({ cluster, volumes, backups, engine, fx } = testbed));

// ---- helpers -------------------------------------------------------------

async function sourceSnapshots(volumeId: string): Promise<string[]> {
  return fx.withVolume(volumeId, async (image) => (await image.listSnapshots()).map((s) => s.name));
}

function baseSnapshots(volumeId: string): Promise<string[] | undefined> {
  return snapshotsOf(backups, baseImageName(volumeId));
}

function forgetMeta(t: TestContext, backupId: string): void {
  t.after(() => removeObjectQuietly(backups, metaObjectName(backupId)));
}

function isResult(value: BackupResult | BackupRecord): value is BackupResult {
  return typeof (value as BackupResult).stats === 'object' && typeof (value as BackupResult).record === 'object';
}

/** Restores into a new volume (removed when the test ends) and checks its bytes against the snapshot. */
async function assertRestores(t: TestContext, result: BackupResult | BackupRecord, volumeId: string,
  snapshot: string, using: BackupEngine = engine): Promise<RestoreResult> {
  const record = isResult(result) ? result.record : result;
  const target = fx.targetId(t);
  const restored = await using.restore({ backup: record, targetPool: POOL, targetVolumeId: target });
  assert.equal(restored.targetVolumeId, target);
  assert.equal(restored.target, `${POOL}/volume-${target}`);
  assert.equal(await volumeSha(target), await snapshotSha(volumeId, snapshot),
    `restore of backup ${record.id} equals ${snapshot}`);
  return restored;
}

function settled(promise: Promise<unknown>): () => boolean {
  let done = false;
  promise.then(() => { done = true; }, () => { done = true; });
  return () => done;
}

// ---- tests ---------------------------------------------------------------

describe('full and incremental backups', () => {
  test('a full backup, then incrementals with writes, a discard and a resize: every one restores to its snapshot',
    { timeout: 300_000 }, async (t) => {
      const size = 64 * MiB;
      const id = await fx.newVolume(t, size);
      await fx.writeRandom(id, [[0, 1 * MiB], [4 * MiB - 4096, 8192], [20 * MiB, 5 * MiB], [size - 1 * MiB, 1 * MiB]]);

      const backupId = uniqueName('b');
      const first = await engine.backup({
        pool: POOL, volumeId: id, backupId, displayName: 'first', displayDescription: 'the first backup',
      });
      assert.equal(first.mode, 'full');
      assert.equal(first.fromSnapshot, undefined);
      assert.equal(first.convertedToFull, undefined);
      assert.equal(first.baseImage, `volume-${id}.backup.base`);
      assert.match(first.snapshot, new RegExp(`^backup\\.${backupId}\\.snap\\.\\d+\\.\\d+$`));
      assert.equal(parseBackupSnapshotName(first.snapshot)?.backupId, backupId);
      assert.equal(first.stats.size, BigInt(size));
      const record = first.record;
      assert.equal(record.id, backupId);
      assert.equal(record.volume_id, id);
      assert.equal(record.container, BACKUP_POOL);
      assert.equal(record.service, 'cinder.backup.drivers.ceph.CephBackupDriver');
      assert.deepEqual(JSON.parse(record.service_metadata!), { base: `volume-${id}.backup.base` });
      assert.equal(record.size, 1, 'size in GiB, rounded up');
      assert.equal(record.object_count, 0);
      assert.equal(record.parent_id, null);
      assert.equal(record.status, 'available');
      assert.equal(record.display_name, 'first');
      assert.equal(record.display_description, 'the first backup');
      assert.match(record.created_at, ISO);
      assert.match(record.data_timestamp, ISO);
      assert.equal(record.num_dependent_backups, 0);

      const results: BackupResult[] = [first];
      const steps: Array<{ what: string; change: () => Promise<void> }> = [
        { what: 'random writes', change: () => fx.writeRandom(id, randomRanges(size, 6)) },
        {
          what: 'writes and discards (a whole object and part of one)',
          change: async () => {
            await fx.writeRandom(id, randomRanges(size, 3));
            await fx.withVolume(id, async (image) => {
              await image.discard(20 * MiB, 4 * MiB);
              await image.discard(size - 512 * 1024, 256 * 1024);
            });
          },
        },
        {
          what: 'an extension with writes past the old end',
          change: async () => {
            await fx.withVolume(id, (image) => image.resize(size + 8 * MiB));
            await fx.writeRandom(id, [[size + 1 * MiB, 2 * MiB], [size - 4096, 8192]]);
          },
        },
        { what: 'nothing', change: async () => undefined },
        { what: 'writes after a no-op backup', change: () => fx.writeRandom(id, randomRanges(size, 4)) },
      ];
      for (const step of steps) {
        await step.change();
        const previous = results[results.length - 1];
        const result = await engine.backup({ pool: POOL, volumeId: id });
        assert.equal(result.mode, 'incremental', step.what);
        assert.equal(result.fromSnapshot, previous.snapshot, step.what);
        assert.equal(result.convertedToFull, undefined);
        assert.equal(result.record.parent_id, previous.record.id, step.what);
        assert.match(result.record.id, UUID, 'a new UUID when no backup id is given');
        assert.equal(result.record.display_name, null);
        assert.equal(result.baseImage, first.baseImage);
        if (step.what === 'nothing') assert.equal(result.stats.bytesRead, 0, 'an unchanged volume reads nothing');
        results.push(result);
      }
      assert.equal(results[3].stats.size, BigInt(size + 8 * MiB));

      // One base snapshot per backup, named as on the source, in order; the source keeps all (maxSourceSnapshots 0).
      const snapshots = results.map((r) => r.snapshot);
      assert.deepEqual(await baseSnapshots(id), snapshots);
      assert.deepEqual(await sourceSnapshots(id), snapshots);
      const base = await backups.openImage(baseImageName(id), { readOnly: true });
      try {
        const stat = await base.stat();
        assert.equal(stat.size, BigInt(size + 8 * MiB));
        for (const feature of VOLUME_FEATURES) assert.ok(stat.features.includes(feature), `base has ${feature}`);
      } finally {
        await base.close();
      }
      assert.equal(await backups.imageExists(`volume-${id}`), false, 'nothing else in the backup pool');

      // Every backup restores by the diff path to exactly its snapshot's bytes.
      for (const result of results) {
        const restored = await assertRestores(t, result, id, result.snapshot);
        assert.equal(restored.path, 'diff');
        assert.equal(restored.failedCondition, undefined);
        assert.equal(restored.source, `${BACKUP_POOL}/volume-${id}.backup.base@${result.snapshot}`);
      }

      // The pool itself lists them, oldest first, each the parent of the next.
      const listed = await engine.listBackups(id);
      assert.deepEqual(listed.map((l) => l.record.id), results.map((r) => r.record.id));
      assert.deepEqual(listed.map((l) => l.snapshot), snapshots);
      assert.deepEqual(listed.map((l) => l.record.parent_id), [null, ...results.slice(0, -1).map((r) => r.record.id)]);
      // A listed record and an exported-then-imported one restore as well.
      await assertRestores(t, listed[2].record, id, snapshots[2]);
      await assertRestores(t, engine.importRecord(engine.exportRecord(results[4].record)), id, snapshots[4]);
    });

  test('a named parent: incremental from that backup, not the newest', { timeout: 120_000 }, async (t) => {
    const id = await fx.newVolume(t, 16 * MiB);
    await fx.writeRandom(id, randomRanges(16 * MiB, 4));
    const first = await engine.backup({ pool: POOL, volumeId: id });
    await fx.writeRandom(id, randomRanges(16 * MiB, 4));
    const second = await engine.backup({ pool: POOL, volumeId: id });
    await fx.writeRandom(id, randomRanges(16 * MiB, 4));
    const third = await engine.backup({ pool: POOL, volumeId: id, parentId: first.record.id });
    assert.equal(third.mode, 'incremental');
    assert.equal(third.fromSnapshot, first.snapshot);
    assert.equal(third.record.parent_id, first.record.id);
    assert.equal(third.convertedToFull, undefined);
    await assertRestores(t, third, id, third.snapshot);
    await assertRestores(t, second, id, second.snapshot);
    await assertRestores(t, first, id, first.snapshot);
  });

  test('full: true takes a full backup into the existing base', { timeout: 120_000 }, async (t) => {
    const id = await fx.newVolume(t, 16 * MiB);
    await fx.writeRandom(id, [[0, 16 * MiB]]);
    const first = await engine.backup({ pool: POOL, volumeId: id });
    // Holes where the base has data: a full transfer into a used base must write them.
    await fx.withVolume(id, (image) => image.discard(4 * MiB, 8 * MiB));
    await fx.writeRandom(id, randomRanges(16 * MiB, 3));
    const full = await engine.backup({ pool: POOL, volumeId: id, full: true });
    assert.equal(full.mode, 'full');
    assert.equal(full.fromSnapshot, undefined);
    assert.equal(full.convertedToFull, undefined, 'requested, not converted');
    assert.equal(full.record.parent_id, null);
    assert.deepEqual(await baseSnapshots(id), [first.snapshot, full.snapshot]);
    await assertRestores(t, full, id, full.snapshot);
    await assertRestores(t, first, id, first.snapshot);
  });
});

describe('other volumes', () => {
  test('an empty volume backs up and restores as zeros', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    const first = await engine.backup({ pool: POOL, volumeId: id });
    assert.equal(first.stats.bytesRead, 0);
    await assertRestores(t, first, id, first.snapshot);
    const second = await engine.backup({ pool: POOL, volumeId: id });
    assert.equal(second.mode, 'incremental');
    await assertRestores(t, second, id, second.snapshot);
  });

  test('stripeUnit and stripeCount shape a new base image; its backups restore', { timeout: 120_000 }, async (t) => {
    const striped = new BackupEngine({ source: cluster, stripeUnit: 1 * MiB, stripeCount: 4 });
    const id = await fx.newVolume(t, 32 * MiB);
    await fx.writeRandom(id, randomRanges(32 * MiB, 6));
    const first = await striped.backup({ pool: POOL, volumeId: id });
    const base = await backups.openImage(baseImageName(id), { readOnly: true });
    try {
      const stat = await base.stat();
      assert.equal(stat.stripeUnit, BigInt(1 * MiB));
      assert.equal(stat.stripeCount, 4n);
    } finally {
      await base.close();
    }
    await fx.writeRandom(id, randomRanges(32 * MiB, 6));
    const second = await striped.backup({ pool: POOL, volumeId: id });
    await assertRestores(t, first, id, first.snapshot, striped);
    await assertRestores(t, second, id, second.snapshot, striped);
  });
});

describe('a broken chain becomes a full backup', () => {
  test('the newest common snapshot gone from the source: incremental from the one before',
    { timeout: 120_000 }, async (t) => {
      const id = await fx.newVolume(t, 16 * MiB);
      await fx.writeRandom(id, randomRanges(16 * MiB, 4));
      const first = await engine.backup({ pool: POOL, volumeId: id });
      await fx.writeRandom(id, [[0, 6 * MiB]]);
      const second = await engine.backup({ pool: POOL, volumeId: id });
      await fx.withVolume(id, (image) => image.removeSnapshot(second.snapshot));
      await fx.writeRandom(id, [[10 * MiB, 2 * MiB]]);
      const third = await engine.backup({ pool: POOL, volumeId: id });
      assert.equal(third.mode, 'incremental');
      assert.equal(third.fromSnapshot, first.snapshot);
      assert.equal(third.record.parent_id, first.record.id);
      // The base head held the second backup's data: the third must not carry it.
      await assertRestores(t, third, id, third.snapshot);
      await assertRestores(t, first, id, first.snapshot);
      // The second backup is still on the base; its source snapshot is gone, so compare with a fresh full restore.
      assert.deepEqual(await baseSnapshots(id), [first.snapshot, second.snapshot, third.snapshot]);
    });

  test('no backup snapshot left on the source: converted to full, saying why', { timeout: 120_000 }, async (t) => {
    const id = await fx.newVolume(t, 16 * MiB);
    await fx.writeRandom(id, [[0, 16 * MiB]]);
    const first = await engine.backup({ pool: POOL, volumeId: id });
    await fx.writeRandom(id, randomRanges(16 * MiB, 3));
    const second = await engine.backup({ pool: POOL, volumeId: id });
    await fx.withVolume(id, async (image) => {
      await image.removeSnapshot(first.snapshot);
      await image.removeSnapshot(second.snapshot);
      await image.discard(0, 8 * MiB);
    });
    await fx.writeRandom(id, randomRanges(16 * MiB, 3));
    const third = await engine.backup({ pool: POOL, volumeId: id });
    assert.equal(third.mode, 'full');
    assert.equal(third.fromSnapshot, undefined);
    assert.equal(third.record.parent_id, null);
    assert.ok(third.convertedToFull, 'convertedToFull says why');
    assert.match(third.convertedToFull, /chain broken/);
    assert.match(third.convertedToFull, /no backup snapshot is on both the source volume and the backup base image/);
    assert.deepEqual(await baseSnapshots(id), [first.snapshot, second.snapshot, third.snapshot]);
    await assertRestores(t, third, id, third.snapshot);
    // The next one is an incremental from the converted one again.
    await fx.writeRandom(id, randomRanges(16 * MiB, 2));
    const fourth = await engine.backup({ pool: POOL, volumeId: id });
    assert.equal(fourth.mode, 'incremental');
    assert.equal(fourth.fromSnapshot, third.snapshot);
    await assertRestores(t, fourth, id, fourth.snapshot);
  });

  test('the common snapshot gone from the base: converted to full', { timeout: 120_000 }, async (t) => {
    const id = await fx.newVolume(t, 16 * MiB);
    await fx.writeRandom(id, [[0, 16 * MiB]]);
    const first = await engine.backup({ pool: POOL, volumeId: id });
    const second = await engine.backup({ pool: POOL, volumeId: id, full: true });
    await rbd('a', ['snap', 'rm', `${BACKUP_POOL}/${baseImageName(id)}@${first.snapshot}`]);
    await rbd('a', ['snap', 'rm', `${BACKUP_POOL}/${baseImageName(id)}@${second.snapshot}`]);
    // The base still exists (with no backup snapshot): "first backup", a full one into the old image.
    await fx.writeRandom(id, randomRanges(16 * MiB, 3));
    const third = await engine.backup({ pool: POOL, volumeId: id });
    assert.equal(third.mode, 'full');
    assert.equal(third.fromSnapshot, undefined);
    await assertRestores(t, third, id, third.snapshot);

    // Then the base loses every snapshot the source has, and gets one of another backup only.
    await fx.writeRandom(id, randomRanges(16 * MiB, 3));
    const fourth = await engine.backup({ pool: POOL, volumeId: id });
    assert.equal(fourth.fromSnapshot, third.snapshot);
    await rbd('a', ['snap', 'rm', `${BACKUP_POOL}/${baseImageName(id)}@${third.snapshot}`]);
    await rbd('a', ['snap', 'rm', `${BACKUP_POOL}/${baseImageName(id)}@${fourth.snapshot}`]);
    await rbd('a', ['snap', 'create', `${BACKUP_POOL}/${baseImageName(id)}@${backupSnapshotName('other')}`]);
    await fx.writeRandom(id, randomRanges(16 * MiB, 3));
    const fifth = await engine.backup({ pool: POOL, volumeId: id });
    assert.equal(fifth.mode, 'full');
    assert.match(fifth.convertedToFull ?? '', /chain broken/);
    assert.equal(fifth.record.parent_id, null);
    await assertRestores(t, fifth, id, fifth.snapshot);
  });

  test('a named parent whose snapshot is gone: converted, naming the parent', { timeout: 120_000 }, async (t) => {
    const id = await fx.newVolume(t, 16 * MiB);
    await fx.writeRandom(id, randomRanges(16 * MiB, 4));
    const first = await engine.backup({ pool: POOL, volumeId: id });
    await fx.writeRandom(id, randomRanges(16 * MiB, 4));
    await engine.backup({ pool: POOL, volumeId: id });
    await fx.withVolume(id, (image) => image.removeSnapshot(first.snapshot));
    await fx.writeRandom(id, randomRanges(16 * MiB, 4));
    const third = await engine.backup({ pool: POOL, volumeId: id, parentId: first.record.id });
    assert.equal(third.mode, 'full');
    assert.equal(third.fromSnapshot, undefined);
    assert.equal(third.record.parent_id, null);
    assert.match(third.convertedToFull ?? '', new RegExp(`parent backup ${first.record.id}`));
    await assertRestores(t, third, id, third.snapshot);

    const unknownParent = await engine.backup({ pool: POOL, volumeId: id, parentId: 'no-such-backup' });
    assert.equal(unknownParent.mode, 'full');
    assert.match(unknownParent.convertedToFull ?? '', /parent backup no-such-backup/);
    await assertRestores(t, unknownParent, id, unknownParent.snapshot);
  });

  test('a named parent on the first backup of a volume: converted, not silently full', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    await fx.writeRandom(id, [[0, 1 * MiB]]);
    const result = await engine.backup({ pool: POOL, volumeId: id, parentId: 'some-parent' });
    assert.equal(result.mode, 'full');
    assert.match(result.convertedToFull ?? '', /parent backup some-parent has no snapshot on the backup base image/);
    await assertRestores(t, result, id, result.snapshot);
  });
});

test('maxSourceSnapshots 2: the source keeps the 2 newest backup snapshots, the base all', { timeout: 180_000 },
  async (t) => {
    const trimming = new BackupEngine({ source: cluster, maxSourceSnapshots: 2 });
    const id = await fx.newVolume(t, 16 * MiB);
    await fx.withVolume(id, (image) => image.createSnapshot('manual-snapshot'));
    const results: BackupResult[] = [];
    for (let i = 0; i < 4; i++) {
      await fx.writeRandom(id, randomRanges(16 * MiB, 3));
      const result = await trimming.backup({ pool: POOL, volumeId: id });
      if (i > 0) assert.equal(result.fromSnapshot, results[i - 1].snapshot);
      results.push(result);
      const kept = results.slice(-2).map((r) => r.snapshot);
      assert.deepEqual((await sourceSnapshots(id)).filter((s) => s !== 'manual-snapshot'), kept, `after backup ${i + 1}`);
    }
    assert.ok((await sourceSnapshots(id)).includes('manual-snapshot'), 'other snapshots are never trimmed');
    assert.deepEqual(await baseSnapshots(id), results.map((r) => r.snapshot));
    // The newest two compare against their source snapshots; all four restore.
    await assertRestores(t, results[3], id, results[3].snapshot, trimming);
    await assertRestores(t, results[2], id, results[2].snapshot, trimming);
    for (const result of results.slice(0, 2)) {
      const restored = await trimming.restore({ backup: result.record, targetPool: POOL });
      t.after(() => removeImagePatiently(volumes, `volume-${restored.targetVolumeId}`));
      assert.equal(restored.path, 'diff');
      assert.equal(await rbdExportSha256('a', `${POOL}/volume-${restored.targetVolumeId}`),
        await rbdExportSha256('a', `${BACKUP_POOL}/${baseImageName(id)}@${result.snapshot}`));
    }
  });

describe('the .meta object', () => {
  test('volumeMetadata is written to backup.<id>.meta as version 2', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    await fx.writeRandom(id, [[0, 1 * MiB]]);
    const backupId = uniqueName('b');
    forgetMeta(t, backupId);
    const volumeMetadata = {
      'volume-base-metadata': { display_name: 'db', size: 1 },
      'volume-metadata': { role: 'primary' },
      'volume-glance-metadata': { image_name: 'debian-12' },
    };
    const result = await engine.backup({ pool: POOL, volumeId: id, backupId, volumeMetadata });
    const stored = JSON.parse((await backups.readObject(`backup.${backupId}.meta`)).toString('utf8'));
    assert.deepEqual(stored, { version: 2, ...volumeMetadata });
    await assertRestores(t, result, id, result.snapshot);
  });

  test('without volumeMetadata no .meta object is written', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    const backupId = uniqueName('b');
    forgetMeta(t, backupId);
    await engine.backup({ pool: POOL, volumeId: id, backupId });
    assert.equal(await backups.objectExists(metaObjectName(backupId)), false);
  });

  test('a second backup with the same id and metadata is refused and leaves nothing', { timeout: 120_000 },
    async (t) => {
      const id = await fx.newVolume(t, 16 * MiB);
      await fx.writeRandom(id, [[0, 16 * MiB]]);
      const backupId = uniqueName('b');
      forgetMeta(t, backupId);
      const first = await engine.backup({ pool: POOL, volumeId: id, backupId, volumeMetadata: { 'volume-metadata': { n: 1 } } });
      await fx.writeRandom(id, [[2 * MiB, 6 * MiB]]);
      await assert.rejects(
        engine.backup({ pool: POOL, volumeId: id, backupId, volumeMetadata: { 'volume-metadata': { n: 2 } } }),
        (error: unknown) => {
          assert.ok(error instanceof AlreadyExistsError, `expected AlreadyExistsError, got ${String(error)}`);
          assert.equal(error.code, 'EEXIST');
          // Refused up front, on the id itself, before its .meta object is even tried.
          assert.equal(error.resource, `volume ${id}`);
          assert.match(error.message, new RegExp(`backup id ${backupId} is already used`));
          return true;
        });
      assert.deepEqual(await sourceSnapshots(id), [first.snapshot], 'no new source snapshot');
      assert.deepEqual(await baseSnapshots(id), [first.snapshot], 'no new base snapshot');
      assert.deepEqual(JSON.parse((await backups.readObject(metaObjectName(backupId))).toString()),
        { version: 2, 'volume-metadata': { n: 1 } }, 'the first .meta is untouched');
      await assertRestores(t, first, id, first.snapshot);
      await fx.writeRandom(id, [[12 * MiB, 1 * MiB]]);
      const next = await engine.backup({ pool: POOL, volumeId: id });
      assert.equal(next.fromSnapshot, first.snapshot);
      await assertRestores(t, next, id, next.snapshot);
    });

  test('a second backup reusing a backup id (no metadata) is refused', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    await fx.writeRandom(id, [[0, 1 * MiB]]);
    const backupId = uniqueName('b');
    const first = await engine.backup({ pool: POOL, volumeId: id, backupId });
    await fx.writeRandom(id, [[0, 1 * MiB]]);
    await assert.rejects(engine.backup({ pool: POOL, volumeId: id, backupId }), AlreadyExistsError);
    assert.deepEqual(await baseSnapshots(id), [first.snapshot]);
    await assertRestores(t, first, id, first.snapshot);
  });
});

test('a source snapshot left by an interrupted run of the same id is removed, and the retry succeeds',
  { timeout: 120_000 }, async (t) => {
    const id = await fx.newVolume(t, 16 * MiB);
    await fx.writeRandom(id, [[0, 16 * MiB]]);
    const first = await engine.backup({ pool: POOL, volumeId: id });
    await fx.writeRandom(id, [[3 * MiB, 2 * MiB]]);
    const backupId = uniqueName('b');
    // What a run of backupId killed during its transfer leaves: its source
    // snapshot, and nothing of it on the base image.
    const leftover = backupSnapshotName(backupId, new Date(Date.now() - 60_000));
    await fx.withVolume(id, (image) => image.createSnapshot(leftover));
    await fx.writeRandom(id, [[9 * MiB, 1 * MiB]]);
    const retry = await engine.backup({ pool: POOL, volumeId: id, backupId });
    assert.equal(retry.mode, 'incremental');
    assert.equal(retry.fromSnapshot, first.snapshot);
    assert.notEqual(retry.snapshot, leftover);
    assert.deepEqual(await sourceSnapshots(id), [first.snapshot, retry.snapshot], 'the leftover is gone');
    assert.deepEqual(await baseSnapshots(id), [first.snapshot, retry.snapshot]);
    await assertRestores(t, retry, id, retry.snapshot);
  });

test('a first backup that fails at its end leaves no base image, no source snapshot', async (t) => {
  const id = await fx.newVolume(t, 8 * MiB);
  await fx.writeRandom(id, [[0, 2 * MiB]]);
  const backupId = uniqueName('b');
  forgetMeta(t, backupId);
  // A .meta object already there: the backup fails after its transfer, at the metadata write.
  await backups.writeObject(metaObjectName(backupId), 'not ours');
  await assert.rejects(engine.backup({ pool: POOL, volumeId: id, backupId, volumeMetadata: {} }), AlreadyExistsError);
  assert.deepEqual(await sourceSnapshots(id), []);
  assert.equal(await baseSnapshots(id), undefined);
  assert.equal((await backups.readObject(metaObjectName(backupId))).toString(), 'not ours');
  const next = await engine.backup({ pool: POOL, volumeId: id });
  assert.equal(next.mode, 'full');
  await assertRestores(t, next, id, next.snapshot);
});

test('a failed first backup leaves no lock object behind either', async (t) => {
  const id = await fx.newVolume(t, 8 * MiB);
  const backupId = uniqueName('b');
  forgetMeta(t, backupId);
  await backups.writeObject(metaObjectName(backupId), 'not ours');
  await assert.rejects(engine.backup({ pool: POOL, volumeId: id, backupId, volumeMetadata: {} }), AlreadyExistsError);
  assert.equal(await backups.objectExists(lockObjectName(id)), false);
});

describe('cancellation', () => {
  test('abort in the middle: CancelledError, no new snapshot or base, and the next backup is right',
    { timeout: 600_000 }, async (t) => {
      const size = 256 * MiB;
      const id = await fx.newVolume(t, size);
      await fx.withVolume(id, async (image) => {
        for (let offset = 0; offset < size; offset += 4 * MiB) await image.write(randomBytes(4 * MiB), offset);
      });
      // One 4 MiB I/O at a time: slow enough for progress reports to come before the end.
      const slow = new BackupEngine({ source: cluster, ioConcurrency: 1, memoryBytes: 4 * MiB, lockWaitMs: 0 });
      const abortMidway = async (backupId: string): Promise<{ reports: number; error: unknown }> => {
        const controller = new AbortController();
        let reports = 0;
        let error: unknown;
        try {
          await slow.backup({
            pool: POOL, volumeId: id, backupId, signal: controller.signal,
            onProgress: (progress) => {
              reports++;
              assert.equal(progress.total, size);
              if (progress.done < progress.total) controller.abort(new Error('test aborts'));
            },
          });
        } catch (caught) {
          error = caught;
        }
        return { reports, error };
      };

      // The first backup: no base image may remain.
      const firstAbort = await abortMidway(uniqueName('abort'));
      assert.ok(firstAbort.error instanceof CancelledError,
        `expected CancelledError, got ${String(firstAbort.error)} after ${firstAbort.reports} progress reports`);
      assert.equal(firstAbort.error.code, 'ECANCELED');
      assert.deepEqual(await sourceSnapshots(id), [], 'no source snapshot left');
      assert.equal(await baseSnapshots(id), undefined, 'no base image left');
      assert.deepEqual((await backups.listImages()).filter((n) => n.startsWith(`volume-${id}.`)), []);

      // The next backup (lockWaitMs 0: the lock was released) succeeds and restores.
      const first = await slow.backup({ pool: POOL, volumeId: id });
      assert.equal(first.mode, 'full');
      await assertRestores(t, first, id, first.snapshot);

      // An incremental: no new source or base snapshot may remain.
      await fx.withVolume(id, async (image) => {
        for (let offset = 0; offset < size; offset += 4 * MiB) await image.write(randomBytes(4 * MiB), offset);
      });
      const secondAbort = await abortMidway(uniqueName('abort'));
      assert.ok(secondAbort.error instanceof CancelledError, `expected CancelledError, got ${String(secondAbort.error)}`);
      assert.deepEqual(await sourceSnapshots(id), [first.snapshot]);
      assert.deepEqual(await baseSnapshots(id), [first.snapshot]);

      // Put the source back to the first backup and change a little: the diff is small, and the
      // half-written base head of the aborted run must not leak into the next backup.
      await fx.withVolume(id, (image) => image.rollbackSnapshot(first.snapshot));
      await fx.writeRandom(id, [[100 * MiB, 1 * MiB]]);
      const second = await slow.backup({ pool: POOL, volumeId: id });
      assert.equal(second.mode, 'incremental');
      assert.equal(second.fromSnapshot, first.snapshot);
      await assertRestores(t, second, id, second.snapshot);
      await assertRestores(t, first, id, first.snapshot);
    });

  test('an already aborted signal: CancelledError before anything is made', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    await assert.rejects(engine.backup({ pool: POOL, volumeId: id, signal: AbortSignal.abort() }), CancelledError);
  });

  test('an already aborted signal: a CephError ECANCELED, nothing made', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    await assert.rejects(engine.backup({ pool: POOL, volumeId: id, signal: AbortSignal.abort() }),
      (error: unknown) => {
        assert.ok(error instanceof CephError, String(error));
        assert.equal(error.code, 'ECANCELED');
        assert.equal(error.resource, `volume ${id}`);
        return true;
      });
    assert.deepEqual(await sourceSnapshots(id), []);
    assert.equal(await baseSnapshots(id), undefined);
    assert.equal(await backups.objectExists(lockObjectName(id)), false);
  });
});

describe('the per-volume lock', () => {
  /** Which of two results is the full one, which the incremental from it. */
  function assertSerialised(a: BackupResult, b: BackupResult): [BackupResult, BackupResult] {
    const [full, incremental] = a.mode === 'full' ? [a, b] : [b, a];
    assert.equal(full.mode, 'full', 'one of them is the first backup');
    assert.equal(incremental.mode, 'incremental', 'the other saw the first one finished');
    assert.equal(incremental.fromSnapshot, full.snapshot);
    assert.equal(incremental.record.parent_id, full.record.id);
    return [full, incremental];
  }

  test('two concurrent backups of one volume on one engine run one after the other', { timeout: 120_000 },
    async (t) => {
      const id = await fx.newVolume(t, 32 * MiB);
      await fx.writeRandom(id, [[0, 32 * MiB]]);
      const [a, b] = await Promise.all([
        engine.backup({ pool: POOL, volumeId: id }),
        engine.backup({ pool: POOL, volumeId: id }),
      ]);
      const [full, incremental] = assertSerialised(a, b);
      assert.deepEqual(await baseSnapshots(id), [full.snapshot, incremental.snapshot]);
      await assertRestores(t, full, id, full.snapshot);
      await assertRestores(t, incremental, id, incremental.snapshot);
    });

  test('two concurrent backups from two connections run one after the other', { timeout: 120_000 }, async (t) => {
    const other = await connect('a');
    t.after(() => other.close());
    const otherEngine = new BackupEngine({ source: other });
    const id = await fx.newVolume(t, 32 * MiB);
    await fx.writeRandom(id, [[0, 32 * MiB]]);
    const [a, b] = await Promise.all([
      engine.backup({ pool: POOL, volumeId: id }),
      otherEngine.backup({ pool: POOL, volumeId: id }),
    ]);
    const [full, incremental] = assertSerialised(a, b);
    await assertRestores(t, full, id, full.snapshot);
    await assertRestores(t, incremental, id, incremental.snapshot, otherEngine);
  });

  test('while another holder has the lock: lockWaitMs 0 fails with BusyError, a waiting one goes after it',
    { timeout: 120_000 }, async (t) => {
      const id = await fx.newVolume(t, 16 * MiB);
      await fx.writeRandom(id, randomRanges(16 * MiB, 3));
      const first = await engine.backup({ pool: POOL, volumeId: id });
      await fx.writeRandom(id, randomRanges(16 * MiB, 3));

      // Another client takes the volume's lock, as a backup on another host would.
      const holder = await connect('a');
      const holderPool = await holder.pool(BACKUP_POOL);
      const lock = { name: 'rbd-backup', cookie: 'test-holder' };
      let held = false;
      t.after(async () => {
        if (held) await holderPool.unlockObject(lockObjectName(id), lock);
        await holderPool.close();
        await holder.close();
      });
      await holderPool.lockObject(lockObjectName(id), { ...lock, durationMs: 120_000 });
      held = true;

      const impatient = new BackupEngine({ source: cluster, lockWaitMs: 0 });
      await assert.rejects(impatient.backup({ pool: POOL, volumeId: id }), (error: unknown) => {
        assert.ok(error instanceof BusyError, `expected BusyError, got ${String(error)}`);
        assert.equal(error.code, 'EBUSY');
        assert.equal(error.operation, 'backup');
        assert.equal(error.resource, `volume ${id}`);
        assert.match(error.message, /holds its lock/);
        return true;
      });
      assert.deepEqual(await sourceSnapshots(id), [first.snapshot], 'the refused backup made no snapshot');
      assert.deepEqual(await baseSnapshots(id), [first.snapshot]);

      let progressWhileHeld = 0;
      const patient = new BackupEngine({ source: cluster, lockWaitMs: 60_000 });
      const waiting = patient.backup({
        pool: POOL, volumeId: id, onProgress: () => { if (held) progressWhileHeld++; },
      });
      const isSettled = settled(waiting);
      await sleep(1500);
      assert.equal(isSettled(), false, 'the waiting backup is still waiting');
      assert.deepEqual(await sourceSnapshots(id), [first.snapshot], 'and has made nothing yet');
      held = false;
      await holderPool.unlockObject(lockObjectName(id), lock);
      const second = await waiting;
      assert.equal(progressWhileHeld, 0);
      assert.equal(second.mode, 'incremental');
      assert.equal(second.fromSnapshot, first.snapshot);
      await assertRestores(t, second, id, second.snapshot);
    });
});

describe('refusals', () => {
  test('an unknown volume: NotFoundError naming it, nothing created in the backup pool', async () => {
    const id = uniqueName('missing');
    await assert.rejects(engine.backup({ pool: POOL, volumeId: id }), (error: unknown) => {
      assert.ok(error instanceof NotFoundError, `expected NotFoundError, got ${String(error)}`);
      assert.equal(error.code, 'ENOENT');
      assert.equal(error.operation, 'backup');
      assert.equal(error.resource, `${POOL}/volume-${id}`);
      assert.match(error.message, new RegExp(`volume ${id} does not exist in pool ${POOL}`));
      return true;
    });
    assert.deepEqual((await backups.listImages()).filter((n) => n.includes(id)), []);
    assert.equal(await backups.objectExists(lockObjectName(id)), false);
  });

  test('an unknown pool: NotFoundError', async () => {
    await assert.rejects(engine.backup({ pool: 'no-such-pool', volumeId: uniqueName('v') }), NotFoundError);
  });

  const badIds: Array<[string, string]> = [
    ['empty', ''], ['a path', '../x'], ['a slash', 'a/b'], ['a snapshot separator', 'a@b'], ['upper case', 'UPPER'],
    ['65 characters', 'a'.repeat(65)], ['a leading dash', '-a'], ['a dot', 'a.b'],
  ];
  for (const [what, bad] of badIds) {
    test(`a volume, backup or parent id with ${what}: InvalidArgumentError, nothing made`, async (t) => {
      const id = await fx.newVolume(t, 8 * MiB);
      const isInvalid = (kind: string) => (error: unknown): boolean => {
        assert.ok(error instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(error)}`);
        assert.equal(error.code, 'EINVAL');
        assert.equal(error.operation, 'backup');
        assert.match(error.message, new RegExp(`${kind} id must be 1-64 characters`));
        return true;
      };
      await assert.rejects(engine.backup({ pool: POOL, volumeId: bad }), isInvalid('volume'));
      await assert.rejects(engine.backup({ pool: POOL, volumeId: id, backupId: bad }), isInvalid('backup'));
      await assert.rejects(engine.backup({ pool: POOL, volumeId: id, parentId: bad }), isInvalid('backup'));
      assert.deepEqual(await sourceSnapshots(id), []);
      assert.equal(await baseSnapshots(id), undefined);
    });
  }

  test('a bad pool name: InvalidArgumentError', async () => {
    await assert.rejects(engine.backup({ pool: 'a/b', volumeId: 'x1' }), InvalidArgumentError);
    await assert.rejects(engine.backup({ pool: '', volumeId: 'x1' }), InvalidArgumentError);
  });
});

test('backupMany of three volumes, one missing: two backups and one error, in request order',
  { timeout: 120_000 }, async (t) => {
    const one = await fx.newVolume(t, 16 * MiB);
    const missing = uniqueName('missing');
    const three = await fx.newVolume(t, 16 * MiB);
    await fx.writeRandom(one, randomRanges(16 * MiB, 3));
    await fx.writeRandom(three, randomRanges(16 * MiB, 3));
    const outcomes = await engine.backupMany([
      { pool: POOL, volumeId: one },
      { pool: POOL, volumeId: missing },
      { pool: POOL, volumeId: three },
    ]);
    assert.deepEqual(outcomes.map((o) => [o.volumeId, o.ok]), [[one, true], [missing, false], [three, true]]);
    const [first, failed, last] = outcomes;
    assert.ok(first.ok && last.ok && !failed.ok);
    assert.ok(failed.error instanceof NotFoundError, String(failed.error));
    assert.equal(failed.error.resource, `${POOL}/volume-${missing}`);
    assert.equal(first.result.record.volume_id, one);
    assert.equal(last.result.record.volume_id, three);
    await assertRestores(t, first.result, one, first.result.snapshot);
    await assertRestores(t, last.result, three, last.result.snapshot);
    assert.deepEqual((await backups.listImages()).filter((n) => n.includes(missing)), []);
  });
