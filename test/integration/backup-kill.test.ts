/**
 * What a killed backup leaves, and the next backup of the volume (with
 * another backup id) clearing it: the source snapshot, the unfinished chain
 * image and the dead holder's lock, which the next run breaks instead of
 * waiting out its TTL. Bytes checked.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BackupEngine, BusyError } from '../../lib/index.js';
import { VolumeLock } from '../../lib/backup/lock.js';
import { INCOMPLETE_KEY } from '../../lib/backup/inventory.js';
import { connect, testCluster } from '../support/clusters.js';
import { POOL, snapshotSha, snapshotsOf, useBackupTestbed, volumeSha, type BackupTestbed } from '../support/backup-fixtures.js';

const CHILD = fileURLToPath(new URL('../fixtures/backup-child.js', import.meta.url));
const MiB = 1 << 20;
const SIZE = 96 * MiB;

let tb: BackupTestbed;
useBackupTestbed((testbed) => { tb = testbed; });

/** Runs a backup in a child process and SIGKILLs it at its first progress report. */
async function killedBackup(volumeId: string, backupId: string, full: boolean): Promise<void> {
  const { info } = await testCluster('a');
  const child = spawn(process.execPath, [CHILD], {
    env: {
      ...process.env, FIXTURE_CONF: info.conf, FIXTURE_KEYRING: info.keyring, FIXTURE_POOL: POOL,
      FIXTURE_VOLUME: volumeId, FIXTURE_BACKUP: backupId, FIXTURE_FULL: full ? '1' : '0',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    if (output.includes('BACKUP-PROGRESS')) child.kill('SIGKILL');
  });
  const signal = await exited;
  assert.equal(signal, 'SIGKILL', `the child was killed mid-backup (it printed: ${output.trim()})`);
  assert.ok(!output.includes('BACKUP-DONE'));
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
    const chainName = `volume-${volumeId}.backup.killed1`;
    assert.ok(await tb.backups.imageExists(chainName), 'and its chain image');
    const chain = await tb.backups.openImage(chainName, { readOnly: true });
    assert.equal(await chain.getMetadata(INCOMPLETE_KEY), 'killed1', 'marked unfinished');
    await chain.close();

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

test('a killed incremental: the chain head is rolled back and the next incremental (another id) is exact',
  { timeout: 240_000 }, async (t) => {
    const volumeId = await tb.fx.newVolume(t, SIZE);
    await fill(volumeId, 1);
    const engine = new BackupEngine({ source: tb.cluster, lockWaitMs: 20_000 });
    const first = await engine.backup({ pool: POOL, volumeId, backupId: 'f1' });
    await fill(volumeId, 2);
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
