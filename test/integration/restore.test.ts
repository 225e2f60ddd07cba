/**
 * BackupEngine.restore against a real cluster: from exactly the backup's
 * snapshot on its chain image (never a chain image's head), or a legacy
 * full copy's head; the diff path only when all five of Cinder's
 * conditions hold, otherwise a chunked full copy, with the first failing
 * condition reported; targets as one of { volume }, { file }, { stream };
 * targets larger or smaller than the backup; typed refusals that change
 * nothing (records naming another volume's or a non-backup image, an
 * inconsistent pool).
 *
 * Every data check compares sha256 of `rbd export` of the source snapshot
 * with `rbd export` of the restored volume (or the restored file's bytes).
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import {
  AlreadyExistsError, BackupEngine, BusyError, CancelledError, CephError, InconsistentBackupError, InvalidArgumentError,
  NotFoundError,
  backupImageName, baseImageName, type BackupRecord, type BackupResult, type Cluster, type Pool, type RestoreRequest,
} from '../../lib/index.js';
import { rbd, sha256, testCluster, uniqueName } from '../support/clusters.js';
import {
  BACKUP_POOL, POOL, VOLUME_FEATURES, VolumeFixtures, randomRanges, removeImagePatiently, snapshotSha,
  volumeSha, useBackupTestbed,
} from '../support/backup-fixtures.js';

const MiB = 1024 * 1024;

let cluster: Cluster;
let volumes: Pool;
let backups: Pool;
let engine: BackupEngine;
let fx: VolumeFixtures;
let scratchDir: string;

useBackupTestbed((testbed) => ({ cluster, volumes, backups, engine, fx } = testbed));

before(async () => {
  scratchDir = await mkdtemp(join(tmpdir(), 'restore-test-'));
});

after(async () => {
  if (scratchDir) await rm(scratchDir, { recursive: true, force: true });
});

// ---- helpers -------------------------------------------------------------

/** A volume with data here and there (holes between) and one backup of it. */
async function backedUpVolume(t: TestContext, size = 16 * MiB): Promise<{ id: string; backup: BackupResult }> {
  const id = await fx.newVolume(t, size);
  await fx.writeRandom(id,
    [[0, 1 * MiB], [5 * MiB - 100, 3000], ...randomRanges(size, 3, 2 * MiB), [size - 4096, 4096]]);
  const backup = await engine.backup({ pool: POOL, volumeId: id });
  return { id, backup };
}

/**
 * `rbd export` of spec: sha256 of its first n bytes, whether everything
 * after them is zero, and its length.
 */
async function rbdExportPrefix(spec: string, n: number): Promise<{ sha: string; restIsZero: boolean; size: number }> {
  const { info } = await testCluster('a');
  return new Promise((resolve, reject) => {
    const child = spawn('rbd', ['-c', info.conf, '--keyring', info.keyring, 'export', '--no-progress', spec, '-'],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    const hash = createHash('sha256');
    let seen = 0;
    let restIsZero = true;
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      const head = Math.max(0, Math.min(chunk.length, n - seen));
      if (head > 0) hash.update(chunk.subarray(0, head));
      for (let i = head; i < chunk.length && restIsZero; i++) if (chunk[i] !== 0) restIsZero = false;
      seen += chunk.length;
    });
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    child.once('error', reject);
    child.once('close', (code) => {
      if (code === 0) resolve({ sha: hash.digest('hex'), restIsZero, size: seen });
      else reject(new Error(`rbd export ${spec} exited ${code}: ${stderr.trim()}`));
    });
  });
}

async function imageSize(pool: Pool, name: string): Promise<bigint> {
  const image = await pool.openImage(name, { readOnly: true });
  try {
    return (await image.stat()).size;
  } finally {
    await image.close();
  }
}

async function snapshotNames(pool: Pool, name: string): Promise<string[]> {
  const image = await pool.openImage(name, { readOnly: true });
  try {
    return (await image.listSnapshots()).map((s) => s.name);
  } finally {
    await image.close();
  }
}

/**
 * A legacy full copy of volumeId (a non-RBD source's backup): the image
 * volume-<id>.backup.<backupId> holding a copy of a snapshot of the volume
 * and no snapshot of its own, and its record (no service_metadata, as
 * Cinder wrote them).
 */
async function legacyBackup(volumeId: string, snapshot: string, backupId = uniqueName('legacy')): Promise<BackupRecord> {
  await rbd('a', ['cp', '--no-progress', `${POOL}/volume-${volumeId}@${snapshot}`,
    `${BACKUP_POOL}/${backupImageName(volumeId, backupId)}`]);
  return {
    id: backupId,
    volume_id: volumeId,
    container: BACKUP_POOL,
    service: 'cinder.backup.drivers.ceph.CephBackupDriver',
    service_metadata: null,
    size: 1,
    object_count: 0,
    parent_id: null,
    status: 'available',
    display_name: null,
    display_description: null,
    created_at: '2016-01-12T08:30:00Z',
    updated_at: null,
    data_timestamp: '2016-01-12T08:30:00Z',
    availability_zone: null,
    snapshot_id: null,
    num_dependent_backups: 0,
  };
}

/** A Writable that hashes what it is given. */
function hashingStream(): { stream: Writable; digest: () => string; length: () => number } {
  const hash = createHash('sha256');
  let length = 0;
  const stream = new Writable({
    highWaterMark: 1 * MiB,
    write(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      length += chunk.length;
      callback();
    },
  });
  return { stream, digest: () => hash.digest('hex'), length: () => length };
}

// ---- the diff path -------------------------------------------------------

describe('all five conditions hold: the diff path', () => {
  test('into a new volume: diff, the snapshot\'s bytes, no leftover snapshot', { timeout: 120_000 }, async (t) => {
    const { id, backup } = await backedUpVolume(t);
    await fx.writeRandom(id, randomRanges(16 * MiB, 4, 2 * MiB));
    const incremental = await engine.backup({ pool: POOL, volumeId: id });
    assert.equal(incremental.baseImage, backup.baseImage);
    for (const result of [backup, incremental]) {
      const target = fx.targetId(t);
      const restored = await engine.restore({ backup: result.record, target: { volume: { pool: POOL, id: target } } });
      assert.equal(restored.path, 'diff');
      assert.equal(restored.failedCondition, undefined);
      assert.equal(restored.source, `${BACKUP_POOL}/${backupImageName(id, backup.record.id)}@${result.snapshot}`);
      assert.equal(restored.target, `${POOL}/volume-${target}`);
      assert.equal(restored.targetVolumeId, target);
      assert.equal(restored.size, BigInt(16 * MiB));
      assert.equal(await volumeSha(target), await snapshotSha(id, result.snapshot));
      assert.deepEqual(await snapshotNames(volumes, `volume-${target}`), [], 'no snapshot left on the target');
      assert.equal(await imageSize(volumes, `volume-${target}`), BigInt(16 * MiB));
    }
  });

  test('a volume target without an id: a new volume with a UUID id', async (t) => {
    const { id, backup } = await backedUpVolume(t, 8 * MiB);
    const restored = await engine.restore({ backup: backup.record, target: { volume: { pool: POOL } } });
    t.after(() => removeImagePatiently(volumes, `volume-${restored.targetVolumeId}`));
    assert.match(restored.targetVolumeId ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.equal(restored.path, 'diff');
    assert.equal(await volumeSha(restored.targetVolumeId!), await snapshotSha(id, backup.snapshot));
  });

  test('into an existing empty volume of the same size: diff', async (t) => {
    const { id, backup } = await backedUpVolume(t);
    const target = fx.targetId(t);
    await volumes.createImage(`volume-${target}`, 16 * MiB, { features: VOLUME_FEATURES });
    const restored = await engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } } });
    assert.equal(restored.path, 'diff');
    assert.equal(await volumeSha(target), await snapshotSha(id, backup.snapshot));
    assert.deepEqual(await snapshotNames(volumes, `volume-${target}`), []);
  });

  test('into an empty volume larger than the backup: diff, size kept, first N bytes equal, the rest zeros',
    { timeout: 120_000 }, async (t) => {
      const { id, backup } = await backedUpVolume(t);
      const target = fx.targetId(t);
      await volumes.createImage(`volume-${target}`, 24 * MiB, { features: VOLUME_FEATURES });
      const restored = await engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } } });
      assert.equal(restored.path, 'diff');
      assert.equal(restored.size, BigInt(16 * MiB));
      assert.equal(await imageSize(volumes, `volume-${target}`), BigInt(24 * MiB), 'the volume keeps its size');
      assert.deepEqual(await snapshotNames(volumes, `volume-${target}`), [], 'no snapshot left on the target');
      const exported = await rbdExportPrefix(`${POOL}/volume-${target}`, 16 * MiB);
      assert.equal(exported.size, 24 * MiB);
      assert.equal(exported.sha, await snapshotSha(id, backup.snapshot));
      assert.equal(exported.restIsZero, true);
    });

  test('a record without volume_id but naming its chain image restores by diff', async (t) => {
    const { id, backup } = await backedUpVolume(t, 8 * MiB);
    for (const volume_id of ['', null]) {
      const record: BackupRecord = { ...backup.record, volume_id: volume_id as string };
      const target = fx.targetId(t);
      const restored = await engine.restore({ backup: record, target: { volume: { pool: POOL, id: target } } });
      assert.equal(restored.path, 'diff');
      assert.equal(restored.source, `${BACKUP_POOL}/${backup.baseImage}@${backup.snapshot}`);
      assert.equal(await volumeSha(target), await snapshotSha(id, backup.snapshot));
    }
  });

  test('a full backup\'s record without service_metadata: its snapshot, never its chain image\'s head',
    { timeout: 120_000 }, async (t) => {
      const { id, backup } = await backedUpVolume(t);
      // The chain image volume-<id>.backup.<full backup id> is named like a legacy full copy of
      // that backup, but its head holds the incremental's data now.
      await fx.writeRandom(id, [[0, 16 * MiB]]);
      const incremental = await engine.backup({ pool: POOL, volumeId: id });
      assert.equal(incremental.baseImage, backupImageName(id, backup.record.id));
      const bare: BackupRecord = { ...backup.record, service_metadata: null };
      const target = fx.targetId(t);
      const restored = await engine.restore({ backup: bare, target: { volume: { pool: POOL, id: target } } });
      assert.equal(restored.path, 'diff');
      assert.equal(restored.source, `${BACKUP_POOL}/${backup.baseImage}@${backup.snapshot}`);
      assert.equal(await volumeSha(target), await snapshotSha(id, backup.snapshot));
      const sink = hashingStream();
      const streamed = await engine.restore({ backup: bare, target: { stream: sink.stream } });
      assert.equal(streamed.source, `${BACKUP_POOL}/${backup.baseImage}@${backup.snapshot}`);
      assert.equal(sink.digest(), await snapshotSha(id, backup.snapshot));
    });

  test('a record in Cinder\'s export shape (every Cinder field) imports and restores', async (t) => {
    const { id, backup } = await backedUpVolume(t, 8 * MiB);
    const cinder = {
      id: backup.record.id, user_id: '2c8a1f0e9d7b4a6c8e5f3a1b0c9d8e7f', project_id: '9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b',
      volume_id: id, host: 'backup-host-1', availability_zone: 'nova', container: BACKUP_POOL, parent_id: null,
      status: 'available', fail_reason: null, size: 1, display_name: 'nightly', display_description: 'from cinder',
      service_metadata: `{"base": "${backup.baseImage}"}`, service: 'cinder.backup.drivers.ceph.CephBackupDriver',
      object_count: 0, temp_volume_id: null, temp_snapshot_id: null, num_dependent_backups: 0, snapshot_id: null,
      data_timestamp: '2024-05-01T10:00:00Z', restore_volume_id: null, metadata: {}, encryption_key_id: null,
      created_at: '2024-05-01T10:00:00Z', updated_at: '2024-05-01T10:00:00Z', deleted_at: null, deleted: false,
      driver_info: {},
    };
    const record = engine.importRecord(Buffer.from(JSON.stringify(cinder)).toString('base64'));
    const target = fx.targetId(t);
    const restored = await engine.restore({ backup: record, target: { volume: { pool: POOL, id: target } } });
    assert.equal(restored.path, 'diff');
    assert.equal(await volumeSha(target), await snapshotSha(id, backup.snapshot));
  });
});

// ---- each condition failing ------------------------------------------------

describe('condition 1: the backup\'s image exists (a missing one is a NotFoundError, under refusals)', () => {
  test('a legacy full copy and no chain image: condition 1 holds, condition 2 fails (no snapshot): full copy of its head',
    { timeout: 120_000 }, async (t) => {
      const size = 20 * MiB + 12 * 1024;
      const id = await fx.newVolume(t, size);
      await fx.writeRandom(id, [[0, 3 * MiB], [9 * MiB, 1 * MiB], [size - 8192, 8192]]);
      await fx.withVolume(id, (image) => image.createSnapshot('legacy-source'));
      const record = await legacyBackup(id, 'legacy-source');
      await fx.writeRandom(id, [[0, 1 * MiB]]);
      assert.deepEqual((await backups.listImages()).filter((n) => n.startsWith(`volume-${id}.backup.`)),
        [backupImageName(id, record.id)], 'no chain image, no .backup.base');

      // A chunk size that does not divide the size: the last chunk is partial.
      const chunky = new BackupEngine({ source: cluster, chunkSize: 3 * MiB });
      const target = fx.targetId(t);
      const restored = await chunky.restore({ backup: record, target: { volume: { pool: POOL, id: target } } });
      assert.equal(restored.path, 'full');
      assert.deepEqual(restored.failedCondition, { number: 2, reason: 'the base image has no snapshot of this backup' });
      assert.equal(restored.source, `${BACKUP_POOL}/${backupImageName(id, record.id)}`);
      assert.equal(restored.size, BigInt(size));
      assert.equal(await volumeSha(target), await snapshotSha(id, 'legacy-source'));
      assert.equal(await imageSize(volumes, `volume-${target}`), BigInt(size));

      // The same record as Cinder exported it (line-wrapped base64) restores too.
      const wrapped = engine.exportRecord(record).match(/.{1,76}/g)!.join('\n');
      const again = fx.targetId(t);
      const viaImport = await engine.restore({ backup: engine.importRecord(wrapped), target: { volume: { pool: POOL, id: again } } });
      assert.equal(viaImport.failedCondition?.number, 2);
      assert.equal(await volumeSha(again), await snapshotSha(id, 'legacy-source'));
    });

  test('a legacy full copy to a file: condition 2 comes before condition 3', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    await fx.writeRandom(id, [[1 * MiB, 2 * MiB]]);
    await fx.withVolume(id, (image) => image.createSnapshot('legacy-source'));
    const record = await legacyBackup(id, 'legacy-source');
    const file = join(scratchDir, uniqueName('legacy'));
    t.after(() => rm(file, { force: true }));
    const restored = await engine.restore({ backup: record, target: { file } });
    assert.equal(restored.failedCondition?.number, 2);
    assert.equal(restored.source, `${BACKUP_POOL}/${backupImageName(id, record.id)}`);
    assert.equal(sha256(await readFile(file)), await snapshotSha(id, 'legacy-source'));
  });
});

describe('condition 2: no single restore point of this backup', () => {
  test('a chain image without this backup\'s snapshot, a legacy copy of it beside: full copy, condition 2',
    { timeout: 120_000 }, async (t) => {
      const { id, backup } = await backedUpVolume(t);
      await fx.writeRandom(id, randomRanges(16 * MiB, 3, 2 * MiB));
      await fx.withVolume(id, (image) => image.createSnapshot('legacy-source'));
      const record = await legacyBackup(id, 'legacy-source');
      const target = fx.targetId(t);
      const restored = await engine.restore({ backup: record, target: { volume: { pool: POOL, id: target } } });
      assert.equal(restored.path, 'full');
      assert.deepEqual(restored.failedCondition, { number: 2, reason: 'the base image has no snapshot of this backup' });
      assert.equal(restored.source, `${BACKUP_POOL}/${backupImageName(id, record.id)}`);
      assert.equal(await volumeSha(target), await snapshotSha(id, 'legacy-source'));
      // The chain-image backup beside it is unaffected.
      const other = fx.targetId(t);
      assert.equal((await engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: other } } })).path, 'diff');
      assert.equal(await volumeSha(other), await snapshotSha(id, backup.snapshot));
    });

  test('two snapshots of one backup on its chain image: InconsistentBackupError naming both, nothing created',
    async (t) => {
      const { backup } = await backedUpVolume(t, 8 * MiB);
      const second = `backup.${backup.record.id}.snap.1234567890.5`;
      await rbd('a', ['snap', 'create', `${BACKUP_POOL}/${backup.baseImage}@${second}`]);
      // As Cinder writes chains: no info naming the backup's snapshot (with
      // one, the other snapshot is no backup: backup-pending.test.ts).
      await rbd('a', ['image-meta', 'remove', `${BACKUP_POOL}/${backup.baseImage}`, `rbd-backup.backup.${backup.record.id}`]);
      const target = fx.targetId(t);
      const file = join(scratchDir, uniqueName('two-points'));
      const check = (error: unknown): boolean => {
        assert.ok(error instanceof InconsistentBackupError, `expected InconsistentBackupError, got ${String(error)}`);
        assert.ok(error instanceof CephError);
        assert.equal(error.code, 'EUCLEAN');
        assert.equal(error.errno, 117);
        assert.equal(error.operation, 'restore');
        assert.equal(error.resource, backup.baseImage);
        assert.match(error.message, new RegExp(`backup ${backup.record.id} has 2 snapshots`));
        assert.ok(error.message.includes(backup.snapshot) && error.message.includes(second), error.message);
        return true;
      };
      await assert.rejects(engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } } }), check);
      await assert.rejects(engine.restore({ backup: backup.record, target: { file } }), check);
      // A record without service_metadata finds the same two.
      await assert.rejects(engine.restore({ backup: { ...backup.record, service_metadata: null }, target: { file } }), check);
      assert.equal(await volumes.imageExists(`volume-${target}`), false, 'no target volume created');
      await assert.rejects(stat(file), { code: 'ENOENT' });
    });

  test('a backup\'s snapshot on two chain images: InconsistentBackupError naming both, nothing created',
    { timeout: 120_000 }, async (t) => {
      const { id, backup } = await backedUpVolume(t, 8 * MiB);
      const other = await engine.backup({ pool: POOL, volumeId: id, full: true });
      await rbd('a', ['snap', 'create', `${BACKUP_POOL}/${other.baseImage}@${backup.snapshot}`]);
      const target = fx.targetId(t);
      for (const record of [backup.record, { ...backup.record, service_metadata: null }]) {
        await assert.rejects(engine.restore({ backup: record, target: { volume: { pool: POOL, id: target } } }),
          (error: unknown) => {
            assert.ok(error instanceof InconsistentBackupError, `expected InconsistentBackupError, got ${String(error)}`);
            assert.equal(error.code, 'EUCLEAN');
            assert.equal(error.resource, `volume ${id}`);
            assert.match(error.message, /has a snapshot on 2 chain images/);
            assert.ok(error.message.includes(backup.baseImage) && error.message.includes(other.baseImage), error.message);
            return true;
          });
      }
      assert.equal(await volumes.imageExists(`volume-${target}`), false, 'no target volume created');
      // The other backup restores as ever.
      await assert.doesNotReject(async () => {
        const restored = await engine.restore({ backup: other.record, target: { volume: { pool: POOL, id: target } } });
        assert.equal(restored.path, 'diff');
      });
      assert.equal(await volumeSha(target), await snapshotSha(id, other.snapshot));
    });
});

describe('condition 3: the target is not an RBD image', () => {
  test('to a file: full copy, condition 3, the snapshot\'s bytes', { timeout: 120_000 }, async (t) => {
    const { id, backup } = await backedUpVolume(t);
    await fx.writeRandom(id, randomRanges(16 * MiB, 3, 2 * MiB));
    const incremental = await engine.backup({ pool: POOL, volumeId: id });
    for (const result of [backup, incremental]) {
      const file = join(scratchDir, uniqueName('file'));
      t.after(() => rm(file, { force: true }));
      const restored = await engine.restore({ backup: result.record, target: { file } });
      assert.equal(restored.path, 'full');
      assert.deepEqual(restored.failedCondition, { number: 3, reason: 'the target is not an RBD image' });
      assert.equal(restored.target, file);
      assert.equal(restored.targetVolumeId, undefined);
      assert.equal(restored.size, BigInt(16 * MiB));
      assert.equal((await stat(file)).size, 16 * MiB);
      assert.equal(sha256(await readFile(file)), await snapshotSha(id, result.snapshot));
    }
  });

  test('an existing file is refused and left as it was', async (t) => {
    const { backup } = await backedUpVolume(t, 8 * MiB);
    const file = join(scratchDir, uniqueName('existing'));
    t.after(() => rm(file, { force: true }));
    await writeFile(file, 'keep me');
    await assert.rejects(engine.restore({ backup: backup.record, target: { file } }), (error: unknown) => {
      assert.equal((error as NodeJS.ErrnoException).code, 'EEXIST', String(error));
      return true;
    });
    assert.equal(await readFile(file, 'utf8'), 'keep me');
  });

  test('to a stream: full copy, condition 3, the snapshot\'s bytes, the stream ended', async (t) => {
    const { id, backup } = await backedUpVolume(t);
    const sink = hashingStream();
    const restored = await engine.restore({ backup: backup.record, target: { stream: sink.stream } });
    assert.equal(restored.path, 'full');
    assert.equal(restored.failedCondition?.number, 3);
    assert.equal(restored.target, 'stream');
    assert.equal(sink.stream.writableEnded, true);
    assert.equal(sink.length(), 16 * MiB);
    assert.equal(sink.digest(), await snapshotSha(id, backup.snapshot));
  });
});

describe('condition 4: the target is the backup\'s own source volume (with force)', () => {
  test('restoring onto the source volume: full copy, condition 4, the volume gets the backup\'s bytes',
    { timeout: 120_000 }, async (t) => {
      const { id, backup } = await backedUpVolume(t);
      // Change data, and write where the backup had holes: the copy must put the holes back.
      await fx.writeRandom(id, [[0, 16 * MiB]]);
      assert.notEqual(await volumeSha(id), await snapshotSha(id, backup.snapshot));
      const onto = { backup: backup.record, target: { volume: { pool: POOL, id } }, force: true } as const;
      const restored = await engine.restore({ ...onto, inPlace: false });
      assert.equal(restored.path, 'full');
      assert.deepEqual(restored.failedCondition, { number: 4, reason: "the target is the backup's own source volume" });
      assert.equal(restored.target, `${POOL}/volume-${id}`);
      assert.equal(await volumeSha(id), await snapshotSha(id, backup.snapshot));
      assert.deepEqual(await snapshotNames(volumes, `volume-${id}`), [backup.snapshot], 'the volume\'s snapshots are kept');
      // By default: in place, from the backup's snapshot the volume still has.
      await fx.writeRandom(id, [[0, 16 * MiB]]);
      const inPlace = await engine.restore(onto);
      assert.equal(inPlace.path, 'in-place');
      assert.equal(inPlace.commonSnapshot, backup.snapshot);
      assert.deepEqual(inPlace.failedCondition, { number: 4, reason: "the target is the backup's own source volume" });
      assert.equal(await volumeSha(id), await snapshotSha(id, backup.snapshot));
    });

  test('onto the source volume extended since: condition 4, size kept, the excess discarded', { timeout: 120_000 },
    async (t) => {
      const { id, backup } = await backedUpVolume(t);
      await fx.withVolume(id, (image) => image.resize(24 * MiB));
      await fx.writeRandom(id, [[0, 24 * MiB]]);
      const restored = await engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id } }, force: true });
      assert.equal(restored.failedCondition?.number, 4);
      assert.equal(await imageSize(volumes, `volume-${id}`), BigInt(24 * MiB));
      const exported = await rbdExportPrefix(`${POOL}/volume-${id}`, 16 * MiB);
      assert.equal(exported.sha, await snapshotSha(id, backup.snapshot));
      assert.equal(exported.restIsZero, true);
    });
});

describe('condition 5: the target already holds data (with force)', () => {
  test('a used volume of the same size: full copy, condition 5, every byte replaced', { timeout: 120_000 },
    async (t) => {
      const { id, backup } = await backedUpVolume(t);
      const target = fx.targetId(t);
      await volumes.createImage(`volume-${target}`, 16 * MiB, { features: VOLUME_FEATURES });
      await fx.writeRandom(target, [[0, 16 * MiB]]);
      const restored = await engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } }, force: true });
      assert.equal(restored.path, 'full');
      assert.deepEqual(restored.failedCondition, { number: 5, reason: 'the target volume already holds data' });
      assert.equal(await volumeSha(target), await snapshotSha(id, backup.snapshot));
    });

  test('a used volume larger than the backup: the excess is discarded (default)', { timeout: 120_000 }, async (t) => {
    const { id, backup } = await backedUpVolume(t);
    const target = fx.targetId(t);
    await volumes.createImage(`volume-${target}`, 24 * MiB, { features: VOLUME_FEATURES });
    await fx.writeRandom(target, [[0, 24 * MiB]]);
    const restored = await engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } }, force: true });
    assert.equal(restored.failedCondition?.number, 5);
    assert.equal(await imageSize(volumes, `volume-${target}`), BigInt(24 * MiB));
    const exported = await rbdExportPrefix(`${POOL}/volume-${target}`, 16 * MiB);
    assert.equal(exported.sha, await snapshotSha(id, backup.snapshot));
    assert.equal(exported.restIsZero, true, 'bytes past the backup are discarded');
  });

  test('restoreDiscardExcessBytes false: the excess keeps its old bytes', { timeout: 120_000 }, async (t) => {
    const { id, backup } = await backedUpVolume(t);
    const target = fx.targetId(t);
    await volumes.createImage(`volume-${target}`, 24 * MiB, { features: VOLUME_FEATURES });
    const tail = randomBytes(8 * MiB);
    await fx.writeRandom(target, [[0, 16 * MiB]]);
    await fx.withVolume(target, (image) => image.write(tail, 16 * MiB));
    const keeping = new BackupEngine({ source: cluster, restoreDiscardExcessBytes: false });
    const restored = await keeping.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } }, force: true });
    assert.equal(restored.failedCondition?.number, 5);
    const exported = await rbdExportPrefix(`${POOL}/volume-${target}`, 16 * MiB);
    assert.equal(exported.sha, await snapshotSha(id, backup.snapshot));
    assert.equal(exported.restIsZero, false);
    const kept = await fx.withVolume(target, (image) => image.read(16 * MiB, 8 * MiB));
    assert.ok(kept.equals(tail), 'the bytes past the backup are untouched');
  });
});

// ---- safe restores -----------------------------------------------------------

describe('safe restores: an existing volume is written only when it may be', () => {
  /** A target volume of 16 MiB holding data of its own; its checksum. */
  async function usedTarget(t: TestContext): Promise<{ target: string; before: string }> {
    const target = fx.targetId(t);
    await volumes.createImage(`volume-${target}`, 16 * MiB, { features: VOLUME_FEATURES });
    await fx.writeRandom(target, [[0, 16 * MiB]]);
    return { target, before: await volumeSha(target) };
  }

  test('a volume holding data: refused without force, unchanged; with force, every byte replaced', { timeout: 120_000 },
    async (t) => {
      const { id, backup } = await backedUpVolume(t);
      const { target, before } = await usedTarget(t);
      await assert.rejects(engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } } }),
        (error: unknown) => {
          assert.ok(error instanceof AlreadyExistsError, `expected AlreadyExistsError, got ${String(error)}`);
          assert.equal(error.resource, `${POOL}/volume-${target}`);
          assert.match(error.message, /the target volume already holds data; restore into a new or empty volume, or pass force: true \(--force\)/);
          return true;
        });
      assert.equal(await volumeSha(target), before);
      assert.deepEqual(await snapshotNames(volumes, `volume-${target}`), []);
      const forced = await engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } }, force: true });
      assert.equal(forced.failedCondition?.number, 5);
      assert.equal(await volumeSha(target), await snapshotSha(id, backup.snapshot));
    });

  test('the backup\'s own source volume: refused without force, unchanged', async (t) => {
    const { id, backup } = await backedUpVolume(t);
    await fx.writeRandom(id, [[0, 4 * MiB]]);
    const before = await volumeSha(id);
    await assert.rejects(engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id } } }),
      (error: unknown) => {
        assert.ok(error instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(error)}`);
        assert.match(error.message, /the target is the backup's own source volume.*force: true \(--force\)/);
        return true;
      });
    assert.equal(await volumeSha(id), before);
  });

  test('a volume another client has open: BusyError naming the client, unchanged; with force, restored', { timeout: 120_000 },
    async (t) => {
      const { id, backup } = await backedUpVolume(t);
      const target = fx.targetId(t);
      await volumes.createImage(`volume-${target}`, 16 * MiB, { features: VOLUME_FEATURES });
      const user = await volumes.openImage(`volume-${target}`);
      try {
        const [watcher] = await user.listWatchers();
        assert.ok(watcher, 'an open image watches its header');
        await assert.rejects(engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } } }),
          (error: unknown) => {
            assert.ok(error instanceof BusyError, `expected BusyError, got ${String(error)}`);
            assert.match(error.message, new RegExp(`in use by client\\.${watcher.id} at ${watcher.address.replace(/[.[\]]/g, '\\$&')}; detach or unmap it first`));
            return true;
          });
        assert.equal(await user.hasExtents(), false, 'nothing was written');
        // A dry run says the same, and so does not hide it.
        await assert.rejects(engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } }, dryRun: true }), BusyError);
      } finally {
        await user.close();
      }
      const forcedUser = await volumes.openImage(`volume-${target}`);
      try {
        const restored = await engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } }, force: true });
        assert.equal(restored.path, 'diff', 'an empty volume: the diff path, in use or not');
      } finally {
        await forcedUser.close();
      }
      assert.equal(await volumeSha(target), await snapshotSha(id, backup.snapshot));
    });

  test('a dry run says the path and the condition and changes nothing', { timeout: 120_000 }, async (t) => {
    const { backup } = await backedUpVolume(t);
    const fresh = fx.targetId(t);
    const planned = await engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: fresh } }, dryRun: true });
    assert.equal(planned.dryRun, true);
    assert.equal(planned.path, 'diff');
    assert.equal(planned.bytesRead, 0n);
    assert.equal(planned.target, `${POOL}/volume-${fresh}`);
    assert.equal(await volumes.imageExists(`volume-${fresh}`), false, 'no volume created');

    const { target, before } = await usedTarget(t);
    const forced = await engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } }, dryRun: true, force: true });
    assert.deepEqual([forced.path, forced.failedCondition?.number], ['full', 5]);
    assert.equal(await volumeSha(target), before);
    await assert.rejects(engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } }, dryRun: true }),
      AlreadyExistsError);

    const file = join(scratchDir, uniqueName('dry'));
    const toFile = await engine.restore({ backup: backup.record, target: { file }, dryRun: true });
    assert.deepEqual([toFile.path, toFile.failedCondition?.number], ['full', 3]);
    await assert.rejects(stat(file), { code: 'ENOENT' });
    await assert.rejects(engine.restore({ backup: backup.record, target: { file: join(scratchDir, 'no-such-dir', 'x') }, dryRun: true }),
      NotFoundError);
  });
});

// ---- refusals --------------------------------------------------------------

describe('refusals that change nothing', () => {
  test('a target smaller than the backup: InvalidArgumentError, the target unchanged', async (t) => {
    const { backup } = await backedUpVolume(t);
    const target = fx.targetId(t);
    await volumes.createImage(`volume-${target}`, 8 * MiB, { features: VOLUME_FEATURES });
    await fx.writeRandom(target, [[0, 8 * MiB]]);
    const before = await volumeSha(target);
    await assert.rejects(engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } } }),
      (error: unknown) => {
        assert.ok(error instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(error)}`);
        assert.equal(error.operation, 'restore');
        assert.equal(error.resource, `${POOL}/volume-${target}`);
        assert.match(error.message, new RegExp(`the target volume is ${8 * MiB} bytes, smaller than the backup's ${16 * MiB}`));
        return true;
      });
    assert.equal(await volumeSha(target), before);
    assert.equal(await imageSize(volumes, `volume-${target}`), BigInt(8 * MiB));
    assert.deepEqual(await snapshotNames(volumes, `volume-${target}`), []);
  });

  test('an empty target smaller than the backup: refused too, not resized', async (t) => {
    const { backup } = await backedUpVolume(t);
    const target = fx.targetId(t);
    await volumes.createImage(`volume-${target}`, 4 * MiB, { features: VOLUME_FEATURES });
    await assert.rejects(engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } } }),
      InvalidArgumentError);
    assert.equal(await imageSize(volumes, `volume-${target}`), BigInt(4 * MiB));
  });

  test('an unknown backup id: NotFoundError, no target created', async (t) => {
    const { id, backup } = await backedUpVolume(t, 8 * MiB);
    const target = fx.targetId(t);
    const file = join(scratchDir, uniqueName('unknown'));
    // A record naming no chain image: no snapshot and no legacy copy of it anywhere.
    const record: BackupRecord = { ...backup.record, id: uniqueName('unknown'), service_metadata: null };
    const check = (error: unknown): boolean => {
      assert.ok(error instanceof NotFoundError, `expected NotFoundError, got ${String(error)}`);
      assert.equal(error.code, 'ENOENT');
      assert.equal(error.operation, 'restore');
      assert.equal(error.resource, `backup ${record.id}`);
      assert.match(error.message, new RegExp(`no snapshot of it is on any backup image of volume ${id} ` +
        `and no legacy copy volume-${id}\\.backup\\.${record.id} exists`));
      return true;
    };
    await assert.rejects(engine.restore({ backup: record, target: { volume: { pool: POOL, id: target } } }), check);
    await assert.rejects(engine.restore({ backup: record, target: { file } }), check);
    assert.equal(await volumes.imageExists(`volume-${target}`), false);
    await assert.rejects(stat(file), { code: 'ENOENT' });
  });

  test('a record naming a chain image that lacks its snapshot: NotFoundError naming both, no target created',
    async (t) => {
      const { backup } = await backedUpVolume(t, 8 * MiB);
      const target = fx.targetId(t);
      const record: BackupRecord = { ...backup.record, id: uniqueName('unknown') };
      await assert.rejects(engine.restore({ backup: record, target: { volume: { pool: POOL, id: target } } }),
        (error: unknown) => {
          assert.ok(error instanceof NotFoundError, `expected NotFoundError, got ${String(error)}`);
          assert.equal(error.code, 'ENOENT');
          assert.equal(error.operation, 'restore');
          assert.equal(error.resource, `backup ${record.id}`);
          assert.ok(error.message.includes(`its chain image ${backup.baseImage} has no snapshot of backup ${record.id}`), error.message);
          return true;
        });
      assert.equal(await volumes.imageExists(`volume-${target}`), false);
    });

  test('a vanished chain image: NotFoundError naming it, no target created', async (t) => {
    const { backup } = await backedUpVolume(t, 8 * MiB);
    await removeImagePatiently(backups, backup.baseImage);
    const target = fx.targetId(t);
    await assert.rejects(engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } } }),
      (error: unknown) => {
        assert.ok(error instanceof NotFoundError, `expected NotFoundError, got ${String(error)}`);
        assert.equal(error.resource, `backup ${backup.record.id}`);
        assert.match(error.message, new RegExp(`its image ${backup.baseImage.replace(/\./g, '\\.')} does not exist in the backup pool`));
        return true;
      });
    assert.equal(await volumes.imageExists(`volume-${target}`), false);
    const file = join(scratchDir, uniqueName('vanished'));
    await assert.rejects(engine.restore({ backup: backup.record, target: { file } }), NotFoundError);
    await assert.rejects(stat(file), { code: 'ENOENT' });
  });

  test('a record with no volume_id whose service_metadata carries none: InvalidArgumentError', async (t) => {
    const { backup } = await backedUpVolume(t, 8 * MiB);
    const target = fx.targetId(t);
    for (const record of [
      { ...backup.record, volume_id: '', service_metadata: null },
      { ...backup.record, volume_id: undefined as unknown as string, service_metadata: null },
      { ...backup.record, volume_id: null as unknown as string, service_metadata: null },
      { ...backup.record, volume_id: '', service_metadata: '{"other": 1}' },
      { ...backup.record, volume_id: '', service_metadata: '{"base": "not-a-backup-image"}' },
    ]) {
      await assert.rejects(engine.restore({ backup: record, target: { volume: { pool: POOL, id: target } } }),
        (error: unknown) => {
          assert.ok(error instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(error)}`);
          assert.match(error.message, /the record has no volume_id, and no service_metadata base image name that carries one/);
          return true;
        }, String(record.service_metadata));
    }
    assert.equal(await volumes.imageExists(`volume-${target}`), false);
  });

  test('a record naming another volume\'s image or a non-backup image: InvalidArgumentError, nothing read or made',
    { timeout: 120_000 }, async (t) => {
      const { id, backup } = await backedUpVolume(t, 8 * MiB);
      const { id: otherId, backup: otherBackup } = await backedUpVolume(t, 8 * MiB);
      const target = fx.targetId(t);
      const file = join(scratchDir, uniqueName('foreign'));
      for (const base of [otherBackup.baseImage, baseImageName(otherId), `volume-${id}`, `volume-${otherId}`,
        `${BACKUP_POOL}/${backup.baseImage}`, `${backup.baseImage}@${backup.snapshot}`, `volume-${id}.backup.`]) {
        const record: BackupRecord = { ...backup.record, service_metadata: JSON.stringify({ base }) };
        const check = (error: unknown): boolean => {
          assert.ok(error instanceof InvalidArgumentError, `${base}: expected InvalidArgumentError, got ${String(error)}`);
          assert.equal(error.operation, 'restore');
          assert.match(error.message, new RegExp(`must name a backup image of this volume \\(volume-${id}\\.backup\\.`));
          return true;
        };
        await assert.rejects(engine.restore({ backup: record, target: { volume: { pool: POOL, id: target } } }), check, base);
        await assert.rejects(engine.restore({ backup: record, target: { file } }), check, base);
      }
      assert.equal(await volumes.imageExists(`volume-${target}`), false);
      await assert.rejects(stat(file), { code: 'ENOENT' });
    });

  test('bad requests: InvalidArgumentError', async (t) => {
    const { backup } = await backedUpVolume(t, 8 * MiB);
    const file = join(scratchDir, uniqueName('bad'));
    const cases = [
      { backup: backup.record },
      { backup: backup.record, target: undefined },
      { backup: backup.record, target: {} },
      { backup: backup.record, target: { volume: { pool: POOL }, file } },
      { backup: backup.record, target: { file, stream: hashingStream().stream } },
      { backup: backup.record, target: { volume: null } },
      { backup: backup.record, target: { volume: { id: 'x1' } } },
      { backup: backup.record, target: { volume: { pool: POOL, id: '../x' } } },
      { backup: backup.record, target: { volume: { pool: POOL, id: 'A' } } },
      { backup: backup.record, target: { volume: { pool: 'a/b' } } },
      { backup: backup.record, target: { file: '' } },
      { backup: backup.record, target: { file: 5 } },
      { backup: { ...backup.record, id: 'a@b' }, target: { volume: { pool: POOL } } },
      { backup: { ...backup.record, volume_id: 'a/b' }, target: { volume: { pool: POOL } } },
      { backup: { ...backup.record, service_metadata: '{"base": "../x"}' }, target: { volume: { pool: POOL } } },
      { backup: null, target: { volume: { pool: POOL } } },
    ] as unknown as RestoreRequest[];
    for (const request of cases) {
      await assert.rejects(engine.restore(request), InvalidArgumentError,
        JSON.stringify({ ...request, backup: request.backup?.id, target: Object.keys(request.target ?? {}) }));
    }
    await assert.rejects(engine.restore(null as unknown as RestoreRequest), InvalidArgumentError);
    await assert.rejects(stat(file), { code: 'ENOENT' });
  });
});

describe('cancellation', () => {
  /** A 256 MiB volume full of data and a backup of it, and an engine doing one 4 MiB I/O at a time. */
  async function bigBackup(t: TestContext): Promise<{ id: string; backup: BackupResult; slow: BackupEngine }> {
    const size = 256 * MiB;
    const id = await fx.newVolume(t, size);
    await fx.withVolume(id, async (image) => {
      for (let offset = 0; offset < size; offset += 4 * MiB) await image.write(randomBytes(4 * MiB), offset);
    });
    const slow = new BackupEngine({ source: cluster, ioConcurrency: 1, memoryBytes: 4 * MiB });
    return { id, backup: await slow.backup({ pool: POOL, volumeId: id }), slow };
  }

  /** Restores with an abort at the first progress report before the end; returns what it threw. */
  async function abortedRestore(using: BackupEngine, record: BackupRecord, target: string): Promise<unknown> {
    const controller = new AbortController();
    try {
      await using.restore({
        backup: record, target: { volume: { pool: POOL, id: target } }, signal: controller.signal,
        onProgress: (progress) => { if (progress.done < progress.total) controller.abort(); },
      });
    } catch (error) {
      return error;
    }
    return undefined;
  }

  test('abort into a new volume: CancelledError, the volume it created is removed, a retry is right',
    { timeout: 300_000 }, async (t) => {
      const { id, backup, slow } = await bigBackup(t);
      const target = fx.targetId(t);
      const error = await abortedRestore(slow, backup.record, target);
      assert.ok(error instanceof CancelledError, `expected CancelledError, got ${String(error)}`);
      assert.equal(await volumes.imageExists(`volume-${target}`), false);
      const restored = await slow.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } } });
      assert.equal(restored.path, 'diff');
      assert.equal(await volumeSha(target), await snapshotSha(id, backup.snapshot));
    });

  test('abort of a diff restore into a larger empty volume leaves the volume its size, and a retry is right', { timeout: 300_000, }, async (t) => {
    const { id, backup, slow } = await bigBackup(t);
    const target = fx.targetId(t);
    const size = 320 * MiB;
    await volumes.createImage(`volume-${target}`, size, { features: VOLUME_FEATURES });
    const error = await abortedRestore(slow, backup.record, target);
    assert.ok(error instanceof CancelledError, `expected CancelledError, got ${String(error)}`);
    assert.deepEqual(await snapshotNames(volumes, `volume-${target}`), [], 'no restore point left on the target');
    assert.equal(await imageSize(volumes, `volume-${target}`), BigInt(size), 'the volume keeps its size');
    await slow.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } } });
    assert.equal(await imageSize(volumes, `volume-${target}`), BigInt(size));
    const exported = await rbdExportPrefix(`${POOL}/volume-${target}`, 256 * MiB);
    assert.equal(exported.sha, await snapshotSha(id, backup.snapshot));
    assert.equal(exported.restIsZero, true);
  });

  test('a file restore appears at its name only when complete: a cancelled one leaves nothing beside it', { timeout: 300_000 },
    async (t) => {
      const { id, backup, slow } = await bigBackup(t);
      const dir = await mkdtemp(join(scratchDir, 'file-'));
      t.after(() => rm(dir, { recursive: true, force: true }));
      const file = join(dir, 'restored.raw');
      const controller = new AbortController();
      let partial: string[] = [];
      await assert.rejects(slow.restore({
        backup: backup.record, target: { file }, signal: controller.signal,
        onProgress: (progress) => {
          if (progress.done === 0n || progress.done >= progress.total || controller.signal.aborted) return;
          partial = readdirSync(dir);
          controller.abort();
        },
      }), CancelledError);
      assert.equal(partial.length, 1, 'under way, the data went to one file');
      assert.match(partial[0]!, /^\.restored\.raw\.partial-[0-9a-f]{8}$/, 'under a partial name beside the target');
      assert.deepEqual(await readdir(dir), [], 'no file at its name, no partial file beside it');
      await slow.restore({ backup: backup.record, target: { file } });
      assert.deepEqual(await readdir(dir), ['restored.raw']);
      assert.equal(sha256(await readFile(file)), await snapshotSha(id, backup.snapshot));
    });
});
