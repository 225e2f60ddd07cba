/**
 * Retention applied to real backup pools (engine.prune): several policies,
 * dry runs, chain images going with their last backup, the newest backup
 * always kept, and every survivor restored byte-for-byte afterwards.
 */
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../../lib/index.js';
import { POOL, randomRanges, snapshotSha, useBackupTestbed, volumeSha, type BackupTestbed } from '../support/backup-fixtures.js';

const MiB = 1 << 20;
const SIZE = 16 * MiB;

let tb: BackupTestbed;
useBackupTestbed((testbed) => { tb = testbed; });

/** Backups of one volume over two chains: full a1, a2, a3; full b1, b2, b3 (newest). */
async function twoChains(t: TestContext) {
  const volumeId = await tb.fx.newVolume(t, SIZE);
  const made: Array<{ id: string; sha: string; image: string }> = [];
  for (const id of ['a1', 'a2', 'a3', 'b1', 'b2', 'b3']) {
    await tb.fx.writeRandom(volumeId, randomRanges(SIZE, 4, 256 * 1024));
    const result = await tb.engine.backup({ pool: POOL, volumeId, backupId: id, full: id.endsWith('1') });
    made.push({ id, sha: await snapshotSha(volumeId, result.snapshot), image: result.baseImage });
  }
  return { volumeId, made };
}

async function restoresExactly(t: TestContext, volumeId: string, made: Array<{ id: string; sha: string }>): Promise<void> {
  const listed = await tb.engine.listBackups(volumeId);
  for (const entry of listed) {
    const expected = made.find((m) => m.id === entry.record.id)!;
    const id = tb.fx.targetId(t);
    await tb.engine.restore({ backup: entry.record, target: { volume: { pool: POOL, id } } });
    assert.equal(await volumeSha(id), expected.sha, `survivor ${entry.record.id}`);
  }
}

describe('prune', () => {
  test('latest2 keeps the two newest; a dry run removes nothing; the first chain goes with its last backup',
    { timeout: 300_000 }, async (t) => {
      const { volumeId, made } = await twoChains(t);
      const dry = await tb.engine.prune(volumeId, 'latest2', { dryRun: true });
      assert.equal(dry.dryRun, true);
      assert.deepEqual(dry.kept.map((k) => k.backupId), ['b3', 'b2']);
      assert.deepEqual(dry.removed.map((r) => r.backupId), ['a1', 'a2', 'a3', 'b1']);
      assert.equal((await tb.engine.listBackups(volumeId)).length, 6, 'the dry run removed nothing');

      const real = await tb.engine.prune(volumeId, 'latest2', { sourcePool: POOL });
      assert.deepEqual(real.removed.map((r) => r.backupId), ['a1', 'a2', 'a3', 'b1']);
      assert.deepEqual(real.removedImages, [`volume-${volumeId}.backup.a1`]);
      assert.deepEqual((await tb.engine.listBackups(volumeId)).map((l) => l.record.id), ['b2', 'b3']);
      await restoresExactly(t, volumeId, made);
      // The next incremental still continues from the newest backup.
      await tb.fx.writeRandom(volumeId, randomRanges(SIZE, 2, 64 * 1024));
      const next = await tb.engine.backup({ pool: POOL, volumeId, backupId: 'c1' });
      assert.equal(next.mode, 'incremental');
      assert.equal(next.record.parent_id, 'b3');
    });

  test('a policy that keeps nothing still keeps the newest; one that keeps all removes nothing', { timeout: 300_000 }, async (t) => {
    const { volumeId, made } = await twoChains(t);
    const all = await tb.engine.prune(volumeId, 'latest10');
    assert.deepEqual(all.removed, [], 'ten kept, six made');
    const today = await tb.engine.prune(volumeId, 'days30', { dryRun: true });
    assert.deepEqual(today.kept.map((k) => k.backupId), ['b3'], 'all made today: one per day');
    // Counted from a time far ahead, no day of the policy holds a backup.
    const future = await tb.engine.prune(volumeId, 'hours1', { now: new Date(Date.now() + 400 * 24 * 3600_000) });
    assert.deepEqual(future.kept.map((k) => k.backupId), ['b3']);
    assert.match(future.kept[0].reasons.join(), /newest backup/);
    const images = (await tb.backups.listImages()).filter((n) => n.startsWith(`volume-${volumeId}.backup.`));
    assert.deepEqual(images, [`volume-${volumeId}.backup.b1`]);
    await restoresExactly(t, volumeId, made);
  });

  test('removing from the middle of a chain leaves the others restorable', { timeout: 300_000 }, async (t) => {
    const { volumeId, made } = await twoChains(t);
    // Keep a1 (oldest of the first chain) only through an explicit delete of the others around it.
    const listed = await tb.engine.listBackups(volumeId);
    for (const id of ['a2', 'b2']) await tb.engine.delete(listed.find((l) => l.record.id === id)!.record);
    await restoresExactly(t, volumeId, made);
    const pruned = await tb.engine.prune(volumeId, 'latest3');
    assert.deepEqual(pruned.kept.map((k) => k.backupId), ['b3', 'b1', 'a3']);
    assert.deepEqual(pruned.removed.map((r) => r.backupId), ['a1']);
    await restoresExactly(t, volumeId, made);
  });

  test('a policy that does not parse is refused before anything is deleted', { timeout: 60_000 }, async (t) => {
    const volumeId = await tb.fx.newVolume(t, SIZE);
    await tb.engine.backup({ pool: POOL, volumeId, backupId: 'p1' });
    for (const bad of ['latest', 'keep3', 'latest3,,days2', '']) {
      await assert.rejects(tb.engine.prune(volumeId, bad), InvalidArgumentError, bad);
    }
    assert.equal((await tb.engine.listBackups(volumeId)).length, 1);
  });
});
