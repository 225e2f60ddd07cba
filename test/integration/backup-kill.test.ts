/**
 * What a killed backup leaves, and the next backup of the volume (with
 * another backup id) clearing it: the source snapshot, the unfinished chain
 * image and the dead holder's lock, which the next run breaks instead of
 * waiting out its TTL; a retry of the same backup id continuing what a run
 * killed halfway transferred. Bytes checked.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { AlreadyExistsError, BackupEngine, BusyError, type BackupResult } from '../../lib/index.js';
import { restoreLockObjectName, VolumeLock } from '../../lib/backup/lock.js';
import { INCOMPLETE_KEY } from '../../lib/backup/inventory.js';
import { metaObjectName } from '../../lib/backup/naming.js';
import { RESTORING_KEY } from '../../lib/backup/restore-lock.js';
import { connect, testCluster, uniqueName } from '../support/clusters.js';
import { startFixture } from '../support/fixture-process.js';
import { BACKUP_POOL, POOL, snapshotSha, snapshotsOf, useBackupTestbed, volumeSha, type BackupTestbed } from '../support/backup-fixtures.js';

const CHILD = fileURLToPath(new URL('../fixtures/engine-child.js', import.meta.url));
const WATCH_CHILD = fileURLToPath(new URL('../fixtures/watch-child.js', import.meta.url));
const MiB = 1 << 20;
const SIZE = 96 * MiB;

let tb: BackupTestbed;
useBackupTestbed((testbed) => { tb = testbed; });

/** Runs a backup or restore in a child process and SIGKILLs it at its first progress report (or halfway). */
async function killedRun(operation: 'backup' | 'restore', env: Record<string, string>, at = 'ENGINE-PROGRESS'): Promise<void> {
  const { info } = await testCluster('a');
  const fixture = startFixture(CHILD, [operation], {
    env: { FIXTURE_CONF: info.conf, FIXTURE_KEYRING: info.keyring, FIXTURE_POOL: POOL, ...env }, timeoutMs: 120_000,
  });
  await fixture.line(at);
  fixture.child.kill('SIGKILL');
  const { signal, stdout } = await fixture.exited;
  assert.equal(signal, 'SIGKILL', `the child was killed mid-${operation} (it printed: ${stdout.trim()})`);
  assert.ok(!stdout.includes('ENGINE-DONE'));
}

function killedBackup(volumeId: string, backupId: string, full: boolean): Promise<void> {
  return killedRun('backup', { FIXTURE_VOLUME: volumeId, FIXTURE_BACKUP: backupId, FIXTURE_FULL: full ? '1' : '0' });
}

async function fill(volumeId: string, seed: number): Promise<void> {
  await tb.fx.withVolume(volumeId, async (image) => {
    for (let offset = 0; offset < SIZE; offset += 4 * MiB) {
      await image.write(Buffer.alloc(MiB, (offset / MiB + seed) & 0xff), offset);
    }
  });
}

test('a killed first backup: the next one (another id) removes its source snapshot, its chain image and breaks its lock',
  { timeout: 240_000 }, async (t) => {
    const volumeId = await tb.fx.newVolume(t, SIZE);
    await fill(volumeId, 1);
    await killedBackup(volumeId, 'killed1', true);
    const leftovers = (await snapshotsOf(tb.volumes, `volume-${volumeId}`))!;
    assert.ok(leftovers.some((s) => s.startsWith('backup.killed1.snap.')), 'the killed run left its source snapshot');
    const chainName = `volume-${volumeId}.backup.killed1.unfinished`;
    assert.ok(await tb.backups.imageExists(chainName), 'and its chain image, under its unfinished name');
    assert.deepEqual(await tb.engine.listBackups(volumeId), [], 'which holds no listed backup');

    // Waiting is capped well below the lock's 60 s life: only a broken dead lock lets this start.
    const engine = new BackupEngine({ source: tb.cluster, lockWaitMs: 20_000 });
    const next = await engine.backup({ pool: POOL, volumeId, backupId: 'next1' });
    assert.equal(next.mode, 'full');
    assert.equal(next.baseImage, `volume-${volumeId}.backup.next1`);
    assert.deepEqual((await snapshotsOf(tb.volumes, `volume-${volumeId}`))!.filter((s) => s.includes('killed1')), [],
      'the killed run\'s source snapshot is gone');
    assert.equal(await tb.backups.imageExists(chainName), false, 'its unfinished chain image is gone');
    assert.deepEqual((await engine.listBackups(volumeId)).map((l) => l.record.id), ['next1']);
    const id = tb.fx.targetId(t);
    await engine.restore({ backup: next.record, target: { volume: { pool: POOL, id } } });
    assert.equal(await volumeSha(id), await snapshotSha(volumeId, next.snapshot));
  });

test('a killed incremental of a grown volume: the chain head is rolled back (size and bytes) and the next incremental (another id) is exact',
  { timeout: 240_000 }, async (t) => {
    const volumeId = await tb.fx.newVolume(t, SIZE);
    await fill(volumeId, 1);
    const engine = new BackupEngine({ source: tb.cluster, lockWaitMs: 20_000 });
    const first = await engine.backup({ pool: POOL, volumeId, backupId: 'f1' });
    await fill(volumeId, 2);
    // The killed run grows the chain head too; the rollback shrinks it.
    await tb.fx.withVolume(volumeId, async (image) => {
      await image.resize(BigInt(SIZE + 16 * MiB));
      await image.write(Buffer.alloc(MiB, 0x5a), SIZE + 8 * MiB);
    });
    await killedBackup(volumeId, 'killed2', false);
    await fill(volumeId, 3);
    const next = await engine.backup({ pool: POOL, volumeId, backupId: 'i2' });
    assert.equal(next.mode, 'incremental');
    assert.equal(next.record.parent_id, 'f1');
    assert.equal(next.baseImage, first.baseImage);
    assert.deepEqual((await snapshotsOf(tb.volumes, `volume-${volumeId}`))!.filter((s) => s.includes('killed2')), []);
    for (const backup of [first, next]) {
      const id = tb.fx.targetId(t);
      await engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id } } });
      assert.equal(await volumeSha(id), await snapshotSha(volumeId, backup.snapshot), backup.record.id);
    }
  });

/** A backup killed at a share of its transfer after recording progress (every 20 ms, writes throttled so that comes late enough). */
function killedAt(percent: number, volumeId: string, backupId: string, full: boolean): Promise<void> {
  return killedRun('backup', {
    FIXTURE_VOLUME: volumeId, FIXTURE_BACKUP: backupId, FIXTURE_FULL: full ? '1' : '0', FIXTURE_CHECKPOINT_MS: '20',
    FIXTURE_WRITE_BPS: String(16 * MiB),
  }, `ENGINE-${percent}%`);
}

/** The killed run's source snapshot of backupId. */
async function killedSnapshot(volumeId: string, backupId: string): Promise<string> {
  const left = (await snapshotsOf(tb.volumes, `volume-${volumeId}`))!.filter((s) => s.startsWith(`backup.${backupId}.snap.`));
  assert.equal(left.length, 1, `the killed run left one source snapshot of ${backupId}: ${left.join(', ')}`);
  return left[0];
}

test('a full backup killed at 30%, retried with its id, continues its transfer: the same snapshot, only the rest read, restore and deep verify exact',
  { timeout: 240_000 }, async (t) => {
    const volumeId = await tb.fx.newVolume(t, SIZE);
    // Dense: at the throttled rate, halfway comes seconds in, well after the first progress record.
    await tb.fx.writeRandom(volumeId, [[0, SIZE]]);
    await killedAt(30, volumeId, 'k1', true);
    const snapshot = await killedSnapshot(volumeId, 'k1');
    // Written after the killed run's snapshot: the backup is of that point, not of the head.
    await tb.fx.writeRandom(volumeId, [[0, MiB]]);
    const engine = new BackupEngine({ source: tb.cluster, lockWaitMs: 20_000 });
    const again = await engine.backup({ pool: POOL, volumeId, backupId: 'k1' });
    t.diagnostic(`resumed from ${String(again.resumedFrom)}, read ${again.stats.bytesRead} of ${SIZE}`);
    assert.equal(again.mode, 'full');
    assert.equal(again.snapshot, snapshot, 'the killed run\'s snapshot is the one backed up');
    assert.ok(again.resumedFrom !== undefined && again.resumedFrom > 0n, 'picked up the killed run\'s work');
    assert.ok(again.stats.bytesRead <= BigInt(SIZE) - again.resumedFrom, `read ${again.stats.bytesRead}: only what lies past ${again.resumedFrom}`);
    assert.equal(again.baseImage, `volume-${volumeId}.backup.k1`);
    assert.equal(await tb.backups.imageExists(`volume-${volumeId}.backup.k1.unfinished`), false);
    assert.deepEqual((await engine.listBackups(volumeId)).map((l) => l.record.id), ['k1']);
    const deep = await engine.verify(again.record, { mode: 'deep' });
    assert.deepEqual(deep.mismatches, [], 'the digests resumed with the transfer match the chain image');
    const id = tb.fx.targetId(t);
    await engine.restore({ backup: again.record, target: { volume: { pool: POOL, id } } });
    assert.equal(await volumeSha(id), await snapshotSha(volumeId, snapshot));
  });

test('an incremental killed at 70%, retried with its id, continues on the chain head it left; with other digest settings it rolls back and starts clean',
  { timeout: 300_000 }, async (t) => {
    const volumeId = await tb.fx.newVolume(t, SIZE);
    await fill(volumeId, 1);
    const engine = new BackupEngine({ source: tb.cluster, lockWaitMs: 20_000 });
    const first = await engine.backup({ pool: POOL, volumeId, backupId: 'b1' });
    // Of each backup's snapshot while the source has it (older ones are trimmed).
    const shas = new Map([[first.record.id, await snapshotSha(volumeId, first.snapshot)]]);
    await tb.fx.writeRandom(volumeId, [[0, SIZE]]);
    await killedAt(70, volumeId, 'i2', false);
    const snapshot = await killedSnapshot(volumeId, 'i2');
    await fill(volumeId, 7);
    const second = await engine.backup({ pool: POOL, volumeId, backupId: 'i2' });
    t.diagnostic(`resumed from ${String(second.resumedFrom)}, read ${second.stats.bytesRead} of ${SIZE}`);
    assert.equal(second.mode, 'incremental');
    assert.equal(second.record.parent_id, 'b1');
    assert.equal(second.snapshot, snapshot);
    assert.ok(second.resumedFrom !== undefined && second.resumedFrom > 0n, 'picked up the killed run\'s work');
    assert.ok(second.stats.bytesRead <= BigInt(SIZE) - second.resumedFrom, `read ${second.stats.bytesRead}: only what lies past ${second.resumedFrom}`);
    assert.deepEqual((await engine.verify(second.record, { mode: 'deep' })).mismatches, []);
    shas.set(second.record.id, await snapshotSha(volumeId, second.snapshot));

    // Killed again, halfway; retried without digests: the record (of a transfer with digests) is refused, the head rolled back.
    await tb.fx.writeRandom(volumeId, [[0, SIZE]]);
    await killedAt(50, volumeId, 'i3', false);
    const plain = new BackupEngine({ source: tb.cluster, lockWaitMs: 20_000, digests: false });
    const third = await plain.backup({ pool: POOL, volumeId, backupId: 'i3' });
    assert.equal(third.mode, 'incremental');
    assert.equal(third.record.parent_id, 'i2');
    assert.equal(third.resumedFrom, undefined, 'another transfer\'s record is not taken');
    shas.set(third.record.id, await snapshotSha(volumeId, third.snapshot));
    await fill(volumeId, 8);
    const fourth = await engine.backup({ pool: POOL, volumeId, backupId: 'i4' });
    shas.set(fourth.record.id, await snapshotSha(volumeId, fourth.snapshot));
    for (const backup of [first, second, third, fourth]) {
      const id = tb.fx.targetId(t);
      await engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id } } });
      assert.equal(await volumeSha(id), shas.get(backup.record.id), backup.record.id);
    }
  });

test('a live holder is waited for (and said so) or skipped, never broken', { timeout: 120_000 }, async (t) => {
  const volumeId = await tb.fx.newVolume(t, 8 * MiB);
  const holder = await VolumeLock.acquire(tb.backups, volumeId, 'test holder', { waitMs: 0, ttlMs: 60_000 });
  try {
    const engine = new BackupEngine({ source: tb.cluster, lockWaitMs: 1500 });
    const [skipped] = await engine.backupMany([{ pool: POOL, volumeId, backupId: 's1' }], { onBusy: 'skip' });
    assert.equal(skipped.ok, false);
    assert.ok(!skipped.ok && skipped.error instanceof BusyError && /test holder of volume/.test(skipped.error.message),
      !skipped.ok ? skipped.error.message : '');
    const waitedFor: string[] = [];
    await assert.rejects(engine.backup({ pool: POOL, volumeId, backupId: 's2', onLockWait: (h) => waitedFor.push(h.description) }),
      (e: unknown) => e instanceof BusyError && /waited 1500 ms/.test(e.message));
    assert.equal(waitedFor.length, 1);
    assert.match(waitedFor[0], /test holder of volume/);
  } finally {
    await holder.release();
  }
  const after = await tb.engine.backup({ pool: POOL, volumeId, backupId: 's3' });
  assert.equal(after.mode, 'full');
});

test('two hosts running backupMany over one volume list back each volume up once', { timeout: 180_000 }, async (t) => {
  const volumeIds = await Promise.all([1, 2, 3, 4].map(() => tb.fx.newVolume(t, 8 * MiB)));
  const other = await connect('a');
  try {
    const hosts = [new BackupEngine({ source: tb.cluster }), new BackupEngine({ source: other })];
    const rounds = await Promise.all(hosts.map((engine) =>
      engine.backupMany(volumeIds.map((volumeId) => ({ pool: POOL, volumeId })), { onBusy: 'skip' })));
    for (const [i, volumeId] of volumeIds.entries()) {
      const outcomes = rounds.map((round) => round[i]);
      const backups = await tb.engine.listBackups(volumeId);
      assert.equal(backups.length, outcomes.filter((o) => o.ok).length, volumeId);
      // Each volume got at least one backup; a second host either skipped it
      // (BusyError naming the holder) or came after the first had finished.
      assert.ok(backups.length >= 1, volumeId);
      for (const outcome of outcomes) {
        if (!outcome.ok) assert.ok(outcome.error instanceof BusyError && /held by/.test(outcome.error.message), outcome.error.message);
      }
    }
  } finally {
    await other.close();
  }
});

test('a killed restore into a new volume: the next restore into it removes the half-restored volume and is exact',
  { timeout: 240_000 }, async (t) => {
    const volumeId = await tb.fx.newVolume(t, SIZE);
    await fill(volumeId, 4);
    const backup = await tb.engine.backup({ pool: POOL, volumeId, backupId: 'r1' });
    const target = tb.fx.targetId(t);
    await killedRun('restore', { FIXTURE_RECORD: tb.engine.exportRecord(backup.record), FIXTURE_VOLUME: target });
    const half = await tb.volumes.openImage(`volume-${target}`, { readOnly: true });
    assert.equal(await half.getMetadata(RESTORING_KEY), 'r1', 'the killed restore marked the volume it created');
    await half.close();
    // The dead restore's lock and watch would hold this back for a minute; it is fenced instead.
    const engine = new BackupEngine({ source: tb.cluster, lockWaitMs: 20_000 });
    const again = await engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } } });
    assert.equal(again.path, 'diff', 'the half-restored volume was removed, so the new one is empty');
    assert.equal(await volumeSha(target), await snapshotSha(volumeId, backup.snapshot));
    const done = await tb.volumes.openImage(`volume-${target}`, { readOnly: true });
    assert.equal(await done.getMetadata(RESTORING_KEY), undefined, 'a complete restore is unmarked');
    await done.close();
    assert.equal(await tb.volumes.objectExists(restoreLockObjectName(target)), false);
  });

test('a restore killed halfway after recording its progress: the retry of that backup picks up there and reads only the rest; another backup\'s removes the volume',
  { timeout: 240_000 }, async (t) => {
    const volumeId = await tb.fx.newVolume(t, SIZE);
    await fill(volumeId, 6);
    const backup = await tb.engine.backup({ pool: POOL, volumeId, backupId: 'h1' });
    const target = tb.fx.targetId(t);
    const env = {
      FIXTURE_RECORD: tb.engine.exportRecord(backup.record), FIXTURE_VOLUME: target, FIXTURE_CHECKPOINT_MS: '20',
      FIXTURE_WRITE_BPS: String(32 * MiB),
    };
    await killedRun('restore', env, 'ENGINE-50%');
    const engine = new BackupEngine({ source: tb.cluster, lockWaitMs: 20_000 });
    const again = await engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } } });
    t.diagnostic(`resumed from ${String(again.resumedFrom)}, read ${again.bytesRead} of ${again.size}`);
    assert.equal(again.path, 'diff');
    assert.ok(again.resumedFrom !== undefined && again.resumedFrom > 0n, 'picked up the killed restore\'s work');
    assert.ok(again.bytesRead <= again.size - again.resumedFrom, `read ${again.bytesRead}: only what lies past ${again.resumedFrom}`);
    assert.equal(await volumeSha(target), await snapshotSha(volumeId, backup.snapshot));

    // Killed again halfway; then a restore of another backup: it does not pick up what is not its own.
    await tb.volumes.removeImage(`volume-${target}`);
    await killedRun('restore', env, 'ENGINE-50%');
    await tb.fx.writeRandom(volumeId, [[0, MiB]]);
    const other = await tb.engine.backup({ pool: POOL, volumeId, backupId: 'h2' });
    const theirs = await engine.restore({ backup: other.record, target: { volume: { pool: POOL, id: target } } });
    assert.equal(theirs.resumedFrom, undefined);
    assert.equal(await volumeSha(target), await snapshotSha(volumeId, other.snapshot));
  });

/**
 * A child that takes a lock as a run of backupId does, SIGKILLed: a restore
 * that died after its last write ('restore-lock', the target's lock), or a
 * backup that died after it completed ('backup-lock', the volume's lock in
 * the backup pool).
 */
async function deadLock(kind: 'restore-lock' | 'backup-lock', volumeId: string, backupId: string): Promise<void> {
  const { info } = await testCluster('a');
  const fixture = startFixture(CHILD, [kind], {
    env: {
      FIXTURE_CONF: info.conf, FIXTURE_KEYRING: info.keyring, FIXTURE_POOL: kind === 'restore-lock' ? POOL : BACKUP_POOL,
      FIXTURE_VOLUME: volumeId, FIXTURE_BACKUP: backupId,
    },
    timeoutMs: 120_000,
  });
  await fixture.line('ENGINE-LOCKED');
  fixture.child.kill('SIGKILL');
  assert.equal((await fixture.exited).signal, 'SIGKILL');
}

test('a restore killed after its last write: the retry of that backup overwrites what it wrote without force, another backup\'s does not',
  { timeout: 240_000 }, async (t) => {
    const volumeId = await tb.fx.newVolume(t, SIZE);
    await fill(volumeId, 7);
    const first = await tb.engine.backup({ pool: POOL, volumeId, backupId: 'k1' });
    await fill(volumeId, 8);
    const second = await tb.engine.backup({ pool: POOL, volumeId, backupId: 'k2' });
    const target = tb.fx.targetId(t);
    await tb.engine.restore({ backup: first.record, target: { volume: { pool: POOL, id: target } } });
    const engine = new BackupEngine({ source: tb.cluster, lockWaitMs: 20_000 });
    const into = { volume: { pool: POOL, id: target } };
    // The volume holds all of k1 and no mark; only the dead restore's lock says whose data it is.
    await deadLock('restore-lock', target, 'k1');
    const holdsData = (e: unknown): boolean => e instanceof AlreadyExistsError && /already holds data/.test(e.message);
    // A dry run judges the same way, without breaking the lock.
    await assert.rejects(engine.restore({ backup: second.record, target: into, dryRun: true }), holdsData);
    await assert.rejects(engine.restore({ backup: second.record, target: into }), holdsData);
    await deadLock('restore-lock', target, 'k1');
    const plan = await engine.restore({ backup: first.record, target: into, dryRun: true });
    assert.equal(plan.path, 'full');
    const again = await engine.restore({ backup: first.record, target: into });
    assert.equal(again.path, 'full', 'a volume holding data is overwritten in full');
    assert.equal(await volumeSha(target), await snapshotSha(volumeId, first.snapshot));
    assert.equal(await tb.volumes.objectExists(restoreLockObjectName(target)), false);
  });

/** A client watching the target's restore lock object from a child process, as a restore does before it takes the lock. */
async function restoreLockWatcher(target: string): Promise<ReturnType<typeof startFixture>> {
  const { info } = await testCluster('a');
  const object = restoreLockObjectName(target);
  await tb.volumes.writeObject(object, '', { exclusive: true });
  const fixture = startFixture(WATCH_CHILD, ['hold'], {
    env: {
      FIXTURE_CONF: info.conf, FIXTURE_KEYRING: info.keyring, FIXTURE_POOL: POOL, FIXTURE_OBJECT: object,
      // Far longer than the restore: a killed watcher's watch is still there when it ends.
      FIXTURE_WATCH_TIMEOUT: '60',
    },
    timeoutMs: 120_000,
  });
  await fixture.line('WATCH-READY');
  return fixture;
}

test('the restore lock object stays while a live client watches it, and goes with the next restore once that client was killed',
  { timeout: 180_000 }, async (t) => {
    const volumeId = await tb.fx.newVolume(t, SIZE);
    await fill(volumeId, 9);
    const backup = await tb.engine.backup({ pool: POOL, volumeId, backupId: 'w1' });
    const target = tb.fx.targetId(t);
    const object = restoreLockObjectName(target);
    const watcher = await restoreLockWatcher(target);
    try {
      await tb.engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } } });
      assert.equal(await volumeSha(target), await snapshotSha(volumeId, backup.snapshot));
      assert.equal(await tb.volumes.objectExists(object), true, 'a live watcher (a waiting restore) keeps the object');
    } finally {
      watcher.child.kill('SIGKILL');
      await watcher.exited;
    }
    // A run killed after it watched the object (its watch lingers on the OSD for a minute) keeps it no more.
    await tb.engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } }, force: true });
    assert.equal(await volumeSha(target), await snapshotSha(volumeId, backup.snapshot));
    assert.equal(await tb.volumes.objectExists(object), false, 'a dead client\'s lingering watch does not keep the object');
  });

test('a restore into a volume that exists and was not made by a restore never removes it', { timeout: 120_000 }, async (t) => {
  const volumeId = await tb.fx.newVolume(t, SIZE);
  await fill(volumeId, 5);
  const backup = await tb.engine.backup({ pool: POOL, volumeId, backupId: 'r2' });
  const target = await tb.fx.newVolume(t, SIZE);
  await fill(target, 6);
  const result = await tb.engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } }, force: true });
  assert.equal(result.path, 'full');
  assert.equal(result.failedCondition?.number, 5);
  assert.equal(await volumeSha(target), await snapshotSha(volumeId, backup.snapshot));
});

test('gc finds and removes what killed runs left across the pools, and leaves volumes live runs hold alone',
  { timeout: 300_000 }, async (t) => {
    // A killed first backup: an unfinished chain image, a source snapshot, a dead holder's lock.
    const killed = await tb.fx.newVolume(t, SIZE);
    await fill(killed, 7);
    await killedBackup(killed, 'gk1', true);
    // A complete backup with an orphan source snapshot beside it.
    const orphaned = await tb.fx.newVolume(t, 8 * MiB);
    const kept = await tb.engine.backup({ pool: POOL, volumeId: orphaned, backupId: 'gk2' });
    const orphan = 'backup.gone.snap.1700000000.5';
    await tb.fx.withVolume(orphaned, (image) => image.createSnapshot(orphan));
    // A killed restore's half-restored volume.
    const target = tb.fx.targetId(t);
    await killedRun('restore', { FIXTURE_RECORD: tb.engine.exportRecord(kept.record), FIXTURE_VOLUME: target });
    // A volume a live run holds, with an unfinished image that must stay.
    const busy = await tb.fx.newVolume(t, 8 * MiB);
    const busyImage = `volume-${busy}.backup.live1`;
    await tb.backups.createImage(busyImage, 8 * MiB);
    await using live = await tb.backups.openImage(busyImage);
    await live.setMetadata(INCOMPLETE_KEY, 'live1');
    const holder = await VolumeLock.acquire(tb.backups, busy, 'live test run', { waitMs: 0, ttlMs: 60_000 });
    t.after(() => holder.release());

    const engine = new BackupEngine({ source: tb.cluster });
    const dry = await engine.gc({ sourcePool: POOL, dryRun: true });
    const expectedImages = [`${tb.backups.spec}/volume-${killed}.backup.gk1.unfinished`, `${POOL}/volume-${target}`];
    for (const image of expectedImages) assert.ok(dry.removedImages.includes(image), `dry run finds ${image}`);
    assert.ok(dry.removedSnapshots.includes(`${POOL}/volume-${orphaned}@${orphan}`), 'dry run finds the orphan');
    assert.ok(dry.removedSnapshots.some((s) => s.startsWith(`${POOL}/volume-${killed}@backup.gk1.snap.`)));
    assert.ok(await tb.backups.imageExists(`volume-${killed}.backup.gk1.unfinished`), 'a dry run removes nothing');
    assert.ok(!dry.removedImages.some((i) => i.endsWith(busyImage)), 'nor reports what a live run holds');
    assert.ok(dry.skipped.some((s) => s.volumeId === busy));

    const real = await engine.gc({ sourcePool: POOL });
    for (const image of expectedImages) assert.ok(real.removedImages.includes(image), `gc removes ${image}`);
    assert.equal(await tb.backups.imageExists(`volume-${killed}.backup.gk1.unfinished`), false);
    assert.equal(await tb.volumes.imageExists(`volume-${target}`), false);
    assert.deepEqual((await snapshotsOf(tb.volumes, `volume-${orphaned}`))!.filter((s) => s === orphan), []);
    assert.deepEqual((await snapshotsOf(tb.volumes, `volume-${killed}`))!.filter((s) => s.includes('gk1')), []);
    assert.ok(real.brokenLocks.some((b) => b.object.endsWith(`volume-${killed}.backup.lock`)), 'the dead holder\'s lock was broken');
    assert.equal(await tb.backups.objectExists(`volume-${killed}.backup.lock`), false, 'and its lock object removed');
    assert.ok(real.skipped.some((s) => s.volumeId === busy && /live test run/.test(s.reason)), 'the live run is skipped');
    assert.ok(await tb.backups.imageExists(busyImage), 'and its image left alone');
    // The complete backup is untouched and exact.
    const id = tb.fx.targetId(t);
    await engine.restore({ backup: kept.record, target: { volume: { pool: POOL, id } } });
    assert.equal(await volumeSha(id), await snapshotSha(orphaned, kept.snapshot));
  });

test('a backup killed after it completed (before or after it let go of its lock): the retry with its id returns it; a reuse of the id is refused',
  { timeout: 240_000 }, async (t) => {
    const volumeId = await tb.fx.newVolume(t, 16 * MiB);
    await tb.fx.writeRandom(volumeId, [[0, 4 * MiB]]);
    const id = uniqueName('c1');
    const asked = { pool: POOL, volumeId, backupId: id, displayName: 'n1', volumeMetadata: { 'volume-metadata': { k: 'v' } } };
    t.after(() => tb.backups.removeObject(metaObjectName(id)).catch(() => undefined));
    const done = await tb.engine.backup(asked);
    await tb.fx.writeRandom(volumeId, [[MiB, MiB]]);
    const returned = async (why: string): Promise<BackupResult> => {
      const again = await tb.engine.backup(asked);
      assert.equal(again.alreadyComplete, true, why);
      assert.equal(again.snapshot, done.snapshot, why);
      assert.equal(again.record.id, id, why);
      assert.equal(again.stats.bytesRead, 0n, why);
      assert.deepEqual(await snapshotsOf(tb.volumes, `volume-${volumeId}`), [done.snapshot], `${why}: no new snapshot`);
      return again;
    };
    // Killed after it let go of its lock, before the process said so: the lock object names it as its last holder.
    await returned('the last run of the id let go of its lock');
    await returned('and again: nothing else took the lock since');
    // The same id asking for another backup than the one it names is a reuse.
    for (const other of [{ displayName: 'n2' }, { volumeMetadata: { 'volume-metadata': { k: 'w' } } }, { parentId: 'p0' }]) {
      await assert.rejects(tb.engine.backup({ ...asked, ...other }), (error: unknown) => {
        assert.ok(error instanceof AlreadyExistsError, `${JSON.stringify(other)}: expected AlreadyExistsError, got ${String(error)}`);
        assert.match(error.message, new RegExp(`backup id ${id} is already used .*: give another id`));
        return true;
      });
    }
    // Refused runs changed nothing: the last run of the id is still the one that made it.
    await returned('after refused reuses');
    // Killed before it let go of its lock: the retry breaks that dead lock.
    await deadLock('backup-lock', volumeId, id);
    const retry = await returned('its dead lock broken');
    // Another run took the volume's lock since (here one killed holding it), or a backup was made since: the id is taken.
    await deadLock('backup-lock', volumeId, 'other');
    await assert.rejects(tb.engine.backup(asked), AlreadyExistsError);
    await assert.rejects(tb.engine.backup(asked), AlreadyExistsError, 'still, after the refused run');
    await tb.engine.backup({ pool: POOL, volumeId, backupId: 'c2' });
    await deadLock('backup-lock', volumeId, id);
    await assert.rejects(tb.engine.backup(asked), AlreadyExistsError);
    const restoredTarget = tb.fx.targetId(t);
    await tb.engine.restore({ backup: retry.record, target: { volume: { pool: POOL, id: restoredTarget } } });
    assert.equal(await volumeSha(restoredTarget), await snapshotSha(volumeId, done.snapshot));
  });
