/**
 * BackupEngine.backup against a real cluster, with Cinder's Ceph backup
 * semantics (DESIGN.md section 4): since Train a full backup creates its own
 * chain image volume-<id>.backup.<backup id> and incrementals continue the
 * chain image holding their parent's snapshot (a pre-Train `.backup.base`
 * chain included), one snapshot per backup; chains broken and converted to
 * full backups, named parents (a missing one refused), source snapshot
 * trimming (default 2), what killed runs leave removed by the next backup,
 * the .meta object, cancellation leaving nothing behind, the per-volume
 * lock, typed refusals, and backupMany.
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
  backupImageName, backupSnapshotName, baseImageName, metaObjectName, parseBackupSnapshotName,
  type BackupRecord, type BackupResult, type Cluster, type Pool, type RestoreResult,
} from '../../lib/index.js';
import { INCOMPLETE_KEY } from '../../lib/backup/inventory.js';
import { unfinishedImageName } from '../../lib/backup/naming.js';
import { lockObjectName, VolumeLock } from '../../lib/backup/lock.js';
import { connect, rbd, uniqueName } from '../support/clusters.js';
import {
  BACKUP_POOL, POOL, VOLUME_FEATURES, VolumeFixtures, backupImagesOf, randomRanges, removeObjectQuietly,
  snapshotSha, snapshotsOf, volumeSha, useBackupTestbed,
} from '../support/backup-fixtures.js';

const MiB = 1024 * 1024;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

let cluster: Cluster;
let backups: Pool;
/** Keeps every source snapshot (maxSourceSnapshots 0): older backups compare with theirs. */
let engine: BackupEngine;
/** The default configuration (maxSourceSnapshots 2). */
let defaults: BackupEngine;
let fx: VolumeFixtures;

useBackupTestbed((testbed) => ({ cluster, backups, keepAll: engine, engine: defaults, fx } = testbed));

// ---- helpers -------------------------------------------------------------

async function sourceSnapshots(volumeId: string): Promise<string[]> {
  return fx.withVolume(volumeId, async (image) => (await image.listSnapshots()).map((s) => s.name));
}

/** The snapshots of a chain image in the backup pool; undefined when it does not exist. */
function chainSnapshots(image: string): Promise<string[] | undefined> {
  return snapshotsOf(backups, image);
}

/** Every volume-<id>.backup.* image of the volume, sorted. */
function backupImages(volumeId: string): Promise<string[]> {
  return backupImagesOf(backups, volumeId);
}

async function imageMetadata(name: string, key: string): Promise<string | undefined> {
  const image = await backups.openImage(name, { readOnly: true });
  try {
    return await image.getMetadata(key);
  } finally {
    await image.close();
  }
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
  const restored = await using.restore({ backup: record, target: { volume: { pool: POOL, id: target } } });
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
  test('a full backup into its own chain image, then incrementals with writes, a discard and a resize: every one restores to its snapshot',
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
      // Since Train: a full backup's own chain image, named after it; not .backup.base.
      const chain = `volume-${id}.backup.${backupId}`;
      assert.equal(first.baseImage, chain);
      assert.equal(backupImageName(id, backupId), chain);
      assert.match(first.snapshot, new RegExp(`^backup\\.${backupId}\\.snap\\.\\d+\\.\\d+$`));
      assert.equal(parseBackupSnapshotName(first.snapshot)?.backupId, backupId);
      assert.equal(first.stats.size, BigInt(size));
      const record = first.record;
      assert.equal(record.id, backupId);
      assert.equal(record.volume_id, id);
      assert.equal(record.container, BACKUP_POOL);
      assert.equal(record.service, 'cinder.backup.drivers.ceph.CephBackupDriver');
      assert.deepEqual(JSON.parse(record.service_metadata!), { base: chain });
      assert.equal(record.size, 1, 'size in GiB, rounded up');
      assert.equal(record.object_count, 0);
      assert.equal(record.parent_id, null);
      assert.equal(record.status, 'available');
      assert.equal(record.display_name, 'first');
      assert.equal(record.display_description, 'the first backup');
      assert.match(record.created_at, ISO);
      assert.match(record.data_timestamp, ISO);
      assert.equal(record.num_dependent_backups, 0);
      assert.equal(await imageMetadata(chain, INCOMPLETE_KEY), undefined, 'a complete backup leaves no incomplete mark');

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
        assert.equal(result.baseImage, chain, `${step.what}: the incremental continues the full backup's chain image`);
        assert.deepEqual(JSON.parse(result.record.service_metadata!), { base: chain });
        if (step.what === 'nothing') assert.equal(result.stats.bytesRead, 0n, 'an unchanged volume reads nothing');
        results.push(result);
      }
      assert.equal(results[3].stats.size, BigInt(size + 8 * MiB));

      // One chain snapshot per backup, named as on the source, in order; the source keeps all (maxSourceSnapshots 0).
      const snapshots = results.map((r) => r.snapshot);
      assert.deepEqual(await chainSnapshots(chain), snapshots);
      assert.deepEqual(await sourceSnapshots(id), snapshots);
      const image = await backups.openImage(chain, { readOnly: true });
      try {
        const stat = await image.stat();
        assert.equal(stat.size, BigInt(size + 8 * MiB));
        for (const feature of VOLUME_FEATURES) assert.ok(stat.features.includes(feature), `the chain image has ${feature}`);
      } finally {
        await image.close();
      }
      assert.deepEqual(await backupImages(id), [chain], 'one chain image, no .backup.base');
      assert.equal(await backups.imageExists(`volume-${id}`), false, 'nothing else in the backup pool');

      // Every backup restores by the diff path to exactly its snapshot's bytes.
      for (const result of results) {
        const restored = await assertRestores(t, result, id, result.snapshot);
        assert.equal(restored.path, 'diff');
        assert.equal(restored.failedCondition, undefined);
        assert.equal(restored.source, `${BACKUP_POOL}/${chain}@${result.snapshot}`);
      }

      // The pool itself lists them, oldest first, each the parent of the next, the first one full.
      const listed = await engine.listBackups(id);
      assert.deepEqual(listed.map((l) => l.record.id), results.map((r) => r.record.id));
      assert.deepEqual(listed.map((l) => l.snapshot), snapshots);
      assert.deepEqual(listed.map((l) => l.image), results.map(() => chain));
      assert.deepEqual(listed.map((l) => l.full), [true, false, false, false, false, false]);
      assert.deepEqual(listed.map((l) => l.record.parent_id), [null, ...results.slice(0, -1).map((r) => r.record.id)]);
      // A listed record and an exported-then-imported one restore as well.
      await assertRestores(t, listed[2].record, id, snapshots[2]);
      await assertRestores(t, engine.importRecord(engine.exportRecord(results[4].record)), id, snapshots[4]);
    });

  test('a named parent: incremental from that backup, into its chain image, not from the newest', { timeout: 120_000 },
    async (t) => {
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
      assert.equal(third.baseImage, first.baseImage);
      assert.deepEqual(await chainSnapshots(first.baseImage), [first.snapshot, second.snapshot, third.snapshot]);
      // The chain head held the second backup's data: the third must not carry it.
      await assertRestores(t, third, id, third.snapshot);
      await assertRestores(t, second, id, second.snapshot);
      await assertRestores(t, first, id, first.snapshot);
    });

  test('full: true starts a new chain image; the next incremental continues that one', { timeout: 120_000 },
    async (t) => {
      const id = await fx.newVolume(t, 16 * MiB);
      await fx.writeRandom(id, [[0, 16 * MiB]]);
      const first = await engine.backup({ pool: POOL, volumeId: id });
      // Holes where the first backup has data: the full backup must hold them as holes.
      await fx.withVolume(id, (image) => image.discard(4 * MiB, 8 * MiB));
      await fx.writeRandom(id, randomRanges(16 * MiB, 3));
      const full = await engine.backup({ pool: POOL, volumeId: id, full: true });
      assert.equal(full.mode, 'full');
      assert.equal(full.fromSnapshot, undefined);
      assert.equal(full.convertedToFull, undefined, 'requested, not converted');
      assert.equal(full.record.parent_id, null);
      assert.equal(full.baseImage, backupImageName(id, full.record.id));
      assert.notEqual(full.baseImage, first.baseImage);
      assert.deepEqual(JSON.parse(full.record.service_metadata!), { base: full.baseImage });
      assert.deepEqual(await chainSnapshots(first.baseImage), [first.snapshot], 'the first chain is untouched');
      assert.deepEqual(await chainSnapshots(full.baseImage), [full.snapshot]);
      assert.deepEqual(await backupImages(id), [first.baseImage, full.baseImage].sort());

      await fx.writeRandom(id, randomRanges(16 * MiB, 3));
      const next = await engine.backup({ pool: POOL, volumeId: id });
      assert.equal(next.mode, 'incremental');
      assert.equal(next.fromSnapshot, full.snapshot);
      assert.equal(next.record.parent_id, full.record.id);
      assert.equal(next.baseImage, full.baseImage);
      assert.deepEqual(await chainSnapshots(full.baseImage), [full.snapshot, next.snapshot]);
      assert.deepEqual((await engine.listBackups(id)).map((l) => [l.record.id, l.full, l.image]), [
        [first.record.id, true, first.baseImage], [full.record.id, true, full.baseImage], [next.record.id, false, full.baseImage],
      ]);
      await assertRestores(t, next, id, next.snapshot);
      await assertRestores(t, full, id, full.snapshot);
      await assertRestores(t, first, id, first.snapshot);
    });

  test('a pre-Train .backup.base chain continues in .backup.base; a full backup beside it starts its own',
    { timeout: 180_000 }, async (t) => {
      const id = await fx.newVolume(t, 16 * MiB);
      await fx.writeRandom(id, randomRanges(16 * MiB, 4));
      const old = await engine.backup({ pool: POOL, volumeId: id });
      // What an earlier version of this project (or Cinder before Train) left: the chain in .backup.base.
      await rbd('a', ['rename', `${BACKUP_POOL}/${old.baseImage}`, `${BACKUP_POOL}/${baseImageName(id)}`]);
      // Its record, as written then: no service_metadata.
      const oldRecord: BackupRecord = { ...old.record, service_metadata: null };

      await fx.writeRandom(id, randomRanges(16 * MiB, 4));
      const next = await engine.backup({ pool: POOL, volumeId: id });
      assert.equal(next.mode, 'incremental');
      assert.equal(next.fromSnapshot, old.snapshot);
      assert.equal(next.baseImage, baseImageName(id));
      assert.deepEqual(JSON.parse(next.record.service_metadata!), { base: baseImageName(id) });
      assert.deepEqual(await chainSnapshots(baseImageName(id)), [old.snapshot, next.snapshot]);
      assert.deepEqual(await backupImages(id), [baseImageName(id)]);
      const restoredNext = await assertRestores(t, next, id, next.snapshot);
      assert.equal(restoredNext.source, `${BACKUP_POOL}/${baseImageName(id)}@${next.snapshot}`);
      const restoredOld = await assertRestores(t, oldRecord, id, old.snapshot);
      assert.equal(restoredOld.source, `${BACKUP_POOL}/${baseImageName(id)}@${old.snapshot}`);

      await fx.writeRandom(id, randomRanges(16 * MiB, 4));
      const full = await engine.backup({ pool: POOL, volumeId: id, full: true });
      assert.equal(full.baseImage, backupImageName(id, full.record.id));
      await fx.writeRandom(id, randomRanges(16 * MiB, 4));
      const after = await engine.backup({ pool: POOL, volumeId: id });
      assert.equal(after.baseImage, full.baseImage, 'the newest chain continues');
      assert.equal(after.fromSnapshot, full.snapshot);
      // A named parent on the old chain continues the old chain.
      await fx.writeRandom(id, randomRanges(16 * MiB, 4));
      const branch = await engine.backup({ pool: POOL, volumeId: id, parentId: next.record.id });
      assert.equal(branch.baseImage, baseImageName(id));
      assert.equal(branch.fromSnapshot, next.snapshot);
      assert.deepEqual(await chainSnapshots(baseImageName(id)), [old.snapshot, next.snapshot, branch.snapshot]);
      assert.deepEqual(await chainSnapshots(full.baseImage), [full.snapshot, after.snapshot]);
      for (const result of [full, after, branch]) await assertRestores(t, result, id, result.snapshot);
    });
});

describe('other volumes', () => {
  test('an empty volume backs up and restores as zeros', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    const first = await engine.backup({ pool: POOL, volumeId: id });
    assert.equal(first.stats.bytesRead, 0n);
    await assertRestores(t, first, id, first.snapshot);
    const second = await engine.backup({ pool: POOL, volumeId: id });
    assert.equal(second.mode, 'incremental');
    assert.equal(second.baseImage, first.baseImage);
    await assertRestores(t, second, id, second.snapshot);
  });

  test('stripeUnit and stripeCount shape a new chain image; its backups restore', { timeout: 120_000 }, async (t) => {
    const striped = new BackupEngine({ source: cluster, stripeUnit: 1 * MiB, stripeCount: 4 });
    const id = await fx.newVolume(t, 32 * MiB);
    await fx.writeRandom(id, randomRanges(32 * MiB, 6));
    const first = await striped.backup({ pool: POOL, volumeId: id });
    const chain = await backups.openImage(first.baseImage, { readOnly: true });
    try {
      const stat = await chain.stat();
      assert.equal(stat.stripeUnit, BigInt(1 * MiB));
      assert.equal(stat.stripeCount, 4n);
    } finally {
      await chain.close();
    }
    await fx.writeRandom(id, randomRanges(32 * MiB, 6));
    const second = await striped.backup({ pool: POOL, volumeId: id });
    assert.equal(second.baseImage, first.baseImage);
    await assertRestores(t, first, id, first.snapshot, striped);
    await assertRestores(t, second, id, second.snapshot, striped);
  });
});

describe('a broken chain becomes a full backup', () => {
  test('the newest common snapshot gone from the source: incremental from the one before, in the same chain image',
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
      assert.equal(third.baseImage, first.baseImage);
      // The chain head held the second backup's data: the third must not carry it.
      await assertRestores(t, third, id, third.snapshot);
      await assertRestores(t, first, id, first.snapshot);
      // The second backup is still on the chain image (its source snapshot is gone).
      assert.deepEqual(await chainSnapshots(first.baseImage), [first.snapshot, second.snapshot, third.snapshot]);
    });

  test('no backup snapshot left on the source: converted to full in a new chain image, saying why',
    { timeout: 120_000 }, async (t) => {
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
      assert.match(third.convertedToFull, /no backup snapshot is on both the source volume and a chain image/);
      assert.equal(third.baseImage, backupImageName(id, third.record.id));
      assert.deepEqual(await chainSnapshots(first.baseImage), [first.snapshot, second.snapshot], 'the old chain stays');
      assert.deepEqual(await chainSnapshots(third.baseImage), [third.snapshot]);
      await assertRestores(t, third, id, third.snapshot);
      // The next one is an incremental from the converted one again, in its chain image.
      await fx.writeRandom(id, randomRanges(16 * MiB, 2));
      const fourth = await engine.backup({ pool: POOL, volumeId: id });
      assert.equal(fourth.mode, 'incremental');
      assert.equal(fourth.fromSnapshot, third.snapshot);
      assert.equal(fourth.baseImage, third.baseImage);
      await assertRestores(t, fourth, id, fourth.snapshot);
    });

  test('the chain image loses every snapshot the source has: converted; the orphaned source snapshots go',
    { timeout: 120_000 }, async (t) => {
      const id = await fx.newVolume(t, 16 * MiB);
      await fx.writeRandom(id, [[0, 16 * MiB]]);
      const first = await engine.backup({ pool: POOL, volumeId: id });
      await fx.writeRandom(id, randomRanges(16 * MiB, 3));
      const second = await engine.backup({ pool: POOL, volumeId: id });
      const chain = first.baseImage;
      await rbd('a', ['snap', 'rm', `${BACKUP_POOL}/${chain}@${first.snapshot}`]);
      await rbd('a', ['snap', 'rm', `${BACKUP_POOL}/${chain}@${second.snapshot}`]);
      const other = backupSnapshotName('other');
      await rbd('a', ['snap', 'create', `${BACKUP_POOL}/${chain}@${other}`]);
      await fx.writeRandom(id, randomRanges(16 * MiB, 3));
      const third = await engine.backup({ pool: POOL, volumeId: id });
      assert.equal(third.mode, 'full');
      assert.match(third.convertedToFull ?? '', /chain broken/);
      assert.equal(third.record.parent_id, null);
      assert.equal(third.baseImage, backupImageName(id, third.record.id));
      // No chain image holds the first two source snapshots any more: no incremental can start from them.
      assert.deepEqual(await sourceSnapshots(id), [third.snapshot]);
      assert.deepEqual(await chainSnapshots(chain), [other], 'the other chain image is left alone');
      await assertRestores(t, third, id, third.snapshot);
    });

  test('every chain image gone: a first backup again, and the source snapshots no chain holds go',
    { timeout: 120_000 }, async (t) => {
      const id = await fx.newVolume(t, 16 * MiB);
      await fx.writeRandom(id, [[0, 16 * MiB]]);
      const first = await engine.backup({ pool: POOL, volumeId: id });
      await fx.writeRandom(id, randomRanges(16 * MiB, 3));
      await engine.backup({ pool: POOL, volumeId: id, full: true });
      for (const name of await backupImages(id)) await rbd('a', ['snap', 'purge', `${BACKUP_POOL}/${name}`]);
      for (const name of await backupImages(id)) await rbd('a', ['rm', '--no-progress', `${BACKUP_POOL}/${name}`]);
      await fx.writeRandom(id, randomRanges(16 * MiB, 3));
      const again = await engine.backup({ pool: POOL, volumeId: id });
      assert.equal(again.mode, 'full');
      assert.equal(again.convertedToFull, undefined, 'nothing to convert from: a first backup');
      assert.notEqual(again.baseImage, first.baseImage);
      assert.deepEqual(await backupImages(id), [again.baseImage]);
      assert.deepEqual(await sourceSnapshots(id), [again.snapshot]);
      await assertRestores(t, again, id, again.snapshot);
    });

  test('a named parent whose snapshot is gone from the source: converted, naming the parent', { timeout: 120_000 },
    async (t) => {
      const id = await fx.newVolume(t, 16 * MiB);
      await fx.writeRandom(id, randomRanges(16 * MiB, 4));
      const first = await engine.backup({ pool: POOL, volumeId: id });
      await fx.writeRandom(id, randomRanges(16 * MiB, 4));
      const second = await engine.backup({ pool: POOL, volumeId: id });
      await fx.withVolume(id, (image) => image.removeSnapshot(first.snapshot));
      await fx.writeRandom(id, randomRanges(16 * MiB, 4));
      const third = await engine.backup({ pool: POOL, volumeId: id, parentId: first.record.id });
      assert.equal(third.mode, 'full');
      assert.equal(third.fromSnapshot, undefined);
      assert.equal(third.record.parent_id, null);
      assert.match(third.convertedToFull ?? '',
        new RegExp(`parent backup ${first.record.id}'s snapshot ${first.snapshot.replace(/\./g, '\\.')} is no longer on the source volume`));
      assert.equal(third.baseImage, backupImageName(id, third.record.id));
      assert.deepEqual(await chainSnapshots(first.baseImage), [first.snapshot, second.snapshot]);
      await assertRestores(t, third, id, third.snapshot);
    });
});

describe('a named parent that is not in the backup pool: NotFoundError, nothing made', () => {
  function parentNotFound(volumeId: string, parentId: string): (error: unknown) => boolean {
    return (error) => {
      assert.ok(error instanceof NotFoundError, `expected NotFoundError, got ${String(error)}`);
      assert.equal(error.code, 'ENOENT');
      assert.equal(error.operation, 'backup');
      assert.equal(error.resource, `backup ${parentId}`);
      assert.match(error.message,
        new RegExp(`parent backup ${parentId} is not among the backups of volume ${volumeId} in the backup pool`));
      return true;
    };
  }

  test('a typo in the parent of a volume with backups: refused, not converted', { timeout: 120_000 }, async (t) => {
    const id = await fx.newVolume(t, 16 * MiB);
    await fx.writeRandom(id, randomRanges(16 * MiB, 4));
    const first = await engine.backup({ pool: POOL, volumeId: id });
    await fx.writeRandom(id, randomRanges(16 * MiB, 4));
    await assert.rejects(engine.backup({ pool: POOL, volumeId: id, parentId: 'no-such-backup' }),
      parentNotFound(id, 'no-such-backup'));
    assert.deepEqual(await sourceSnapshots(id), [first.snapshot], 'no new source snapshot');
    assert.deepEqual(await backupImages(id), [first.baseImage], 'no new chain image');
    assert.deepEqual(await chainSnapshots(first.baseImage), [first.snapshot]);
    // Without the typo the chain continues.
    const next = await engine.backup({ pool: POOL, volumeId: id, parentId: first.record.id });
    assert.equal(next.mode, 'incremental');
    assert.equal(next.fromSnapshot, first.snapshot);
    await assertRestores(t, next, id, next.snapshot);
  });

  test('a parent on the first backup of a volume: refused, nothing made', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    await fx.writeRandom(id, [[0, 1 * MiB]]);
    await assert.rejects(engine.backup({ pool: POOL, volumeId: id, parentId: 'some-parent' }),
      parentNotFound(id, 'some-parent'));
    assert.deepEqual(await sourceSnapshots(id), []);
    assert.deepEqual(await backupImages(id), []);
    const first = await engine.backup({ pool: POOL, volumeId: id });
    assert.equal(first.mode, 'full');
    assert.equal(first.convertedToFull, undefined);
    await assertRestores(t, first, id, first.snapshot);
  });

  test('a parent on the first backup of a volume leaves no lock object behind',
    {},
    async (t) => {
      const id = await fx.newVolume(t, 8 * MiB);
      await assert.rejects(engine.backup({ pool: POOL, volumeId: id, parentId: 'some-parent' }), NotFoundError);
      assert.equal(await backups.objectExists(lockObjectName(id)), false);
    });
});

describe('source snapshot trimming', () => {
  const cases: Array<[string, number | undefined, number]> = [
    ['the default keeps the 2 newest backup snapshots on the source', undefined, 2],
    ['maxSourceSnapshots 1 keeps the newest only', 1, 1],
  ];
  for (const [what, maxSourceSnapshots, kept] of cases) {
    test(`${what}; the chain image keeps all, and all restore`, { timeout: 180_000 }, async (t) => {
      const trimming = maxSourceSnapshots === undefined ? defaults
        : new BackupEngine({ source: cluster, maxSourceSnapshots });
      const id = await fx.newVolume(t, 16 * MiB);
      await fx.withVolume(id, (image) => image.createSnapshot('manual-snapshot'));
      const results: BackupResult[] = [];
      // Each backup's source snapshot, checksummed before a later backup trims it.
      const shas: string[] = [];
      for (let i = 0; i < 4; i++) {
        await fx.writeRandom(id, randomRanges(16 * MiB, 3));
        const result = await trimming.backup({ pool: POOL, volumeId: id });
        if (i > 0) {
          assert.equal(result.mode, 'incremental');
          assert.equal(result.fromSnapshot, results[i - 1].snapshot);
        }
        results.push(result);
        shas.push(await snapshotSha(id, result.snapshot));
        assert.deepEqual((await sourceSnapshots(id)).filter((s) => s !== 'manual-snapshot'),
          results.slice(-kept).map((r) => r.snapshot), `after backup ${i + 1}`);
      }
      assert.ok((await sourceSnapshots(id)).includes('manual-snapshot'), 'other snapshots are never trimmed');
      assert.deepEqual(await chainSnapshots(results[0].baseImage), results.map((r) => r.snapshot));
      for (const [i, result] of results.entries()) {
        const target = fx.targetId(t);
        const restored = await trimming.restore({ backup: result.record, target: { volume: { pool: POOL, id: target } } });
        assert.equal(restored.path, 'diff');
        assert.equal(await volumeSha(target), shas[i], `backup ${i + 1} restores to its source snapshot's bytes`);
      }
    });
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
      assert.deepEqual(await chainSnapshots(first.baseImage), [first.snapshot], 'no new chain snapshot');
      assert.deepEqual(await backupImages(id), [first.baseImage], 'no new chain image');
      assert.deepEqual(JSON.parse((await backups.readObject(metaObjectName(backupId))).toString()),
        { version: 2, 'volume-metadata': { n: 1 } }, 'the first .meta is untouched');
      await assertRestores(t, first, id, first.snapshot);
      await fx.writeRandom(id, [[12 * MiB, 1 * MiB]]);
      const next = await engine.backup({ pool: POOL, volumeId: id });
      assert.equal(next.fromSnapshot, first.snapshot);
      await assertRestores(t, next, id, next.snapshot);
    });

  test('a second backup reusing a backup id (no metadata, full or incremental) is refused, unless it asks again for the last one made', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    await fx.writeRandom(id, [[0, 1 * MiB]]);
    const first = await engine.backup({ pool: POOL, volumeId: id });
    const backupId = uniqueName('b');
    const second = await engine.backup({ pool: POOL, volumeId: id, backupId });
    await fx.writeRandom(id, [[0, 1 * MiB]]);
    // The same request again, nothing else done to the volume's backups since: that backup, nothing moved
    // (what a retry of a run killed after it completed gets).
    const again = await engine.backup({ pool: POOL, volumeId: id, backupId });
    assert.equal(again.alreadyComplete, true);
    assert.equal(again.snapshot, second.snapshot);
    assert.equal(again.stats.bytesRead, 0n);
    // An incremental asked for as a full backup, or an older backup's id: a reuse.
    for (const [reused, full] of [[backupId, true], [first.record.id, false], [first.record.id, true]] as const) {
      await assert.rejects(engine.backup({ pool: POOL, volumeId: id, backupId: reused, full }), (error: unknown) => {
        assert.ok(error instanceof AlreadyExistsError, `expected AlreadyExistsError, got ${String(error)}`);
        assert.match(error.message, new RegExp(`backup id ${reused} is already used`));
        return true;
      }, `${reused} full ${full}`);
    }
    assert.deepEqual(await chainSnapshots(first.baseImage), [first.snapshot, second.snapshot]);
    assert.deepEqual(await backupImages(id), [first.baseImage]);
    assert.deepEqual(await sourceSnapshots(id), [first.snapshot, second.snapshot]);
    await assertRestores(t, first, id, first.snapshot);
    await assertRestores(t, second, id, second.snapshot);
  });

  test('a backup id whose image name a legacy full copy holds is refused', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    await fx.writeRandom(id, [[0, 1 * MiB]]);
    const first = await engine.backup({ pool: POOL, volumeId: id });
    const legacyId = uniqueName('legacy');
    await rbd('a', ['cp', '--no-progress', `${POOL}/volume-${id}@${first.snapshot}`,
      `${BACKUP_POOL}/${backupImageName(id, legacyId)}`]);
    for (const full of [false, true]) {
      await assert.rejects(engine.backup({ pool: POOL, volumeId: id, backupId: legacyId, full }), (error: unknown) => {
        assert.ok(error instanceof AlreadyExistsError, `expected AlreadyExistsError, got ${String(error)}`);
        assert.match(error.message, new RegExp(`backup id ${legacyId} is already used`));
        return true;
      });
    }
    assert.deepEqual(await backupImages(id), [first.baseImage, backupImageName(id, legacyId)].sort());
    assert.deepEqual(await sourceSnapshots(id), [first.snapshot]);
    await assertRestores(t, first, id, first.snapshot);
  });
});

describe('what the backup pool keeps beside each snapshot', () => {
  async function chainInfo(chain: string): Promise<Map<string, string>> {
    const image = await backups.openImage(chain, { readOnly: true });
    try {
      return await image.listMetadata('rbd-backup.backup.');
    } finally {
      await image.close();
    }
  }

  test('name, description and bytes written are listed from the pool alone; a delete takes its backup\'s away',
    { timeout: 120_000 }, async (t) => {
      const id = await fx.newVolume(t, 16 * MiB);
      await fx.writeRandom(id, [[0, 16 * MiB]]);
      const full = await engine.backup({ pool: POOL, volumeId: id, displayName: 'nightly ✓', displayDescription: 'before the upgrade' });
      await fx.writeRandom(id, [[2 * MiB, 1 * MiB]]);
      const incremental = await engine.backup({ pool: POOL, volumeId: id, displayName: 'after' });
      assert.equal(incremental.mode, 'incremental');
      const listed = await engine.listBackups(id);
      assert.deepEqual(listed.map((l) => [l.record.id, l.record.display_name, l.record.display_description, l.bytesWritten]), [
        [full.record.id, 'nightly ✓', 'before the upgrade', full.stats.bytesWritten],
        [incremental.record.id, 'after', null, incremental.stats.bytesWritten],
      ]);
      assert.equal(full.stats.bytesWritten, BigInt(16 * MiB), 'the full backup wrote the whole volume');
      assert.ok(incremental.stats.bytesWritten >= MiB && incremental.stats.bytesWritten < 16 * MiB,
        `the incremental wrote what changed (${incremental.stats.bytesWritten})`);
      assert.deepEqual([...(await chainInfo(full.baseImage)).keys()].sort(),
        [`rbd-backup.backup.${full.record.id}`, `rbd-backup.backup.${incremental.record.id}`].sort());
      await engine.delete(incremental.record);
      assert.deepEqual([...(await chainInfo(full.baseImage)).keys()], [`rbd-backup.backup.${full.record.id}`]);
      // A chain image without the keys (Cinder's) lists its backups unnamed.
      await rbd('a', ['image-meta', 'remove', `${BACKUP_POOL}/${full.baseImage}`, `rbd-backup.backup.${full.record.id}`]);
      const unnamed = await engine.listBackups(id);
      assert.deepEqual(unnamed.map((l) => [l.record.display_name, l.bytesWritten]), [[null, undefined]]);
      await engine.delete(full.record);
    });
});

describe('what killed runs leave, the next backup removes', () => {
  test('source snapshots left by interrupted runs (of the same id, of another) are removed, and the retry succeeds',
    { timeout: 120_000 }, async (t) => {
      const id = await fx.newVolume(t, 16 * MiB);
      await fx.writeRandom(id, [[0, 16 * MiB]]);
      const first = await engine.backup({ pool: POOL, volumeId: id });
      await fx.writeRandom(id, [[3 * MiB, 2 * MiB]]);
      const backupId = uniqueName('b');
      // What runs killed during their transfer leave: their source snapshot,
      // and nothing of them on any chain image.
      const leftover = backupSnapshotName(backupId, new Date(Date.now() - 60_000));
      const otherLeftover = backupSnapshotName(uniqueName('killed'), new Date(Date.now() - 30_000));
      await fx.withVolume(id, async (image) => {
        await image.createSnapshot(leftover);
        await image.createSnapshot(otherLeftover);
        await image.createSnapshot('manual-snapshot');
      });
      await fx.writeRandom(id, [[9 * MiB, 1 * MiB]]);
      const retry = await engine.backup({ pool: POOL, volumeId: id, backupId });
      assert.equal(retry.mode, 'incremental');
      assert.equal(retry.fromSnapshot, first.snapshot);
      assert.notEqual(retry.snapshot, leftover);
      assert.deepEqual(await sourceSnapshots(id), [first.snapshot, 'manual-snapshot', retry.snapshot],
        'the leftovers are gone, the other snapshot stays');
      assert.deepEqual(await chainSnapshots(first.baseImage), [first.snapshot, retry.snapshot]);
      await assertRestores(t, retry, id, retry.snapshot);
      await assertRestores(t, first, id, first.snapshot);
    });

  for (const [what, withChain] of [['as the first backup', false], ['as a full backup beside a chain', true]] as const) {
    test(`a chain image a killed run left ${what} (under its unfinished name) goes, with its source snapshot and .meta`,
      { timeout: 120_000 }, async (t) => {
        const id = await fx.newVolume(t, 16 * MiB);
        await fx.writeRandom(id, [[0, 16 * MiB]]);
        const before = withChain ? await engine.backup({ pool: POOL, volumeId: id }) : undefined;
        await fx.writeRandom(id, randomRanges(16 * MiB, 3));
        // What a full backup killed just before its rename leaves: the chain image it created,
        // under its unfinished name, with its data and end snapshot; its source snapshot; its .meta.
        const killed = uniqueName('killed');
        const killedImage = unfinishedImageName(id, killed);
        forgetMeta(t, killed);
        await fx.withVolume(id, (image) => image.createSnapshot(backupSnapshotName(killed)));
        await backups.createImage(killedImage, 16 * MiB, { features: VOLUME_FEATURES });
        const half = await backups.openImage(killedImage);
        try {
          await half.write(Buffer.alloc(1 * MiB, 7), 0);
          await half.createSnapshot(backupSnapshotName(killed));
        } finally {
          await half.close();
        }
        await backups.writeObject(metaObjectName(killed), JSON.stringify({ version: 2 }));
        assert.deepEqual(await engine.listBackups(id).then((l) => l.map((b) => b.record.id)),
          before ? [before.record.id] : [], 'an unfinished image holds no backup');

        await fx.writeRandom(id, randomRanges(16 * MiB, 3));
        const next = await engine.backup({ pool: POOL, volumeId: id });
        if (before) {
          assert.equal(next.mode, 'incremental');
          assert.equal(next.fromSnapshot, before.snapshot);
          assert.equal(next.baseImage, before.baseImage);
        } else {
          assert.equal(next.mode, 'full');
          assert.equal(next.convertedToFull, undefined, 'a first backup');
        }
        assert.deepEqual(await backupImages(id), [next.baseImage], 'the unfinished image is gone');
        assert.deepEqual(await sourceSnapshots(id), [...(before ? [before.snapshot] : []), next.snapshot]);
        assert.equal(await backups.objectExists(metaObjectName(killed)), false, 'its .meta is gone');
        await assertRestores(t, next, id, next.snapshot);
        if (before) await assertRestores(t, before, id, before.snapshot);
      });
  }
});

test('a first backup that fails at its end leaves no chain image, no source snapshot', async (t) => {
  const id = await fx.newVolume(t, 8 * MiB);
  await fx.writeRandom(id, [[0, 2 * MiB]]);
  const backupId = uniqueName('b');
  forgetMeta(t, backupId);
  // A .meta object already there: the backup fails after its transfer, at the metadata write.
  await backups.writeObject(metaObjectName(backupId), 'not ours');
  await assert.rejects(engine.backup({ pool: POOL, volumeId: id, backupId, volumeMetadata: {} }), AlreadyExistsError);
  assert.deepEqual(await sourceSnapshots(id), []);
  assert.deepEqual(await backupImages(id), []);
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

test('a full backup that fails at its end removes its new chain image; the existing chain is untouched',
  { timeout: 120_000 }, async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    await fx.writeRandom(id, [[0, 2 * MiB]]);
    const first = await engine.backup({ pool: POOL, volumeId: id });
    await fx.writeRandom(id, [[4 * MiB, 2 * MiB]]);
    const backupId = uniqueName('b');
    forgetMeta(t, backupId);
    await backups.writeObject(metaObjectName(backupId), 'not ours');
    await assert.rejects(engine.backup({ pool: POOL, volumeId: id, backupId, full: true, volumeMetadata: {} }),
      AlreadyExistsError);
    assert.deepEqual(await sourceSnapshots(id), [first.snapshot]);
    assert.deepEqual(await backupImages(id), [first.baseImage]);
    assert.deepEqual(await chainSnapshots(first.baseImage), [first.snapshot]);
    assert.equal(await backups.objectExists(lockObjectName(id)), true, 'the volume still has backups: its lock object stays');
    const next = await engine.backup({ pool: POOL, volumeId: id });
    assert.equal(next.fromSnapshot, first.snapshot);
    await assertRestores(t, next, id, next.snapshot);
    await assertRestores(t, first, id, first.snapshot);
  });

describe('cancellation', () => {
  test('abort in the middle: CancelledError, no new snapshot or chain image, and the next backup is right',
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
              assert.equal(progress.total, BigInt(size));
              if (progress.done < progress.total) controller.abort(new Error('test aborts'));
            },
          });
        } catch (caught) {
          error = caught;
        }
        return { reports, error };
      };

      // The first backup: no chain image may remain.
      const firstAbort = await abortMidway(uniqueName('abort'));
      assert.ok(firstAbort.error instanceof CancelledError,
        `expected CancelledError, got ${String(firstAbort.error)} after ${firstAbort.reports} progress reports`);
      assert.equal(firstAbort.error.code, 'ECANCELED');
      assert.deepEqual(await sourceSnapshots(id), [], 'no source snapshot left');
      assert.deepEqual((await backups.listImages()).filter((n) => n.startsWith(`volume-${id}.`)), [], 'no chain image left');

      // The next backup (lockWaitMs 0: the lock was released) succeeds and restores.
      const first = await slow.backup({ pool: POOL, volumeId: id });
      assert.equal(first.mode, 'full');
      await assertRestores(t, first, id, first.snapshot);

      // An incremental: no new source or chain snapshot may remain.
      await fx.withVolume(id, async (image) => {
        for (let offset = 0; offset < size; offset += 4 * MiB) await image.write(randomBytes(4 * MiB), offset);
      });
      const secondAbort = await abortMidway(uniqueName('abort'));
      assert.ok(secondAbort.error instanceof CancelledError, `expected CancelledError, got ${String(secondAbort.error)}`);
      assert.deepEqual(await sourceSnapshots(id), [first.snapshot]);
      assert.deepEqual(await chainSnapshots(first.baseImage), [first.snapshot]);
      assert.deepEqual(await backupImages(id), [first.baseImage]);

      // Put the source back to the first backup and change a little: the diff is small, and the
      // half-written chain head of the aborted run must not leak into the next backup.
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
    assert.deepEqual(await backupImages(id), []);
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
    assert.equal(incremental.baseImage, full.baseImage);
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
      assert.deepEqual(await chainSnapshots(full.baseImage), [full.snapshot, incremental.snapshot]);
      assert.deepEqual(await backupImages(id), [full.baseImage]);
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

      // Another live client (it watches the lock object and answers notifies) takes the
      // volume's lock, as a backup on another host would.
      const holder = await connect('a');
      const holderPool = await holder.pool(BACKUP_POOL);
      const lock = await VolumeLock.acquire(holderPool, id, 'test holder', { waitMs: 0, ttlMs: 120_000 });
      let held = true;
      t.after(async () => {
        if (held) await lock.release();
        await holderPool.close();
        await holder.close();
      });

      const impatient = new BackupEngine({ source: cluster, lockWaitMs: 0 });
      await assert.rejects(impatient.backup({ pool: POOL, volumeId: id }), (error: unknown) => {
        assert.ok(error instanceof BusyError, `expected BusyError, got ${String(error)}`);
        assert.equal(error.code, 'EBUSY');
        assert.equal(error.operation, 'backup');
        assert.equal(error.resource, `volume ${id}`);
        assert.match(error.message, new RegExp(`its lock ${BACKUP_POOL}/${lockObjectName(id).replace(/\./g, '\\.')} is held by test holder of volume ${id}`));
        return true;
      });
      assert.deepEqual(await sourceSnapshots(id), [first.snapshot], 'the refused backup made no snapshot');
      assert.deepEqual(await chainSnapshots(first.baseImage), [first.snapshot]);

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
      await lock.release();
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
      assert.deepEqual(await backupImages(id), []);
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
