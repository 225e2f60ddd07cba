/**
 * BackupEngine.restore against a real cluster: the diff path only when all
 * five of Cinder's conditions hold, otherwise a chunked full copy, with the
 * first failing condition reported; legacy (non-diff) backup images; files
 * and streams; targets larger or smaller than the backup; typed refusals
 * that change nothing.
 *
 * Every data check compares sha256 of `rbd export` of the source snapshot
 * with `rbd export` of the restored volume (or the restored file's bytes).
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import {
  BackupEngine, CancelledError, CephError, InvalidArgumentError, NotFoundError, baseImageName, legacyImageName,
  type BackupRecord, type BackupResult, type Cluster, type Pool,
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
 * A legacy (non-diff) full backup of volumeId: the image
 * volume-<id>.backup.<backupId> holding a copy of a snapshot of the volume,
 * and its record (no service_metadata, as Cinder wrote them).
 */
async function legacyBackup(volumeId: string, snapshot: string, backupId = uniqueName('legacy')): Promise<BackupRecord> {
  await rbd('a', ['cp', '--no-progress', `${POOL}/volume-${volumeId}@${snapshot}`,
    `${BACKUP_POOL}/${legacyImageName(volumeId, backupId)}`]);
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
    for (const result of [backup, incremental]) {
      const target = fx.targetId(t);
      const restored = await engine.restore({ backup: result.record, targetPool: POOL, targetVolumeId: target });
      assert.equal(restored.path, 'diff');
      assert.equal(restored.failedCondition, undefined);
      assert.equal(restored.source, `${BACKUP_POOL}/volume-${id}.backup.base@${result.snapshot}`);
      assert.equal(restored.target, `${POOL}/volume-${target}`);
      assert.equal(restored.targetVolumeId, target);
      assert.equal(restored.size, BigInt(16 * MiB));
      assert.equal(await volumeSha(target), await snapshotSha(id, result.snapshot));
      assert.deepEqual(await snapshotNames(volumes, `volume-${target}`), [], 'no snapshot left on the target');
      assert.equal(await imageSize(volumes, `volume-${target}`), BigInt(16 * MiB));
    }
  });

  test('without targetVolumeId: a new volume with a UUID id', async (t) => {
    const { id, backup } = await backedUpVolume(t, 8 * MiB);
    const restored = await engine.restore({ backup: backup.record, targetPool: POOL });
    t.after(() => removeImagePatiently(volumes, `volume-${restored.targetVolumeId}`));
    assert.match(restored.targetVolumeId ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.equal(restored.path, 'diff');
    assert.equal(await volumeSha(restored.targetVolumeId!), await snapshotSha(id, backup.snapshot));
  });

  test('into an existing empty volume of the same size: diff', async (t) => {
    const { id, backup } = await backedUpVolume(t);
    const target = fx.targetId(t);
    await volumes.createImage(`volume-${target}`, 16 * MiB, { features: VOLUME_FEATURES });
    const restored = await engine.restore({ backup: backup.record, targetPool: POOL, targetVolumeId: target });
    assert.equal(restored.path, 'diff');
    assert.equal(await volumeSha(target), await snapshotSha(id, backup.snapshot));
    assert.deepEqual(await snapshotNames(volumes, `volume-${target}`), []);
  });

  test('into an empty volume larger than the backup: diff, size kept, first N bytes equal, the rest zeros',
    { timeout: 120_000 }, async (t) => {
      const { id, backup } = await backedUpVolume(t);
      const target = fx.targetId(t);
      await volumes.createImage(`volume-${target}`, 24 * MiB, { features: VOLUME_FEATURES });
      const restored = await engine.restore({ backup: backup.record, targetPool: POOL, targetVolumeId: target });
      assert.equal(restored.path, 'diff');
      assert.equal(restored.size, BigInt(16 * MiB));
      assert.equal(await imageSize(volumes, `volume-${target}`), BigInt(24 * MiB), 'the volume keeps its size');
      assert.deepEqual(await snapshotNames(volumes, `volume-${target}`), [], 'no snapshot left on the target');
      const exported = await rbdExportPrefix(`${POOL}/volume-${target}`, 16 * MiB);
      assert.equal(exported.size, 24 * MiB);
      assert.equal(exported.sha, await snapshotSha(id, backup.snapshot));
      assert.equal(exported.restIsZero, true);
    });

  test('a record without volume_id but naming its base restores by diff', async (t) => {
    const { id, backup } = await backedUpVolume(t, 8 * MiB);
    const record: BackupRecord = { ...backup.record, volume_id: '' };
    const target = fx.targetId(t);
    const restored = await engine.restore({ backup: record, targetPool: POOL, targetVolumeId: target });
    assert.equal(restored.path, 'diff');
    assert.equal(await volumeSha(target), await snapshotSha(id, backup.snapshot));
  });

  test('a record in Cinder\'s export shape (every Cinder field) imports and restores', async (t) => {
    const { id, backup } = await backedUpVolume(t, 8 * MiB);
    const cinder = {
      id: backup.record.id, user_id: '2c8a1f0e9d7b4a6c8e5f3a1b0c9d8e7f', project_id: '9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b',
      volume_id: id, host: 'backup-host-1', availability_zone: 'nova', container: BACKUP_POOL, parent_id: null,
      status: 'available', fail_reason: null, size: 1, display_name: 'nightly', display_description: 'from cinder',
      service_metadata: `{"base": "volume-${id}.backup.base"}`, service: 'cinder.backup.drivers.ceph.CephBackupDriver',
      object_count: 0, temp_volume_id: null, temp_snapshot_id: null, num_dependent_backups: 0, snapshot_id: null,
      data_timestamp: '2024-05-01T10:00:00Z', restore_volume_id: null, metadata: {}, encryption_key_id: null,
      created_at: '2024-05-01T10:00:00Z', updated_at: '2024-05-01T10:00:00Z', deleted_at: null, deleted: false,
      driver_info: {},
    };
    const record = engine.importRecord(Buffer.from(JSON.stringify(cinder)).toString('base64'));
    const target = fx.targetId(t);
    const restored = await engine.restore({ backup: record, targetPool: POOL, targetVolumeId: target });
    assert.equal(restored.path, 'diff');
    assert.equal(await volumeSha(target), await snapshotSha(id, backup.snapshot));
  });
});

// ---- each condition failing ------------------------------------------------

describe('condition 1: no base image', () => {
  test('a legacy image and no base: full copy, condition 1, the legacy bytes', { timeout: 120_000 }, async (t) => {
    const size = 20 * MiB + 12 * 1024;
    const id = await fx.newVolume(t, size);
    await fx.writeRandom(id, [[0, 3 * MiB], [9 * MiB, 1 * MiB], [size - 8192, 8192]]);
    await fx.withVolume(id, (image) => image.createSnapshot('legacy-source'));
    const record = await legacyBackup(id, 'legacy-source');
    await fx.writeRandom(id, [[0, 1 * MiB]]);
    assert.equal(await backups.imageExists(baseImageName(id)), false);

    // A chunk size that does not divide the size: the last chunk is partial.
    const chunky = new BackupEngine({ source: cluster, chunkSize: 3 * MiB });
    const target = fx.targetId(t);
    const restored = await chunky.restore({ backup: record, targetPool: POOL, targetVolumeId: target });
    assert.equal(restored.path, 'full');
    assert.deepEqual(restored.failedCondition,
      { number: 1, reason: 'the backup has no diff-format base image in the backup pool' });
    assert.equal(restored.source, `${BACKUP_POOL}/${legacyImageName(id, record.id)}`);
    assert.equal(restored.size, BigInt(size));
    assert.equal(await volumeSha(target), await snapshotSha(id, 'legacy-source'));
    assert.equal(await imageSize(volumes, `volume-${target}`), BigInt(size));

    // The same record as Cinder exported it (line-wrapped base64) restores too.
    const wrapped = engine.exportRecord(record).match(/.{1,76}/g)!.join('\n');
    const again = fx.targetId(t);
    const viaImport = await engine.restore({ backup: engine.importRecord(wrapped), targetPool: POOL, targetVolumeId: again });
    assert.equal(viaImport.failedCondition?.number, 1);
    assert.equal(await volumeSha(again), await snapshotSha(id, 'legacy-source'));
  });

  test('a legacy image to a file: condition 1 comes before condition 3', async (t) => {
    const id = await fx.newVolume(t, 8 * MiB);
    await fx.writeRandom(id, [[1 * MiB, 2 * MiB]]);
    await fx.withVolume(id, (image) => image.createSnapshot('legacy-source'));
    const record = await legacyBackup(id, 'legacy-source');
    const file = join(scratchDir, uniqueName('legacy'));
    const restored = await engine.restore({ backup: record, targetFile: file });
    assert.equal(restored.failedCondition?.number, 1);
    assert.equal(sha256(await readFile(file)), await snapshotSha(id, 'legacy-source'));
  });
});

describe('condition 2: the base has no single restore point of this backup', () => {
  test('the base exists without this backup\'s snapshot, a legacy image does: full copy, condition 2',
    { timeout: 120_000 }, async (t) => {
      const { id, backup } = await backedUpVolume(t);
      await fx.writeRandom(id, randomRanges(16 * MiB, 3, 2 * MiB));
      await fx.withVolume(id, (image) => image.createSnapshot('legacy-source'));
      const record = await legacyBackup(id, 'legacy-source');
      const target = fx.targetId(t);
      const restored = await engine.restore({ backup: record, targetPool: POOL, targetVolumeId: target });
      assert.equal(restored.path, 'full');
      assert.deepEqual(restored.failedCondition, { number: 2, reason: 'the base image has no snapshot of this backup' });
      assert.equal(restored.source, `${BACKUP_POOL}/${legacyImageName(id, record.id)}`);
      assert.equal(await volumeSha(target), await snapshotSha(id, 'legacy-source'));
      // The diff-format backup beside it is unaffected.
      const other = fx.targetId(t);
      assert.equal((await engine.restore({ backup: backup.record, targetPool: POOL, targetVolumeId: other })).path, 'diff');
      assert.equal(await volumeSha(other), await snapshotSha(id, backup.snapshot));
    });

  test('two restore points for one backup: a typed EINVAL naming both, nothing created', async (t) => {
    const { id, backup } = await backedUpVolume(t, 8 * MiB);
    const second = `backup.${backup.record.id}.snap.1234567890.5`;
    await rbd('a', ['snap', 'create', `${BACKUP_POOL}/${baseImageName(id)}@${second}`]);
    const target = fx.targetId(t);
    const file = join(scratchDir, uniqueName('two-points'));
    const check = (error: unknown): boolean => {
      assert.ok(error instanceof CephError, `expected a CephError, got ${String(error)}`);
      assert.equal(error.code, 'EINVAL');
      assert.equal(error.errno, 22);
      assert.equal(error.operation, 'restore');
      assert.equal(error.resource, `${BACKUP_POOL}/${baseImageName(id)}`);
      assert.match(error.message, /has 2 restore points/);
      assert.ok(error.message.includes(backup.snapshot) && error.message.includes(second), error.message);
      return true;
    };
    await assert.rejects(engine.restore({ backup: backup.record, targetPool: POOL, targetVolumeId: target }), check);
    await assert.rejects(engine.restore({ backup: backup.record, targetFile: file }), check);
    assert.equal(await volumes.imageExists(`volume-${target}`), false, 'no target volume created');
    await assert.rejects(stat(file), { code: 'ENOENT' });
  });

  test('two restore points: the error is an InvalidArgumentError', async (t) => {
    const { id, backup } = await backedUpVolume(t, 8 * MiB);
    await rbd('a', ['snap', 'create', `${BACKUP_POOL}/${baseImageName(id)}@backup.${backup.record.id}.snap.1234567890.5`]);
    await assert.rejects(engine.restore({ backup: backup.record, targetPool: POOL, targetVolumeId: fx.targetId(t) }),
      InvalidArgumentError);
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
      const restored = await engine.restore({ backup: result.record, targetFile: file });
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
    await assert.rejects(engine.restore({ backup: backup.record, targetFile: file }), (error: unknown) => {
      assert.equal((error as NodeJS.ErrnoException).code, 'EEXIST', String(error));
      return true;
    });
    assert.equal(await readFile(file, 'utf8'), 'keep me');
  });

  test('to a stream: full copy, condition 3, the snapshot\'s bytes, the stream ended', async (t) => {
    const { id, backup } = await backedUpVolume(t);
    const sink = hashingStream();
    const restored = await engine.restore({ backup: backup.record, targetStream: sink.stream });
    assert.equal(restored.path, 'full');
    assert.equal(restored.failedCondition?.number, 3);
    assert.equal(restored.target, 'stream');
    assert.equal(sink.stream.writableEnded, true);
    assert.equal(sink.length(), 16 * MiB);
    assert.equal(sink.digest(), await snapshotSha(id, backup.snapshot));
  });
});

describe('condition 4: the target is the backup\'s own source volume', () => {
  test('restoring onto the source volume: full copy, condition 4, the volume gets the backup\'s bytes',
    { timeout: 120_000 }, async (t) => {
      const { id, backup } = await backedUpVolume(t);
      // Change data, and write where the backup had holes: the copy must put the holes back.
      await fx.writeRandom(id, [[0, 16 * MiB]]);
      assert.notEqual(await volumeSha(id), await snapshotSha(id, backup.snapshot));
      const restored = await engine.restore({ backup: backup.record, targetPool: POOL, targetVolumeId: id });
      assert.equal(restored.path, 'full');
      assert.deepEqual(restored.failedCondition, { number: 4, reason: "the target is the backup's own source volume" });
      assert.equal(restored.target, `${POOL}/volume-${id}`);
      assert.equal(await volumeSha(id), await snapshotSha(id, backup.snapshot));
      assert.deepEqual(await snapshotNames(volumes, `volume-${id}`), [backup.snapshot], 'the volume\'s snapshots are kept');
    });

  test('onto the source volume extended since: condition 4, size kept, the excess discarded', { timeout: 120_000 },
    async (t) => {
      const { id, backup } = await backedUpVolume(t);
      await fx.withVolume(id, (image) => image.resize(24 * MiB));
      await fx.writeRandom(id, [[0, 24 * MiB]]);
      const restored = await engine.restore({ backup: backup.record, targetPool: POOL, targetVolumeId: id });
      assert.equal(restored.failedCondition?.number, 4);
      assert.equal(await imageSize(volumes, `volume-${id}`), BigInt(24 * MiB));
      const exported = await rbdExportPrefix(`${POOL}/volume-${id}`, 16 * MiB);
      assert.equal(exported.sha, await snapshotSha(id, backup.snapshot));
      assert.equal(exported.restIsZero, true);
    });
});

describe('condition 5: the target already holds data', () => {
  test('a used volume of the same size: full copy, condition 5, every byte replaced', { timeout: 120_000 },
    async (t) => {
      const { id, backup } = await backedUpVolume(t);
      const target = fx.targetId(t);
      await volumes.createImage(`volume-${target}`, 16 * MiB, { features: VOLUME_FEATURES });
      await fx.writeRandom(target, [[0, 16 * MiB]]);
      const restored = await engine.restore({ backup: backup.record, targetPool: POOL, targetVolumeId: target });
      assert.equal(restored.path, 'full');
      assert.deepEqual(restored.failedCondition, { number: 5, reason: 'the target volume already holds data' });
      assert.equal(await volumeSha(target), await snapshotSha(id, backup.snapshot));
    });

  test('a used volume larger than the backup: the excess is discarded (default)', { timeout: 120_000 }, async (t) => {
    const { id, backup } = await backedUpVolume(t);
    const target = fx.targetId(t);
    await volumes.createImage(`volume-${target}`, 24 * MiB, { features: VOLUME_FEATURES });
    await fx.writeRandom(target, [[0, 24 * MiB]]);
    const restored = await engine.restore({ backup: backup.record, targetPool: POOL, targetVolumeId: target });
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
    const restored = await keeping.restore({ backup: backup.record, targetPool: POOL, targetVolumeId: target });
    assert.equal(restored.failedCondition?.number, 5);
    const exported = await rbdExportPrefix(`${POOL}/volume-${target}`, 16 * MiB);
    assert.equal(exported.sha, await snapshotSha(id, backup.snapshot));
    assert.equal(exported.restIsZero, false);
    const kept = await fx.withVolume(target, (image) => image.read(16 * MiB, 8 * MiB));
    assert.ok(kept.equals(tail), 'the bytes past the backup are untouched');
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
    await assert.rejects(engine.restore({ backup: backup.record, targetPool: POOL, targetVolumeId: target }),
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
    await assert.rejects(engine.restore({ backup: backup.record, targetPool: POOL, targetVolumeId: target }),
      InvalidArgumentError);
    assert.equal(await imageSize(volumes, `volume-${target}`), BigInt(4 * MiB));
  });

  test('an unknown backup id: NotFoundError, no target created', async (t) => {
    const { id, backup } = await backedUpVolume(t, 8 * MiB);
    const target = fx.targetId(t);
    const record: BackupRecord = { ...backup.record, id: uniqueName('unknown') };
    await assert.rejects(engine.restore({ backup: record, targetPool: POOL, targetVolumeId: target }),
      (error: unknown) => {
        assert.ok(error instanceof NotFoundError, `expected NotFoundError, got ${String(error)}`);
        assert.equal(error.operation, 'restore');
        assert.equal(error.resource, `${BACKUP_POOL}/${baseImageName(id)}`);
        assert.match(error.message, new RegExp(`backup ${record.id} has no snapshot on the base image`));
        return true;
      });
    assert.equal(await volumes.imageExists(`volume-${target}`), false);
  });

  test('a vanished base image: NotFoundError naming it, no target created', async (t) => {
    const { id, backup } = await backedUpVolume(t, 8 * MiB);
    await removeImagePatiently(backups, baseImageName(id));
    const target = fx.targetId(t);
    await assert.rejects(engine.restore({ backup: backup.record, targetPool: POOL, targetVolumeId: target }),
      (error: unknown) => {
        assert.ok(error instanceof NotFoundError, `expected NotFoundError, got ${String(error)}`);
        assert.match(error.message, new RegExp(`base image volume-${id}\\.backup\\.base does not exist`));
        return true;
      });
    assert.equal(await volumes.imageExists(`volume-${target}`), false);
    const file = join(scratchDir, uniqueName('vanished'));
    await assert.rejects(engine.restore({ backup: backup.record, targetFile: file }), NotFoundError);
    await assert.rejects(stat(file), { code: 'ENOENT' });
  });

  test('a record with neither volume_id nor service_metadata: InvalidArgumentError', async (t) => {
    const { backup } = await backedUpVolume(t, 8 * MiB);
    const target = fx.targetId(t);
    for (const record of [
      { ...backup.record, volume_id: '', service_metadata: null },
      { ...backup.record, volume_id: undefined as unknown as string, service_metadata: null },
      { ...backup.record, volume_id: '', service_metadata: '{"other": 1}' },
    ]) {
      await assert.rejects(engine.restore({ backup: record, targetPool: POOL, targetVolumeId: target }),
        (error: unknown) => {
          assert.ok(error instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(error)}`);
          assert.match(error.message, /the record names neither a base image nor a volume id/);
          return true;
        });
    }
    assert.equal(await volumes.imageExists(`volume-${target}`), false);
  });

  test('bad requests: InvalidArgumentError', async (t) => {
    const { backup } = await backedUpVolume(t, 8 * MiB);
    const file = join(scratchDir, uniqueName('bad'));
    const cases: Array<Parameters<BackupEngine['restore']>[0]> = [
      { backup: backup.record },
      { backup: backup.record, targetPool: POOL, targetFile: file },
      { backup: backup.record, targetFile: file, targetVolumeId: 'x1' },
      { backup: backup.record, targetPool: POOL, targetVolumeId: '../x' },
      { backup: backup.record, targetPool: POOL, targetVolumeId: 'A' },
      { backup: backup.record, targetPool: 'a/b' },
      { backup: { ...backup.record, id: 'a@b' }, targetPool: POOL },
      { backup: { ...backup.record, volume_id: 'a/b' }, targetPool: POOL },
      { backup: { ...backup.record, service_metadata: '{"base": "../x"}' }, targetPool: POOL },
      { backup: null as unknown as BackupRecord, targetPool: POOL },
    ];
    for (const request of cases) {
      await assert.rejects(engine.restore(request), InvalidArgumentError, JSON.stringify({ ...request, backup: request.backup?.id }));
    }
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
        backup: record, targetPool: POOL, targetVolumeId: target, signal: controller.signal,
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
      const restored = await slow.restore({ backup: backup.record, targetPool: POOL, targetVolumeId: target });
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
    await slow.restore({ backup: backup.record, targetPool: POOL, targetVolumeId: target });
    assert.equal(await imageSize(volumes, `volume-${target}`), BigInt(size));
    const exported = await rbdExportPrefix(`${POOL}/volume-${target}`, 256 * MiB);
    assert.equal(exported.sha, await snapshotSha(id, backup.snapshot));
    assert.equal(exported.restIsZero, true);
  });
});
