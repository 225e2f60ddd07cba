/**
 * Backups with the least privilege Cinder deployments give: the volume user
 * may only use the volume pool and the backup user only the backup pool
 * (`mon 'profile rbd' osd 'profile rbd pool=<pool>'`). A full backup, an
 * incremental, a second chain image, a restore and deletes (the source
 * snapshot included) work that way, and neither user can reach the other's
 * pool.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { BackupEngine, PermissionError, type Cluster, type Image, type Pool } from '../../lib/index.js';
import { connect, rbdExportSha256, testCluster, uniqueName } from '../support/clusters.js';
import { removeImageFully } from '../support/scratch.js';

const MiB = 1 << 20;

describe('backups with least-privilege users', () => {
  let admin: Cluster;
  let volumes: Cluster;
  let backups: Cluster;
  let adminPool: Pool;
  let volume: Image;
  const volumeId = uniqueName('lp');
  const made: string[] = [];

  before(async () => {
    const cluster = await testCluster('a');
    const volumeUser = uniqueName('vol');
    const backupUser = uniqueName('bak');
    const volumeKeyring = await cluster.createUser(volumeUser, 'rbd');
    const backupKeyring = await cluster.createUser(backupUser, 'backups');
    admin = await connect('a');
    volumes = await connect('a', { user: volumeUser, keyring: volumeKeyring });
    backups = await connect('a', { user: backupUser, keyring: backupKeyring });
    adminPool = await admin.pool('rbd');
    await adminPool.createImage(`volume-${volumeId}`, 32 * MiB,
      { features: ['layering', 'exclusive-lock', 'object-map', 'fast-diff'] });
    made.push(`volume-${volumeId}`);
    volume = await adminPool.openImage(`volume-${volumeId}`);
    for (let offset = 0; offset < 32 * MiB; offset += 8 * MiB) await volume.write(randomBytes(MiB), offset);
  });

  after(async () => {
    await volume?.close();
    for (const name of made) await removeImageFully(adminPool, name);
    const backupPool = await admin.pool('backups');
    for (const name of await backupPool.listImages()) {
      if (name.startsWith(`volume-${volumeId}.backup.`)) await removeImageFully(backupPool, name);
    }
    await backupPool.removeObject(`volume-${volumeId}.backup.lock`).catch(() => undefined);
    await backupPool.close();
    await adminPool?.close();
    await volumes?.close();
    await backups?.close();
    await admin?.close();
  });

  test('full and incremental backups, a restore and deletes need only the two pools', { timeout: 120_000 }, async () => {
    const engine = new BackupEngine({ source: volumes, backupCluster: backups });
    // Each backup's source snapshot, checksummed before a later backup trims it (default: 2 kept).
    const sha = new Map<string, string>();
    const checksum = async (snapshot: string): Promise<void> => {
      sha.set(snapshot, await rbdExportSha256('a', `rbd/volume-${volumeId}@${snapshot}`));
    };
    const full = await engine.backup({ pool: 'rbd', volumeId });
    await checksum(full.snapshot);
    assert.equal(full.baseImage, `volume-${volumeId}.backup.${full.record.id}`);
    await volume.write(randomBytes(MiB), 4 * MiB);
    const incremental = await engine.backup({ pool: 'rbd', volumeId });
    await checksum(incremental.snapshot);
    assert.equal(incremental.mode, 'incremental');
    assert.equal(incremental.fromSnapshot, full.snapshot);
    assert.equal(incremental.baseImage, full.baseImage);
    await volume.write(randomBytes(MiB), 12 * MiB);
    const second = await engine.backup({ pool: 'rbd', volumeId, full: true });
    await checksum(second.snapshot);
    assert.notEqual(second.baseImage, full.baseImage);

    for (const result of [full, incremental, second]) {
      const restored = await engine.restore({ backup: result.record, target: { volume: { pool: 'rbd' } } });
      made.push(`volume-${restored.targetVolumeId}`);
      assert.equal(restored.path, 'diff');
      assert.equal(await rbdExportSha256('a', `rbd/volume-${restored.targetVolumeId}`), sha.get(result.snapshot));
    }
    // The default keeps 2 source snapshots: the full backup's was trimmed by the third backup.
    assert.deepEqual((await volume.listSnapshots()).map((s) => s.name), [incremental.snapshot, second.snapshot]);
    const deleted = await engine.delete(incremental.record, { sourcePool: 'rbd' });
    assert.equal(deleted.removedSourceSnapshot, incremental.snapshot);
    assert.deepEqual((await engine.delete(full.record, { sourcePool: 'rbd' })).removedImages, [full.baseImage]);
    assert.deepEqual((await engine.delete(second.record, { sourcePool: 'rbd' })).removedImages, [second.baseImage]);
    assert.deepEqual((await volume.listSnapshots()).map((s) => s.name), []);
    assert.deepEqual(await engine.listBackups(volumeId), []);
  });

  test('the backup user cannot reach the volume pool, nor the volume user the backup pool', async () => {
    const before = (await volume.listSnapshots()).map((s) => s.name);
    const intoVolumePool = new BackupEngine({ source: volumes, backupCluster: backups, backupPool: 'rbd' });
    await assert.rejects(intoVolumePool.backup({ pool: 'rbd', volumeId }),
      (error: unknown) => error instanceof PermissionError && /rbd/.test(error.message));
    const backupPool = await volumes.pool('backups');
    try {
      await assert.rejects(backupPool.createImage(uniqueName('nope'), MiB),
        (error: unknown) => error instanceof PermissionError && error.resource.startsWith('backups/'));
    } finally {
      await backupPool.close();
    }
    // The refused backup left nothing behind on the volume.
    assert.deepEqual((await volume.listSnapshots()).map((s) => s.name), before);
  });
});
