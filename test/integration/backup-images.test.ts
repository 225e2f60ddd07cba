/**
 * Backups of any RBD image by its name (Proxmox's vm-<id>-disk-<n>,
 * Kubernetes CSI's csi-vol-<uuid>), not only Cinder's volume-<id>, against
 * a real cluster: full and incremental backups into image.<pool>.<name>
 * chain images, restores into a new volume and into a named image
 * (byte-equal, by sha256 of `rbd export` of the exact source snapshot), two
 * pools' images of one name kept apart in one backup pool, hostile names
 * refused or kept apart, records round-tripping export and import, prune,
 * delete and gc of named images' backups.
 */
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import {
  BackupEngine, InvalidArgumentError, NotFoundError, type BackupRecord, type Cluster, type Pool,
} from '../../lib/index.js';
import { imageSubject, lockObjectName, restoreLockObjectName } from '../../lib/backup/naming.js';
import { rbd, rbdExportSha256, uniqueName } from '../support/clusters.js';
import {
  POOL, VOLUME_FEATURES, removeImagePatiently, removeObjectQuietly, snapshotsOf, useBackupTestbed, type Teardown,
} from '../support/backup-fixtures.js';

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;

let cluster: Cluster;
let volumes: Pool;
let backups: Pool;
let engine: BackupEngine;
let keepAll: BackupEngine;

useBackupTestbed((testbed) => ({ cluster, volumes, backups, engine, keepAll } = testbed));

/**
 * Clean-up steps run newest first when the test ends (node runs a test's
 * own after hooks oldest first): an image goes before its namespace or pool.
 */
function lifo(t: TestContext): Teardown {
  const steps: Array<() => Promise<void>> = [];
  t.after(async () => {
    for (const step of steps.reverse()) await step();
  });
  return { after: (step) => { steps.push(step); } };
}

/** The backup images and lock object of an image subject, removed when the test ends. */
function forgetBackupsOf(t: Teardown, pool: string, image: string, namespace = ''): void {
  const subject = imageSubject({ pool, namespace, image }, 'test');
  t.after(async () => {
    for (const name of (await backups.listImages()).filter((n) => n.startsWith(`${subject.key}.backup.`))) {
      await removeImagePatiently(backups, name);
    }
    await removeObjectQuietly(backups, lockObjectName(subject));
  });
}

/** A new image of that name in pool (rbd unless given) with random data, removed with its backups when the test ends. */
async function newImage(t: Teardown, name: string, on: Pool = volumes): Promise<string> {
  t.after(() => removeImagePatiently(on, name));
  forgetBackupsOf(t, on.name, name, on.namespace);
  await on.createImage(name, SIZE, { features: VOLUME_FEATURES });
  await writeRandom(on, name, [[0, MiB], [5 * MiB - 4096, 8192], [SIZE - MiB, MiB]]);
  return name;
}

async function writeRandom(on: Pool, name: string, ranges: Array<[number, number]>): Promise<void> {
  const image = await on.openImage(name);
  try {
    for (const [offset, length] of ranges) await image.write(randomBytes(length), offset);
  } finally {
    await image.close();
  }
}

const specOf = (pool: Pool, name: string): string => `${pool.spec}/${name}`;

/** Restores into a new volume and into a new named image, each equal to the snapshot. */
async function assertRestores(t: TestContext, record: BackupRecord, source: string, snapshot: string): Promise<void> {
  const expected = await rbdExportSha256('a', `${source}@${snapshot}`);
  const volumeId = uniqueName('t');
  t.after(() => removeImagePatiently(volumes, `volume-${volumeId}`));
  const intoVolume = await keepAll.restore({ backup: record, target: { volume: { pool: POOL, id: volumeId } } });
  assert.equal(intoVolume.path, 'diff');
  assert.equal(intoVolume.targetVolumeId, volumeId);
  assert.equal(await rbdExportSha256('a', `${POOL}/volume-${volumeId}`), expected, `${record.id} into a volume`);
  const name = uniqueName('vm-restored-disk');
  t.after(() => removeImagePatiently(volumes, name));
  const intoImage = await keepAll.restore({ backup: record, target: { image: { pool: POOL, name } } });
  assert.equal(intoImage.target, `${POOL}/${name}`);
  assert.equal(intoImage.targetVolumeId, undefined);
  assert.equal(await rbdExportSha256('a', `${POOL}/${name}`), expected, `${record.id} into a named image`);
}

describe('named images', () => {
  test('a Proxmox disk: full and incremental backups into image.rbd.<name>, listed, restored byte-equal into a volume and an image',
    { timeout: 180_000 }, async (t) => {
      const name = await newImage(t, uniqueName('vm-100-disk-0'));
      const full = await keepAll.backup({ pool: POOL, image: name, displayName: 'nightly' });
      assert.equal(full.mode, 'full');
      const chain = `image.${POOL}.${name}.backup.${full.record.id}`;
      assert.equal(full.baseImage, chain);
      assert.equal(full.record.volume_id, '');
      assert.deepEqual(full.record.source_image, { pool: POOL, namespace: '', name });
      assert.deepEqual(JSON.parse(full.record.service_metadata!), { base: chain });
      assert.equal(await backups.objectExists(lockObjectName(imageSubject({ pool: POOL, image: name }, 'test'))), true);

      await writeRandom(volumes, name, [[3 * MiB, 4096], [9 * MiB, 2 * MiB]]);
      const incr = await keepAll.backup({ pool: POOL, image: name });
      assert.equal(incr.mode, 'incremental');
      assert.equal(incr.baseImage, chain);
      assert.equal(incr.fromSnapshot, full.snapshot);
      assert.deepEqual(await snapshotsOf(backups, chain), [full.snapshot, incr.snapshot]);

      const listed = await engine.listBackups({ pool: POOL, image: name });
      assert.deepEqual(listed.map((l) => [l.record.id, l.full, l.image, l.record.display_name]),
        [[full.record.id, true, chain, 'nightly'], [incr.record.id, false, chain, null]]);
      assert.equal(listed[0].subject.kind, 'image');

      await assertRestores(t, full.record, specOf(volumes, name), full.snapshot);
      await assertRestores(t, engine.importRecord(engine.exportRecord(incr.record)), specOf(volumes, name), incr.snapshot);
    });

  test('a CSI volume in a namespace: its namespace is part of its names, and restores into the namespace', { timeout: 180_000 }, async (t) => {
    const undo = lifo(t);
    const namespace = uniqueName('ns');
    await rbd('a', ['namespace', 'create', `${POOL}/${namespace}`]);
    undo.after(() => rbd('a', ['namespace', 'remove', `${POOL}/${namespace}`]).then(() => undefined));
    const inNamespace = await cluster.pool(POOL, namespace);
    undo.after(() => inNamespace.close());
    const name = await newImage(undo, `csi-vol-${randomUUID()}`, inNamespace);
    const full = await keepAll.backup({ pool: POOL, namespace, image: name });
    assert.equal(full.baseImage, `image.${POOL}%2F${namespace}.${name}.backup.${full.record.id}`);
    assert.deepEqual(full.record.source_image, { pool: POOL, namespace, name });
    await writeRandom(inNamespace, name, [[MiB, MiB]]);
    const incr = await keepAll.backup({ pool: POOL, namespace, image: name });
    assert.equal(incr.mode, 'incremental');
    assert.deepEqual((await engine.listBackups({ pool: POOL, namespace, image: name })).map((l) => l.record.id),
      [full.record.id, incr.record.id]);
    assert.deepEqual(await engine.listBackups({ pool: POOL, image: name }), [], 'the default namespace has no such backups');
    const expected = await rbdExportSha256('a', `${specOf(inNamespace, name)}@${incr.snapshot}`);
    const target = uniqueName('csi-vol-restored');
    undo.after(() => removeImagePatiently(inNamespace, target));
    await keepAll.restore({ backup: incr.record, target: { image: { pool: POOL, namespace, name: target } } });
    assert.equal(await rbdExportSha256('a', specOf(inNamespace, target)), expected);
  });

  test('two pools\' images of one name, backed up into one backup pool, never share a chain', { timeout: 240_000 }, async (t) => {
    const undo = lifo(t);
    const otherName = uniqueName('images-pool');
    await cluster.createPool(otherName);
    undo.after(() => cluster.deletePool(otherName));
    const other = await cluster.pool(otherName);
    undo.after(() => other.close());
    const name = uniqueName('vm-100-disk-0');
    await newImage(undo, name);
    await newImage(undo, name, other);
    const a = await keepAll.backup({ pool: POOL, image: name });
    const b = await keepAll.backup({ pool: otherName, image: name });
    assert.equal(a.mode, 'full');
    assert.equal(b.mode, 'full', 'the other pool\'s image starts its own chain');
    assert.notEqual(a.baseImage, b.baseImage);
    assert.match(b.baseImage, new RegExp(`^image\\.${otherName}\\.${name}\\.backup\\.`));
    await writeRandom(volumes, name, [[2 * MiB, MiB]]);
    const a2 = await keepAll.backup({ pool: POOL, image: name });
    assert.equal(a2.baseImage, a.baseImage);
    assert.deepEqual((await engine.listBackups({ pool: POOL, image: name })).map((l) => l.record.id), [a.record.id, a2.record.id]);
    assert.deepEqual((await engine.listBackups({ pool: otherName, image: name })).map((l) => l.record.id), [b.record.id]);
    // A record of one cannot be turned into the other's by its source_image.
    const forged = { ...b.record, source_image: { pool: POOL, namespace: '', name } };
    await assert.rejects(keepAll.restore({ backup: forged, target: { file: '/tmp/images-never' } }), InvalidArgumentError);
    await assertRestores(t, a2.record, specOf(volumes, name), a2.snapshot);
    await assertRestores(t, b.record, specOf(other, name), b.snapshot);
  });

  test('hostile names: dots, %, unicode kept apart from each other and from their prefixes; a Cinder volume\'s name refused',
    { timeout: 240_000 }, async (t) => {
      const stem = uniqueName('h');
      const names = [stem, `${stem}.backup.b`, `${stem}%2E`, `${stem}-диск-ü`, `volume-${stem}.x`];
      const results = new Map<string, Awaited<ReturnType<BackupEngine['backup']>>>();
      for (const name of names) {
        await newImage(t, name);
        results.set(name, await keepAll.backup({ pool: POOL, image: name }));
      }
      for (const name of names) {
        const own = results.get(name)!;
        assert.equal(own.mode, 'full', name);
        assert.ok(own.baseImage.startsWith('image.'), own.baseImage);
        assert.deepEqual((await engine.listBackups({ pool: POOL, image: name })).map((l) => l.record.id), [own.record.id], name);
      }
      assert.equal(results.get(`${stem}%2E`)!.baseImage.includes('%252E'), true, '% itself is encoded');
      await assertRestores(t, results.get(`${stem}-диск-ü`)!.record, specOf(volumes, `${stem}-диск-ü`),
        results.get(`${stem}-диск-ü`)!.snapshot);

      const volumeId = uniqueName('v');
      for (const image of [`volume-${volumeId}`, 'a/b', 'a@b', '', 'x'.repeat(200)]) {
        await assert.rejects(keepAll.backup({ pool: POOL, image }), InvalidArgumentError, image);
      }
      await assert.rejects(keepAll.backup({ pool: POOL, image: `volume-${volumeId}` }),
        new RegExp(`back it up by its volume id \\(volumeId '${volumeId}'`));
      await assert.rejects(keepAll.backup({ pool: POOL, volumeId, image: 'vm-1' } as never), /give exactly one of volumeId .* and image .*, got both/);
      await assert.rejects(keepAll.backup({ pool: POOL } as never), /got neither/);
      await assert.rejects(keepAll.restore({ backup: results.get(stem)!.record, target: { image: { pool: POOL, name: `volume-${volumeId}` } } }),
        InvalidArgumentError, 'a Cinder volume is restored into as a volume');
      await assert.rejects(keepAll.backup({ pool: POOL, image: uniqueName('no-such-disk') }), NotFoundError);
    });

  test('a restore into the source image itself needs force; into a used image too', { timeout: 120_000 }, async (t) => {
    const name = await newImage(t, uniqueName('vm-101-disk-0'));
    const full = await keepAll.backup({ pool: POOL, image: name });
    await assert.rejects(keepAll.restore({ backup: full.record, target: { image: { pool: POOL, name } } }),
      /the target is the backup's own source volume/);
    const used = await newImage(t, uniqueName('vm-102-disk-0'));
    await assert.rejects(keepAll.restore({ backup: full.record, target: { image: { pool: POOL, name: used } } }), /already holds data/);
    const forced = await keepAll.restore({ backup: full.record, target: { image: { pool: POOL, name: used } }, force: true });
    assert.equal(forced.path, 'full');
    assert.equal(await rbdExportSha256('a', specOf(volumes, used)), await rbdExportSha256('a', `${specOf(volumes, name)}@${full.snapshot}`));
    assert.equal(await volumes.objectExists(restoreLockObjectName(imageSubject({ pool: POOL, image: used }, 'test'))), false,
      'the restore lock object goes with the restore');
  });

  test('prune and delete of a named image\'s backups; the last one takes the chain image and the lock object', { timeout: 180_000 }, async (t) => {
    const name = await newImage(t, uniqueName('vm-103-disk-0'));
    const subject = imageSubject({ pool: POOL, image: name }, 'test');
    const ids: string[] = [];
    const snapshots: string[] = [];
    for (let i = 0; i < 3; i++) {
      await writeRandom(volumes, name, [[i * MiB, 4096]]);
      const r = await keepAll.backup({ pool: POOL, image: name });
      ids.push(r.record.id);
      snapshots.push(r.snapshot);
    }
    const dry = await keepAll.prune({ pool: POOL, image: name }, 'latest2', { dryRun: true });
    assert.deepEqual(dry.removed.map((r) => r.backupId), [ids[0]]);
    await assert.rejects(keepAll.prune({ pool: POOL, image: name }, 'latest2', { sourcePool: 'backups' }),
      /the backups are of an image in pool rbd/);
    const pruned = await keepAll.prune({ pool: POOL, image: name }, 'latest2', { sourcePool: POOL });
    assert.deepEqual(pruned.removed.map((r) => r.backupId), [ids[0]]);
    assert.deepEqual((await snapshotsOf(volumes, name))!.filter((s) => s.startsWith('backup.')), snapshots.slice(1),
      'its source snapshot went with it');

    const listed = await engine.listBackups({ pool: POOL, image: name });
    const deleted = await keepAll.delete(listed[0].record, { sourcePool: POOL });
    assert.equal(deleted.removedSourceSnapshot, snapshots[1]);
    const last = await keepAll.delete(engine.importRecord(engine.exportRecord(listed[1].record)));
    assert.deepEqual(last.removedImages, [`${subject.key}.backup.${ids[0]}`]);
    assert.equal(await backups.objectExists(lockObjectName(subject)), false);
    assert.deepEqual(await engine.listBackups({ pool: POOL, image: name }), []);
    await assert.rejects(keepAll.delete(listed[1].record), NotFoundError);
  });

  test('gc (a dry run: the cluster is shared) finds a named image\'s orphan source snapshot by the image\'s own pool; the next backup removes it',
    { timeout: 120_000 }, async (t) => {
      const name = await newImage(t, uniqueName('vm-104-disk-0'));
      const full = await keepAll.backup({ pool: POOL, image: name });
      const image = await volumes.openImage(name);
      const orphan = `backup.orphan1.snap.${Date.now() / 1000}`;
      try {
        await image.createSnapshot(orphan);
      } finally {
        await image.close();
      }
      const dry = await keepAll.gc({ dryRun: true, sourcePool: POOL });
      assert.ok(dry.removedSnapshots.includes(`${POOL}/${name}@${orphan}`), JSON.stringify(dry.removedSnapshots));
      assert.ok(!dry.removedSnapshots.some((s) => s.endsWith(full.snapshot)), 'the backup\'s own snapshot stays');
      const elsewhere = await keepAll.gc({ dryRun: true, sourcePool: 'backups' });
      assert.ok(!elsewhere.removedSnapshots.some((s) => s.includes(name)), 'another pool is not the image\'s');
      const next = await keepAll.backup({ pool: POOL, image: name });
      assert.deepEqual((await snapshotsOf(volumes, name))!.filter((s) => s.startsWith('backup.')), [full.snapshot, next.snapshot]);
      assert.deepEqual((await engine.listBackups({ pool: POOL, image: name })).map((l) => l.record.id), [full.record.id, next.record.id]);
    });
});

