/**
 * Backup pools laid out by hand with the rbd tool exactly as each Cinder
 * release lays them out (the export-diff | import-diff pipe of
 * _rbd_diff_transfer, the chain image names of _get_backup_base_name, `rbd
 * cp` for a legacy full copy): list, restore every listed backup and every
 * Cinder record, continue Cinder's chains, delete in every order. Bytes are
 * checked every time against `rbd export` of the exact source snapshot.
 */
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { randomInt } from 'node:crypto';
import {
  BackupEngine, InconsistentBackupError, InvalidArgumentError, NotFoundError, type BackupRecord,
} from '../../lib/index.js';
import { newRecord } from '../../lib/backup/record.js';
import { lockObjectName } from '../../lib/backup/lock.js';
import { prng } from '../../lib/dev/prng.js';
import { rbd, testCluster } from '../support/clusters.js';
import {
  BACKUP_POOL, POOL, randomRanges, snapshotSha, useBackupTestbed, volumeSha, type BackupTestbed,
} from '../support/backup-fixtures.js';

const MiB = 1 << 20;
const SIZE = 24 * MiB;
const FEATURES = 'layering,exclusive-lock,object-map,fast-diff';

let tb: BackupTestbed;
useBackupTestbed((testbed) => { tb = testbed; });

/** What Cinder's driver would hold for a backup, and the sha of the source at its snapshot. */
interface CinderBackup {
  record: BackupRecord;
  snapshot: string;
  sha: string;
}

/** A backup made as Cinder's _backup_rbd makes it: snapshot the source, pipe its diff into the chain image. */
async function cinderBackup(volumeId: string, backupId: string, chain: string,
  from: CinderBackup | undefined, parentId: string | null = from ? from.record.id : null): Promise<CinderBackup> {
  // Cinder's name: Python's str(time.time()).
  const snapshot = `backup.${backupId}.snap.${Date.now() / 1000}`;
  await rbd('a', ['snap', 'create', `${POOL}/volume-${volumeId}@${snapshot}`]);
  if (!from) await rbd('a', ['create', '--size', `${SIZE / MiB}M`, '--image-feature', FEATURES, `${BACKUP_POOL}/${chain}`]);
  const { info } = await testCluster('a');
  const args = `-c ${info.conf} --keyring ${info.keyring}`;
  await promisify(execFile)('bash', ['-o', 'pipefail', '-c',
    `rbd ${args} export-diff --no-progress ${from ? `--from-snap ${from.snapshot} ` : ''}${POOL}/volume-${volumeId}@${snapshot} - | rbd ${args} import-diff --no-progress - ${BACKUP_POOL}/${chain}`]);
  const record = newRecord({
    id: backupId, subject: volumeId, container: BACKUP_POOL, baseImage: chain, sizeBytes: BigInt(SIZE), parentId,
    createdAt: new Date(),
  });
  return { record, snapshot, sha: await snapshotSha(volumeId, snapshot) };
}

/** A legacy full copy (a non-RBD source in Cinder): a plain image with no snapshot, no service_metadata. */
async function legacyCopy(volumeId: string, backupId: string): Promise<CinderBackup> {
  const snapshot = `tmp-${backupId}`;
  await rbd('a', ['snap', 'create', `${POOL}/volume-${volumeId}@${snapshot}`]);
  await rbd('a', ['cp', '--no-progress', `${POOL}/volume-${volumeId}@${snapshot}`, `${BACKUP_POOL}/volume-${volumeId}.backup.${backupId}`]);
  const sha = await snapshotSha(volumeId, snapshot);
  await rbd('a', ['snap', 'rm', `${POOL}/volume-${volumeId}@${snapshot}`]);
  const record = newRecord({
    id: backupId, subject: volumeId, container: BACKUP_POOL, baseImage: undefined, sizeBytes: BigInt(SIZE), parentId: null,
    createdAt: new Date(),
  });
  return { record, snapshot: '', sha };
}

async function change(volumeId: string): Promise<void> {
  await tb.fx.writeRandom(volumeId, randomRanges(SIZE, 6, 512 * 1024));
}

/** Restores a record into a new volume and returns its sha256. */
async function restoredSha(t: TestContext, record: BackupRecord): Promise<string> {
  const id = tb.fx.targetId(t);
  await tb.engine.restore({ backup: record, target: { volume: { pool: POOL, id } } });
  return volumeSha(id);
}

/** One volume with every layout: a pre-Train .backup.base chain, two Train+ chains, a legacy copy. */
async function mixedPool(t: TestContext) {
  const volumeId = await tb.fx.newVolume(t, SIZE);
  await change(volumeId);
  const old1 = await cinderBackup(volumeId, 'old1', `volume-${volumeId}.backup.base`, undefined);
  await change(volumeId);
  const old2 = await cinderBackup(volumeId, 'old2', `volume-${volumeId}.backup.base`, old1);
  await change(volumeId);
  const legacy = await legacyCopy(volumeId, 'leg1');
  await change(volumeId);
  const f1 = await cinderBackup(volumeId, 'f1', `volume-${volumeId}.backup.f1`, undefined);
  await change(volumeId);
  const i1 = await cinderBackup(volumeId, 'i1', `volume-${volumeId}.backup.f1`, f1);
  await change(volumeId);
  const f2 = await cinderBackup(volumeId, 'f2', `volume-${volumeId}.backup.f2`, undefined);
  await change(volumeId);
  const i2 = await cinderBackup(volumeId, 'i2', `volume-${volumeId}.backup.f2`, f2);
  await change(volumeId);
  const i3 = await cinderBackup(volumeId, 'i3', `volume-${volumeId}.backup.f2`, i2);
  return { volumeId, all: [old1, old2, legacy, f1, i1, f2, i2, i3] };
}

describe('pools laid out by Cinder', () => {
  test('Train+: the listing has every backup of every chain, and restoring each listed one gives its own point in time',
    { timeout: 300_000 }, async (t) => {
      const { volumeId, all } = await mixedPool(t);
      const listed = await tb.engine.listBackups(volumeId);
      assert.deepEqual(listed.map((l) => l.record.id), all.map((b) => b.record.id), 'oldest first');
      const expectParent: Record<string, string | null> = { old1: null, old2: 'old1', leg1: null, f1: null, i1: 'f1', f2: null, i2: 'f2', i3: 'i2' };
      for (const entry of listed) {
        assert.equal(entry.record.parent_id, expectParent[entry.record.id], entry.record.id);
        const cinder = all.find((b) => b.record.id === entry.record.id)!;
        assert.equal(entry.record.service_metadata, cinder.record.service_metadata, entry.record.id);
        assert.equal(entry.full, expectParent[entry.record.id] === null);
      }
      // The defect this guards: f1's chain image head holds i1's data.
      assert.notEqual(all[3].sha, all[4].sha);
      for (const entry of listed) {
        const cinder = all.find((b) => b.record.id === entry.record.id)!;
        assert.equal(await restoredSha(t, entry.record), cinder.sha, `listed ${entry.record.id}`);
      }
      for (const cinder of all) {
        const exported = tb.engine.importRecord(tb.engine.exportRecord(cinder.record));
        assert.equal(await restoredSha(t, exported), cinder.sha, `Cinder's record of ${cinder.record.id}`);
      }
    });

  test('a file restore of a chain backup is its snapshot, not the chain head', { timeout: 120_000 }, async (t) => {
    const volumeId = await tb.fx.newVolume(t, SIZE);
    await change(volumeId);
    const f1 = await cinderBackup(volumeId, 'f1', `volume-${volumeId}.backup.f1`, undefined);
    await change(volumeId);
    await cinderBackup(volumeId, 'i1', `volume-${volumeId}.backup.f1`, f1);
    const chunks: Buffer[] = [];
    const { PassThrough } = await import('node:stream');
    const stream = new PassThrough();
    stream.on('data', (c: Buffer) => chunks.push(c));
    await tb.engine.restore({ backup: f1.record, target: { stream } });
    const { createHash } = await import('node:crypto');
    assert.equal(createHash('sha256').update(Buffer.concat(chunks)).digest('hex'), f1.sha);
  });

  test('backups continue Cinder\'s chains: newest common snapshot, a named parent, a .backup.base chain',
    { timeout: 300_000 }, async (t) => {
      const { volumeId, all } = await mixedPool(t);
      const [, old2, , , i1, , , i3] = all;
      // Cinder's default (backup_ceph_max_snapshots = 0): every source snapshot stays.
      const engine = new BackupEngine({ source: tb.cluster, maxSourceSnapshots: 0 });
      await change(volumeId);
      const next = await engine.backup({ pool: POOL, volumeId, backupId: 'n1' });
      assert.equal(next.mode, 'incremental');
      assert.equal(next.fromSnapshot, i3.snapshot);
      assert.equal(next.baseImage, `volume-${volumeId}.backup.f2`);
      assert.equal(next.record.parent_id, 'i3');
      assert.equal(JSON.parse(next.record.service_metadata!).base, `volume-${volumeId}.backup.f2`);
      assert.equal(await restoredSha(t, next.record), await snapshotSha(volumeId, next.snapshot));

      await change(volumeId);
      const fromI1 = await engine.backup({ pool: POOL, volumeId, backupId: 'n2', parentId: 'i1' });
      assert.equal(fromI1.mode, 'incremental');
      assert.equal(fromI1.baseImage, `volume-${volumeId}.backup.f1`);
      assert.equal(fromI1.fromSnapshot, i1.snapshot);
      assert.equal(await restoredSha(t, fromI1.record), await snapshotSha(volumeId, fromI1.snapshot));

      await change(volumeId);
      // Without old2's source snapshot the chain cannot continue from it, and the backup says so.
      await rbd('a', ['snap', 'rm', `${POOL}/volume-${volumeId}@${old2.snapshot}`]);
      const fromOld2 = await engine.backup({ pool: POOL, volumeId, backupId: 'n3', parentId: 'old2' });
      assert.equal(fromOld2.mode, 'full');
      assert.match(fromOld2.convertedToFull ?? '', /no longer on the source/);
      assert.equal(fromOld2.baseImage, `volume-${volumeId}.backup.n3`);
      assert.equal(await restoredSha(t, fromOld2.record), await snapshotSha(volumeId, fromOld2.snapshot));
      assert.equal(await restoredSha(t, old2.record), old2.sha, 'older backups stay restorable');

      await assert.rejects(engine.backup({ pool: POOL, volumeId, backupId: 'n4', parentId: 'typo' }),
        (e: unknown) => e instanceof NotFoundError && /parent backup typo/.test(e.message));
    });

  test('a pre-Train pool (.backup.base only) keeps its chain and lists it', { timeout: 200_000 }, async (t) => {
    const volumeId = await tb.fx.newVolume(t, SIZE);
    await change(volumeId);
    const b1 = await cinderBackup(volumeId, 'b1', `volume-${volumeId}.backup.base`, undefined);
    await change(volumeId);
    const b2 = await cinderBackup(volumeId, 'b2', `volume-${volumeId}.backup.base`, b1);
    await change(volumeId);
    const ours = await tb.engine.backup({ pool: POOL, volumeId, backupId: 'b3' });
    assert.equal(ours.mode, 'incremental');
    assert.equal(ours.baseImage, `volume-${volumeId}.backup.base`);
    const listed = await tb.engine.listBackups(volumeId);
    assert.deepEqual(listed.map((l) => [l.record.id, l.record.parent_id]), [['b1', null], ['b2', 'b1'], ['b3', 'b2']]);
    // Records written by a pre-Train Cinder have no service_metadata.
    for (const b of [b1, b2]) {
      assert.equal(await restoredSha(t, { ...b.record, service_metadata: null }), b.sha, b.record.id);
    }
    assert.equal(await restoredSha(t, ours.record), await snapshotSha(volumeId, ours.snapshot));
  });

  test('deleting in any order never breaks another backup; each chain image goes with its last backup',
    { timeout: 600_000 }, async (t) => {
      const { volumeId, all } = await mixedPool(t);
      const random = prng(Number(process.env.RBD_TEST_SEED ?? randomInt(1 << 30)));
      const order = [...all].sort(() => random() - 0.5);
      t.diagnostic(`delete order: ${order.map((b) => b.record.id).join(', ')}`);
      const left = new Set(all);
      for (const victim of order) {
        const result = await tb.engine.delete(victim.record, { sourcePool: POOL });
        left.delete(victim);
        if (victim.snapshot && victim.record.service_metadata) {
          assert.equal(result.removedSourceSnapshot, victim.snapshot, 'its source snapshot went too');
        }
        const images = (await tb.backups.listImages()).filter((n) => n.startsWith(`volume-${volumeId}.backup.`));
        const chainsLeft = new Set([...left].map((b) => b.record.service_metadata
          ? JSON.parse(b.record.service_metadata).base as string : `volume-${volumeId}.backup.${b.record.id}`));
        assert.deepEqual(images.sort(), [...chainsLeft].sort(), `images after deleting ${victim.record.id}`);
        // Restore one survivor of each chain after every delete, and all at the end.
        const survivors = [...left];
        const check = left.size === 0 ? [] : [survivors[randomInt(survivors.length)]];
        for (const b of check) assert.equal(await restoredSha(t, b.record), b.sha, `${b.record.id} after deleting ${victim.record.id}`);
      }
      assert.equal(await tb.backups.objectExists(lockObjectName(volumeId)), false, 'no lock object left');
      await assert.rejects(tb.engine.delete(all[0].record), NotFoundError);
    });
});

describe('what bad records get', () => {
  test('a service_metadata naming another volume\'s image, or no backup image, is refused', { timeout: 60_000 }, async (t) => {
    const volumeId = await tb.fx.newVolume(t, SIZE);
    const other = await tb.fx.newVolume(t, SIZE);
    await change(other);
    const theirs = await cinderBackup(other, 'x1', `volume-${other}.backup.x1`, undefined);
    for (const base of [`volume-${other}.backup.x1`, `volume-${volumeId}`, 'rbd', `volume-${volumeId}.backup.base/../x`, `volume-${volumeId}.backup.`]) {
      const record = { ...theirs.record, volume_id: volumeId, service_metadata: JSON.stringify({ base }) };
      await assert.rejects(tb.engine.restore({ backup: record, target: { volume: { pool: POOL } } }), InvalidArgumentError, base);
      await assert.rejects(tb.engine.delete(record), InvalidArgumentError, base);
    }
    // An empty volume_id is taken from the chain image name, and checked there.
    assert.equal(await restoredSha(t, { ...theirs.record, volume_id: '' }), theirs.sha);
    await assert.rejects(tb.engine.delete({ ...theirs.record, volume_id: '', service_metadata: null }), InvalidArgumentError);
  });

  test('a record whose chain image lacks its snapshot is an error naming both', { timeout: 60_000 }, async (t) => {
    const volumeId = await tb.fx.newVolume(t, SIZE);
    await change(volumeId);
    const f1 = await cinderBackup(volumeId, 'f1', `volume-${volumeId}.backup.f1`, undefined);
    await change(volumeId);
    const f2 = await cinderBackup(volumeId, 'f2', `volume-${volumeId}.backup.f2`, undefined);
    const wrong = { ...f2.record, service_metadata: f1.record.service_metadata };
    await assert.rejects(tb.engine.restore({ backup: wrong, target: { volume: { pool: POOL } } }),
      (e: unknown) => e instanceof InconsistentBackupError && e.message.includes(`volume-${volumeId}.backup.f1`)
        && e.message.includes(`volume-${volumeId}.backup.f2`));
    await assert.rejects(tb.engine.delete(wrong), InconsistentBackupError);
  });
});
