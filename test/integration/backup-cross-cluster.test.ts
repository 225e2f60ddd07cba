/**
 * Backups to another cluster: BackupEngine with source cluster a and
 * backupCluster b (pool backups on b). Full and incremental backups land
 * in chain images on b only; restores come back onto a by the diff path
 * (new volume) and by the full copy (used volume); listing and delete work
 * on b, the source snapshot going on a. Every data check compares sha256
 * of `rbd export` on both clusters.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  BackupEngine, InvalidArgumentError, NotFoundError, backupImageName, type BackupResult, type Cluster, type Pool,
} from '../../lib/index.js';
import { lockObjectName } from '../../lib/backup/lock.js';
import { connect, rbdExportSha256, uniqueName } from '../support/clusters.js';
import {
  BACKUP_POOL, POOL, VOLUME_FEATURES, VolumeFixtures, backupImagesOf, randomRanges, snapshotSha, snapshotsOf,
} from '../support/backup-fixtures.js';

const MiB = 1024 * 1024;

let clusterA: Cluster;
let clusterB: Cluster;
let volumes: Pool;
let backupsA: Pool;
let backupsB: Pool;
let engine: BackupEngine;
let fx: VolumeFixtures;

before(async () => {
  [clusterA, clusterB] = await Promise.all([connect('a'), connect('b')]);
  volumes = await clusterA.pool(POOL);
  backupsA = await clusterA.pool(BACKUP_POOL);
  backupsB = await clusterB.pool(BACKUP_POOL);
  // Every source snapshot kept (maxSourceSnapshots 0): every backup compares with its own.
  engine = new BackupEngine({ source: clusterA, backupCluster: clusterB, maxSourceSnapshots: 0 });
  // Backups go to b; a's backup pool is cleaned too, in case one went astray.
  fx = new VolumeFixtures(volumes, [backupsA, backupsB]);
});

after(async () => {
  await backupsB?.close();
  await backupsA?.close();
  await volumes?.close();
  await clusterB?.close();
  await clusterA?.close();
});

// ---- tests ---------------------------------------------------------------

describe('backups on another cluster', () => {
  test('full and incremental backups land on b, with b\'s snapshots holding the source\'s bytes',
    { timeout: 180_000 }, async (t) => {
      const size = 32 * MiB;
      const id = await fx.newVolume(t, size);
      await fx.writeRandom(id, randomRanges(size, 5));
      const results: BackupResult[] = [await engine.backup({ pool: POOL, volumeId: id })];
      for (let i = 0; i < 2; i++) {
        await fx.writeRandom(id, randomRanges(size, 4));
        if (i === 1) await fx.withVolume(id, (image) => image.discard(8 * MiB, 8 * MiB));
        results.push(await engine.backup({ pool: POOL, volumeId: id }));
      }
      assert.deepEqual(results.map((r) => r.mode), ['full', 'incremental', 'incremental']);
      assert.equal(results[1].fromSnapshot, results[0].snapshot);
      assert.equal(results[2].fromSnapshot, results[1].snapshot);
      assert.equal(results[2].record.parent_id, results[1].record.id);
      assert.equal(results[0].record.container, BACKUP_POOL);
      const chain = backupImageName(id, results[0].record.id);
      assert.deepEqual(results.map((r) => r.baseImage), [chain, chain, chain]);

      assert.deepEqual(await snapshotsOf(backupsB, chain), results.map((r) => r.snapshot));
      assert.deepEqual(await backupImagesOf(backupsB, id), [chain]);
      assert.deepEqual(await backupImagesOf(backupsA, id), [], 'nothing on the source cluster');
      assert.equal(await backupsB.objectExists(lockObjectName(id)), true, 'the lock lives beside the backups');
      assert.equal(await backupsA.objectExists(lockObjectName(id)), false);
      for (const result of results) {
        assert.equal(await rbdExportSha256('b', `${BACKUP_POOL}/${chain}@${result.snapshot}`),
          await snapshotSha(id, result.snapshot), `b's ${result.snapshot}`);
      }
      assert.deepEqual((await engine.listBackups(id)).map((l) => [l.record.id, l.full]),
        results.map((r, i) => [r.record.id, i === 0]));

      // A full backup starts a second chain image on b.
      await fx.writeRandom(id, randomRanges(size, 4));
      const full = await engine.backup({ pool: POOL, volumeId: id, full: true });
      assert.equal(full.baseImage, backupImageName(id, full.record.id));
      assert.deepEqual(await backupImagesOf(backupsB, id), [chain, full.baseImage].sort());
      assert.deepEqual(await backupImagesOf(backupsA, id), []);
      assert.equal(await rbdExportSha256('b', `${BACKUP_POOL}/${full.baseImage}@${full.snapshot}`),
        await snapshotSha(id, full.snapshot));
    });

  test('restores back onto a: diff into a new volume, full copy into a used one', { timeout: 180_000 }, async (t) => {
    const size = 32 * MiB;
    const id = await fx.newVolume(t, size);
    await fx.writeRandom(id, randomRanges(size, 5));
    const full = await engine.backup({ pool: POOL, volumeId: id });
    await fx.writeRandom(id, randomRanges(size, 5));
    const incremental = await engine.backup({ pool: POOL, volumeId: id });

    for (const result of [full, incremental]) {
      const fresh = fx.targetId(t);
      const viaDiff = await engine.restore({ backup: result.record, target: { volume: { pool: POOL, id: fresh } } });
      assert.equal(viaDiff.path, 'diff');
      assert.equal(viaDiff.failedCondition, undefined);
      assert.equal(viaDiff.source, `${BACKUP_POOL}/${full.baseImage}@${result.snapshot}`);
      assert.equal(await rbdExportSha256('a', `${POOL}/volume-${fresh}`), await snapshotSha(id, result.snapshot));
      assert.equal(await volumes.imageExists(`volume-${fresh}`), true, 'the target is on a');

      const used = fx.targetId(t);
      await volumes.createImage(`volume-${used}`, size, { features: VOLUME_FEATURES });
      await fx.withVolume(used, async (image) => {
        for (let offset = 0; offset < size; offset += 4 * MiB) await image.write(randomBytes(4 * MiB), offset);
      });
      const viaCopy = await engine.restore({ backup: result.record, target: { volume: { pool: POOL, id: used } }, force: true });
      assert.equal(viaCopy.path, 'full');
      assert.equal(viaCopy.failedCondition?.number, 5);
      assert.equal(await rbdExportSha256('a', `${POOL}/volume-${used}`), await snapshotSha(id, result.snapshot));
    }

    // Onto the source volume itself (condition 4), after changing it.
    await fx.writeRandom(id, randomRanges(size, 5));
    const ontoSource = await engine.restore({ backup: full.record, target: { volume: { pool: POOL, id } }, force: true });
    assert.equal(ontoSource.failedCondition?.number, 4);
    assert.equal(await rbdExportSha256('a', `${POOL}/volume-${id}`), await snapshotSha(id, full.snapshot));
  });

  test('delete works on b, removes the chain image with its last backup, and the source snapshot on a',
    { timeout: 120_000 }, async (t) => {
      const id = await fx.newVolume(t, 16 * MiB);
      await fx.writeRandom(id, randomRanges(16 * MiB, 3));
      const first = await engine.backup({ pool: POOL, volumeId: id });
      await fx.writeRandom(id, randomRanges(16 * MiB, 3));
      const second = await engine.backup({ pool: POOL, volumeId: id });
      const chain = first.baseImage;
      const deleted = await engine.delete(first.record, { sourcePool: POOL });
      assert.deepEqual(deleted.removedSnapshots, [first.snapshot]);
      assert.equal(deleted.removedSourceSnapshot, first.snapshot, 'the source snapshot goes from cluster a');
      assert.deepEqual(await fx.withVolume(id, async (image) => (await image.listSnapshots()).map((s) => s.name)),
        [second.snapshot]);
      assert.deepEqual(await snapshotsOf(backupsB, chain), [second.snapshot]);
      const target = fx.targetId(t);
      await engine.restore({ backup: second.record, target: { volume: { pool: POOL, id: target } } });
      assert.equal(await rbdExportSha256('a', `${POOL}/volume-${target}`), await snapshotSha(id, second.snapshot));
      assert.deepEqual((await engine.delete(second.record)).removedImages, [chain]);
      assert.equal(await snapshotsOf(backupsB, chain), undefined);
      assert.deepEqual(await backupImagesOf(backupsB, id), []);
    });

  test('backupMany across clusters: one outcome per request, in order', { timeout: 120_000 }, async (t) => {
    const one = await fx.newVolume(t, 16 * MiB);
    const two = await fx.newVolume(t, 16 * MiB);
    await fx.writeRandom(one, randomRanges(16 * MiB, 3));
    await fx.writeRandom(two, randomRanges(16 * MiB, 3));
    const missing = uniqueName('missing');
    const outcomes = await engine.backupMany([
      { pool: POOL, volumeId: one }, { pool: POOL, volumeId: two }, { pool: POOL, volumeId: missing },
    ]);
    assert.deepEqual(outcomes.map((o) => [o.volumeId, o.ok]), [[one, true], [two, true], [missing, false]]);
    const failed = outcomes[2];
    assert.ok(!failed.ok && failed.error instanceof NotFoundError, String(!failed.ok && failed.error));
    for (const [outcome, id] of [[outcomes[0], one], [outcomes[1], two]] as const) {
      assert.ok(outcome.ok);
      assert.equal(outcome.result.baseImage, backupImageName(id, outcome.result.record.id));
      assert.equal(await rbdExportSha256('b', `${BACKUP_POOL}/${outcome.result.baseImage}@${outcome.result.snapshot}`),
        await snapshotSha(id, outcome.result.snapshot));
    }
  });

  test('an instant restore across clusters is refused before anything changes, and says to restore normally', { timeout: 120_000 }, async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    await fx.writeRandom(id, [[0, MiB]]);
    const backup = await engine.backup({ pool: POOL, volumeId: id });
    const targetId = fx.targetId(t);
    await assert.rejects(
      engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: targetId } }, instant: true }),
      (e) => e instanceof InvalidArgumentError && /must be in the backup's cluster/.test(e.message) && /restore without instant/.test(e.message));
    assert.equal(await volumes.imageExists(`volume-${targetId}`), false);
    await using chain = await backupsB.openImage(backup.baseImage, { readOnly: true });
    assert.equal(await chain.isSnapshotProtected(backup.snapshot), false);
  });
});
