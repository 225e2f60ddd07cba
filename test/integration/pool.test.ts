/**
 * Pool: images (create with options, list, remove, open at head or at a
 * snapshot), namespaces, whole-object I/O, clones across pools, and what a
 * least-privilege user may and may not do. Runs against cluster 'a'.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { inspect, promisify } from 'node:util';
import {
  AlreadyExistsError, BusyError, CephError, Cluster, HasSnapshotsError, InvalidArgumentError,
  NotFoundError, PermissionError, type Image, type Pool,
} from '../../lib/index.js';
import { connect, rbd, rbdExportSha256, sha256, testCluster, uniqueName } from '../support/clusters.js';

const run = promisify(execFile);
const MiB = 1 << 20;

let cluster: Cluster;
let rbdPool: Pool;
let backups: Pool;
/** Clean-up steps, run last-in first-out after all tests (each may fail harmlessly). */
const cleanups: Array<() => Promise<unknown>> = [];

function removeLater(pool: Pool, image: string): void {
  cleanups.push(() => pool.removeImage(image));
}

async function withImage<T>(pool: Pool, name: string, use: (image: Image) => Promise<T>,
  options?: { snapshot?: string; readOnly?: boolean }): Promise<T> {
  const image = await pool.openImage(name, options);
  try {
    return await use(image);
  } finally {
    await image.close();
  }
}

/** A fresh image of `size` bytes holding `writes`; returns the whole expected content. */
async function imageWith(pool: Pool, name: string, size: number,
  writes: Array<[offset: number, data: Buffer]>): Promise<Buffer> {
  await pool.createImage(name, size);
  removeLater(pool, name);
  const expected = Buffer.alloc(size);
  await withImage(pool, name, async (image) => {
    for (const [offset, data] of writes) {
      await image.write(data, offset);
      data.copy(expected, offset);
    }
  });
  return expected;
}

function isError<T extends CephError>(Class: new (...args: never[]) => T, fields: Partial<Record<'code' | 'operation' | 'resource', string>>,
  message?: RegExp | string): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof Class, `expected ${Class.name}, got ${inspect(e)}`);
    for (const [key, value] of Object.entries(fields)) {
      assert.equal((e as unknown as Record<string, unknown>)[key], value, key);
    }
    if (typeof message === 'string') assert.equal(e.message, message);
    else if (message) assert.match(e.message, message);
    return true;
  };
}

before(async () => {
  cluster = await connect('a');
  rbdPool = await cluster.pool('rbd');
  backups = await cluster.pool('backups');
});

after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  await rbdPool.close();
  await backups.close();
  await cluster.close();
});

describe('images', () => {
  test('createImage applies features, order and striping; stat and `rbd info` show them', { timeout: 120_000 }, async () => {
    const name = uniqueName('opts');
    const size = 10 * MiB + 4096;
    await rbdPool.createImage(name, BigInt(size), {
      features: ['layering', 'striping', 'exclusive-lock', 'object-map', 'fast-diff'],
      order: 20, stripeUnit: 64 * 1024, stripeCount: 4n,
    });
    removeLater(rbdPool, name);
    const info = JSON.parse(await rbd('a', ['info', `rbd/${name}`, '--format', 'json'])) as Record<string, unknown>;
    await withImage(rbdPool, name, async (image) => {
      const stat = await image.stat();
      assert.equal(stat.size, BigInt(size));
      assert.equal(stat.order, 20);
      assert.equal(stat.objectSize, BigInt(MiB));
      assert.equal(stat.stripeUnit, 65536n);
      assert.equal(stat.stripeCount, 4n);
      assert.deepEqual(stat.features, ['layering', 'striping', 'exclusive-lock', 'object-map', 'fast-diff']);
      assert.equal(stat.featureBits, 1n | 2n | 4n | 8n | 16n);
      // The rbd tool sees the same image.
      assert.equal(info.size, size);
      assert.equal(info.order, 20);
      assert.equal(info.object_size, MiB);
      assert.equal(info.stripe_unit, 65536);
      assert.equal(info.stripe_count, 4);
      assert.deepEqual(info.features, stat.features);
      assert.equal(BigInt(info.objects as number), stat.objectCount);
      assert.equal(info.block_name_prefix, stat.blockNamePrefix);
      assert.match(stat.blockNamePrefix, /^rbd_data\.[0-9a-f]+$/);

      // Data written across stripe units comes back, and rbd agrees on every byte.
      const expected = Buffer.alloc(size);
      const data = randomBytes(3 * MiB + 777);
      await image.write(data, 123_456);
      data.copy(expected, 123_456);
      const tail = randomBytes(4096);
      await image.write(tail, size - 4096);
      tail.copy(expected, size - 4096);
      assert.equal(sha256(await image.read(123_456, data.length)), sha256(data));
      assert.equal(sha256(await image.read(0, size)), sha256(expected));
      await image.createSnapshot('s');
      assert.equal(await rbdExportSha256('a', `rbd/${name}@s`), sha256(expected));
      await image.removeSnapshot('s');
    });
  });

  test('createImage without options uses librbd defaults; features [] means none', async () => {
    const plain = uniqueName('defaults');
    await rbdPool.createImage(plain, 8 * MiB);
    removeLater(rbdPool, plain);
    await withImage(rbdPool, plain, async (image) => {
      const stat = await image.stat();
      assert.equal(stat.size, 8n * BigInt(MiB));
      assert.equal(stat.order, 22);
      assert.equal(stat.objectSize, 4n * BigInt(MiB));
      assert.equal(stat.objectCount, 2n);
      assert.equal(stat.stripeUnit, 4n * BigInt(MiB));
      assert.equal(stat.stripeCount, 1n);
      assert.deepEqual(stat.features, ['layering', 'exclusive-lock', 'object-map', 'fast-diff', 'deep-flatten']);
    });
    const bare = uniqueName('nofeatures');
    // Zero stripe settings mean "the default", not a zero-sized stripe.
    await rbdPool.createImage(bare, MiB, { features: [], stripeUnit: 0, stripeCount: 0n });
    removeLater(rbdPool, bare);
    await withImage(rbdPool, bare, async (image) => {
      const stat = await image.stat();
      assert.deepEqual(stat.features, []);
      assert.equal(stat.featureBits, 0n);
      assert.equal(stat.stripeCount, 1n);
      assert.equal(stat.stripeUnit, stat.objectSize);
    });
  });

  test('one stripe setting alone takes the documented default for the other',
    async () => {
      const unitOnly = uniqueName('unit-only');
      await rbdPool.createImage(unitOnly, 4 * MiB, { stripeUnit: 65536 });
      removeLater(rbdPool, unitOnly);
      await withImage(rbdPool, unitOnly, async (image) => {
        const stat = await image.stat();
        assert.equal(stat.stripeUnit, 65536n);
        assert.equal(stat.stripeCount, 1n);
      });
      const countOnly = uniqueName('count-only');
      await rbdPool.createImage(countOnly, 16 * MiB, { stripeCount: 4 });
      removeLater(rbdPool, countOnly);
      await withImage(rbdPool, countOnly, async (image) => {
        const stat = await image.stat();
        assert.equal(stat.stripeUnit, stat.objectSize);
        assert.equal(stat.stripeCount, 4n);
      });
    });

  test('invalid create options are refused and create nothing', async () => {
    const name = uniqueName('badopts');
    const cases: Array<[string, () => Promise<void>, RegExp]> = [
      ['order 11', () => rbdPool.createImage(name, MiB, { order: 11 }), /order must be an integer in 12\.\.25, got 11/],
      // librbd answers order 26 with EDOM.
      ['order 26', () => rbdPool.createImage(name, MiB, { order: 26 }), /order must be an integer in 12\.\.25/],
      ['order 22.5', () => rbdPool.createImage(name, MiB, { order: 22.5 }), /order must be an integer/],
      ['unknown feature', () => rbdPool.createImage(name, MiB, { features: ['layering', 'bogus' as 'layering'] }),
        /unknown image feature "bogus"/],
      ['features not an array', () => rbdPool.createImage(name, MiB, { features: 'layering' as unknown as [] }),
        /features must be an array of feature names/],
      ['negative size', () => rbdPool.createImage(name, -1), /size must be a non-negative integer, got -1/],
      ['fractional size', () => rbdPool.createImage(name, 1.5), /size must be a non-negative integer/],
      ['string size', () => rbdPool.createImage(name, '1024' as unknown as number), /size must be a number or bigint/],
      ['size over 2^64-1', () => rbdPool.createImage(name, 1n << 64n), /size 18446744073709551616 is outside/],
      ['negative stripe unit', () => rbdPool.createImage(name, MiB, { stripeUnit: -65536 }), /stripeUnit must be/],
      // The layout's 32-bit count became 0 and librbd divided by it (SIGFPE).
      ['stripe count 2^32', () => rbdPool.createImage(name, MiB, { stripeUnit: 4096, stripeCount: 1n << 32n }),
        /stripeCount 4294967296 is larger than 2\^32-1/],
      // librbd's object count wrapped to 0 and the first write aborted the process.
      ['size 2^64-1', () => rbdPool.createImage(name, (1n << 64n) - 1n), /size 18446744073709551615 is larger than/],
      ['one object over the cap', () => rbdPool.createImage(name, 256_000_000n * 4n * BigInt(MiB) + 1n),
        /is larger than 1073741824000000, the most 256000000 objects of 4194304 bytes hold/],
    ];
    for (const [label, call, message] of cases) {
      await assert.rejects(async () => call(),
        isError(InvalidArgumentError, { code: 'EINVAL', operation: 'createImage', resource: `rbd/${name}` }, message),
        label);
    }
    for (const bad of ['', 'a/b', 'vol@snap', '../x', 'a\0b', 'x'.repeat(256), 7]) {
      await assert.rejects(async () => rbdPool.createImage(bad as string, MiB),
        isError(InvalidArgumentError, { code: 'EINVAL', operation: 'createImage' }, /image name/),
        `name ${inspect(bad)}`);
    }
    assert.equal(await rbdPool.imageExists(name), false);
    assert.ok(!(await rbdPool.listImages()).some((n) => n === name || n === 'a' || n === 'vol' || n.startsWith('x')));
  });

  test('listImages and imageExists see created images and stop seeing removed ones', async () => {
    const first = uniqueName('list');
    const second = uniqueName('list');
    await rbdPool.createImage(first, MiB);
    removeLater(rbdPool, first);
    await rbdPool.createImage(second, 2 * MiB);
    removeLater(rbdPool, second);
    const names = await rbdPool.listImages();
    assert.ok(names.includes(first) && names.includes(second), names.join(','));
    assert.equal(new Set(names).size, names.length, 'listed twice');
    assert.equal(await rbdPool.imageExists(first), true);
    assert.equal(await rbdPool.imageExists(second), true);
    assert.equal(await rbdPool.imageExists(uniqueName('never')), false);
    // Pools are separate.
    assert.ok(!(await backups.listImages()).includes(first));
    assert.equal(await backups.imageExists(first), false);
    // The rbd tool lists the same.
    assert.ok((await rbd('a', ['ls', 'rbd'])).split('\n').includes(first));

    await rbdPool.removeImage(first);
    assert.ok(!(await rbdPool.listImages()).includes(first));
    assert.equal(await rbdPool.imageExists(first), false);
    assert.equal(await rbdPool.imageExists(second), true);
    await assert.rejects(rbdPool.imageExists('a/b'), isError(InvalidArgumentError, { operation: 'imageExists' }));
  });

  test('creating an image that exists is an AlreadyExistsError and leaves it alone', async () => {
    const name = uniqueName('twice');
    const data = randomBytes(64 * 1024);
    const expected = await imageWith(rbdPool, name, 2 * MiB, [[0, data]]);
    await assert.rejects(rbdPool.createImage(name, 8 * MiB),
      isError(AlreadyExistsError, { code: 'EEXIST', operation: 'createImage', resource: `rbd/${name}` },
        `createImage rbd/${name}: rbd_create4 failed: already exists [EEXIST]`));
    await withImage(rbdPool, name, async (image) => {
      assert.equal((await image.stat()).size, BigInt(2 * MiB));
      assert.equal(sha256(await image.read(0, 2 * MiB)), sha256(expected));
    });
  });

  test('removing an image that does not exist is a NotFoundError', async () => {
    const name = uniqueName('missing');
    await assert.rejects(rbdPool.removeImage(name),
      isError(NotFoundError, { code: 'ENOENT', operation: 'removeImage', resource: `rbd/${name}` },
        `removeImage rbd/${name}: rbd_remove failed: does not exist [ENOENT]`));
  });

  test('removing an image with snapshots is a HasSnapshotsError and keeps image and data', async () => {
    const name = uniqueName('snapped');
    const data = randomBytes(256 * 1024);
    const expected = await imageWith(rbdPool, name, 4 * MiB, [[MiB, data]]);
    await withImage(rbdPool, name, (image) => image.createSnapshot('keep'));
    cleanups.push(() => withImage(rbdPool, name, (image) => image.removeSnapshot('keep')));
    await assert.rejects(rbdPool.removeImage(name),
      isError(HasSnapshotsError, { code: 'ENOTEMPTY', operation: 'removeImage', resource: `rbd/${name}` },
        `removeImage rbd/${name}: image has snapshots [ENOTEMPTY]`));
    assert.equal(await rbdPool.imageExists(name), true);
    assert.equal(await rbdExportSha256('a', `rbd/${name}@keep`), sha256(expected));
    await withImage(rbdPool, name, (image) => image.removeSnapshot('keep'));
    await rbdPool.removeImage(name);
    assert.equal(await rbdPool.imageExists(name), false);
  });

  test('removing an image that is open is a BusyError', async () => {
    const name = uniqueName('open');
    await rbdPool.createImage(name, MiB);
    removeLater(rbdPool, name);
    await withImage(rbdPool, name, async () => {
      await assert.rejects(rbdPool.removeImage(name),
        isError(BusyError, { code: 'EBUSY', operation: 'removeImage', resource: `rbd/${name}` },
          /image is still open or has watchers \[EBUSY\]$/));
    });
    assert.equal(await rbdPool.imageExists(name), true);
  });

  test('opening an image or snapshot that does not exist is a NotFoundError', async () => {
    const missing = uniqueName('missing');
    await assert.rejects(rbdPool.openImage(missing),
      isError(NotFoundError, { code: 'ENOENT', operation: 'openImage', resource: `rbd/${missing}` },
        `openImage rbd/${missing}: image or snapshot does not exist [ENOENT]`));
    await assert.rejects(rbdPool.openImage(missing, { readOnly: true }),
      isError(NotFoundError, { resource: `rbd/${missing}` }));
    const name = uniqueName('nosnap');
    await rbdPool.createImage(name, MiB);
    removeLater(rbdPool, name);
    await assert.rejects(rbdPool.openImage(name, { snapshot: 'nope' }),
      isError(NotFoundError, { code: 'ENOENT', operation: 'openImage', resource: `rbd/${name}@nope` },
        /image or snapshot does not exist/));
    for (const snapshot of ['', 'a@b', 'a/b', 'x\0']) {
      await assert.rejects(rbdPool.openImage(name, { snapshot }),
        isError(InvalidArgumentError, { operation: 'openImage' }, /snapshot name/), `snapshot ${inspect(snapshot)}`);
    }
  });

  test('an image opened at a snapshot reads the snapshot and refuses writes', { timeout: 120_000 }, async () => {
    const name = uniqueName('atsnap');
    const size = 8 * MiB;
    const before = randomBytes(MiB + 513);
    const atSnapshot = await imageWith(rbdPool, name, size, [[2 * MiB - 100, before]]);
    await withImage(rbdPool, name, async (image) => {
      await image.createSnapshot('s1');
      // Overwrite the same range (and more) at the head after the snapshot.
      await image.write(randomBytes(2 * MiB), 2 * MiB - 200);
    });
    cleanups.push(() => withImage(rbdPool, name, (image) => image.removeSnapshot('s1')));

    const snap = await rbdPool.openImage(name, { snapshot: 's1' });
    try {
      assert.equal(snap.snapshot, 's1');
      assert.equal(snap.spec, `rbd/${name}@s1`);
      assert.equal(sha256(await snap.read(2 * MiB - 100, before.length)), sha256(before));
      assert.equal(sha256(await snap.read(0, size)), sha256(atSnapshot));
      await assert.rejects(snap.write(Buffer.alloc(512, 1), 0),
        (e) => e instanceof CephError && e.code === 'EROFS' && e.operation === 'write' &&
          e.resource === `rbd/${name}@s1`);
    } finally {
      await snap.close();
    }
    assert.equal(await rbdExportSha256('a', `rbd/${name}@s1`), sha256(atSnapshot));
    // The snapshot still reads the old bytes after the failed write.
    await withImage(rbdPool, name, async (image) => {
      assert.equal(sha256(await image.read(0, size)), sha256(atSnapshot));
    }, { snapshot: 's1' });
    // The head has the new bytes, not the snapshot's.
    await withImage(rbdPool, name, async (image) => {
      assert.notEqual(sha256(await image.read(0, size)), sha256(atSnapshot));
    });
  });

  test('an image opened read-only refuses writes and keeps its bytes', async () => {
    const name = uniqueName('ro');
    const data = randomBytes(8192);
    const expected = await imageWith(rbdPool, name, MiB, [[4096, data]]);
    await withImage(rbdPool, name, async (image) => {
      assert.equal(image.snapshot, undefined);
      await assert.rejects(image.write(randomBytes(4096), 4096),
        (e) => e instanceof CephError && e.code === 'EROFS' && e.resource === `rbd/${name}`);
      assert.equal(sha256(await image.read(0, MiB)), sha256(expected));
    }, { readOnly: true });
  });

  test('images in a namespace are separate from the pool default namespace', { timeout: 120_000 }, async () => {
    const ns = uniqueName('ns');
    await rbd('a', ['namespace', 'create', '--pool', 'rbd', '--namespace', ns]);
    cleanups.push(() => rbd('a', ['namespace', 'remove', '--pool', 'rbd', '--namespace', ns]));
    const inNs = await cluster.pool('rbd', ns);
    cleanups.push(() => inNs.close());
    assert.equal(inNs.name, 'rbd');
    assert.equal(inNs.namespace, ns);
    assert.equal(inNs.spec, `rbd/${ns}`);

    const name = uniqueName('nsimg');
    const data = randomBytes(100_000);
    const expected = await imageWith(inNs, name, 2 * MiB, [[12_345, data]]);
    assert.deepEqual(await inNs.listImages(), [name]);
    assert.equal(await inNs.imageExists(name), true);
    assert.ok(!(await rbdPool.listImages()).includes(name));
    assert.equal(await rbdPool.imageExists(name), false);
    await assert.rejects(rbdPool.openImage(name), isError(NotFoundError, { resource: `rbd/${name}` }));
    assert.equal((await rbd('a', ['ls', '--pool', 'rbd', '--namespace', ns])).trim(), name);
    await withImage(inNs, name, async (image) => {
      assert.equal(image.spec, `rbd/${ns}/${name}`);
      await image.createSnapshot('s');
    });
    assert.equal(await rbdExportSha256('a', `rbd/${ns}/${name}@s`), sha256(expected));
    await withImage(inNs, name, (image) => image.removeSnapshot('s'));

    // Objects too live in the namespace.
    const object = uniqueName('nsobj');
    await inNs.writeObject(object, data);
    cleanups.push(() => inNs.removeObject(object));
    assert.equal(await inNs.objectExists(object), true);
    assert.equal(await rbdPool.objectExists(object), false);
    assert.deepEqual(await inNs.readObject(object), data);

    // Errors name the namespace.
    const missing = uniqueName('missing');
    await assert.rejects(inNs.openImage(missing),
      isError(NotFoundError, { resource: `rbd/${ns}/${missing}` }));
    await assert.rejects(inNs.createImage(name, MiB),
      isError(AlreadyExistsError, { resource: `rbd/${ns}/${name}` }));
  });

  test('pool methods report invalid names as a rejected promise, not a synchronous throw', async () => {
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['createImage', () => rbdPool.createImage('a/b', MiB)],
      ['removeImage', () => rbdPool.removeImage('a@b')],
      ['readObject', () => rbdPool.readObject('')],
      ['writeObject', () => rbdPool.writeObject('a/b', 'x')],
      ['removeObject', () => rbdPool.removeObject('a\0')],
      ['objectExists', () => rbdPool.objectExists('@')],
    ];
    for (const [operation, call] of calls) {
      let promise: Promise<unknown> | undefined;
      assert.doesNotThrow(() => { promise = call(); }, `${operation} threw synchronously`);
      await assert.rejects(promise!, isError(InvalidArgumentError, { code: 'EINVAL', operation }), operation);
    }
  });
});

describe('objects', () => {
  test('writeObject and readObject round-trip bytes exactly: 1 MiB random, empty, string', { timeout: 120_000 }, async () => {
    const big = uniqueName('obj-big');
    const data = randomBytes(MiB + 17);
    await backups.writeObject(big, data);
    cleanups.push(() => backups.removeObject(big));
    const back = await backups.readObject(big);
    assert.ok(Buffer.isBuffer(back));
    assert.equal(back.length, data.length);
    assert.equal(sha256(back), sha256(data));
    assert.ok(back.equals(data));

    const empty = uniqueName('obj-empty');
    await backups.writeObject(empty, Buffer.alloc(0));
    cleanups.push(() => backups.removeObject(empty));
    assert.equal(await backups.objectExists(empty), true);
    const none = await backups.readObject(empty);
    assert.ok(Buffer.isBuffer(none));
    assert.equal(none.length, 0);

    const text = uniqueName('obj-text');
    const json = JSON.stringify({ version: 2, 'volume-metadata': 'ünïcødé ✓' });
    await backups.writeObject(text, json);
    cleanups.push(() => backups.removeObject(text));
    assert.deepEqual(await backups.readObject(text), Buffer.from(json, 'utf8'));

    // A plain write replaces the whole object, shorter content included.
    const shorter = randomBytes(1000);
    await backups.writeObject(big, shorter);
    assert.deepEqual(await backups.readObject(big), shorter);
  });

  test('an exclusive write refuses an existing object and leaves its content unchanged', async () => {
    const name = uniqueName('backup.meta');
    const original = randomBytes(4096);
    await backups.writeObject(name, original, { exclusive: true });
    cleanups.push(() => backups.removeObject(name));
    assert.deepEqual(await backups.readObject(name), original);
    await assert.rejects(backups.writeObject(name, randomBytes(10), { exclusive: true }),
      isError(AlreadyExistsError, { code: 'EEXIST', operation: 'writeObject', resource: `backups/${name}` },
        `writeObject backups/${name}: object already exists [EEXIST]`));
    await assert.rejects(backups.writeObject(name, Buffer.alloc(0), { exclusive: true }), AlreadyExistsError);
    assert.deepEqual(await backups.readObject(name), original);
    // Not exclusive: replaced.
    const replacement = randomBytes(100);
    await backups.writeObject(name, replacement, { exclusive: false });
    assert.deepEqual(await backups.readObject(name), replacement);
  });

  test('removeObject removes, objectExists tells, missing objects are NotFoundErrors', async () => {
    const name = uniqueName('obj');
    assert.equal(await backups.objectExists(name), false);
    await assert.rejects(backups.readObject(name),
      isError(NotFoundError, { code: 'ENOENT', operation: 'readObject', resource: `backups/${name}` },
        `readObject backups/${name}: object does not exist [ENOENT]`));
    await assert.rejects(backups.removeObject(name),
      isError(NotFoundError, { code: 'ENOENT', operation: 'removeObject', resource: `backups/${name}` },
        `removeObject backups/${name}: object does not exist [ENOENT]`));
    await backups.writeObject(name, 'x');
    cleanups.push(() => backups.removeObject(name));
    assert.equal(await backups.objectExists(name), true);
    assert.equal(await rbdPool.objectExists(name), false, 'objects are per pool');
    await backups.removeObject(name);
    assert.equal(await backups.objectExists(name), false);
    await assert.rejects(backups.readObject(name), NotFoundError);
  });

  test('invalid object names and data are refused', async () => {
    for (const bad of ['', 'a/b', 'x@y', 'n\0', 'o'.repeat(256), 5]) {
      for (const [operation, call] of [
        ['readObject', () => backups.readObject(bad as string)],
        ['writeObject', () => backups.writeObject(bad as string, 'x')],
        ['removeObject', () => backups.removeObject(bad as string)],
        ['objectExists', () => backups.objectExists(bad as string)],
      ] as Array<[string, () => Promise<unknown>]>) {
        await assert.rejects(async () => call(),
          isError(InvalidArgumentError, { code: 'EINVAL', operation }, /object name/), `${operation}(${inspect(bad)})`);
      }
    }
    const name = uniqueName('obj');
    for (const data of [42, null, [1, 2], new Uint16Array(2)]) {
      await assert.rejects(async () => backups.writeObject(name, data as unknown as Buffer),
        isError(InvalidArgumentError, { operation: 'writeObject', resource: `backups/${name}` },
          /data must be a Buffer or a string/), inspect(data));
    }
    assert.equal(await backups.objectExists(name), false);
  });
});

describe('clone', () => {
  test('a clone in backups of a protected snapshot in rbd reads the parent snapshot byte for byte', { timeout: 120_000 }, async () => {
    const parent = uniqueName('parent');
    const size = 12 * MiB;
    const expected = await imageWith(rbdPool, parent, size, [
      [0, randomBytes(300_000)], [5 * MiB + 3, randomBytes(MiB)], [size - 4096, randomBytes(4096)],
    ]);
    await withImage(rbdPool, parent, async (image) => {
      await image.createSnapshot('base');
      await image.protectSnapshot('base');
      // Changes after the snapshot must not reach the clone.
      await image.write(randomBytes(MiB), 0);
    });
    cleanups.push(() => withImage(rbdPool, parent, async (image) => {
      await image.unprotectSnapshot('base');
      await image.removeSnapshot('base');
    }));
    const parentSha = await rbdExportSha256('a', `rbd/${parent}@base`);
    assert.equal(parentSha, sha256(expected));

    const child = uniqueName('child');
    await backups.clone({ pool: rbdPool, image: parent, snapshot: 'base' }, child);
    removeLater(backups, child);
    const byName = uniqueName('child');
    await backups.clone({ pool: 'rbd', image: parent, snapshot: 'base' }, byName,
      { features: ['layering', 'exclusive-lock'] });
    removeLater(backups, byName);
    assert.ok((await backups.listImages()).includes(child));
    assert.ok(!(await rbdPool.listImages()).includes(child));

    const snapshotId = await withImage(rbdPool, parent, async (image) =>
      (await image.listSnapshots()).find((s) => s.name === 'base')?.id);
    assert.equal(typeof snapshotId, 'bigint');
    for (const name of [child, byName]) {
      await withImage(backups, name, async (image) => {
        assert.equal(sha256(await image.read(0, size)), parentSha);
        const info = await image.parent();
        assert.ok(info, 'a clone has a parent');
        assert.equal(info.pool, 'rbd');
        assert.equal(info.namespace, '');
        assert.equal(info.image, parent);
        assert.equal(info.snapshot, 'base');
        assert.equal(info.snapshotId, snapshotId);
        assert.equal(info.trash, false);
        assert.match(info.imageId, /^[0-9a-f]+$/);
        assert.equal((await image.stat()).size, BigInt(size));
      });
      assert.equal(await rbdExportSha256('a', `backups/${name}`), parentSha);
    }
    await withImage(backups, byName, async (image) => {
      assert.deepEqual((await image.stat()).features, ['layering', 'exclusive-lock']);
    });
    await withImage(rbdPool, parent, async (image) => assert.equal(await image.parent(), null));

    // Writing to a clone changes the clone only.
    const patch = randomBytes(8192);
    await withImage(backups, child, async (image) => {
      await image.write(patch, 5 * MiB);
      const now = Buffer.from(expected);
      patch.copy(now, 5 * MiB);
      assert.equal(sha256(await image.read(0, size)), sha256(now));
    });
    assert.equal(await rbdExportSha256('a', `rbd/${parent}@base`), parentSha);
    // The parent snapshot cannot be unprotected while clones exist.
    await withImage(rbdPool, parent, async (image) => {
      await assert.rejects(image.unprotectSnapshot('base'), BusyError);
    });
  });

  test('cloning an unprotected snapshot is refused with an explanation', async () => {
    const parent = uniqueName('unprotected');
    await imageWith(rbdPool, parent, MiB, [[0, randomBytes(4096)]]);
    await withImage(rbdPool, parent, (image) => image.createSnapshot('s'));
    cleanups.push(() => withImage(rbdPool, parent, (image) => image.removeSnapshot('s')));
    const child = uniqueName('child');
    await assert.rejects(backups.clone({ pool: rbdPool, image: parent, snapshot: 's' }, child),
      isError(InvalidArgumentError, { code: 'EINVAL', operation: 'clone', resource: `rbd/${parent}@s -> backups/${child}` },
        /rbd_clone3 refused \(is the parent snapshot protected/));
    assert.equal(await backups.imageExists(child), false);
  });

  test('clone refuses bad pools and names with InvalidArgumentError', async () => {
    const parent = uniqueName('p');
    await imageWith(rbdPool, parent, MiB, [[0, randomBytes(4096)]]);
    await withImage(rbdPool, parent, async (image) => {
      await image.createSnapshot('s');
      await image.protectSnapshot('s');
    });
    cleanups.push(() => withImage(rbdPool, parent, async (image) => {
      await image.unprotectSnapshot('s');
      await image.removeSnapshot('s');
    }));
    const child = uniqueName('c');
    const cases: Array<[string, () => Promise<void>, RegExp]> = [
      ['pool is a number', () => backups.clone({ pool: 42 as unknown as string, image: parent, snapshot: 's' }, child),
        /same cluster|pool/],
      ['pool is a plain object', () => backups.clone({ pool: {} as Pool, image: parent, snapshot: 's' }, child),
        /same cluster|pool/],
      // A pool given by name is opened first, and refused there.
      ['bad pool name', () => backups.clone({ pool: 'rbd/x', image: parent, snapshot: 's' }, child),
        /^openPool rbd\/x: pool name "rbd\/x" must not contain/],
      ['bad child name', () => backups.clone({ pool: rbdPool, image: parent, snapshot: 's' }, `${child}@x`),
        /image name/],
      ['empty child name', () => backups.clone({ pool: rbdPool, image: parent, snapshot: 's' }, ''), /image name/],
      ['bad parent image', () => backups.clone({ pool: rbdPool, image: `${parent}/x`, snapshot: 's' }, child),
        /image name/],
      ['parent image not a string', () => backups.clone({ pool: 'rbd', image: 3 as unknown as string, snapshot: 's' },
        child), /image name must be a string/],
      ['bad parent snapshot', () => backups.clone({ pool: rbdPool, image: parent, snapshot: 's@t' }, child),
        /snapshot name/],
      ['empty parent snapshot', () => backups.clone({ pool: 'rbd', image: parent, snapshot: '' }, child),
        /snapshot name must not be empty/],
    ];
    for (const [label, call, message] of cases) {
      await assert.rejects(call(), isError(InvalidArgumentError,
        { code: 'EINVAL', operation: label === 'bad pool name' ? 'openPool' : 'clone' }, message), label);
    }
    assert.equal(await backups.imageExists(child), false);
  });

  test('clone refuses a missing pool property with InvalidArgumentError',
    async () => {
      for (const pool of [null, undefined]) {
        await assert.rejects(
          backups.clone({ pool: pool as unknown as string, image: 'x', snapshot: 's' }, uniqueName('c')),
          isError(InvalidArgumentError, { code: 'EINVAL', operation: 'clone' }), `pool ${String(pool)}`);
      }
    });

  test('clone refuses a parent pool of another connection', async () => {
    const other = await connect('a');
    const otherRbd = await other.pool('rbd');
    try {
      const child = uniqueName('c');
      await assert.rejects(backups.clone({ pool: otherRbd, image: 'x', snapshot: 's' }, child),
        isError(InvalidArgumentError, { operation: 'clone', resource: `backups/${child}` },
          /a clone and its parent must be in the same cluster/));
    } finally {
      await otherRbd.close();
      await other.close();
    }
  });

  test('a missing parent image or snapshot is a NotFoundError', async () => {
    const child = uniqueName('c');
    const missing = uniqueName('missing');
    await assert.rejects(backups.clone({ pool: rbdPool, image: missing, snapshot: 's' }, child),
      isError(NotFoundError, { code: 'ENOENT', operation: 'clone', resource: `rbd/${missing}@s -> backups/${child}` }));
    await assert.rejects(backups.clone({ pool: uniqueName('nopool'), image: missing, snapshot: 's' }, child),
      isError(NotFoundError, { operation: 'openPool' }));
    assert.equal(await backups.imageExists(child), false);
  });
});

describe('least privilege', () => {
  test("a user with `profile rbd pool=backups` works in backups and is refused elsewhere", { timeout: 120_000 },
    async () => {
      const admin = await testCluster('a');
      const user = uniqueName('bk');
      const keyring = await admin.createUser(user, 'backups');
      cleanups.push(async () => {
        await run('ceph', ['-c', admin.info.conf, '--keyring', admin.info.keyring, '--connect-timeout', '30',
          'auth', 'del', `client.${user}`], { timeout: 60_000 });
        await rm(keyring, { force: true });
      });
      const limited = await connect('a', { user, keyring });
      try {
        assert.equal(limited.name, `cluster(client.${user} conf ${admin.info.conf})`);
        const pool = await limited.pool('backups');
        try {
          const name = uniqueName('lp');
          const size = 4 * MiB;
          await pool.createImage(name, size);
          removeLater(backups, name);
          assert.ok((await pool.listImages()).includes(name));
          const data = randomBytes(300_000);
          const expected = Buffer.alloc(size);
          data.copy(expected, MiB + 1);
          const image = await pool.openImage(name);
          try {
            await image.write(data, MiB + 1);
            assert.deepEqual(await image.read(MiB + 1, data.length), data);
            assert.equal(sha256(await image.read(0, size)), sha256(expected));
            await image.createSnapshot('s');
            assert.equal(await rbdExportSha256('a', `backups/${name}@s`), sha256(expected));
            await image.removeSnapshot('s');
          } finally {
            await image.close();
          }
          const object = uniqueName('lp.meta');
          await pool.writeObject(object, data, { exclusive: true });
          assert.deepEqual(await pool.readObject(object), data);
          await pool.removeObject(object);
          await pool.removeImage(name);
          assert.equal(await backups.imageExists(name), false);
        } finally {
          await pool.close();
        }

        const other = await limited.pool('rbd');
        try {
          const name = uniqueName('forbidden');
          await assert.rejects(other.createImage(name, MiB), (e) => {
            assert.ok(e instanceof PermissionError, `got ${inspect(e)}`);
            assert.ok(e.code === 'EPERM' || e.code === 'EACCES', e.code);
            assert.equal(e.operation, 'createImage');
            assert.equal(e.resource, `rbd/${name}`);
            return true;
          });
          assert.equal(await rbdPool.imageExists(name), false);
          await assert.rejects(other.writeObject(uniqueName('o'), 'x'), PermissionError);
          await assert.rejects(other.listImages(), PermissionError);
        } finally {
          await other.close();
        }
        await assert.rejects(limited.createPool(uniqueName('pool')), PermissionError);
      } finally {
        await limited.close();
      }
    });
});
