/**
 * Instant restore against a real cluster: the restore point cloned into
 * the target pool (usable at once), flattened never, now or in the
 * background (and cancelled there); the backup's snapshot protected while
 * a clone reads from it, deletes and prunes of it refused naming the
 * clones, the protection lifted once none is left; typed refusals that
 * change nothing.
 *
 * Every data check compares sha256 of `rbd export` of the source snapshot
 * with `rbd export` of the restored volume.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AlreadyExistsError, BackupEngine, BusyError, CancelledError, InvalidArgumentError,
  type BackupResult, type Cluster, type Pool, type Progress, type RestoreRequest,
} from '../../lib/index.js';
import { connect } from '../support/clusters.js';
import {
  BACKUP_POOL, POOL, VolumeFixtures, randomRanges, snapshotSha, volumeSha, useBackupTestbed,
} from '../support/backup-fixtures.js';

const MiB = 1024 * 1024;

let volumes: Pool;
let backups: Pool;
let engine: BackupEngine;
let fx: VolumeFixtures;

useBackupTestbed((testbed) => ({ volumes, backups, engine, fx } = testbed));

/**
 * A target volume id (registered first, so its clone goes before the
 * backup it reads from), and a volume with data here and there and one
 * backup of it.
 */
async function backedUp(t: TestContext, size = 16 * MiB): Promise<{ id: string; targetId: string; backup: BackupResult }> {
  const targetId = fx.targetId(t);
  const id = await fx.newVolume(t, size);
  await fx.writeRandom(id, [[0, MiB], [5 * MiB - 100, 3000], ...randomRanges(size, 3, 2 * MiB), [size - 4096, 4096]]);
  const backup = await engine.backup({ pool: POOL, volumeId: id });
  return { id, targetId, backup };
}

function instant(backup: BackupResult, targetId: string, extra: Partial<RestoreRequest> = {}): RestoreRequest {
  return { backup: backup.record, target: { volume: { pool: POOL, id: targetId } }, instant: true, ...extra };
}

async function parentOf(targetId: string) {
  await using image = await volumes.openImage(`volume-${targetId}`, { readOnly: true });
  return await image.parent();
}

async function isProtected(backup: BackupResult): Promise<boolean> {
  await using chain = await backups.openImage(backup.baseImage, { readOnly: true });
  return await chain.isSnapshotProtected(backup.snapshot);
}

async function flattenByHand(targetId: string): Promise<void> {
  await using image = await volumes.openImage(`volume-${targetId}`);
  await image.flatten();
}

test('flatten never: a clone of the restore point, readable at once; the backup cannot be deleted or pruned while the clone reads from it',
  { timeout: 180_000 }, async (t) => {
    const { id, targetId, backup } = await backedUp(t);
    const expected = await snapshotSha(id, backup.snapshot);
    // A later backup: the clone must show the first point, not the newest.
    await fx.writeRandom(id, [[0, 2 * MiB]]);
    await engine.backup({ pool: POOL, volumeId: id });

    const r = await engine.restore(instant(backup, targetId, { flatten: 'never' }));
    assert.equal(r.path, 'instant');
    assert.equal(r.flattening, undefined);
    assert.equal(r.bytesRead, 0n);
    assert.equal(r.target, `${POOL}/volume-${targetId}`);
    assert.equal(r.source, `${BACKUP_POOL}/${backup.baseImage}@${backup.snapshot}`);
    assert.deepEqual(
      (({ pool, image, snapshot }) => ({ pool, image, snapshot }))((await parentOf(targetId))!),
      { pool: BACKUP_POOL, image: backup.baseImage, snapshot: backup.snapshot });
    assert.equal(await volumeSha(targetId), expected);
    assert.equal(await isProtected(backup), true);

    const names = (e: unknown) => e instanceof BusyError && e.message.includes(`${POOL}/volume-${targetId}`) &&
      e.message.includes(backup.record.id);
    await assert.rejects(engine.delete(backup.record), names);
    await assert.rejects(engine.prune(id, 'latest1'), names);
    // Refused as a whole: the newer backup is there too.
    assert.equal((await engine.listBackups(id)).length, 2);

    await flattenByHand(targetId);
    assert.equal(await parentOf(targetId), null);
    const deleted = await engine.delete(backup.record);
    assert.deepEqual(deleted.removedSnapshots, [backup.snapshot]);
    assert.equal(await volumeSha(targetId), expected);
  });

test('flatten now: the volume holds its own data when the call returns, and the snapshot is unprotected again',
  { timeout: 180_000 }, async (t) => {
    const { id, targetId, backup } = await backedUp(t);
    const expected = await snapshotSha(id, backup.snapshot);
    const seen: Progress[] = [];
    const r = await engine.restore(instant(backup, targetId, { flatten: 'now', onProgress: (p) => seen.push(p) }));
    assert.equal(r.path, 'instant');
    assert.equal(r.flattening, undefined);
    assert.equal(await parentOf(targetId), null);
    assert.equal(await isProtected(backup), false);
    assert.equal(await volumeSha(targetId), expected);
    assert.ok(seen.length > 0, 'the flatten reported progress');
    assert.ok(seen.every((p) => p.total === r.size && p.done <= p.total), JSON.stringify(seen, (_, v: unknown) => typeof v === 'bigint' ? String(v) : v));
    // Nothing holds the backup any more.
    await engine.delete(backup.record);
  });

test('flatten now cancelled: the call fails, the clone is removed, the snapshot unprotected; the backup deletes and restores again',
  { timeout: 180_000 }, async (t) => {
    const { id, targetId, backup } = await backedUp(t, 64 * MiB);
    await fx.writeRandom(id, [[0, 64 * MiB]]);
    const dense = await engine.backup({ pool: POOL, volumeId: id });
    // One object copied up at a time: the cancel at the first report lands mid-flatten.
    const slow = await connect('a', { options: { rbd_concurrent_management_ops: '1' } });
    try {
      const throttled = new BackupEngine({ source: slow });
      const stop = new AbortController();
      const outcome = await throttled.restore(instant(dense, targetId, {
        flatten: 'now', signal: stop.signal, onProgress: () => stop.abort(),
      })).then(() => undefined, (error: unknown) => error);
      assert.ok(outcome instanceof CancelledError, String(outcome));
    } finally {
      await slow.close();
    }
    assert.equal(await volumes.imageExists(`volume-${targetId}`), false, 'the clone went with the failed call');
    assert.equal(await isProtected(dense), false, 'the protection it added went too');
    const again = await engine.restore(instant(dense, targetId, { flatten: 'now' }));
    assert.equal(again.path, 'instant');
    assert.equal(await volumeSha(targetId), await snapshotSha(id, dense.snapshot));
    await engine.delete(dense.record);
    await engine.delete(backup.record);
  });

test('flatten background: usable when the call returns, flat once done settles, the snapshot unprotected after',
  { timeout: 180_000 }, async (t) => {
    const { id, targetId, backup } = await backedUp(t);
    const expected = await snapshotSha(id, backup.snapshot);
    const r = await engine.restore(instant(backup, targetId));
    assert.equal(r.path, 'instant');
    assert.ok(r.flattening, 'the default flatten is background');
    // Readable while the flatten may still run.
    assert.equal(await volumeSha(targetId), expected);
    await r.flattening.done;
    assert.equal(await parentOf(targetId), null);
    assert.equal(await isProtected(backup), false);
    assert.equal(await volumeSha(targetId), expected);
  });

test('a background flatten cancelled: done rejects with CancelledError and the volume stays a whole clone, or it had finished',
  { timeout: 180_000 }, async (t) => {
    const { id, targetId, backup } = await backedUp(t, 64 * MiB);
    const expected = await snapshotSha(id, backup.snapshot);
    const r = await engine.restore(instant(backup, targetId));
    assert.ok(r.flattening);
    r.flattening.cancel();
    const outcome = await r.flattening.done.then(() => 'flattened', (error: unknown) => error);
    t.diagnostic(`the flatten: ${outcome === 'flattened' ? 'had finished' : 'was cancelled'}`);
    if (outcome === 'flattened') {
      assert.equal(await parentOf(targetId), null);
    } else {
      assert.ok(outcome instanceof CancelledError, String(outcome));
      assert.notEqual(await parentOf(targetId), null);
      assert.equal(await isProtected(backup), true);
      await flattenByHand(targetId);
    }
    assert.equal(await volumeSha(targetId), expected);
  });

test('two instant restores of one backup: the delete names both clones until the last is flattened', { timeout: 180_000 }, async (t) => {
  const { id, targetId, backup } = await backedUp(t);
  const second = fx.targetId(t);
  const expected = await snapshotSha(id, backup.snapshot);
  await engine.restore(instant(backup, targetId, { flatten: 'never' }));
  await engine.restore(instant(backup, second, { flatten: 'never' }));
  await assert.rejects(engine.delete(backup.record), (e) => e instanceof BusyError &&
    e.message.includes(`volume-${targetId}`) && e.message.includes(`volume-${second}`));
  await flattenByHand(targetId);
  await assert.rejects(engine.delete(backup.record), (e) => e instanceof BusyError &&
    !e.message.includes(`volume-${targetId}`) && e.message.includes(`volume-${second}`));
  await flattenByHand(second);
  await engine.delete(backup.record);
  assert.equal(await volumeSha(targetId), expected);
  assert.equal(await volumeSha(second), expected);
});

test('refusals change nothing: an existing target, a file target, flatten without instant, an unknown flatten; a dry run creates nothing',
  { timeout: 180_000 }, async (t) => {
    const { targetId, backup } = await backedUp(t);
    const existing = fx.targetId(t);
    await volumes.createImage(`volume-${existing}`, 4 * MiB);
    await fx.writeRandom(existing, [[0, 4096]]);
    const before = await volumeSha(existing);
    await assert.rejects(engine.restore(instant(backup, existing)), (e) =>
      e instanceof AlreadyExistsError && /restore without instant/.test(e.message));
    await assert.rejects(engine.restore(instant(backup, existing, { force: true })), AlreadyExistsError);
    assert.equal(await volumeSha(existing), before);

    const dir = await mkdtemp(join(tmpdir(), 'instant-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await assert.rejects(engine.restore({ backup: backup.record, target: { file: join(dir, 'x.raw') }, instant: true }), (e) =>
      e instanceof InvalidArgumentError && /file or a stream/.test(e.message));
    await assert.rejects(engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: targetId } }, flatten: 'now' }),
      (e) => e instanceof InvalidArgumentError && /flatten goes with instant/.test(e.message));
    await assert.rejects(engine.restore(instant(backup, targetId, { flatten: 'sometimes' as never })), (e) =>
      e instanceof InvalidArgumentError && /background, now, never/.test(e.message));

    const dry = await engine.restore(instant(backup, targetId, { dryRun: true }));
    assert.equal(dry.dryRun, true);
    assert.equal(dry.path, 'instant');
    assert.equal(dry.flattening, undefined);
    assert.equal(await volumes.imageExists(`volume-${targetId}`), false);
    assert.equal(await isProtected(backup), false);
  });

test('two connections to one cluster: the clone is made through the target\'s', { timeout: 180_000 }, async (t) => {
  const { id, targetId, backup } = await backedUp(t);
  const expected = await snapshotSha(id, backup.snapshot);
  const source: Cluster = await connect('a');
  t.after(() => source.close());
  const backupSide: Cluster = await connect('a');
  t.after(() => backupSide.close());
  const split = new BackupEngine({ source, backupCluster: backupSide });
  const r = await split.restore(instant(backup, targetId, { flatten: 'now' }));
  assert.equal(r.path, 'instant');
  assert.equal(await volumeSha(targetId), expected);
});
