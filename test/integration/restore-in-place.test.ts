/**
 * In-place restore against a real cluster: a restore into the backup's own
 * volume (after a bad change) converges the volume from a backup snapshot
 * it still shares with the chain image, to a newer, an older and the
 * middle restore point, each byte-identical to its source snapshot and
 * reading a fraction of what a full copy reads (from the statistics); a
 * dry run says so and changes nothing; inPlace: false and another volume
 * (even one with a snapshot of the same name) take the full copy.
 *
 * Every data check compares sha256 of `rbd export` of the source snapshot
 * with `rbd export` of the restored volume.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { BusyError, type BackupEngine, type BackupResult, type Pool, type RestoreRequest } from '../../lib/index.js';
import { RESTORING_INTO_KEY } from '../../lib/backup/restore-lock.js';
import { POOL, VolumeFixtures, snapshotSha, volumeSha, useBackupTestbed } from '../support/backup-fixtures.js';

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;

let volumes: Pool;
let engine: BackupEngine;
let keepAll: BackupEngine;
let fx: VolumeFixtures;

useBackupTestbed((testbed) => ({ volumes, engine, keepAll, fx } = testbed));

/** 4 KiB writes at n random places. */
function scattered(n: number): Array<[number, number]> {
  return Array.from({ length: n }, () => [Math.floor(Math.random() * (SIZE / 4096)) * 4096, 4096]);
}

/**
 * A volume full of data and three backups, each after 1% more changes;
 * then a bad change. Full: librbd lists an object created since the
 * from-snapshot whole, and the byte counts below are about exact extents.
 */
async function historyOf(t: TestContext, using: BackupEngine): Promise<{ id: string; backups: BackupResult[]; shas: string[] }> {
  const id = await fx.newVolume(t, SIZE);
  await fx.writeRandom(id, [[0, SIZE]]);
  const backups: BackupResult[] = [];
  const shas: string[] = [];
  for (let i = 0; i < 3; i++) {
    if (i > 0) await fx.writeRandom(id, scattered(160));
    backups.push(await using.backup({ pool: POOL, volumeId: id }));
    // Now: the engine keeps two source snapshots, the next backup trims the oldest.
    shas.push(await snapshotSha(id, backups[i].snapshot));
  }
  // The bad change: a MiB of garbage and a discard.
  await fx.writeRandom(id, [[8 * MiB, MiB]]);
  await fx.withVolume(id, (image) => image.discard(40 * MiB, 2 * MiB));
  return { id, backups, shas };
}

function into(id: string, backup: BackupResult, extra: Partial<RestoreRequest> = {}): RestoreRequest {
  return { backup: backup.record, target: { volume: { pool: POOL, id } }, force: true, ...extra };
}

test('into its own volume: newest, oldest and middle restore points, each exact and reading a fraction of a full copy',
  { timeout: 300_000 }, async (t) => {
    const { id, backups, shas } = await historyOf(t, engine);
    // The engine keeps two source snapshots: the oldest backup's is gone from the volume.
    const onVolume = await fx.withVolume(id, async (image) => (await image.listSnapshots()).map((s) => s.name));
    assert.deepEqual(onVolume, [backups[1].snapshot, backups[2].snapshot]);

    const newest = await engine.restore(into(id, backups[2]));
    t.diagnostic(`newest: ${newest.bytesRead}`);
    assert.equal(newest.path, 'in-place');
    assert.equal(newest.commonSnapshot, backups[2].snapshot);
    assert.equal(newest.failedCondition?.number, 4);
    assert.equal(await volumeSha(id), shas[2]);
    assert.ok(newest.bytesRead < BigInt(4 * MiB), `read ${newest.bytesRead} bytes to undo a 3 MiB change`);

    // Older than every snapshot the volume has: from the nearest one, backwards in time.
    const oldest = await engine.restore(into(id, backups[0]));
    t.diagnostic(`oldest: ${oldest.bytesRead}`);
    assert.equal(oldest.path, 'in-place');
    assert.equal(oldest.commonSnapshot, backups[1].snapshot);
    assert.equal(await volumeSha(id), shas[0]);
    assert.ok(oldest.bytesRead < BigInt(8 * MiB), `read ${oldest.bytesRead} bytes`);

    const middle = await engine.restore(into(id, backups[1]));
    assert.equal(middle.path, 'in-place');
    assert.equal(middle.commonSnapshot, backups[1].snapshot);
    assert.equal(await volumeSha(id), shas[1]);
    assert.ok(middle.bytesRead < BigInt(8 * MiB), `read ${middle.bytesRead} bytes`);

    // A full copy for comparison: it reads every byte the backup holds.
    const full = await engine.restore(into(id, backups[2], { inPlace: false }));
    assert.equal(full.path, 'full');
    assert.equal(await volumeSha(id), shas[2]);
    assert.equal(full.bytesRead, BigInt(SIZE), 'a full copy reads every byte');
    assert.ok(newest.bytesRead * 4n < full.bytesRead);
  });

test('a dry run says in-place and from where, and changes nothing; without force it is refused as before', { timeout: 300_000 }, async (t) => {
  const { id, backups } = await historyOf(t, keepAll);
  const before = await volumeSha(id);
  const plan = await keepAll.restore(into(id, backups[0], { dryRun: true }));
  assert.equal(plan.path, 'in-place');
  // keepAll kept every source snapshot: the restore point itself is shared.
  assert.equal(plan.commonSnapshot, backups[0].snapshot);
  assert.equal(plan.bytesRead, 0n);
  assert.equal(await volumeSha(id), before);
  await assert.rejects(keepAll.restore({ backup: backups[0].record, target: { volume: { pool: POOL, id } } }),
    /the target is the backup's own source volume/);
  assert.equal(await volumeSha(id), before);
});

test('another volume gets the full copy, even with a snapshot of the same name; its own volume grown is restored, the excess discarded',
  { timeout: 300_000 }, async (t) => {
    const { id, backups, shas } = await historyOf(t, engine);
    const other = fx.targetId(t);
    await volumes.createImage(`volume-${other}`, SIZE);
    await fx.writeRandom(other, [[0, MiB]]);
    // As a failed restore's transfer could leave it: same name, not the same bytes.
    await fx.withVolume(other, (image) => image.createSnapshot(backups[2].snapshot));
    const copied = await engine.restore(into(other, backups[2]));
    assert.equal(copied.path, 'full');
    assert.equal(copied.commonSnapshot, undefined);
    assert.equal(await volumeSha(other), shas[2]);

    // The volume grew after its backups and got data out there.
    await fx.withVolume(id, (image) => image.resize(SIZE + 8 * MiB));
    await fx.withVolume(id, (image) => image.write(randomBytes(MiB), SIZE + MiB));
    const grown = await engine.restore(into(id, backups[2]));
    assert.equal(grown.path, 'in-place');
    await fx.withVolume(id, async (image) => {
      assert.equal((await image.stat()).size, BigInt(SIZE + 8 * MiB), 'a restore leaves the volume its size');
      assert.ok((await image.read(SIZE, 8 * MiB)).every((b) => b === 0), 'the excess reads as zeros');
    });
    await fx.withVolume(id, (image) => image.resize(SIZE));
    assert.equal(await volumeSha(id), shas[2]);
  });

test('a volume a restore into it did not finish is not backed up: BusyError saying to run the restore again', { timeout: 300_000 }, async (t) => {
  const { id, backups } = await historyOf(t, engine);
  // What a restore killed half-way into its own volume leaves.
  await fx.withVolume(id, (image) => image.setMetadata(RESTORING_INTO_KEY, backups[2].record.id));
  await assert.rejects(engine.backup({ pool: POOL, volumeId: id }), (e) =>
    e instanceof BusyError && e.message.includes(RESTORING_INTO_KEY) && /run that restore again/.test(e.message));
  assert.equal((await engine.listBackups(id)).length, 3, 'no backup was made');
  // The restore again (its own volume: with force, as any restore into it), then the backup.
  const again = await engine.restore(into(id, backups[2]));
  assert.equal(again.path, 'in-place');
  const next = await engine.backup({ pool: POOL, volumeId: id });
  assert.equal(next.mode, 'incremental');
});
