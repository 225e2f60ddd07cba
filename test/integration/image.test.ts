/**
 * Image I/O and per-image state against a real cluster: stat, read/write at
 * awkward offsets, zeroing, discard, range and argument checks, resize,
 * flush, metadata, advisory locks and read-only snapshot views. Every data
 * test keeps a local model of the image and compares it with what the rbd
 * tool exports.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  AlreadyExistsError, BusyError, CephError, InvalidArgumentError, MAX_READ_BYTES, MAX_READ_MANY, NotFoundError,
  type CreateImageOptions, type Image, type Pool,
} from '../../lib/index.js';
import { scratch, type Scratch, writeRandom } from '../support/scratch.js';
import { assertFails, type ErrorShape } from '../support/checks.js';
import { closeTestPools, connect, rbd, rbdExportSha256, sha256, testPool } from '../support/clusters.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const POOL = 'rbd';

let pool: Pool;

before(async () => {
  pool = await testPool('a', POOL);
});

after(closeTestPools);

/** An image filled with random data, and its model. */
async function filledImage(s: Scratch, prefix: string, size: number,
  options: CreateImageOptions = {}): Promise<{ name: string; image: Image; model: Buffer }> {
  const name = await s.createImage(prefix, size, options);
  const image = await s.open(name);
  const model = Buffer.alloc(size);
  await writeRandom(image, model, 0, size);
  return { name, image, model };
}

/** The rbd tool's checksum of the image head, after flushing our writes. */
async function exportedHead(image: Image): Promise<string> {
  await image.flush();
  return rbdExportSha256('a', image.spec);
}

function isZero(data: Buffer): boolean {
  return data.every((byte) => byte === 0);
}

const FEATURE_BITS: Record<string, bigint> = {
  'layering': 1n, 'striping': 2n, 'exclusive-lock': 4n, 'object-map': 8n, 'fast-diff': 16n,
  'deep-flatten': 32n, 'journaling': 64n,
};

function bitsOf(names: readonly string[]): bigint {
  return names.reduce((bits, name) => {
    const bit = FEATURE_BITS[name];
    assert.ok(bit !== undefined, `unexpected feature ${name}`);
    return bits | bit;
  }, 0n);
}

interface RbdInfo {
  id: string;
  size: number;
  objects: number;
  order: number;
  object_size: number;
  block_name_prefix: string;
  features: string[];
  stripe_unit?: number;
  stripe_count?: number;
}

async function rbdInfo(spec: string): Promise<RbdInfo> {
  return JSON.parse(await rbd('a', ['info', '--format', 'json', spec])) as RbdInfo;
}

describe('stat', () => {
  test('reports size, object size, order, default features and block name prefix as rbd info does', async (t) => {
    const s = scratch(t, pool);
    const name = await s.createImage('stat', 24 * MiB, { order: 20 });
    const image = await s.open(name);
    const stat = await image.stat();
    const info = await rbdInfo(`${POOL}/${name}`);

    assert.equal(stat.size, BigInt(24 * MiB));
    assert.equal(stat.order, 20);
    assert.equal(stat.objectSize, 2n ** 20n);
    assert.equal(stat.objectCount, 24n);
    assert.match(stat.blockNamePrefix, /^rbd_data\.[0-9a-f]+$/);
    assert.equal(stat.blockNamePrefix, `rbd_data.${info.id}`);
    assert.equal(stat.blockNamePrefix, info.block_name_prefix);
    // librbd's rbd_default_features, as the rbd tool sees them.
    assert.deepEqual(stat.features, info.features);
    assert.ok(stat.features.includes('layering'), `default features ${stat.features.join(',')}`);
    assert.equal(stat.featureBits, bitsOf(stat.features));
    assert.equal(stat.stripeUnit, stat.objectSize);
    assert.equal(stat.stripeCount, 1n);
  });

  test('reports the explicit features and order an image was created with', async (t) => {
    const s = scratch(t, pool);
    const name = await s.createImage('stat-feat', 8 * MiB, { features: ['layering', 'exclusive-lock'], order: 22 });
    const image = await s.open(name);
    const stat = await image.stat();
    const info = await rbdInfo(`${POOL}/${name}`);

    assert.deepEqual(stat.features, ['layering', 'exclusive-lock']);
    assert.deepEqual(info.features, ['layering', 'exclusive-lock']);
    assert.equal(stat.featureBits, 5n);
    assert.equal(stat.order, 22);
    assert.equal(stat.objectSize, 4n * BigInt(MiB));
    assert.equal(stat.objectCount, 2n);
    assert.equal(stat.size, BigInt(8 * MiB));
  });

  test('a striped image reports its stripe unit and count and keeps bytes across stripes', async (t) => {
    const s = scratch(t, pool);
    const size = 8 * MiB;
    const name = await s.createImage('stat-stripe', size,
      { features: ['layering', 'striping'], stripeUnit: 64 * KiB, stripeCount: 4 });
    const image = await s.open(name);
    const stat = await image.stat();
    const info = await rbdInfo(`${POOL}/${name}`);

    assert.deepEqual(stat.features, ['layering', 'striping']);
    assert.equal(stat.featureBits, 3n);
    assert.equal(stat.stripeUnit, BigInt(64 * KiB));
    assert.equal(stat.stripeCount, 4n);
    assert.equal(info.stripe_unit, 64 * KiB);
    assert.equal(info.stripe_count, 4);

    // A write spanning many stripe units lands in several objects.
    const model = Buffer.alloc(size);
    const data = await writeRandom(image, model, 12_345, 300 * KiB + 17);
    assert.deepEqual(await image.read(12_345, data.length), data);
    assert.equal(await exportedHead(image), sha256(model));
  });
});

describe('read and write', () => {
  test('write then read is byte-identical at aligned, unaligned and object-crossing offsets', async (t) => {
    const s = scratch(t, pool);
    const size = 12 * MiB;
    const name = await s.createImage('rw', size);
    const image = await s.open(name);
    const objectSize = Number((await image.stat()).objectSize);
    assert.equal(objectSize, 4 * MiB);
    const model = Buffer.alloc(size);

    const writes: Array<[offset: number, length: number]> = [
      [0, 4096],
      [12_345, 777],
      [objectSize - 1000, 3000], // crosses the first object boundary
      [2 * objectSize - 1, 2], // one byte on each side of the second
      [5 * MiB + 3, MiB + 7],
      [size - 513, 513], // up to the very end
    ];
    for (const [offset, length] of writes) {
      const data = await writeRandom(image, model, offset, length);
      assert.deepEqual(await image.read(offset, length), data, `read back at ${offset}+${length}`);
    }
    // bigint offsets and lengths work the same.
    const data = await writeRandom(image, model, 9 * MiB + 1, 100);
    assert.deepEqual(await image.read(BigInt(9 * MiB + 1), 100n), data);

    // Ranges spanning several writes and the holes between them.
    assert.deepEqual(await image.read(0, 2 * objectSize + 10), model.subarray(0, 2 * objectSize + 10));
    assert.deepEqual(await image.read(0, size), model);
    // Reading nothing at the very end is fine.
    assert.equal((await image.read(size, 0)).length, 0);

    assert.equal(await exportedHead(image), sha256(model));
  });

  test('writeZeroes makes unaligned and whole-object ranges read as zeros', async (t) => {
    const s = scratch(t, pool);
    const size = 12 * MiB;
    const { image, model } = await filledImage(s, 'zeroes', size);
    const objectSize = 4 * MiB;

    const ranges: Array<[offset: number, length: number]> = [
      [100, 1000],
      [objectSize - 50, 100], // across an object boundary
      [2 * objectSize, objectSize], // a whole object
      [size - 77, 77], // the tail
    ];
    for (const [offset, length] of ranges) {
      await image.writeZeroes(offset, length);
      model.fill(0, offset, offset + length);
      assert.ok(isZero(await image.read(offset, length)), `zeros at ${offset}+${length}`);
    }
    // Neighbours are untouched.
    assert.deepEqual(await image.read(0, 2000), model.subarray(0, 2000));
    assert.deepEqual(await image.read(objectSize - 1000, 2000), model.subarray(objectSize - 1000, objectSize + 1000));
    assert.deepEqual(await image.read(0, size), model);
    assert.equal(await exportedHead(image), sha256(model));
  });

  test('discard makes 64 KiB-aligned ranges read as zeros', async (t) => {
    const s = scratch(t, pool);
    const size = 12 * MiB;
    const { image, model } = await filledImage(s, 'discard', size);
    const objectSize = 4 * MiB;

    // librbd's default discard granularity is 64 KiB; these ranges are whole granules.
    const ranges: Array<[offset: number, length: number]> = [
      [64 * KiB, 64 * KiB], // inside an object
      [objectSize - 128 * KiB, 256 * KiB], // across an object boundary
      [2 * objectSize, objectSize], // a whole object
    ];
    for (const [offset, length] of ranges) {
      await image.discard(offset, length);
      model.fill(0, offset, offset + length);
      assert.ok(isZero(await image.read(offset, length)), `zeros at ${offset}+${length}`);
    }
    assert.deepEqual(await image.read(0, size), model);
    assert.equal(await exportedHead(image), sha256(model));
  });

  test('discard makes unaligned ranges, and a whole image of unaligned size, read as zeros', async (t) => {
    const s = scratch(t, pool);
    const size = 8 * MiB + 1000;
    const { image, model } = await filledImage(s, 'discard-u', size);
    const objectSize = 4 * MiB;

    await image.discard(1000, 3000);
    model.fill(0, 1000, 4000);
    await image.discard(objectSize - 5000, 10_000);
    model.fill(0, objectSize - 5000, objectSize + 5000);
    assert.ok(isZero(await image.read(1000, 3000)), 'an unaligned discard inside a granule reads as zeros');
    assert.ok(isZero(await image.read(objectSize - 5000, 10_000)), 'an unaligned discard across objects reads as zeros');
    assert.equal(await exportedHead(image), sha256(model));

    await image.discard(0, size);
    assert.ok(isZero(await image.read(0, size)), 'discard of the whole image leaves nothing behind');
    assert.equal(await exportedHead(image), sha256(Buffer.alloc(size)));
  });
});

describe('range and argument checks', () => {
  test('read, write, writeZeroes and discard past the end are refused and write nothing', async (t) => {
    const s = scratch(t, pool);
    const size = 8 * MiB;
    const { name, image, model } = await filledImage(s, 'range', size);
    const before = await exportedHead(image);
    assert.equal(before, sha256(model));
    const resource = `${POOL}/${name}`;
    const end = (what: string, length: number, offset: number | bigint): ErrorShape => ({
      code: 'EINVAL', errno: 22, operation: what, resource,
      message: new RegExp(`^${what} ${resource}: ${what} of ${length} bytes at offset ${offset} ` +
        `passes the end of the image \\(size ${size}\\) \\[EINVAL\\]$`),
    });

    await assertFails(() => image.write(randomBytes(20), size - 10), InvalidArgumentError, end('write', 20, size - 10));
    await assertFails(() => image.write(randomBytes(1), size), InvalidArgumentError, end('write', 1, size));
    await assertFails(() => image.read(size - 10, 20), InvalidArgumentError, end('read', 20, size - 10));
    await assertFails(() => image.read(size + 1, 0), InvalidArgumentError, end('read', 0, size + 1));
    await assertFails(() => image.read(2n ** 64n - 1n, 1n), InvalidArgumentError, end('read', 1, 2n ** 64n - 1n));
    await assertFails(() => image.writeZeroes(size - 10, 20), InvalidArgumentError, end('writeZeroes', 20, size - 10));
    await assertFails(() => image.discard(size - 64 * KiB, 128 * KiB), InvalidArgumentError,
      end('discard', 128 * KiB, size - 64 * KiB));

    // Not even the part inside the image was touched.
    assert.deepEqual(await image.read(size - 64 * KiB, 64 * KiB), model.subarray(size - 64 * KiB));
    assert.equal(await exportedHead(image), before);
  });

  test('negative, fractional, NaN, infinite, out-of-range and non-numeric offsets and lengths are refused', async (t) => {
    const s = scratch(t, pool);
    const size = 4 * MiB;
    const { name, image, model } = await filledImage(s, 'args', size);
    const resource = `${POOL}/${name}`;

    const bad: Array<[value: unknown, detail: RegExp]> = [
      [-1, /must be a non-negative integer, got -1 /],
      [1.5, /must be a non-negative integer, got 1\.5 /],
      [Number.NaN, /must be a non-negative integer, got NaN /],
      [Number.POSITIVE_INFINITY, /must be a non-negative integer, got Infinity /],
      [2 ** 53, /must be a non-negative integer, got 9007199254740992 /],
      ['10', /must be a number or bigint, got string /],
      [null, /must be a number or bigint, got object /],
      [undefined, /must be a number or bigint, got undefined /],
      [-1n, /-1 is outside 0\.\.2\^64-1 /],
      [2n ** 64n, /18446744073709551616 is outside 0\.\.2\^64-1 /],
    ];
    type Call = (value: never) => unknown;
    const calls: Array<[operation: string, what: string, call: Call]> = [
      ['read', 'offset', (v) => image.read(v, 1)],
      ['read', 'length', (v) => image.read(0, v)],
      ['write', 'offset', (v) => image.write(randomBytes(8), v)],
      ['writeZeroes', 'offset', (v) => image.writeZeroes(v, 1)],
      ['writeZeroes', 'length', (v) => image.writeZeroes(0, v)],
      ['discard', 'offset', (v) => image.discard(v, 64 * KiB)],
      ['discard', 'length', (v) => image.discard(0, v)],
      ['resize', 'size', (v) => image.resize(v)],
    ];
    for (const [operation, what, call] of calls) {
      for (const [value, detail] of bad) {
        await assertFails(() => call(value as never), InvalidArgumentError, {
          code: 'EINVAL', errno: 22, operation, resource,
          message: new RegExp(`^${operation} ${resource}: ${what} ${detail.source}\\[EINVAL\\]$`),
        });
      }
    }
    for (const data of ['not a buffer', new Uint8Array(8), null]) {
      await assertFails(() => image.write(data as never, 0), InvalidArgumentError, {
        code: 'EINVAL', errno: 22, operation: 'write', resource, message: /: data must be a Buffer \[EINVAL\]$/,
      });
    }

    assert.equal((await image.stat()).size, BigInt(size));
    assert.equal(await exportedHead(image), sha256(model));
  });

  test('a read of more than MAX_READ_BYTES is refused', async (t) => {
    const s = scratch(t, pool);
    const name = await s.createImage('maxread', 4 * MiB);
    const image = await s.open(name);
    assert.equal(MAX_READ_BYTES, 2 ** 30);
    for (const length of [MAX_READ_BYTES + 1, BigInt(MAX_READ_BYTES) + 1n, 2n ** 40n]) {
      await assertFails(() => image.read(0, length), InvalidArgumentError, {
        code: 'EINVAL', errno: 22, operation: 'read', resource: `${POOL}/${name}`,
        message: new RegExp(`: one read takes at most ${MAX_READ_BYTES} bytes, asked for ${length} \\[EINVAL\\]$`),
      });
    }
  });

  test('readMany reads ranges at once as read() does; bad ranges are refused, none past the end is read', async (t) => {
    const s = scratch(t, pool);
    const { image, model } = await filledImage(s, 'readmany', 9 * MiB);
    const ranges = [
      { offset: 0, length: 4096 }, { offset: 4 * MiB - 100, length: 200 }, { offset: 5n * BigInt(MiB), length: 4n * BigInt(MiB) },
      { offset: 1234, length: 1 }, { offset: 1234, length: 7 },
    ];
    const buffers = await image.readMany(ranges);
    assert.equal(buffers.length, ranges.length);
    ranges.forEach((range, i) => {
      const from = Number(range.offset);
      assert.ok(buffers[i]!.equals(model.subarray(from, from + Number(range.length))), `range ${i}`);
    });
    const many = Array.from({ length: MAX_READ_MANY }, (_, i) => ({ offset: i * 9000, length: 100 }));
    (await image.readMany(many)).forEach((buffer, i) => assert.ok(buffer.equals(model.subarray(i * 9000, i * 9000 + 100))));
    const refused = (detail: RegExp): ErrorShape => ({ code: 'EINVAL', errno: 22, operation: 'read', resource: `${POOL}/${image.name}`, message: detail });
    await assertFails(() => image.readMany([]), InvalidArgumentError, refused(/takes 1 to 1024 ranges/));
    await assertFails(() => image.readMany([...many, { offset: 0, length: 1 }]), InvalidArgumentError, refused(/takes 1 to 1024 ranges/));
    await assertFails(() => image.readMany([{ offset: 0, length: 0 }]), InvalidArgumentError, refused(/1 byte or more/));
    await assertFails(() => image.readMany([{ offset: 0, length: 1 }, { offset: 9 * MiB - 10, length: 11 }]), InvalidArgumentError,
      refused(/passes the end of the image/));
    await assertFails(() => image.readMany([{ offset: -1, length: 1 }]), InvalidArgumentError, refused(/offset/));
    await assertFails(() => image.readMany(Array.from({ length: 3 }, () => ({ offset: 0, length: MAX_READ_BYTES / 2 }))),
      InvalidArgumentError, refused(/at most 1073741824 bytes in all/));
  });

  test('refused arguments come back as rejected promises, never as synchronous throws', async (t) => {
    const s = scratch(t, pool);
    const name = await s.createImage('sync', 4 * MiB);
    const image = await s.open(name);
    const calls: Array<[label: string, call: () => Promise<unknown>]> = [
      ['read(-1, 1)', () => image.read(-1, 1)],
      ['read(0, MAX_READ_BYTES + 1)', () => image.read(0, MAX_READ_BYTES + 1)],
      ["write('x', 0)", () => image.write('x' as never, 0)],
      ['writeZeroes(0, -1)', () => image.writeZeroes(0, -1)],
      ['discard(0.5, 1)', () => image.discard(0.5, 1)],
      ['resize(-1)', () => image.resize(-1)],
      ["createSnapshot('a/b')", () => image.createSnapshot('a/b')],
      ["lock('')", () => image.lock('')],
      ["setMetadata('', 'v')", () => image.setMetadata('', 'v')],
    ];
    for (const [label, call] of calls) {
      let returned: Promise<unknown> | undefined;
      assert.doesNotThrow(() => { returned = call(); }, `${label} threw synchronously`);
      await assert.rejects(returned as Promise<unknown>, InvalidArgumentError, label);
    }
  });
});

describe('resize and flush', () => {
  test('resize up adds zeros; resize down truncates; growing again does not bring old data back', async (t) => {
    const s = scratch(t, pool);
    const size = 8 * MiB;
    const { name, image, model } = await filledImage(s, 'resize', size);
    const spec = `${POOL}/${name}`;

    const bigger = 12 * MiB + 4096;
    await image.resize(bigger);
    assert.equal((await image.stat()).size, BigInt(bigger));
    assert.ok(isZero(await image.read(size, bigger - size)), 'the new region reads as zeros');
    assert.deepEqual(await image.read(0, size), model, 'the old region is unchanged');
    const grown = Buffer.concat([model, Buffer.alloc(bigger - size)]);
    assert.equal(await exportedHead(image), sha256(grown));
    assert.equal((await rbdInfo(spec)).size, bigger);

    const smaller = 5 * MiB + 12_345; // not a multiple of anything
    await image.resize(BigInt(smaller));
    assert.equal((await image.stat()).size, BigInt(smaller));
    assert.equal(await exportedHead(image), sha256(model.subarray(0, smaller)));
    await assertFails(() => image.read(smaller - 1, 2), InvalidArgumentError, {
      code: 'EINVAL', errno: 22, operation: 'read', resource: spec,
      message: new RegExp(`passes the end of the image \\(size ${smaller}\\)`),
    });

    await image.resize(size);
    assert.ok(isZero(await image.read(smaller, size - smaller)), 'truncated data does not come back');
    const regrown = Buffer.concat([model.subarray(0, smaller), Buffer.alloc(size - smaller)]);
    assert.deepEqual(await image.read(0, size), regrown);
    assert.equal(await exportedHead(image), sha256(regrown));
  });

  test('flush resolves and the data is then what another connection reads', async (t) => {
    const s = scratch(t, pool);
    const size = 4 * MiB;
    const name = await s.createImage('flush', size);
    const image = await s.open(name);
    const model = Buffer.alloc(size);
    await writeRandom(image, model, 1234, 100 * KiB);
    assert.equal(await image.flush(), undefined);
    await writeRandom(image, model, 3 * MiB, 5000);
    assert.equal(await image.flush(), undefined);

    const other = await connect();
    s.defer(() => other.close());
    const otherPool = await other.pool(POOL);
    s.defer(() => otherPool.close());
    const reader = await s.open(name, { readOnly: true }, otherPool);
    assert.deepEqual(await reader.read(0, size), model);
    assert.equal(await rbdExportSha256('a', `${POOL}/${name}`), sha256(model));
  });
});

describe('metadata', () => {
  test('set, get, overwrite and remove, with keys containing slashes', async (t) => {
    const s = scratch(t, pool);
    const name = await s.createImage('meta', 4 * MiB);
    const image = await s.open(name);
    const spec = `${POOL}/${name}`;

    assert.equal(await image.getMetadata('backup/volume'), undefined, 'a missing key is undefined');
    await image.setMetadata('backup/volume', 'volume-1');
    await image.setMetadata('plain', 'h\u00e9llo \u2713');
    await image.setMetadata('empty', '');
    const long = randomBytes(3000).toString('base64'); // longer than the first guess of the native getter
    await image.setMetadata('long', long);

    assert.equal(await image.getMetadata('backup/volume'), 'volume-1');
    assert.equal(await image.getMetadata('plain'), 'h\u00e9llo \u2713');
    assert.equal(await image.getMetadata('empty'), '');
    assert.equal(await image.getMetadata('long'), long);
    assert.equal((await rbd('a', ['image-meta', 'get', spec, 'backup/volume'])).trim(), 'volume-1');

    await image.setMetadata('backup/volume', 'volume-2');
    assert.equal(await image.getMetadata('backup/volume'), 'volume-2');

    await image.removeMetadata('backup/volume');
    assert.equal(await image.getMetadata('backup/volume'), undefined);
    const listed = JSON.parse(await rbd('a', ['image-meta', 'list', '--format', 'json', spec])) as Record<string, string>;
    assert.deepEqual(listed, { plain: 'h\u00e9llo \u2713', empty: '', long });

    await assertFails(() => image.removeMetadata('backup/volume'), NotFoundError, {
      code: 'ENOENT', errno: 2, operation: 'removeMetadata', resource: spec, message: /does not exist \[ENOENT\]$/,
    });
    await assertFails(() => image.setMetadata('', 'v'), InvalidArgumentError, {
      code: 'EINVAL', errno: 22, operation: 'setMetadata', resource: spec, message: /metadata key name must not be empty/,
    });
    await assertFails(() => image.getMetadata('a\0b'), InvalidArgumentError, {
      code: 'EINVAL', errno: 22, operation: 'getMetadata', resource: spec, message: /metadata key name must not contain NUL/,
    });
    await assertFails(() => image.setMetadata('k', 'a\0b'), InvalidArgumentError, {
      code: 'EINVAL', errno: 22, operation: 'setMetadata', resource: spec, message: /metadata value must be a string without NUL/,
    });
    assert.equal(await image.getMetadata('k'), undefined);
  });
});

describe('advisory lock', () => {
  test('one holder at a time across handles and connections; writes keep working; unlock hands it over', async (t) => {
    const s = scratch(t, pool);
    const size = 4 * MiB;
    const name = await s.createImage('lock', size);
    const spec = `${POOL}/${name}`;
    const first = await s.open(name);
    const sameClient = await s.open(name);
    const otherCluster = await connect();
    s.defer(() => otherCluster.close());
    const otherPool = await otherCluster.pool(POOL);
    s.defer(() => otherPool.close());
    const otherClient = await s.open(name, {}, otherPool);
    const busy: ErrorShape = {
      code: 'EBUSY', errno: 16, operation: 'lock', resource: spec,
      message: /: image is locked by another client or cookie \[EBUSY\]$/,
    };
    const notHeld = (): ErrorShape => ({
      code: 'ENOENT', errno: 2, operation: 'unlock', resource: spec,
      message: /: this client holds no lock with this cookie \[ENOENT\]$/,
    });

    await first.lock('backup/one');
    await assertFails(() => first.lock('backup/one'), AlreadyExistsError, {
      code: 'EEXIST', errno: 17, operation: 'lock', resource: spec,
      message: /: this client already holds the lock with this cookie \[EEXIST\]$/,
    });
    await assertFails(() => sameClient.lock('backup/two'), BusyError, busy);
    await assertFails(() => otherClient.lock('backup/one'), BusyError, busy);
    await assertFails(() => otherClient.lock('backup/two'), BusyError, busy);

    // The lock is advisory: every handle still writes.
    const model = Buffer.alloc(size);
    await writeRandom(first, model, 0, 10_000);
    await writeRandom(sameClient, model, MiB, 10_000);
    await writeRandom(otherClient, model, 2 * MiB + 7, 10_000);
    await otherClient.flush();
    await sameClient.flush();
    assert.deepEqual(await first.read(0, size), model);

    await assertFails(() => otherClient.unlock('backup/one'), NotFoundError, notHeld());
    await first.unlock('backup/one');
    await otherClient.lock('backup/nine');
    await assertFails(() => first.lock('backup/one'), BusyError, busy);
    await assertFails(() => first.unlock('backup/one'), NotFoundError, notHeld());
    await otherClient.unlock('backup/nine');
    await first.lock('backup/one');
    await first.unlock('backup/one');

    assert.equal(await exportedHead(first), sha256(model));
  });
});

describe('image opened at a snapshot', () => {
  test('reads the snapshot content and refuses writes with EROFS', async (t) => {
    const s = scratch(t, pool);
    const size = 8 * MiB;
    const { name, image, model } = await filledImage(s, 'ro', size);
    await image.createSnapshot('snap');
    const atSnap = Buffer.from(model);
    await writeRandom(image, model, 100, 3 * MiB);
    await image.resize(10 * MiB);
    const head = Buffer.concat([model, Buffer.alloc(2 * MiB)]);

    const snap = await s.open(name, { snapshot: 'snap' });
    const spec = `${POOL}/${name}@snap`;
    assert.equal(snap.spec, spec);
    assert.equal(snap.snapshot, 'snap');
    assert.equal((await snap.stat()).size, BigInt(size), 'the size at snapshot time');
    const read = await snap.read(0, size);
    assert.equal(sha256(read), sha256(atSnap));
    assert.equal(await rbdExportSha256('a', spec), sha256(atSnap));

    const readOnly = (operation: string, call: string): ErrorShape => ({
      code: 'EROFS', errno: 30, operation, resource: spec,
      message: new RegExp(`^${operation} ${spec}: ${call} failed: is read-only \\[EROFS\\]$`),
    });
    await assertFails(() => snap.write(randomBytes(4096), 0), CephError, readOnly('write', 'rbd_aio_write2'));
    await assertFails(() => snap.writeZeroes(0, 4096), CephError, readOnly('writeZeroes', 'rbd_write_zeroes'));
    await assertFails(() => snap.discard(0, 64 * KiB), CephError, readOnly('discard', 'rbd_discard'));
    await assertFails(() => snap.resize(4 * MiB), CephError, readOnly('resize', 'rbd_resize'));
    await assertFails(() => snap.setMetadata('k', 'v'), CephError, readOnly('setMetadata', 'rbd_metadata_set'));

    assert.equal(await rbdExportSha256('a', spec), sha256(atSnap));
    assert.equal(await exportedHead(image), sha256(head));
    assert.equal((await image.stat()).size, BigInt(10 * MiB));
  });

  test('refuses to create or remove snapshots of the image', async (t) => {
    const s = scratch(t, pool);
    const name = await s.createImage('ro-snap', 4 * MiB);
    const image = await s.open(name);
    await image.createSnapshot('snap');
    await image.createSnapshot('other');
    const snap = await s.open(name, { snapshot: 'snap' });

    await assertFails(() => snap.createSnapshot('made-from-view'), CephError, {
      code: 'EROFS', errno: 30, operation: 'createSnapshot', resource: `${POOL}/${name}@made-from-view`,
      message: /is read-only \[EROFS\]$/,
    });
    await assertFails(() => snap.removeSnapshot('other'), CephError, {
      code: 'EROFS', errno: 30, operation: 'removeSnapshot', resource: `${POOL}/${name}@other`,
      message: /is read-only \[EROFS\]$/,
    });
    assert.deepEqual((await image.listSnapshots()).map((x) => x.name), ['snap', 'other']);
  });
});
