/**
 * transferDiff (lib/engine/transfer.ts + native/transfer.cc) against real
 * clusters: whole-history and incremental transfers in chains, with random
 * writes, discards and write-zeroes between snapshots, resizes both ways,
 * different object sizes, another pool and another cluster, a target that
 * already holds data, cancellation and the refusals that must come before
 * any write. Every data check compares `rbd export` checksums of the
 * source snapshot and the target snapshot.
 *
 * Offsets come from a seeded PRNG; the seed is logged (t.diagnostic) and
 * TRANSFER_TEST_SEED=<n> replays a run.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  AlreadyExistsError, CancelledError, InvalidArgumentError, NotFoundError, transferDiff,
  type Image, type Progress, type TransferDiffOptions, type TransferStats,
} from '../../lib/index.js';
import { intBelow } from '../../lib/dev/prng.js';
import { closeTestPools, rbd, testPool, uniqueName } from '../support/clusters.js';
import {
  assertSameSnapshot, ClusterScratch, clusterScratch, fill, mutate, offsetIn, resourceOf, seeded,
  targetState, type Made, type TargetState,
} from '../support/cluster-scratch.js';
import { assertCephError, progressLog, show } from '../support/checks.js';
import { removeImageFully } from '../support/scratch.js';

const KiB = 1024;
const MiB = 1024 * KiB;

before(async () => {
  await testPool('a', 'rbd');
  await testPool('a', 'backups');
});

after(closeTestPools);

// ---- checks -------------------------------------------------------------------

/** Progress: done never above total, never going back, the last report done == total. */
function assertProgress(reports: readonly Progress[], total: bigint, stats: TransferStats): void {
  assert.ok(reports.length > 0, 'at least one progress report');
  let previous = 0n;
  for (const report of reports) {
    assert.equal(report.total, total);
    assert.ok(report.done <= report.total, `done ${report.done} <= total ${report.total}`);
    assert.ok(report.done >= previous, `done goes forward (${previous} -> ${report.done})`);
    assert.ok(report.bytesRead <= stats.bytesRead, 'bytesRead never above the final count');
    previous = report.done;
  }
  const last = reports.at(-1)!;
  assert.equal(last.done, last.total, 'the last report is done == total');
  assert.equal(last.bytesRead, stats.bytesRead);
}

function assertStats(stats: TransferStats, size: bigint): void {
  assert.equal(typeof stats.size, 'bigint');
  assert.equal(stats.size, size);
  for (const key of ['bytesRead', 'bytesWritten', 'bytesZeroed', 'bytesSkipped'] as const) {
    assert.ok(typeof stats[key] === 'bigint' && stats[key] >= 0n, `${key} is a byte count: ${stats[key]}`);
  }
  for (const key of ['extents', 'ops'] as const) {
    assert.ok(Number.isSafeInteger(stats[key]) && stats[key] >= 0, `${key} is a count: ${stats[key]}`);
  }
  assert.ok(stats.elapsedMs >= 0);
}

async function assertZeros(image: Image, offset: number, length: number, what: string): Promise<void> {
  const data = await image.read(offset, length);
  const nonZero = data.findIndex((byte) => byte !== 0);
  assert.equal(nonZero, -1, `${what}: byte ${offset + nonZero} of ${image.spec} is not zero`);
}

// ---- chains -------------------------------------------------------------------

describe('transferDiff: chains of snapshots', () => {
  test('whole history into a new image, then four incrementals; rbd (order 22) -> backups (order 20)',
    { timeout: 180_000 }, async (t) => {
      const s = clusterScratch(t);
      const rng = seeded(t, 'TRANSFER_TEST_SEED');
      const SIZE = 48 * MiB;
      const src = await s.create('a', 'rbd', 'xfer-chain-src', SIZE, { order: 22 });
      const dst = await s.create('a', 'backups', 'xfer-chain-dst', SIZE, { order: 20 });
      const source = await s.open(src);
      const target = await s.open(dst);
      assert.equal((await target.stat()).objectSize, 1n << 20n);

      await mutate(source, rng, SIZE, 12);
      await fill(source, 20 * MiB, 3 * MiB + 5);
      await source.createSnapshot('s1');
      const first = progressLog();
      const stats = await transferDiff({ source, target, snapshot: 's1', onProgress: first.onProgress });
      assertStats(stats, BigInt(SIZE));
      assert.ok(stats.bytesRead > 0 && stats.extents > 0 && stats.ops > 0, show(stats));
      // Into an empty image every byte read is written or, being zero, skipped.
      assert.equal(stats.bytesRead, stats.bytesWritten + stats.bytesSkipped);
      assert.equal(stats.bytesZeroed, 0n);
      assertProgress(first.reports, BigInt(SIZE), stats);
      await assertSameSnapshot(src, dst, 's1');

      for (let step = 2; step <= 5; step++) {
        const changes = await mutate(source, rng, SIZE, 4 + intBelow(rng, 8));
        const extra = { kind: 'write', offset: offsetIn(rng, SIZE - 64 * KiB), length: 1 + intBelow(rng, 64 * KiB) } as const;
        await source.write(randomBytes(extra.length), extra.offset);
        changes.push(extra);
        const snapshot = `s${step}`;
        await source.createSnapshot(snapshot);
        const { reports, onProgress } = progressLog();
        const inc = await transferDiff({ source, target, snapshot, fromSnapshot: `s${step - 1}`, onProgress });
        assertStats(inc, BigInt(SIZE));
        assert.ok(inc.bytesRead > 0, 'data changed, data read');
        assert.ok(inc.extents > 0, 'changes give extents');
        // Incremental cost follows the change: at most the changed bytes plus
        // one object for each change that began a new object.
        const bound = changes.reduce((sum, c) => sum + c.length, 0) + changes.length * 4 * MiB;
        assert.ok(inc.bytesRead <= bound, `read ${inc.bytesRead} for changes bounded by ${bound}`);
        assertProgress(reports, BigInt(SIZE), inc);
        await assertSameSnapshot(src, dst, snapshot, show(changes));
      }
      assert.deepEqual((await target.listSnapshots()).map((x) => x.name), ['s1', 's2', 's3', 's4', 's5']);
      // Every snapshot of the chain is still intact on the target.
      for (const snapshot of ['s1', 's2', 's3', 's4']) await assertSameSnapshot(src, dst, snapshot);
    });

  test('640 small objects (order 16): the diff is listed in growing ranges, and writes across their ends land',
    { timeout: 180_000 }, async (t) => {
      const s = clusterScratch(t);
      const rng = seeded(t, 'TRANSFER_TEST_SEED');
      const SIZE = 40 * MiB;
      const src = await s.create('a', 'rbd', 'xfer-ranges-src', SIZE, { order: 16 });
      const dst = await s.create('a', 'backups', 'xfer-ranges-dst', SIZE, { order: 16 });
      const source = await s.open(src);
      const target = await s.open(dst);
      // The engine lists 16 objects, then 64, then 256 at a time: with 64 KiB
      // objects its ranges end at 1, 5, 21 and 37 MiB.
      const rangeEnds = [1, 5, 21, 37].map((m) => m * MiB);
      const acrossEnds = async (length: number): Promise<void> => {
        for (const end of rangeEnds) await source.write(randomBytes(length), end - Math.floor(length / 2));
      };
      await mutate(source, rng, SIZE, 10);
      await acrossEnds(96 * KiB);
      await source.createSnapshot('s1');
      const full = await transferDiff({ source, target, snapshot: 's1' });
      assert.ok(full.bytesWritten >= rangeEnds.length * 96 * KiB, show(full));
      await assertSameSnapshot(src, dst, 's1');

      await mutate(source, rng, SIZE, 10);
      await acrossEnds(3 * KiB);
      await source.createSnapshot('s2');
      const { reports, onProgress } = progressLog();
      const inc = await transferDiff({ source, target, snapshot: 's2', fromSnapshot: 's1', onProgress });
      assertProgress(reports, BigInt(SIZE), inc);
      await assertSameSnapshot(src, dst, 's2');
    });

  test('resize down and up between snapshots: re-grown regions read as zeros; order 22 -> 23',
    { timeout: 180_000 }, async (t) => {
      const s = clusterScratch(t);
      const rng = seeded(t, 'TRANSFER_TEST_SEED');
      const src = await s.create('a', 'rbd', 'xfer-resize-src', 16 * MiB, { order: 22 });
      const dst = await s.create('a', 'backups', 'xfer-resize-dst', 16 * MiB, { order: 23 });
      const source = await s.open(src);
      const target = await s.open(dst);
      await fill(source, 0, 16 * MiB);
      await source.createSnapshot('s1');
      await transferDiff({ source, target, snapshot: 's1' });
      await assertSameSnapshot(src, dst, 's1');

      // Shrink to an unaligned size.
      const SMALL = 10 * MiB + 12 * KiB + 7;
      await source.resize(SMALL);
      await mutate(source, rng, SMALL, 3);
      await source.createSnapshot('s2');
      const shrunk = await transferDiff({ source, target, snapshot: 's2', fromSnapshot: 's1' });
      assert.equal(shrunk.size, BigInt(SMALL));
      assert.equal((await target.stat()).size, BigInt(SMALL));
      await assertSameSnapshot(src, dst, 's2');

      // Grow past the old size: everything beyond SMALL must read as zeros.
      const BIG = 24 * MiB + 4 * KiB;
      await source.resize(BIG);
      await source.createSnapshot('s3');
      const grown = await transferDiff({ source, target, snapshot: 's3', fromSnapshot: 's2' });
      assert.equal(grown.size, BigInt(BIG));
      await assertSameSnapshot(src, dst, 's3');
      const targetAtS3 = await s.open(dst, 's3');
      await assertZeros(targetAtS3, SMALL, BIG - SMALL, 'grown region at s3');

      // Some data in the grown region, then shrink and grow again with no
      // snapshot in between: the diff sees only the holes left behind.
      await source.write(randomBytes(3 * MiB), 14 * MiB + 5);
      await mutate(source, rng, BIG, 4);
      await source.createSnapshot('s4');
      await transferDiff({ source, target, snapshot: 's4', fromSnapshot: 's3' });
      await assertSameSnapshot(src, dst, 's4');
      const LOW = 5 * MiB + 3;
      await source.resize(LOW);
      await source.resize(BIG);
      await source.createSnapshot('s5');
      const again = await transferDiff({ source, target, snapshot: 's5', fromSnapshot: 's4' });
      assert.equal(again.size, BigInt(BIG));
      await assertSameSnapshot(src, dst, 's5');
      const targetAtS5 = await s.open(dst, 's5');
      await assertZeros(targetAtS5, LOW, BIG - LOW, 'region re-grown between s4 and s5');
      assert.ok(again.bytesZeroed > 0, 'the removed data was zeroed on the target');

      // And down once more, to below one object.
      await source.resize(1 * MiB + 1);
      await source.createSnapshot('s6');
      await transferDiff({ source, target, snapshot: 's6', fromSnapshot: 's5' });
      await assertSameSnapshot(src, dst, 's6');
      for (const snapshot of ['s1', 's2', 's3', 's4', 's5']) await assertSameSnapshot(src, dst, snapshot);
    });

  test('cross-cluster: a/rbd (order 22) -> b/backups (order 23), full then three incrementals, one wholeObject',
    { timeout: 180_000 }, async (t) => {
      const s = clusterScratch(t);
      const rng = seeded(t, 'TRANSFER_TEST_SEED');
      const SIZE = 40 * MiB + 512 * KiB;
      const src = await s.create('a', 'rbd', 'xfer-x-src', SIZE, { order: 22 });
      const dst = await s.create('b', 'backups', 'xfer-x-dst', SIZE, { order: 23 });
      const source = await s.open(src);
      const target = await s.open(dst);
      assert.notEqual(await source.pool.cluster.fsid(), await target.pool.cluster.fsid(), 'two clusters');
      await mutate(source, rng, SIZE, 10);
      await source.createSnapshot('b1');
      const full = await transferDiff({ source, target, snapshot: 'b1' });
      assertStats(full, BigInt(SIZE));
      assert.ok(full.bytesRead > 0);
      await assertSameSnapshot(src, dst, 'b1');
      for (let step = 2; step <= 4; step++) {
        const changes = await mutate(source, rng, SIZE, 6);
        await source.createSnapshot(`b${step}`);
        const { reports, onProgress } = progressLog();
        const stats = await transferDiff({
          source, target, snapshot: `b${step}`, fromSnapshot: `b${step - 1}`, wholeObject: step === 3, onProgress,
        });
        assertStats(stats, BigInt(SIZE));
        assertProgress(reports, BigInt(SIZE), stats);
        await assertSameSnapshot(src, dst, `b${step}`, show(changes));
      }
    });

  test('a clone as the source: the whole history includes the parent\'s data', { timeout: 120_000 }, async (t) => {
    const s = clusterScratch(t);
    const rng = seeded(t, 'TRANSFER_TEST_SEED');
    const SIZE = 16 * MiB;
    const parent = await s.create('a', 'rbd', 'xfer-parent', SIZE);
    const parentImage = await s.open(parent);
    await fill(parentImage, 0, SIZE);
    await parentImage.createSnapshot('base');
    await parentImage.protectSnapshot('base');
    const child = { ...parent, name: uniqueName('xfer-child') };
    child.spec = `rbd/${child.name}`;
    await parent.pool.clone({ pool: parent.pool, image: parent.name, snapshot: 'base' }, child.name);
    s.defer(() => removeImageFully(parent.pool, child.name));
    const source = await s.open(child);
    await mutate(source, rng, SIZE, 6);
    await source.createSnapshot('c1');
    const dst = await s.create('a', 'backups', 'xfer-child-dst', SIZE);
    const target = await s.open(dst);
    const stats = await transferDiff({ source, target, snapshot: 'c1' });
    await assertSameSnapshot(child, dst, 'c1');
    assert.equal(await target.parent(), null, 'the target is a plain image');
    // A clone's objects do not hold its parent's data: read through librbd.
    assert.match(stats.directReadRefused ?? '', /clone/, show(stats));
    assert.equal(stats.objectReads, 0);
  });

  test('an unchanged source: nothing read or written, the end snapshot still made', { timeout: 60_000 }, async (t) => {
    const s = clusterScratch(t);
    const SIZE = 32 * MiB;
    const src = await s.create('a', 'rbd', 'xfer-same-src', SIZE);
    const dst = await s.create('a', 'backups', 'xfer-same-dst', SIZE);
    const source = await s.open(src);
    const target = await s.open(dst);
    await fill(source, 4 * MiB, 8 * MiB);
    await source.createSnapshot('u1');
    await transferDiff({ source, target, snapshot: 'u1' });
    await source.createSnapshot('u2');
    const { reports, onProgress } = progressLog();
    const stats = await transferDiff({ source, target, snapshot: 'u2', fromSnapshot: 'u1', onProgress });
    assert.deepEqual(
      [stats.bytesRead, stats.bytesWritten, stats.bytesZeroed, stats.extents], [0n, 0n, 0n, 0], show(stats));
    assertProgress(reports, BigInt(SIZE), stats);
    assert.equal(await target.snapshotExists('u2'), true);
    await assertSameSnapshot(src, dst, 'u2');
  });
});

// ---- reading the snapshot's objects directly -------------------------------------

describe('transferDiff: extents read straight from the snapshot\'s objects', () => {
  test('many small changes per object, some closer than the merge gap: one read per object, fewer writes than extents',
    { timeout: 120_000 }, async (t) => {
      const s = clusterScratch(t);
      const rng = seeded(t, 'TRANSFER_TEST_SEED');
      const SIZE = 32 * MiB;
      const src = await s.create('a', 'rbd', 'xfer-scatter-src', SIZE, { order: 22 });
      const dst = await s.create('a', 'backups', 'xfer-scatter-dst', SIZE, { order: 22 });
      const source = await s.open(src);
      const target = await s.open(dst);
      await fill(source, 0, SIZE);
      await source.createSnapshot('s1');
      await transferDiff({ source, target, snapshot: 's1' });
      // Objects 1, 3 and 5 get 4 KiB writes 8-200 KiB apart (gaps below and
      // above the merge gap), one ending exactly at the object's end;
      // object 6 a discard between two writes.
      const touched = [1, 3, 5];
      for (const object of touched) {
        let at = object * 4 * MiB + 32 * KiB + intBelow(rng, 16) * 4 * KiB;
        while (at + 4 * KiB <= (object + 1) * 4 * MiB) {
          await source.write(randomBytes(4 * KiB), at);
          at += 4 * KiB + (2 + intBelow(rng, 49)) * 4 * KiB;
        }
        await source.write(randomBytes(4 * KiB), (object + 1) * 4 * MiB - 4 * KiB);
      }
      await source.write(randomBytes(4 * KiB), 4 * MiB);
      await source.write(randomBytes(4 * KiB), 4 * MiB + 16 * KiB);
      await source.write(randomBytes(4 * KiB), 24 * MiB);
      await source.discard(24 * MiB + 64 * KiB, 1 * MiB);
      await source.write(randomBytes(4 * KiB), 24 * MiB + 2 * MiB);
      await source.createSnapshot('s2');
      // The target's head differs from its s1 in the 12 KiB gap between the
      // first two changes of object 1, which is read and written with them:
      // the bytes written there must be the source's.
      await target.write(randomBytes(4 * KiB), 4 * MiB + 8 * KiB);
      const stats = await transferDiff({ source, target, snapshot: 's2', fromSnapshot: 's1' });
      await assertSameSnapshot(src, dst, 's2', show(stats));
      assert.equal(stats.directReadRefused, undefined, show(stats));
      // One read per object with changes; object 6's discard may split its
      // data into two reads (holes are zeroed in offset order).
      assert.ok(stats.objectReads >= touched.length + 1 && stats.objectReads <= touched.length + 2,
        `one read per changed object: ${show(stats)}`);
      const writes = stats.ops - stats.objectReads;
      assert.ok(writes < stats.extents, `merged extents take fewer writes (${writes}) than extents (${stats.extents})`);
    });

  test('an image whose data lives in another pool (--data-pool): read from that pool', { timeout: 120_000 }, async (t) => {
    const s = clusterScratch(t);
    const rng = seeded(t, 'TRANSFER_TEST_SEED');
    const SIZE = 16 * MiB;
    const src = await s.reserve('a', 'rbd', 'xfer-datapool-src');
    await rbd('a', ['create', '--size', `${SIZE / MiB}M`, '--data-pool', 'backups', src.spec]);
    const source = await s.open(src);
    await fill(source, 0, SIZE);
    await source.createSnapshot('d1');
    await mutate(source, rng, SIZE, 8);
    await source.createSnapshot('d2');
    const dst = await s.create('a', 'backups', 'xfer-datapool-dst', SIZE);
    const target = await s.open(dst);
    const full = await transferDiff({ source, target, snapshot: 'd1' });
    const incremental = await transferDiff({ source, target, snapshot: 'd2', fromSnapshot: 'd1' });
    await assertSameSnapshot(src, dst, 'd1');
    await assertSameSnapshot(src, dst, 'd2');
    assert.ok(full.objectReads > 0 && full.directReadRefused === undefined, show(full));
    assert.ok(incremental.directReadRefused === undefined, show(incremental));
  });

  test('a striped image: read through librbd', { timeout: 120_000 }, async (t) => {
    const s = clusterScratch(t);
    const rng = seeded(t, 'TRANSFER_TEST_SEED');
    const SIZE = 16 * MiB;
    const src = await s.create('a', 'rbd', 'xfer-striped-src', SIZE, { stripeUnit: 64 * KiB, stripeCount: 4 });
    const source = await s.open(src);
    await fill(source, 0, SIZE);
    await mutate(source, rng, SIZE, 8);
    await source.createSnapshot('p1');
    const dst = await s.create('a', 'backups', 'xfer-striped-dst', SIZE);
    const target = await s.open(dst);
    const stats = await transferDiff({ source, target, snapshot: 'p1' });
    await assertSameSnapshot(src, dst, 'p1');
    assert.match(stats.directReadRefused ?? '', /striped/, show(stats));
    assert.equal(stats.objectReads, 0);
  });
});

// ---- a target that already holds data ------------------------------------------

describe('transferDiff: a full transfer into a target holding other data', () => {
  for (const [label, delta] of [['the same size', 0], ['larger', 5 * MiB + 12 * KiB], ['smaller', -3 * MiB - 5]] as const) {
    test(`target ${label}: byte-identical afterwards, holes zeroed`, { timeout: 120_000 }, async (t) => {
      const s = clusterScratch(t);
      const rng = seeded(t, 'TRANSFER_TEST_SEED');
      const SIZE = 24 * MiB + 4 * KiB;
      const src = await s.create('a', 'rbd', 'xfer-used-src', SIZE);
      const dst = await s.create('a', 'backups', 'xfer-used-dst', SIZE + delta, { order: 21 });
      const source = await s.open(src);
      const target = await s.open(dst);
      await fill(target, 0, SIZE + delta);
      await target.createSnapshot('old-backup');
      // A sparse source: a few islands of data, one of them zeros written over data.
      for (let i = 0; i < 5; i++) await source.write(randomBytes(1 + intBelow(rng, 300 * KiB)), offsetIn(rng, SIZE - 300 * KiB));
      await source.write(randomBytes(1 * MiB), 9 * MiB);
      await source.writeZeroes(9 * MiB + 100 * KiB, 200 * KiB);
      await source.createSnapshot('full');
      const stats = await transferDiff({ source, target, snapshot: 'full' });
      assertStats(stats, BigInt(SIZE));
      assert.ok(stats.bytesZeroed > 0, 'holes were zeroed on the used target');
      assert.equal(stats.bytesSkipped, 0n, 'nothing may be skipped on a used target');
      assert.equal((await target.stat()).size, BigInt(SIZE));
      await assertSameSnapshot(src, dst, 'full');
      const atFull = await s.open(dst, 'full');
      await assertZeros(atFull, 9 * MiB + 100 * KiB, 200 * KiB, 'zeros written over data');
      // The old snapshot on the target is untouched.
      assert.deepEqual((await target.listSnapshots()).map((x) => x.name), ['old-backup', 'full']);
    });
  }
});

describe('transferDiff: a hole larger than 2 GiB in a used target', () => {
  // 32 MiB source objects make one diff range 8 GiB long, so the whole hole
  // after the data is zeroed in a single write-zeroes of more than 2^31 bytes.
  test('is zeroed whole; checksums equal', { timeout: 300_000 }, async (t) => {
    const s = clusterScratch(t);
    const SIZE = 2 * 1024 * MiB + 68 * MiB;
    const src = await s.create('a', 'rbd', 'xfer-hole-src', SIZE, { order: 25 });
    const dst = await s.create('a', 'backups', 'xfer-hole-dst', SIZE);
    const source = await s.open(src);
    const target = await s.open(dst);
    await source.write(randomBytes(4 * MiB), 0);
    await source.createSnapshot('h');
    const spots = [5 * MiB, 2 * 1024 * MiB - 512 * KiB, SIZE - MiB];
    for (const at of spots) await target.write(randomBytes(MiB), at);
    const stats = await transferDiff({ source, target, snapshot: 'h' });
    assertStats(stats, BigInt(SIZE));
    assert.equal(stats.bytesZeroed, BigInt(SIZE - 4 * MiB));
    for (const at of spots) await assertZeros(target, at, MiB, 'old data in the hole');
    await assertSameSnapshot(src, dst, 'h');
  });
});

// ---- cancel ---------------------------------------------------------------------

describe('transferDiff: cancel', () => {
  const s = new ClusterScratch();
  const SIZE = 256 * MiB;
  let src: Made;
  let source: Image;

  before(async () => {
    src = await s.create('a', 'rbd', 'xfer-cancel-src', SIZE);
    source = await s.open(src);
    await fill(source, 0, SIZE);
    await source.createSnapshot('c1');
  }, { timeout: 120_000 });

  after(() => s.dispose());

  test('aborted from onProgress mid-way: CancelledError, no end snapshot, a retry succeeds',
    { timeout: 180_000 }, async (t) => {
      const ts = clusterScratch(t);
      const dst = await ts.create('a', 'backups', 'xfer-cancel-dst', SIZE);
      const target = await ts.open(dst);
      const controller = new AbortController();
      const reason = new Error('stop at the first progress report');
      let abortedAt: Progress | undefined;
      let reportsAfterAbort = 0;
      const error = await assertCephError(transferDiff({
        source, target, snapshot: 'c1', concurrency: 1, memoryBytes: 4 * MiB,
        onProgress: (p) => {
          if (abortedAt) {
            reportsAfterAbort++;
            return;
          }
          abortedAt = { ...p };
          controller.abort(reason);
        },
        signal: controller.signal,
      }), CancelledError, {
        code: 'ECANCELED', operation: 'transferDiff', resource: resourceOf(src, 'c1', dst),
        message: /cancelled \(stop at the first progress report\)/,
      });
      assert.equal(error.errno, 125);
      assert.equal(error.cause, reason);
      assert.ok(abortedAt, 'a progress report came before the end');
      assert.ok(abortedAt.done < abortedAt.total, `aborted mid-way: ${show(abortedAt)}`);
      t.diagnostic(`aborted at ${show(abortedAt)}; ${reportsAfterAbort} reports after`);
      assert.equal(await target.snapshotExists('c1'), false, 'no end snapshot after a cancel');
      assert.deepEqual(await target.listSnapshots(), []);

      const retry = await transferDiff({ source, target, snapshot: 'c1' });
      assertStats(retry, BigInt(SIZE));
      await assertSameSnapshot(src, dst, 'c1');
    });

  test('aborted after a short delay during an incremental: CancelledError, no end snapshot, a retry succeeds',
    { timeout: 180_000 }, async (t) => {
      const ts = clusterScratch(t);
      const rng = seeded(t, 'TRANSFER_TEST_SEED');
      const dst = await ts.create('a', 'backups', 'xfer-cancel-inc', SIZE);
      const target = await ts.open(dst);
      await transferDiff({ source, target, snapshot: 'c1' });
      // Rewrite half of the image in random places, so the diff is long.
      for (let i = 0; i < 32; i++) {
        const at = intBelow(rng, SIZE / (4 * MiB)) * 4 * MiB;
        await source.write(randomBytes(4 * MiB), at);
      }
      await source.discard(100 * MiB, 8 * MiB);
      const snapshot = uniqueName('c2');
      await source.createSnapshot(snapshot);
      ts.defer(() => source.removeSnapshot(snapshot));
      const controller = new AbortController();
      let settled = false;
      const transfer = transferDiff({
        source, target, snapshot, fromSnapshot: 'c1', concurrency: 1, memoryBytes: 4 * MiB,
        signal: controller.signal,
      });
      transfer.then(() => { settled = true; }, () => { settled = true; });
      setTimeout(() => controller.abort(), 20);
      await assertCephError(transfer, CancelledError, {
        code: 'ECANCELED', operation: 'transferDiff', resource: resourceOf(src, snapshot, dst),
        message: /cancelled \(.*\)/,
      });
      assert.ok(settled);
      assert.equal(await target.snapshotExists(snapshot), false, 'no end snapshot after a cancel');
      assert.deepEqual((await target.listSnapshots()).map((x) => x.name), ['c1']);
      await assertSameSnapshot(src, dst, 'c1', '(the from-snapshot is untouched)');

      await transferDiff({ source, target, snapshot, fromSnapshot: 'c1' });
      await assertSameSnapshot(src, dst, snapshot);
    });

  test('an already-aborted signal rejects before anything is written', { timeout: 60_000 }, async (t) => {
    const ts = clusterScratch(t);
    const dst = await ts.create('a', 'backups', 'xfer-preabort', SIZE);
    const target = await ts.open(dst);
    await target.write(randomBytes(1 * MiB), 3 * MiB);
    const before = await targetState(dst, target);
    const controller = new AbortController();
    controller.abort(new Error('never started'));
    let reports = 0;
    await assertCephError(transferDiff({
      source, target, snapshot: 'c1', signal: controller.signal, onProgress: () => { reports++; },
    }), CancelledError, {
      code: 'ECANCELED', operation: 'transferDiff', resource: resourceOf(src, 'c1', dst), message: /never started/,
    });
    assert.equal(reports, 0);
    assert.deepEqual(await targetState(dst, target), before);
  });

  test('an already-aborted signal leaves a target of another size unresized', { timeout: 60_000 }, async (t) => {
    const ts = clusterScratch(t);
    const dst = await ts.create('a', 'backups', 'xfer-preabort-size', 8 * MiB);
    const target = await ts.open(dst);
    await target.write(randomBytes(1 * MiB), 3 * MiB);
    const before = await targetState(dst, target);
    const controller = new AbortController();
    controller.abort();
    await assertCephError(transferDiff({ source, target, snapshot: 'c1', signal: controller.signal }),
      CancelledError, { code: 'ECANCELED', message: /cancelled/ });
    assert.deepEqual(await targetState(dst, target), before, 'the target is exactly as it was');
  });
});

// ---- refusals before any write ---------------------------------------------------

describe('transferDiff: refused before any write', () => {
  interface Setup {
    s: ClusterScratch;
    src: Made;
    dst: Made;
    source: Image;
    target: Image;
    before: TargetState;
  }

  /** A source with snapshots t1, t2; a target of another size holding data, with snapshot t1 of its own. */
  async function setup(t: TestContext): Promise<Setup> {
    const s = clusterScratch(t);
    const src = await s.create('a', 'rbd', 'xfer-refuse-src', 12 * MiB);
    const dst = await s.create('a', 'backups', 'xfer-refuse-dst', 9 * MiB + 4 * KiB);
    const source = await s.open(src);
    const target = await s.open(dst);
    await fill(source, 0, 12 * MiB);
    await source.createSnapshot('t1');
    await source.write(randomBytes(100), 5);
    await source.createSnapshot('t2');
    await fill(target, 2 * MiB, 5 * MiB);
    await target.createSnapshot('other');
    return { s, src, dst, source, target, before: await targetState(dst, target) };
  }

  test('the target already has the end snapshot: AlreadyExistsError, target unchanged', { timeout: 60_000 }, async (t) => {
    const { src, dst, source, target, before } = await setup(t);
    await source.createSnapshot('other');
    await assertCephError(transferDiff({ source, target, snapshot: 'other' }), AlreadyExistsError, {
      code: 'EEXIST', operation: 'transferDiff', resource: resourceOf(src, 'other', dst),
      message: /the target already has the end snapshot other/,
    });
    assert.deepEqual(await targetState(dst, target), before);
  });

  test('the from-snapshot missing on the target or the source: NotFoundError, target unchanged',
    { timeout: 60_000 }, async (t) => {
      const { src, dst, source, target, before } = await setup(t);
      const onTarget = await assertCephError(transferDiff({ source, target, snapshot: 't2', fromSnapshot: 't1' }),
        NotFoundError, {
          code: 'ENOENT', operation: 'transferDiff', resource: resourceOf(src, 't2', dst),
          message: new RegExp(`from-snapshot t1 does not exist on the target ${dst.spec}`),
        });
      assert.equal(onTarget.errno, 2);
      assert.deepEqual(await targetState(dst, target), before);
      await assertCephError(transferDiff({ source, target, snapshot: 't2', fromSnapshot: 'other' }), NotFoundError, {
        code: 'ENOENT', operation: 'transferDiff',
        message: new RegExp(`from-snapshot other does not exist on the source ${src.spec}`),
      });
      assert.deepEqual(await targetState(dst, target), before);
    });

  test('the end snapshot missing on the source: NotFoundError, target unchanged', { timeout: 60_000 }, async (t) => {
    const { dst, source, target, before } = await setup(t);
    await assertCephError(transferDiff({ source, target, snapshot: 'nope' }), NotFoundError, {
      code: 'ENOENT', message: /nope/,
    });
    assert.deepEqual(await targetState(dst, target), before);
  });

  test('bad names and options: InvalidArgumentError, target unchanged', { timeout: 60_000 }, async (t) => {
    const { s, dst, source, target, before } = await setup(t);
    const badNames: unknown[] = ['', 'a/b', 'a@b', 'nul\0here', 'x'.repeat(256), 42, null];
    for (const bad of badNames) {
      await assertCephError(transferDiff({ source, target, snapshot: bad as string }), InvalidArgumentError, {
        code: 'EINVAL', operation: 'transferDiff', message: /snapshot name/,
      });
      await assertCephError(transferDiff({ source, target, snapshot: 't2', fromSnapshot: bad as string }),
        InvalidArgumentError, { code: 'EINVAL', operation: 'transferDiff', message: /snapshot name/ });
    }
    const badOptions: Array<[Partial<TransferDiffOptions>, RegExp]> = [
      [{ concurrency: 0 }, /concurrency must be an integer in 1\.\.1024/],
      [{ concurrency: 1.5 }, /concurrency/],
      [{ concurrency: 5000 }, /concurrency/],
      [{ memoryBytes: 1 * MiB }, /memoryBytes must be an integer in 4194304\.\./],
      [{ onProgress: 'yes' as unknown as () => void }, /onProgress must be a function/],
    ];
    for (const [options, message] of badOptions) {
      await assertCephError(transferDiff({ source, target, snapshot: 't2', ...options }), InvalidArgumentError, {
        code: 'EINVAL', operation: 'transferDiff', message,
      });
    }
    const atSnapshot = await s.open(dst, 'other');
    await assertCephError(transferDiff({ source, target: atSnapshot, snapshot: 't2' }), InvalidArgumentError, {
      code: 'EINVAL', operation: 'transferDiff', message: /the target must be open at its head/,
    });
    assert.deepEqual(await targetState(dst, target), before);
  });
});
