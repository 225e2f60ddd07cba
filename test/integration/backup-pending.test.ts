/**
 * Incrementals that never completed, against a real cluster: a backup's
 * snapshot on its chain image counts only once its pending mark is gone.
 * Pacific's librbd can time out on a snapshot's header write that a stalled
 * OSD applies later, after the id was given back: the snapshot is then
 * listed by name but holds no data. Here such a leftover is made by hand
 * (a snapshot and a pending mark, as a failed run leaves them): listings,
 * restores and the next incremental ignore it, and the next backup or gc
 * removes it; a mark alone stays. Data checks compare sha256 of
 * `rbd export` of the source snapshot with the restored volume.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { NotFoundError, backupSnapshotName, type BackupEngine, type Pool } from '../../lib/index.js';
import { backupInfoKey, encodeBackupInfo } from '../../lib/backup/backup-info.js';
import { POOL, VolumeFixtures, snapshotSha, useBackupTestbed, volumeSha } from '../support/backup-fixtures.js';
import { uniqueName } from '../support/clusters.js';

const MiB = 1024 * 1024;

let backups: Pool;
let engine: BackupEngine;
let keepAll: BackupEngine;
let fx: VolumeFixtures;

useBackupTestbed((testbed) => ({ backups, engine, keepAll, fx } = testbed));

/** A volume with two backups, and what a failed third left: its snapshot on the volume and on the chain, marked pending. */
async function withFailedIncremental(t: TestContext, since: Date, withSnapshot = true) {
  const id = await fx.newVolume(t, 16 * MiB);
  await fx.writeRandom(id, [[0, 16 * MiB]]);
  const first = await keepAll.backup({ pool: POOL, volumeId: id });
  await fx.writeRandom(id, [[MiB, 64 * 1024]]);
  const second = await keepAll.backup({ pool: POOL, volumeId: id });
  await fx.writeRandom(id, [[2 * MiB, 64 * 1024]]);
  const failedId = uniqueName('failed');
  const snapshot = backupSnapshotName(failedId);
  await fx.withVolume(id, (image) => image.createSnapshot(snapshot));
  {
    await using chain = await backups.openImage(first.baseImage);
    await chain.setMetadata(backupInfoKey(failedId),
      encodeBackupInfo({ displayName: null, displayDescription: null, bytesWritten: null, pendingSince: since }));
    if (withSnapshot) await chain.createSnapshot(snapshot);
  }
  return { id, first, second, failedId, snapshot };
}

async function chainState(image: string, failedId: string): Promise<{ snapshots: string[]; mark: string | undefined }> {
  await using chain = await backups.openImage(image, { readOnly: true });
  return { snapshots: (await chain.listSnapshots()).map((s) => s.name), mark: await chain.getMetadata(backupInfoKey(failedId)) };
}

test('a pending backup\'s snapshot is no backup: not listed, not restorable, not a parent; the next backup removes it',
  { timeout: 180_000 }, async (t) => {
    const { id, first, second, failedId, snapshot } = await withFailedIncremental(t, new Date());
    const listed = await engine.listBackups(id);
    assert.deepEqual(listed.map((l) => l.record.id), [first.record.id, second.record.id]);
    await assert.rejects(
      engine.restore({ backup: { ...second.record, id: failedId }, target: { volume: { pool: POOL, id: fx.targetId(t) } } }),
      (e) => e instanceof NotFoundError && e.message.includes(failedId));

    const next = await engine.backup({ pool: POOL, volumeId: id });
    assert.equal(next.mode, 'incremental');
    assert.equal(next.fromSnapshot, second.snapshot, 'it continues from the last complete backup');
    const state = await chainState(first.baseImage, failedId);
    assert.ok(!state.snapshots.includes(snapshot), 'the failed backup\'s chain snapshot went');
    assert.equal(state.mark, undefined, 'and its mark with it');
    assert.ok(!(await fx.withVolume(id, (image) => image.snapshotExists(snapshot))), 'and its source snapshot');
    const expected = await snapshotSha(id, next.snapshot);
    const target = fx.targetId(t);
    await engine.restore({ backup: next.record, target: { volume: { pool: POOL, id: target } } });
    assert.equal(await volumeSha(target), expected);
  });

test('gc: removes a pending backup\'s snapshot with its mark; keeps a mark alone, however old (the OSD may still write its snapshot)',
  { timeout: 180_000 }, async (t) => {
    const old = await withFailedIncremental(t, new Date(Date.now() - 48 * 3600_000), false);
    const late = await withFailedIncremental(t, new Date());
    const dry = await engine.gc({ dryRun: true });
    assert.ok(dry.removedSnapshots.includes(`${backups.spec}/${late.first.baseImage}@${late.snapshot}`), JSON.stringify(dry.removedSnapshots));
    const result = await engine.gc({ sourcePool: POOL });
    assert.ok(result.removedSnapshots.includes(`${backups.spec}/${late.first.baseImage}@${late.snapshot}`));
    assert.deepEqual(await chainState(late.first.baseImage, late.failedId), { snapshots: [late.first.snapshot, late.second.snapshot], mark: undefined });
    assert.notEqual((await chainState(old.first.baseImage, old.failedId)).mark, undefined, 'a mark alone stays');
    assert.deepEqual((await engine.listBackups(old.id)).map((l) => l.record.id), [old.first.record.id, old.second.record.id]);
  });

test('a second snapshot of a complete backup\'s id (a failed attempt\'s, written late) is no backup; the next backup removes it and keeps the info',
  { timeout: 180_000 }, async (t) => {
    const { id, first, second } = await withFailedIncremental(t, new Date(), false);
    // The complete second backup's info names its snapshot; another of its id appears.
    const stray = backupSnapshotName(second.record.id, new Date(Date.now() - 60_000));
    {
      await using chain = await backups.openImage(first.baseImage);
      await chain.createSnapshot(stray);
    }
    assert.deepEqual((await engine.listBackups(id)).map((l) => l.record.id), [first.record.id, second.record.id]);
    const target = fx.targetId(t);
    const restored = await engine.restore({ backup: second.record, target: { volume: { pool: POOL, id: target } } });
    assert.equal(restored.source.endsWith(`@${second.snapshot}`), true, restored.source);
    assert.equal(await volumeSha(target), await snapshotSha(id, second.snapshot));
    await engine.backup({ pool: POOL, volumeId: id });
    const state = await chainState(first.baseImage, second.record.id);
    assert.ok(!state.snapshots.includes(stray), 'the stray snapshot went');
    assert.notEqual(state.mark, undefined, 'the complete backup keeps its info');
    assert.equal((await engine.listBackups(id)).find((l) => l.record.id === second.record.id)?.record.id, second.record.id);
  });

test('a chain image left with only a pending backup\'s snapshot holds no backup: never listed as a legacy copy, and gc removes it',
  { timeout: 180_000 }, async (t) => {
    const { id, first, second, failedId, snapshot } = await withFailedIncremental(t, new Date());
    // Its complete backups gone by hand, as a delete cut short could leave it.
    {
      await using chain = await backups.openImage(first.baseImage);
      for (const done of [first, second]) {
        await chain.removeSnapshot(done.snapshot);
        await chain.removeMetadata(backupInfoKey(done.record.id));
      }
    }
    assert.deepEqual((await chainState(first.baseImage, failedId)).snapshots, [snapshot]);
    assert.deepEqual(await engine.listBackups(id), []);
    await assert.rejects(engine.restore({ backup: first.record, target: { volume: { pool: POOL, id: fx.targetId(t) } } }), NotFoundError);
    const result = await engine.gc();
    assert.ok(result.removedImages.includes(`${backups.spec}/${first.baseImage}`), JSON.stringify(result.removedImages));
    assert.equal(await backups.imageExists(first.baseImage), false);
  });

test('deleting the last complete backup of a chain image removes it with a pending backup\'s snapshot still on it', { timeout: 180_000 }, async (t) => {
  const { id, first, second } = await withFailedIncremental(t, new Date());
  await keepAll.delete(second.record);
  const deleted = await keepAll.delete(first.record);
  assert.deepEqual(deleted.removedImages, [first.baseImage]);
  assert.equal(await backups.imageExists(first.baseImage), false);
  assert.deepEqual(await engine.listBackups(id), []);
});
