/**
 * Snapshots, protection, clones and flatten against a real cluster. Content
 * checks compare `rbd export` of image@snapshot with the data the test wrote.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  AlreadyExistsError, BusyError, CancelledError, CephError, InvalidArgumentError, NotFoundError, cloneDepth, flattenIfDeeperThan,
  type CreateImageOptions, type Image, type ParentInfo, type Pool,
} from '../../lib/index.js';
import { removeImageFully, scratch, type Scratch, writeRandom } from '../support/scratch.js';
import { assertFails } from '../support/checks.js';
import { closeTestPools, rbd, rbdExportSha256, sha256, testCluster, testPool, uniqueName } from '../support/clusters.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const POOL = 'rbd';
const HEADER_SNAPSHOT_REMOVE = fileURLToPath(new URL('../../../test/fixtures/header-snapshot-remove.py', import.meta.url));

let pool: Pool;

before(async () => {
  pool = await testPool('a', POOL);
});

after(closeTestPools);

interface RbdSnap {
  id: number;
  name: string;
  size: number;
  protected: string;
}

async function rbdSnapshots(spec: string): Promise<RbdSnap[]> {
  return JSON.parse(await rbd('a', ['snap', 'ls', '--format', 'json', spec])) as RbdSnap[];
}

describe('snapshot basics', () => {
  test('create, list, exists and remove', async (t) => {
    const s = scratch(t, pool);
    const size = 8 * MiB;
    const name = await s.createImage('snap', size);
    const image = await s.open(name);
    const spec = `${POOL}/${name}`;

    assert.deepEqual(await image.listSnapshots(), []);
    const before = Date.now();
    await image.createSnapshot('first');
    await image.createSnapshot('second');
    const afterCreate = Date.now();

    const list = await image.listSnapshots();
    assert.deepEqual(list.map((x) => x.name), ['first', 'second']);
    const tool = await rbdSnapshots(spec);
    assert.deepEqual(tool.map((x) => [x.name, x.id, x.size, x.protected]),
      list.map((x) => [x.name, Number(x.id), Number(x.size), 'false']));
    for (const snap of list) {
      assert.equal(typeof snap.id, 'bigint');
      assert.equal(snap.size, BigInt(size));
      assert.equal(snap.protected, false);
      assert.ok(snap.timestamp instanceof Date);
      // Timestamps come from the cluster's clock, which is this machine's; allow a few minutes.
      assert.ok(Math.abs(snap.timestamp.getTime() - before) < 5 * 60_000,
        `timestamp ${snap.timestamp.toISOString()} is near ${new Date(before).toISOString()}`);
      assert.ok(snap.timestamp.getTime() <= afterCreate + 5 * 60_000);
    }
    assert.ok(list[0]!.id < list[1]!.id, 'ids grow');
    assert.ok(list[0]!.timestamp.getTime() <= list[1]!.timestamp.getTime(), 'timestamps are in creation order');

    assert.equal(await image.snapshotExists('first'), true);
    assert.equal(await image.snapshotExists('second'), true);
    assert.equal(await image.snapshotExists('third'), false);

    await image.removeSnapshot('first');
    assert.deepEqual((await image.listSnapshots()).map((x) => x.name), ['second']);
    assert.equal(await image.snapshotExists('first'), false);
    assert.deepEqual((await rbdSnapshots(spec)).map((x) => x.name), ['second']);
  });

  test('creating an existing snapshot is AlreadyExistsError; removing a missing one NotFoundError', async (t) => {
    const s = scratch(t, pool);
    const name = await s.createImage('snap-err', 4 * MiB);
    const image = await s.open(name);
    await image.createSnapshot('taken');

    await assertFails(() => image.createSnapshot('taken'), AlreadyExistsError, {
      code: 'EEXIST', errno: 17, operation: 'createSnapshot', resource: `${POOL}/${name}@taken`,
      message: new RegExp(`^createSnapshot ${POOL}/${name}@taken: rbd_snap_create2 failed: already exists \\[EEXIST\\]$`),
    });
    await assertFails(() => image.removeSnapshot('missing'), NotFoundError, {
      code: 'ENOENT', errno: 2, operation: 'removeSnapshot', resource: `${POOL}/${name}@missing`,
      message: /: rbd_snap_remove failed: does not exist \[ENOENT\]$/,
    });
    for (const [operation, call] of [
      ['protectSnapshot', () => image.protectSnapshot('missing')],
      ['unprotectSnapshot', () => image.unprotectSnapshot('missing')],
      ['isSnapshotProtected', () => image.isSnapshotProtected('missing')],
    ] as Array<[string, () => Promise<unknown>]>) {
      await assertFails(call, NotFoundError, {
        code: 'ENOENT', errno: 2, operation, resource: `${POOL}/${name}@missing`, message: /does not exist \[ENOENT\]$/,
      });
    }
    await assertFails(() => pool.openImage(name, { snapshot: 'missing' }), NotFoundError, {
      code: 'ENOENT', errno: 2, operation: 'openImage', resource: `${POOL}/${name}@missing`,
      message: /does not exist \[ENOENT\]$/,
    });
    assert.deepEqual((await image.listSnapshots()).map((x) => x.name), ['taken']);
  });

  test('invalid snapshot names are InvalidArgumentError and create nothing', async (t) => {
    const s = scratch(t, pool);
    const name = await s.createImage('snap-name', 4 * MiB);
    const image = await s.open(name);
    const bad: Array<[value: unknown, detail: RegExp]> = [
      ['', /snapshot name must not be empty/],
      ['a/b', /snapshot name "a\/b" must not contain '\/' or '@'/],
      ['a@b', /snapshot name "a@b" must not contain '\/' or '@'/],
      ['x'.repeat(256), /snapshot name is longer than 255 bytes/],
      ['\u00e9'.repeat(128), /snapshot name is longer than 255 bytes/], // 256 bytes in UTF-8
      ['a\0b', /snapshot name must not contain NUL/],
      [42, /snapshot name must be a string, got number/],
      [undefined, /snapshot name must be a string, got undefined/],
    ];
    const operations: Array<[string, (n: never) => unknown]> = [
      ['createSnapshot', (n) => image.createSnapshot(n)],
      ['removeSnapshot', (n) => image.removeSnapshot(n)],
      ['protectSnapshot', (n) => image.protectSnapshot(n)],
      ['unprotectSnapshot', (n) => image.unprotectSnapshot(n)],
      ['isSnapshotProtected', (n) => image.isSnapshotProtected(n)],
      ['snapshotExists', (n) => image.snapshotExists(n)],
    ];
    for (const [operation, call] of operations) {
      for (const [value, detail] of bad) {
        await assertFails(() => call(value as never), InvalidArgumentError, {
          code: 'EINVAL', errno: 22, operation, resource: `${POOL}/${name}@${String(value)}`,
          message: new RegExp(`: ${detail.source} \\[EINVAL\\]$`),
        });
      }
    }
    // The longest allowed name works.
    await image.createSnapshot('x'.repeat(255));
    assert.deepEqual((await image.listSnapshots()).map((x) => x.name), ['x'.repeat(255)]);
    assert.deepEqual((await rbdSnapshots(`${POOL}/${name}`)).map((x) => x.name), ['x'.repeat(255)]);
  });

  test('headerHasSnapshot reads the header: a snapshot removed behind the handle\'s back is gone there', async (t) => {
    const s = scratch(t, pool);
    const name = await s.createImage('header-snap', 4 * MiB);
    const image = await s.open(name);
    await image.createSnapshot('kept');
    await image.createSnapshot('dropped');
    assert.equal(await image.headerHasSnapshot('kept'), true);
    assert.equal(await image.headerHasSnapshot('dropped'), true);
    assert.equal(await image.headerHasSnapshot('never'), false);
    const dropped = (await image.listSnapshots()).find((snap) => snap.name === 'dropped');
    assert.ok(dropped);
    const { info } = await testCluster('a');
    await promisify(execFile)('/usr/bin/python3',
      [HEADER_SNAPSHOT_REMOVE, info.conf, info.keyring, POOL, name, String(dropped.id)], { timeout: 60_000 });
    // The handle was not told: its memory still has the snapshot.
    assert.equal(await image.snapshotExists('dropped'), true);
    assert.equal(await image.headerHasSnapshot('dropped'), false);
    assert.equal(await image.headerHasSnapshot('kept'), true);
    await assert.rejects(image.headerHasSnapshot('bad/name'), InvalidArgumentError);
  });

  test('protect, isSnapshotProtected and unprotect; a protected snapshot cannot be removed', async (t) => {
    const s = scratch(t, pool);
    const name = await s.createImage('protect', 4 * MiB);
    const image = await s.open(name);
    const resource = `${POOL}/${name}@p`;
    await image.createSnapshot('p');
    assert.equal(await image.isSnapshotProtected('p'), false);

    await image.protectSnapshot('p');
    assert.equal(await image.isSnapshotProtected('p'), true);
    assert.equal((await image.listSnapshots())[0]!.protected, true);
    assert.equal((await rbdSnapshots(`${POOL}/${name}`))[0]!.protected, 'true');

    // librbd answers EBUSY for protecting twice.
    await assertFails(() => image.protectSnapshot('p'), BusyError, {
      code: 'EBUSY', errno: 16, operation: 'protectSnapshot', resource, message: /is busy \[EBUSY\]$/,
    });
    await assertFails(() => image.removeSnapshot('p'), BusyError, {
      code: 'EBUSY', errno: 16, operation: 'removeSnapshot', resource,
      message: new RegExp(`^removeSnapshot ${resource}: rbd_snap_remove failed: is busy \\[EBUSY\\]$`),
    });
    assert.equal(await image.snapshotExists('p'), true);

    await image.unprotectSnapshot('p');
    assert.equal(await image.isSnapshotProtected('p'), false);
    assert.equal((await image.listSnapshots())[0]!.protected, false);
    // librbd answers EINVAL for unprotecting a snapshot that is not protected.
    await assertFails(() => image.unprotectSnapshot('p'), InvalidArgumentError, {
      code: 'EINVAL', errno: 22, operation: 'unprotectSnapshot', resource, message: /invalid argument \[EINVAL\]$/,
    });
    await image.removeSnapshot('p');
    assert.equal(await image.snapshotExists('p'), false);
  });

  test('snapshot sizes follow resizes', async (t) => {
    const s = scratch(t, pool);
    const name = await s.createImage('snap-size', 8 * MiB);
    const image = await s.open(name);
    await image.createSnapshot('at8');
    await image.resize(12 * MiB);
    await image.createSnapshot('at12');
    await image.resize(4 * MiB + 4096);
    await image.createSnapshot('at4');

    const sizes = (await image.listSnapshots()).map((x) => [x.name, x.size]);
    assert.deepEqual(sizes, [['at8', BigInt(8 * MiB)], ['at12', BigInt(12 * MiB)], ['at4', BigInt(4 * MiB + 4096)]]);
    assert.deepEqual((await rbdSnapshots(`${POOL}/${name}`)).map((x) => x.size), [8 * MiB, 12 * MiB, 4 * MiB + 4096]);
    const at12 = await s.open(name, { snapshot: 'at12' });
    assert.equal((await at12.stat()).size, BigInt(12 * MiB));
    assert.equal((await image.stat()).size, BigInt(4 * MiB + 4096));
  });

  test('a snapshot keeps the content of its time through later writes, zeroing and discards', async (t) => {
    const s = scratch(t, pool);
    const size = 12 * MiB;
    const name = await s.createImage('snap-data', size);
    const image = await s.open(name);
    const model = Buffer.alloc(size);
    await writeRandom(image, model, 0, 5 * MiB + 333);
    await writeRandom(image, model, 9 * MiB - 10, 20);
    await image.createSnapshot('s1');
    const atS1 = Buffer.from(model);

    await writeRandom(image, model, 1000, 2 * MiB);
    await image.writeZeroes(4 * MiB - 100, 200);
    model.fill(0, 4 * MiB - 100, 4 * MiB + 100);
    await image.discard(8 * MiB, 4 * MiB);
    model.fill(0, 8 * MiB, 12 * MiB);
    await image.createSnapshot('s2');
    const atS2 = Buffer.from(model);
    await writeRandom(image, model, 0, size);

    assert.equal(await rbdExportSha256('a', `${POOL}/${name}@s1`), sha256(atS1));
    assert.equal(await rbdExportSha256('a', `${POOL}/${name}@s2`), sha256(atS2));
    const s1 = await s.open(name, { snapshot: 's1' });
    assert.deepEqual(await s1.read(0, size), atS1);
    await image.flush();
    assert.equal(await rbdExportSha256('a', `${POOL}/${name}`), sha256(model));
  });
});

describe('clones and flatten', () => {
  /** A parent image with random data and a protected snapshot of it. */
  async function parentWithSnapshot(s: Scratch, size: number, options: CreateImageOptions = {}):
  Promise<{ name: string; image: Image; model: Buffer; snapshotId: bigint }> {
    const name = await s.createImage('parent', size, options);
    const image = await s.open(name);
    const model = Buffer.alloc(size);
    await writeRandom(image, model, 0, 3 * MiB);
    await writeRandom(image, model, size - 100 * KiB, 100 * KiB);
    await image.createSnapshot('base');
    await image.protectSnapshot('base');
    const snapshotId = (await image.listSnapshots())[0]!.id;
    // Later writes to the parent's head must not reach the clone.
    await writeRandom(image, Buffer.alloc(size), 0, MiB);
    return { name, image, model, snapshotId };
  }

  test('cloneDepth counts the parents; flattenIfDeeperThan flattens only a chain deeper than the limit', { timeout: 120_000 }, async (t) => {
    const s = scratch(t, pool);
    const size = 8 * MiB;
    const parent = await parentWithSnapshot(s, size);
    const first = await s.clone(parent.name, 'base', 'depth1');
    const firstImage = await s.open(first);
    await firstImage.createSnapshot('s');
    await firstImage.protectSnapshot('s');
    const second = await s.clone(first, 's', 'depth2');
    const secondImage = await s.open(second);
    await secondImage.createSnapshot('s');
    await secondImage.protectSnapshot('s');
    const third = await s.clone(second, 's', 'depth3');
    const thirdImage = await s.open(third);
    assert.deepEqual(
      await Promise.all([parent.image, firstImage, secondImage, thirdImage].map((image) => cloneDepth(image))), [0, 1, 2, 3]);

    assert.equal(await flattenIfDeeperThan(secondImage, 2), false);
    assert.equal(await cloneDepth(secondImage), 2);
    assert.equal(await flattenIfDeeperThan(thirdImage, 2), true);
    assert.equal(await cloneDepth(thirdImage), 0);
    assert.equal(await rbdExportSha256('a', `${POOL}/${third}`), sha256(parent.model));
    await assert.rejects(flattenIfDeeperThan(thirdImage, -1), InvalidArgumentError);
  });

  test('a clone reports its parent, reads the parent snapshot and blocks unprotect', async (t) => {
    const s = scratch(t, pool);
    const size = 8 * MiB;
    const parent = await parentWithSnapshot(s, size);
    const childName = await s.clone(parent.name, 'base', 'child');
    const child = await s.open(childName);
    const info = await rbd('a', ['info', '--format', 'json', `${POOL}/${parent.name}`]);
    const parentId = (JSON.parse(info) as { id: string }).id;

    const expected: ParentInfo = {
      pool: POOL, namespace: '', image: parent.name, imageId: parentId,
      snapshot: 'base', snapshotId: parent.snapshotId, trash: false,
    };
    assert.deepEqual(await child.parent(), expected);
    assert.equal(await parent.image.parent(), null);
    assert.equal((await child.stat()).size, BigInt(size));

    assert.equal(await rbdExportSha256('a', `${POOL}/${childName}`), sha256(parent.model));
    assert.deepEqual(await child.read(0, size), parent.model);

    await assertFails(() => parent.image.unprotectSnapshot('base'), BusyError, {
      code: 'EBUSY', errno: 16, operation: 'unprotectSnapshot', resource: `${POOL}/${parent.name}@base`,
      message: /: rbd_snap_unprotect failed: is busy \[EBUSY\]$/,
    });
    assert.equal(await parent.image.isSnapshotProtected('base'), true);

    // Writing to the clone leaves the parent snapshot alone.
    const childModel = Buffer.from(parent.model);
    await writeRandom(child, childModel, 2 * MiB, 64 * KiB);
    await child.flush();
    assert.equal(await rbdExportSha256('a', `${POOL}/${childName}`), sha256(childModel));
    assert.equal(await rbdExportSha256('a', `${POOL}/${parent.name}@base`), sha256(parent.model));
  });

  test('a snapshot removed while a clone of it lives goes to the trash, where listSnapshots does not see it', async (t) => {
    const s = scratch(t, pool);
    const name = await s.createImage('trash-parent', 8 * MiB);
    const image = await s.open(name);
    await image.createSnapshot('kept');
    await image.createSnapshot('base');
    // Clone format 2 needs no protection, and moves a removed snapshot with clones into the trash namespace.
    const child = uniqueName('trash-child');
    await rbd('a', ['clone', '--rbd-default-clone-format', '2', `${POOL}/${name}@base`, `${POOL}/${child}`]);
    s.defer(() => removeImageFully(pool, child));
    await image.removeSnapshot('base');
    const all = JSON.parse(await rbd('a', ['snap', 'ls', '--all', '--format', 'json', `${POOL}/${name}`])) as
      Array<{ name: string; namespace: { type: string; original_name?: string } }>;
    assert.ok(all.some((x) => x.namespace.type === 'trash' && x.namespace.original_name === 'base'), JSON.stringify(all));
    assert.deepEqual((await image.listSnapshots()).map((x) => x.name), ['kept']);

    const trashed = await image.listTrashedSnapshots();
    assert.equal(trashed.length, 1);
    assert.equal(trashed[0]!.originalName, 'base');
    assert.equal(typeof trashed[0]!.id, 'bigint');
    assert.ok(all.some((x) => x.namespace.type === 'trash' && x.name === trashed[0]!.name));
    // Its clone still needs it: refused, and kept.
    await assert.rejects(image.removeSnapshotById(trashed[0]!.id), CephError);
    assert.equal((await image.listTrashedSnapshots()).length, 1);
    // By id, a user's snapshot goes like by name.
    const [kept] = await image.listSnapshots();
    await image.removeSnapshotById(kept!.id);
    assert.deepEqual(await image.listSnapshots(), []);
  });

  test('flatten copies the parent data in, detaches the clone and reports progress', { timeout: 120_000 }, async (t) => {
    const s = scratch(t, pool);
    const size = 16 * MiB;
    const parent = await parentWithSnapshot(s, size);
    const childName = await s.clone(parent.name, 'base', 'flat');
    const child = await s.open(childName);
    const childModel = Buffer.from(parent.model);
    await writeRandom(child, childModel, 5 * MiB, 4096);

    const progress: Array<[number, number]> = [];
    const result = await child.flatten({ onProgress: (done, total) => { progress.push([done, total]); } });
    assert.equal(result, undefined);
    assert.equal(await child.parent(), null);
    assert.ok(progress.length > 0, 'onProgress was called');
    const objects = Number((await child.stat()).objectCount);
    for (const [done, total] of progress) {
      assert.equal(total, objects, 'total is the number of objects to flatten');
      assert.ok(Number.isInteger(done) && done >= 0 && done <= total, `done ${done} within 0..${total}`);
    }

    // The parent snapshot is no longer needed: unprotect and remove it, the clone keeps its bytes.
    await parent.image.unprotectSnapshot('base');
    await parent.image.removeSnapshot('base');
    await child.flush();
    assert.equal(await rbdExportSha256('a', `${POOL}/${childName}`), sha256(childModel));
    assert.deepEqual(await child.read(0, size), childModel);
    // Flattening an image without a parent is refused by librbd.
    await assertFails(() => child.flatten(), InvalidArgumentError, {
      code: 'EINVAL', errno: 22, operation: 'flatten', resource: `${POOL}/${childName}`,
      message: /rbd_flatten_with_progress failed: invalid argument \[EINVAL\]$/,
    });
  });

  test('flatten with an already-aborted signal is CancelledError and changes nothing', async (t) => {
    const s = scratch(t, pool);
    const size = 8 * MiB;
    const parent = await parentWithSnapshot(s, size);
    const childName = await s.clone(parent.name, 'base', 'flat-abort');
    const child = await s.open(childName);
    const before = await child.parent();
    assert.notEqual(before, null);

    const controller = new AbortController();
    controller.abort(new Error('stopped by the test'));
    let calls = 0;
    await assertFails(() => child.flatten({ signal: controller.signal, onProgress: () => { calls++; } }), CancelledError, {
      code: 'ECANCELED', errno: 125, operation: 'flatten', resource: `${POOL}/${childName}`,
      message: /cancelled \(stopped by the test\) \[ECANCELED\]$/,
    });
    assert.equal(calls, 0);
    assert.deepEqual(await child.parent(), before);
    const own: bigint[] = [];
    for await (const batch of child.diff({ includeParent: false })) own.push(...batch.map((x) => x.length));
    assert.deepEqual(own, [], 'nothing was copied into the clone');
    assert.equal(await rbdExportSha256('a', `${POOL}/${childName}`), sha256(parent.model));
  });

  test('a flatten aborted mid-way is CancelledError and the clone keeps its parent and bytes',
    { timeout: 300_000 }, async (t) => {
      const s = scratch(t, pool);
      const size = 256 * MiB;
      const name = await s.createImage('big-parent', size, { order: 22 });
      const parentImage = await s.open(name);
      const hash = createHash('sha256');
      for (let offset = 0; offset < size; offset += 16 * MiB) {
        const data = randomBytes(16 * MiB);
        await parentImage.write(data, offset);
        hash.update(data);
      }
      const parentSha = hash.digest('hex');
      await parentImage.createSnapshot('base');
      await parentImage.protectSnapshot('base');
      assert.equal(await rbdExportSha256('a', `${POOL}/${name}@base`), parentSha);
      const childName = await s.clone(name, 'base', 'flat-mid');
      const child = await s.open(childName);
      const parentBefore = await child.parent();
      const objects = Number((await child.stat()).objectCount);
      assert.equal(objects, 64);

      const controller = new AbortController();
      const progress: Array<[number, number]> = [];
      await assertFails(() => child.flatten({
        signal: controller.signal,
        onProgress: (done, total) => {
          progress.push([done, total]);
          controller.abort(new Error('first progress'));
        },
      }), CancelledError, {
        code: 'ECANCELED', errno: 125, operation: 'flatten', resource: `${POOL}/${childName}`,
        message: /cancelled \(first progress\) \[ECANCELED\]$/,
      });
      assert.ok(progress.length > 0);
      assert.deepEqual(await child.parent(), parentBefore, 'the clone still has its parent');

      // Some objects were copied up before librbd stopped, but not all of them.
      let ownBytes = 0n;
      for await (const batch of child.diff({ includeParent: false })) {
        for (const extent of batch) ownBytes += extent.length;
      }
      assert.ok(ownBytes < BigInt(size),
        `librbd did not stop the flatten: the clone holds ${ownBytes} of ${size} bytes itself`);
      assert.equal(await rbdExportSha256('a', `${POOL}/${childName}`), parentSha,
        'the clone reads the parent bytes, copied or not');

      // A later flatten picks up where it stopped.
      await child.flatten();
      assert.equal(await child.parent(), null);
      assert.equal(await rbdExportSha256('a', `${POOL}/${childName}`), parentSha);
    });
});
