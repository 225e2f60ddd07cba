/**
 * Extent iteration (Image.diff, Image.hasExtents) against a real cluster.
 * Each scenario writes, zeroes and discards known ranges between snapshots
 * and checks the reported extents exactly, and checks that applying them to
 * the older content reproduces the newer content byte for byte.
 *
 * What librbd (16.2) reports, and these tests pin down:
 * - from a snapshot: the exact byte ranges written since, for objects that
 *   existed then; a new object from its start to the end of its data;
 *   a removed object or a truncated tail as exists=false; a range zeroed
 *   inside an object as changed data (exists=true, reads as zeros);
 * - without a from-snapshot: each object holding data, from its start.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  CephError, InvalidArgumentError, NotFoundError,
  type DiffExtent, type DiffOptions, type Image,
  type Pool,
} from '../../lib/index.js';
import { scratch, type Scratch, writeRandom } from '../support/scratch.js';
import { closeTestPools, rbdExportSha256, sha256, testPool } from '../support/clusters.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const POOL = 'rbd';

let pool: Pool;

before(async () => {
  pool = await testPool('a', POOL);
});

after(closeTestPools);

/** A byte range [start, end) and whether it holds data. */
type Range = [start: number, end: number, exists: boolean];

interface Listing {
  batches: DiffExtent[][];
  /** Every extent in the order reported, as ranges. */
  raw: Range[];
  /** Sorted, with touching ranges of the same kind merged. */
  ranges: Range[];
}

function normalise(ranges: readonly Range[]): Range[] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: Range[] = [];
  for (const [start, end, exists] of sorted) {
    const last = out.at(-1);
    if (last && last[2] === exists && last[1] >= start) {
      last[1] = Math.max(last[1], end);
    } else {
      out.push([start, end, exists]);
    }
  }
  return out;
}

/** Runs a diff to the end, checking that extents come in offset order without overlap. */
async function list(image: Image, options: DiffOptions = {}): Promise<Listing> {
  const batches: DiffExtent[][] = [];
  const raw: Range[] = [];
  for await (const batch of image.diff(options)) {
    assert.ok(batch.length > 0, 'no empty batches');
    batches.push(batch);
    for (const extent of batch) {
      assert.equal(typeof extent.offset, 'bigint');
      assert.equal(typeof extent.length, 'bigint');
      assert.equal(typeof extent.exists, 'boolean');
      assert.ok(extent.length > 0n, 'no empty extents');
      const start = Number(extent.offset);
      const previous = raw.at(-1);
      if (previous) assert.ok(start >= previous[1], `extent at ${start} overlaps or precedes the one ending at ${previous[1]}`);
      raw.push([start, start + Number(extent.length), extent.exists]);
    }
  }
  return { batches, raw, ranges: normalise(raw) };
}

/** The ranges clipped to [start, end). */
function clip(ranges: readonly Range[], start: number, end: number): Range[] {
  return normalise(ranges
    .map(([s, e, x]): Range => [Math.max(s, start), Math.min(e, end), x])
    .filter(([s, e]) => s < e));
}

/** Applies a diff to older content: data ranges copied from newer content, the rest zeroed. */
function apply(older: Buffer, ranges: readonly Range[], newer: Buffer): Buffer {
  const out = Buffer.from(older);
  for (const [start, end, exists] of ranges) {
    if (exists) newer.copy(out, start, start, end);
    else out.fill(0, start, end);
  }
  return out;
}

/** Every byte that is not zero in data lies inside a data range. */
function assertCoversData(ranges: readonly Range[], data: Buffer): void {
  const covered = Buffer.alloc(data.length);
  for (const [start, end, exists] of ranges) if (exists) covered.fill(1, start, end);
  for (let i = 0; i < data.length; i++) {
    if (data[i] !== 0 && covered[i] !== 1) assert.fail(`byte ${i} holds data but no extent covers it`);
  }
}

async function drain(image: Image, options: DiffOptions): Promise<void> {
  for await (const batch of image.diff(options)) void batch;
}

async function assertFails(call: () => Promise<unknown>, Class: abstract new (...args: never[]) => CephError,
  shape: { code: string; operation: string; resource: string; message: RegExp }): Promise<void> {
  await assert.rejects(call, (error: unknown) => {
    assert.ok(error instanceof Class, `expected ${Class.name}, got ${String(error)}`);
    assert.equal(error.constructor, Class);
    assert.equal(error.code, shape.code);
    assert.equal(error.operation, shape.operation);
    assert.equal(error.resource, shape.resource);
    assert.match(error.message, shape.message);
    return true;
  });
}

describe('diff between snapshots', () => {
  const O = 64 * KiB; // order 16
  const SIZE = 32 * O;

  interface Scenario {
    name: string;
    head: Image;
    atS2: Image;
    s1: Buffer;
    s2: Buffer;
    head2: Buffer;
  }

  /**
   * s1: objects 0-3, 6, 7 full, object 4 from its start, object 9 in its middle.
   * s2: see the comments at each change; head: one more write after s2.
   */
  async function scenario(s: Scratch): Promise<Scenario> {
    const name = await s.createImage('diff', SIZE, { order: 16 });
    const head = await s.open(name);
    const model = Buffer.alloc(SIZE);
    await writeRandom(head, model, 0, 4 * O);
    await writeRandom(head, model, 4 * O, 1000);
    await writeRandom(head, model, 6 * O, 2 * O);
    await writeRandom(head, model, 9 * O + 5000, 1000);
    await head.createSnapshot('s1');
    const s1 = Buffer.from(model);

    await writeRandom(head, model, 300, 100); // inside object 0
    await writeRandom(head, model, 4 * O + 500, 3000); // grows object 4
    await writeRandom(head, model, 10 * O + 700, 50); // new object 10
    await writeRandom(head, model, 7 * O - 100, 200); // across objects 6 and 7
    await head.discard(O, O); // object 1 removed
    model.fill(0, O, 2 * O);
    await head.discard(2 * O + 32 * KiB, 32 * KiB); // object 2's tail cut
    model.fill(0, 2 * O + 32 * KiB, 3 * O);
    await head.writeZeroes(3 * O, O); // object 3 removed
    model.fill(0, 3 * O, 4 * O);
    await head.writeZeroes(6 * O + 100, 200); // zeroed inside object 6
    model.fill(0, 6 * O + 100, 6 * O + 300);
    await head.writeZeroes(9 * O + 5500, 500); // object 9's data ends earlier
    model.fill(0, 9 * O + 5500, 9 * O + 6000);
    await head.createSnapshot('s2');
    const s2 = Buffer.from(model);

    await writeRandom(head, model, 20 * O + 10, 10);
    const atS2 = await s.open(name, { snapshot: 's2' });
    return { name, head, atS2, s1, s2, head2: model };
  }

  const EXACT: Range[] = [
    [300, 400, true],
    [O, 2 * O, false],
    [2 * O + 32 * KiB, 4 * O, false],
    [4 * O + 500, 4 * O + 3500, true],
    [6 * O + 100, 6 * O + 300, true],
    [7 * O - 100, 7 * O + 100, true],
    [9 * O + 5500, 9 * O + 6000, false],
    [10 * O, 10 * O + 750, true],
  ];

  test('from s1 at s2: exactly the changed ranges, removed data as exists=false', async (t) => {
    const s = scratch(t, pool);
    const sc = await scenario(s);
    assert.equal(await rbdExportSha256('a', `${POOL}/${sc.name}@s1`), sha256(sc.s1));
    assert.equal(await rbdExportSha256('a', `${POOL}/${sc.name}@s2`), sha256(sc.s2));

    const { ranges } = await list(sc.atS2, { fromSnapshot: 's1' });
    assert.deepEqual(ranges, EXACT);
    assert.deepEqual(apply(sc.s1, ranges, sc.s2), sc.s2, 's1 + diff = s2');
    // The data ranges read back from the image give s2 too.
    const read = await sc.atS2.read(0, SIZE);
    assert.equal(sha256(apply(sc.s1, ranges, read)), sha256(sc.s2));

    // The head has one more write, outside the s2 view; it lands in a new object.
    const fromHead = await list(sc.head, { fromSnapshot: 's1' });
    assert.deepEqual(fromHead.ranges, normalise([...EXACT, [20 * O, 20 * O + 20, true]]));
    assert.deepEqual(apply(sc.s1, fromHead.ranges, sc.head2), sc.head2);
    const fromS2 = await list(sc.head, { fromSnapshot: 's2' });
    assert.deepEqual(fromS2.ranges, [[20 * O, 20 * O + 20, true]]);
  });

  test('without fromSnapshot: every object holding data at s2, from its start', async (t) => {
    const s = scratch(t, pool);
    const sc = await scenario(s);
    const { raw } = await list(sc.atS2);

    assert.ok(raw.every(([, , exists]) => exists), 'only data extents in a whole-history diff');
    assertCoversData(raw, sc.s2);
    assert.deepEqual(apply(Buffer.alloc(SIZE), raw, sc.s2), sc.s2);
    const objects = [...new Set(raw.map(([start]) => Math.floor(start / O)))];
    assert.deepEqual(objects, [0, 2, 4, 6, 7, 9, 10]);
    for (const [start, end] of raw) {
      assert.equal(start % O, 0, `extent at ${start} starts its object`);
      assert.ok(end <= start + O, `extent at ${start} stays inside its object`);
    }
    // At s1, before any discard, the same rule gives exact ends.
    const atS1 = await s.open(sc.name, { snapshot: 's1' });
    assert.deepEqual((await list(atS1)).ranges, [
      [0, 4 * O + 1000, true], [6 * O, 8 * O, true], [9 * O, 9 * O + 6000, true],
    ]);
  });

  test('wholeObject: whole objects covering every change', async (t) => {
    const s = scratch(t, pool);
    const sc = await scenario(s);
    const { raw, ranges } = await list(sc.atS2, { fromSnapshot: 's1', wholeObject: true });
    for (const [start, end] of raw) {
      assert.equal(start % O, 0, `extent at ${start} is object-aligned`);
      assert.equal(end - start, O, `extent at ${start} is one object`);
    }
    assert.deepEqual(ranges, [
      [0, O, true], [O, 2 * O, false], [2 * O, 3 * O, true], [3 * O, 4 * O, false],
      [4 * O, 5 * O, true], [6 * O, 8 * O, true], [9 * O, 11 * O, true],
    ]);
    // Every object the exact diff touches is reported, as data wherever it reported data.
    for (const [start, end, exists] of EXACT) {
      for (let object = Math.floor(start / O) * O; object < end; object += O) {
        const reported = raw.find(([s1]) => s1 === object);
        assert.ok(reported, `object at ${object} (exact extent ${start}..${end}) is reported`);
        if (exists) assert.equal(reported[2], true, `object at ${object} is reported as data`);
      }
    }
    assert.deepEqual(apply(sc.s1, ranges, sc.s2), sc.s2);
  });

  test('offset and length restrict the range, clipping extents to it', async (t) => {
    const s = scratch(t, pool);
    const sc = await scenario(s);
    const from = { fromSnapshot: 's1' };
    const [start, end] = [O / 2 + 100, 7 * O + 50];
    assert.deepEqual((await list(sc.atS2, { ...from, offset: start, length: end - start })).ranges,
      clip(EXACT, start, end));
    assert.deepEqual((await list(sc.atS2, { ...from, offset: BigInt(start), length: BigInt(end - start) })).ranges,
      clip(EXACT, start, end));
    assert.deepEqual((await list(sc.atS2, { ...from, offset: 9 * O })).ranges, clip(EXACT, 9 * O, SIZE));
    assert.deepEqual((await list(sc.atS2, { ...from, length: 5 * O })).ranges, clip(EXACT, 0, 5 * O));
    assert.deepEqual((await list(sc.atS2, { ...from, offset: SIZE })).ranges, []);
    assert.deepEqual((await list(sc.atS2, { ...from, offset: 12 * O, length: 8 * O })).ranges, []);

    const whole = (await list(sc.atS2, { ...from, wholeObject: true })).ranges;
    const restricted = await list(sc.atS2, { ...from, wholeObject: true, offset: start, length: end - start });
    for (const [s1, e1] of restricted.raw) assert.ok(s1 >= start && e1 <= end, `${s1}..${e1} inside the range`);
    assert.deepEqual(restricted.ranges, clip(whole, start, end));
  });

  test('a range past the end is InvalidArgumentError; an unknown fromSnapshot NotFoundError', async (t) => {
    const s = scratch(t, pool);
    const sc = await scenario(s);
    const spec = `${POOL}/${sc.name}@s2`;
    const pastEnd = (length: number, offset: number) => ({
      code: 'EINVAL', operation: 'diff', resource: spec,
      message: new RegExp(`^diff ${spec}: range of ${length} bytes at offset ${offset} passes the end ` +
        `of the image \\(size ${SIZE}\\) \\[EINVAL\\]$`),
    });
    await assertFails(() => drain(sc.atS2, { offset: SIZE, length: 1 }), InvalidArgumentError, pastEnd(1, SIZE));
    await assertFails(() => drain(sc.atS2, { offset: SIZE + 1 }), InvalidArgumentError, pastEnd(0, SIZE + 1));
    await assertFails(() => drain(sc.atS2, { length: SIZE + 1 }), InvalidArgumentError, pastEnd(SIZE + 1, 0));
    await assertFails(() => drain(sc.atS2, { offset: O, length: SIZE }), InvalidArgumentError, pastEnd(SIZE, O));
    await assertFails(() => drain(sc.atS2, { offset: -1 }), InvalidArgumentError, {
      code: 'EINVAL', operation: 'diff', resource: spec, message: /offset must be a non-negative integer, got -1 /,
    });
    await assertFails(() => drain(sc.atS2, { length: '5' as never }), InvalidArgumentError, {
      code: 'EINVAL', operation: 'diff', resource: spec, message: /length must be a number or bigint, got string /,
    });
    await assertFails(() => drain(sc.atS2, { fromSnapshot: 'never-taken' }), NotFoundError, {
      code: 'ENOENT', operation: 'diff', resource: spec,
      message: new RegExp(`^diff ${spec}: from snapshot does not exist \\[ENOENT\\]$`),
    });
    await assertFails(() => drain(sc.head, { fromSnapshot: 'a@b' }), InvalidArgumentError, {
      code: 'EINVAL', operation: 'diff', resource: `${POOL}/${sc.name}@a@b`, message: /must not contain '\/' or '@'/,
    });
  });
});

describe('diff paging', () => {
  test('a diff over two native pages returns every extent in order', async (t) => {
    const s = scratch(t, pool);
    const O = 4 * KiB; // order 12: 256 objects = 1 MiB per native call
    const size = 2 * MiB;
    const name = await s.createImage('paged', size, { order: 12 });
    const image = await s.open(name);
    const model = Buffer.alloc(size);
    await writeRandom(image, model, 100, 100);
    await writeRandom(image, model, MiB - 6000, 12_000); // across the page boundary
    await writeRandom(image, model, MiB + 300 * KiB + 5, 10);
    await writeRandom(image, model, size - 100, 100);

    const all = await list(image);
    assert.equal(all.batches.length, 2, 'one batch per page');
    assert.ok(all.batches[0]!.every((x) => x.offset + x.length <= BigInt(MiB)), 'first page below 1 MiB');
    assert.ok(all.batches[1]!.every((x) => x.offset >= BigInt(MiB)), 'second page from 1 MiB');
    const objectOf = (offset: number): number => Math.floor(offset / O) * O;
    assert.deepEqual(all.ranges, [
      [0, 200, true],
      [objectOf(MiB - 6000), MiB + 6000, true],
      [objectOf(MiB + 300 * KiB + 5), MiB + 300 * KiB + 15, true],
      [size - O, size, true],
    ]);
    assert.deepEqual(apply(Buffer.alloc(size), all.ranges, model), model);
    assert.equal(await rbdExportSha256('a', `${POOL}/${name}`), sha256(model));

    const whole = await list(image, { wholeObject: true });
    assert.deepEqual(whole.ranges, [
      [0, O, true],
      [objectOf(MiB - 6000), objectOf(MiB + 6000) + O, true],
      [objectOf(MiB + 300 * KiB + 5), objectOf(MiB + 300 * KiB + 5) + O, true],
      [size - O, size, true],
    ]);

    await image.createSnapshot('s1');
    const s1 = Buffer.from(model);
    await writeRandom(image, model, MiB - 3000, 6000);
    await image.createSnapshot('s2');
    const atS2 = await s.open(name, { snapshot: 's2' });
    const changed = await list(atS2, { fromSnapshot: 's1' });
    assert.equal(changed.batches.length, 2);
    assert.deepEqual(changed.raw, [[MiB - 3000, MiB, true], [MiB, MiB + 3000, true]]);
    assert.deepEqual(apply(s1, changed.ranges, model), model);
    assert.equal(await rbdExportSha256('a', `${POOL}/${name}@s2`), sha256(model));
  });

  test('wholeObject with an unaligned offset reports each object inside the range once, whole', async (t) => {
    const s = scratch(t, pool);
    const O = 4 * KiB;
    const name = await s.createImage('paged-unaligned', 2 * MiB, { order: 12 });
    const image = await s.open(name);
    await image.write(randomBytes(2 * O), MiB - O); // objects 255 and 256
    assert.deepEqual((await list(image, { wholeObject: true })).raw, [[MiB - O, MiB, true], [MiB, MiB + O, true]]);
    assert.deepEqual((await list(image, { wholeObject: true, offset: 100 })).raw,
      [[MiB - O, MiB, true], [MiB, MiB + O, true]]);
  });
});

describe('hasExtents', () => {
  test('false on a new image, true after one write, false after discarding everything', async (t) => {
    const s = scratch(t, pool);
    const size = 2 * MiB;
    const name = await s.createImage('has', size, { order: 16 });
    const image = await s.open(name);
    assert.equal(await image.hasExtents(), false);
    assert.deepEqual((await list(image)).ranges, []);

    await image.write(randomBytes(10), 70_000);
    assert.equal(await image.hasExtents(), true);
    assert.deepEqual((await list(image)).ranges, [[64 * KiB, 70_010, true]]);

    await image.discard(0, size);
    assert.equal(await image.hasExtents(), false);
    assert.deepEqual((await list(image)).ranges, []);
    assert.ok((await image.read(0, size)).every((b) => b === 0));
  });

  test('agrees with diff(): false after zeroing an image whose size is not a whole number of objects', async (t) => {
    const s = scratch(t, pool);
    const size = 2 * MiB + 1000;
    const name = await s.createImage('has-zero', size, { order: 16 });
    const image = await s.open(name);
    await image.write(randomBytes(1000), 2 * MiB);
    await image.write(randomBytes(1000), 5000);
    await image.writeZeroes(0, size);
    assert.ok((await image.read(0, size)).every((b) => b === 0), 'the image reads as zeros');
    assert.deepEqual((await list(image)).ranges, [], 'diff() reports no data');
    assert.equal(await image.hasExtents(), false);
  });
});

describe('clones', () => {
  test('hasExtents and diff of a clone, with and without the parent data', async (t) => {
    const s = scratch(t, pool);
    const O = 64 * KiB;
    const size = 32 * O;
    const parentName = await s.createImage('diff-parent', size, { order: 16 });
    const parent = await s.open(parentName);
    const parentModel = Buffer.alloc(size);
    await writeRandom(parent, parentModel, 0, O);
    await writeRandom(parent, parentModel, 3 * O + 100, 1000);
    await parent.createSnapshot('base');
    await parent.protectSnapshot('base');
    const childName = await s.clone(parentName, 'base', 'diff-child');
    const child = await s.open(childName);
    const childModel = Buffer.from(parentModel);

    assert.equal(await child.hasExtents(), true, 'the parent has data');
    assert.deepEqual((await list(child)).ranges, [[0, O, true], [3 * O, 3 * O + 1100, true]]);
    assert.deepEqual((await list(child, { includeParent: true })).ranges,
      [[0, O, true], [3 * O, 3 * O + 1100, true]]);
    assert.deepEqual((await list(child, { includeParent: false })).ranges, []);

    await writeRandom(child, childModel, 3 * O + 5000, 10); // copy-up of a parent object
    await writeRandom(child, childModel, 5 * O + 5000, 10); // an object the parent lacks
    const own = await list(child, { includeParent: false });
    assert.deepEqual(own.ranges, [[3 * O, 3 * O + 5010, true], [5 * O, 5 * O + 5010, true]]);
    const all = await list(child, { includeParent: true });
    assert.deepEqual(all.ranges, [[0, O, true], [3 * O, 3 * O + 5010, true], [5 * O, 5 * O + 5010, true]]);
    assert.deepEqual(apply(Buffer.alloc(size), all.ranges, childModel), childModel);
    assert.deepEqual(apply(parentModel, own.ranges, childModel), childModel);
    await child.flush();
    assert.equal(await rbdExportSha256('a', `${POOL}/${childName}`), sha256(childModel));
  });

  test('a clone of an empty snapshot has no extents', async (t) => {
    const s = scratch(t, pool);
    const parentName = await s.createImage('diff-empty', 2 * MiB, { order: 16 });
    const parent = await s.open(parentName);
    await parent.createSnapshot('base');
    await parent.protectSnapshot('base');
    await parent.write(randomBytes(4096), 0); // after the snapshot: not the clone's
    const child = await s.open(await s.clone(parentName, 'base', 'diff-empty-child'));
    assert.equal(await child.hasExtents(), false);
    assert.deepEqual((await list(child)).ranges, []);
    await child.write(randomBytes(10), 100);
    assert.equal(await child.hasExtents(), true);
  });
});
