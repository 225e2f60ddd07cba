/**
 * copyImage (lib/engine/copy.ts), the full-copy restore path, against real
 * clusters: into a new image and into used ones (larger, holding random
 * data), a final partial chunk, sparse sources, the excess beyond the
 * source, refusals and cancellation. Every data check compares `rbd export`
 * checksums of the source snapshot with the target (its first N bytes when
 * it is larger).
 *
 * Offsets come from a seeded PRNG; the seed is logged and
 * COPY_TEST_SEED=<n> replays a run.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  CancelledError, copyImage, DEFAULT_CHUNK_SIZE, InvalidArgumentError, NotFoundError,
  type CopyImageOptions, type CopyStats, type Image, type Progress,
} from '../../lib/index.js';
import { intBelow } from '../../lib/dev/prng.js';
import { closeTestPools, sha256, testCluster, testPool, uniqueName, type Which } from '../support/clusters.js';
import {
  clusterScratch, exportSha, fill, mutate, offsetIn, resourceOf, seeded, type Made,
} from '../support/cluster-scratch.js';
import { assertCephError, progressLog, show } from '../support/checks.js';

const KiB = 1024;
const MiB = 1024 * KiB;

before(async () => {
  await testPool('a', 'rbd');
  await testPool('a', 'backups');
});

after(closeTestPools);

const ZEROES = Buffer.alloc(4 * MiB);

/** `rbd export` of spec: sha256 of its first `head` bytes, and where the rest is not zero. */
async function rbdExportSplit(which: Which, spec: string, head: number): Promise<{
  headSha: string; tailLength: number; tailNonZero: Array<[number, number]>;
}> {
  const { info } = await testCluster(which);
  return new Promise((resolve, reject) => {
    const child = spawn('rbd', ['-c', info.conf, '--keyring', info.keyring, 'export', '--no-progress', spec, '-'],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    const hash = createHash('sha256');
    let position = 0;
    let stderr = '';
    // Non-zero runs of the tail, as absolute [start, end) offsets, merged.
    const tailNonZero: Array<[number, number]> = [];
    child.stdout.on('data', (chunk: Buffer) => {
      const inHead = Math.max(0, Math.min(chunk.length, head - position));
      if (inHead > 0) hash.update(chunk.subarray(0, inHead));
      const tail = chunk.subarray(inHead);
      if (tail.length === 0 || (tail.length <= ZEROES.length && tail.equals(ZEROES.subarray(0, tail.length)))) {
        position += chunk.length;
        return;
      }
      for (let i = inHead; i < chunk.length; i++) {
        if (chunk[i] === 0) continue;
        const at = position + i;
        const last = tailNonZero.at(-1);
        if (last && last[1] === at) last[1] = at + 1;
        else tailNonZero.push([at, at + 1]);
      }
      position += chunk.length;
    });
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    child.once('error', reject);
    child.once('close', (code) => {
      if (code === 0) resolve({ headSha: hash.digest('hex'), tailLength: Math.max(0, position - head), tailNonZero });
      else reject(new Error(`rbd export ${spec} exited ${code}: ${stderr.trim()}`));
    });
  });
}

/** Snapshots the target and checks it against source@snapshot (first N bytes when the target is larger). */
async function assertCopied(src: Made, snapshot: string, dst: Made, target: Image, size: number): Promise<void> {
  const name = uniqueName('check');
  await target.createSnapshot(name);
  const expected = await exportSha(src, snapshot);
  const targetSize = Number((await target.stat()).size);
  if (targetSize === size) {
    assert.equal(await exportSha(dst, name), expected, `${dst.spec} differs from ${src.spec}@${snapshot}`);
  } else {
    const split = await rbdExportSplit(dst.which, `${dst.spec}@${name}`, size);
    assert.equal(split.headSha, expected, `the first ${size} bytes of ${dst.spec} differ from ${src.spec}@${snapshot}`);
  }
  await target.removeSnapshot(name);
}

function assertProgress(reports: readonly Progress[], total: number, stats: CopyStats): void {
  assert.ok(reports.length > 0, 'at least one progress report');
  let previous = 0n;
  for (const report of reports) {
    assert.equal(report.total, BigInt(total));
    assert.ok(report.done <= report.total, `done ${report.done} <= total ${report.total}`);
    assert.ok(report.done >= previous, `done goes forward (${previous} -> ${report.done})`);
    previous = report.done;
  }
  assert.equal(reports.at(-1)!.done, BigInt(total), 'the last report is done == total');
  assert.equal(reports.at(-1)!.bytesRead, stats.bytesRead);
}

function assertStats(stats: CopyStats, size: number, discarded = 0): void {
  assert.equal(stats.size, BigInt(size));
  assert.equal(stats.bytesDiscarded, BigInt(discarded));
  for (const key of ['bytesRead', 'bytesWritten', 'bytesZeroed', 'bytesSkipped'] as const) {
    assert.ok(typeof stats[key] === 'bigint' && stats[key] >= 0n, `${key}: ${stats[key]}`);
  }
  for (const key of ['extents', 'ops'] as const) {
    assert.ok(Number.isSafeInteger(stats[key]) && stats[key] >= 0, `${key}: ${stats[key]}`);
  }
}

describe('copyImage: data', () => {
  test('into a new empty image of the same size (default and small unaligned chunks)', { timeout: 120_000 }, async (t) => {
    const s = clusterScratch(t);
    const rng = seeded(t, 'COPY_TEST_SEED');
    const SIZE = 40 * MiB + 8 * KiB;
    const src = await s.create('a', 'rbd', 'copy-new-src', SIZE);
    const source = await s.open(src);
    await mutate(source, rng, SIZE, 14);
    await source.write(randomBytes(8 * KiB), SIZE - 8 * KiB);
    await source.createSnapshot('snap');
    assert.equal(DEFAULT_CHUNK_SIZE, 128n * 1024n * 1024n);
    for (const chunkSize of [undefined, 1 * MiB + 4 * KiB, 5n * 1024n * 1024n + 1n]) {
      const dst = await s.create('a', 'backups', 'copy-new-dst', SIZE);
      const target = await s.open(dst);
      const { reports, onProgress } = progressLog();
      const stats = await copyImage({ source, snapshot: 'snap', target, chunkSize, onProgress });
      assertStats(stats, SIZE);
      assert.ok(stats.bytesRead > 0 && stats.extents > 0, show(stats));
      assert.equal(stats.bytesZeroed, 0n, 'nothing to zero on a new image');
      assertProgress(reports, SIZE, stats);
      await assertCopied(src, 'snap', dst, target, SIZE);
    }
  });

  test('final partial chunk: chunkSize 3 MiB, a 17 MiB + 4 KiB source with data at its very end',
    { timeout: 120_000 }, async (t) => {
      const s = clusterScratch(t);
      const rng = seeded(t, 'COPY_TEST_SEED');
      const SIZE = 17 * MiB + 4 * KiB;
      const src = await s.create('a', 'rbd', 'copy-tail-src', SIZE);
      const source = await s.open(src);
      await mutate(source, rng, 15 * MiB, 4);
      // Inside the last, partial chunk (15 MiB .. 17 MiB + 4 KiB), up to the last byte.
      await source.write(randomBytes(700 * KiB + 3), 15 * MiB + 100);
      await source.write(randomBytes(4 * KiB), SIZE - 4 * KiB);
      await source.createSnapshot('snap');
      for (const used of [false, true]) {
        const dst = await s.create('a', 'backups', 'copy-tail-dst', SIZE);
        const target = await s.open(dst);
        if (used) await fill(target, 0, SIZE);
        const stats = await copyImage({ source, snapshot: 'snap', target, chunkSize: 3 * MiB });
        assertStats(stats, SIZE);
        await assertCopied(src, 'snap', dst, target, SIZE);
        const tail = await target.read(SIZE - 4 * KiB, 4 * KiB);
        const expected = await (await s.open(src, 'snap')).read(SIZE - 4 * KiB, 4 * KiB);
        assert.deepEqual(tail, expected, `the last 4 KiB (used target: ${used})`);
      }
    });

  test('a sparse source (mostly holes) into a used target: the holes are zeroed', { timeout: 120_000 }, async (t) => {
    const s = clusterScratch(t);
    const rng = seeded(t, 'COPY_TEST_SEED');
    const SIZE = 64 * MiB;
    const src = await s.create('a', 'rbd', 'copy-sparse-src', SIZE);
    const source = await s.open(src);
    for (let i = 0; i < 4; i++) await source.write(randomBytes(1 + intBelow(rng, 64 * KiB)), offsetIn(rng, SIZE - 64 * KiB));
    await source.createSnapshot('snap');
    for (const chunkSize of [undefined, 7 * MiB + 12 * KiB]) {
      const dst = await s.create('a', 'backups', 'copy-sparse-dst', SIZE, { order: 20 });
      const target = await s.open(dst);
      await fill(target, 0, SIZE);
      const stats = await copyImage({ source, snapshot: 'snap', target, chunkSize });
      assertStats(stats, SIZE);
      assert.ok(stats.bytesZeroed > SIZE / 2, `the holes were zeroed: ${show(stats)}`);
      assert.equal(stats.bytesSkipped, 0n, 'nothing skipped on a used target');
      await assertCopied(src, 'snap', dst, target, SIZE);
    }
  });

  test('skipZeroes false on a new image still gives the same bytes', { timeout: 60_000 }, async (t) => {
    const s = clusterScratch(t);
    const rng = seeded(t, 'COPY_TEST_SEED');
    const SIZE = 12 * MiB;
    const src = await s.create('a', 'rbd', 'copy-noskip-src', SIZE);
    const source = await s.open(src);
    await mutate(source, rng, SIZE, 5);
    await source.createSnapshot('snap');
    const dst = await s.create('a', 'backups', 'copy-noskip-dst', SIZE);
    const target = await s.open(dst);
    const stats = await copyImage({ source, snapshot: 'snap', target, skipZeroes: false, chunkSize: 1 * MiB });
    assert.equal(stats.bytesSkipped, 0n);
    await assertCopied(src, 'snap', dst, target, SIZE);
  });

  test('cross-cluster, order 22 -> 20, into a used target', { timeout: 120_000 }, async (t) => {
    const s = clusterScratch(t);
    const rng = seeded(t, 'COPY_TEST_SEED');
    const SIZE = 20 * MiB + 12 * KiB;
    const src = await s.create('a', 'rbd', 'copy-x-src', SIZE, { order: 22 });
    const source = await s.open(src);
    await mutate(source, rng, SIZE, 8);
    await source.createSnapshot('snap');
    const dst = await s.create('b', 'backups', 'copy-x-dst', SIZE, { order: 20 });
    const target = await s.open(dst);
    await fill(target, 0, SIZE);
    const stats = await copyImage({ source, snapshot: 'snap', target, chunkSize: 2 * MiB });
    assertStats(stats, SIZE);
    await assertCopied(src, 'snap', dst, target, SIZE);
  });
});

describe('copyImage: a larger target holding data', () => {
  async function larger(t: TestContext, sourceSize: number, excess: number): Promise<{
    src: Made; dst: Made; source: Image; target: Image; oldTail: Buffer;
  }> {
    const s = clusterScratch(t);
    const rng = seeded(t, 'COPY_TEST_SEED');
    const src = await s.create('a', 'rbd', 'copy-big-src', sourceSize);
    const source = await s.open(src);
    await mutate(source, rng, sourceSize, 8);
    await source.write(randomBytes(4 * KiB), sourceSize - 4 * KiB);
    await source.createSnapshot('snap');
    const dst = await s.create('a', 'backups', 'copy-big-dst', sourceSize + excess);
    const target = await s.open(dst);
    await fill(target, 0, sourceSize + excess);
    const oldTail = await target.read(sourceSize, excess);
    return { src, dst, source, target, oldTail };
  }

  test('the first N bytes equal the source; the excess is discarded (default) and counted', { timeout: 120_000 },
    async (t) => {
      const SIZE = 17 * MiB + 4 * KiB;
      const EXCESS = 6 * MiB + 8 * KiB;
      const { src, dst, source, target } = await larger(t, SIZE, EXCESS);
      const stats = await copyImage({ source, snapshot: 'snap', target, chunkSize: 3 * MiB });
      assertStats(stats, SIZE, EXCESS);
      assert.equal((await target.stat()).size, BigInt(SIZE + EXCESS), 'the target keeps its size');
      await assertCopied(src, 'snap', dst, target, SIZE);
    });

  test('discardExcess false: the excess keeps its old bytes', { timeout: 120_000 }, async (t) => {
    const SIZE = 9 * MiB;
    const EXCESS = 3 * MiB + 5;
    const { src, dst, source, target, oldTail } = await larger(t, SIZE, EXCESS);
    const stats = await copyImage({ source, snapshot: 'snap', target, discardExcess: false });
    assertStats(stats, SIZE, 0);
    await assertCopied(src, 'snap', dst, target, SIZE);
    assert.equal(sha256(await target.read(SIZE, EXCESS)), sha256(oldTail));
  });

  test('the discarded excess reads as zeros when the source ends on a 64 KiB boundary', { timeout: 120_000 },
    async (t) => {
      const SIZE = 17 * MiB; // inside an object, on rbd_discard_granularity_bytes
      const EXCESS = 5 * MiB + 4 * KiB;
      const { src, dst, source, target } = await larger(t, SIZE, EXCESS);
      await copyImage({ source, snapshot: 'snap', target });
      const name = uniqueName('after');
      await target.createSnapshot(name);
      const split = await rbdExportSplit('a', `${dst.spec}@${name}`, SIZE);
      assert.equal(split.headSha, await exportSha(src, 'snap'));
      assert.equal(split.tailLength, EXCESS);
      assert.deepEqual(split.tailNonZero, [], 'the excess reads as zeros');
    });

  // rbd_discard may skip the unaligned head of a range (rbd_skip_partial_discard,
  // 64 KiB granularity); this pins down that the excess still reads as zeros.
  test('the discarded excess reads as zeros when the source ends inside a 64 KiB block', { timeout: 120_000 },
    async (t) => {
      const SIZE = 17 * MiB + 4 * KiB;
      const EXCESS = 6 * MiB + 8 * KiB;
      const { src, dst, source, target } = await larger(t, SIZE, EXCESS);
      await copyImage({ source, snapshot: 'snap', target });
      const name = uniqueName('after');
      await target.createSnapshot(name);
      const split = await rbdExportSplit('a', `${dst.spec}@${name}`, SIZE);
      assert.equal(split.headSha, await exportSha(src, 'snap'));
      if (split.tailNonZero.length > 0) {
        t.diagnostic(`non-zero ranges in the excess: ${show(split.tailNonZero.slice(0, 5))}` +
          `${split.tailNonZero.length > 5 ? ` and ${split.tailNonZero.length - 5} more` : ''}`);
      }
      assert.deepEqual(split.tailNonZero, [], 'the excess reads as zeros');
    });
});

describe('copyImage: large thin images', () => {
  test('an excess beyond 2 GiB is discarded (in pieces below rbd_discard\'s limit)', { timeout: 300_000 }, async (t) => {
    const s = clusterScratch(t);
    const SIZE = 4 * MiB;
    const EXCESS = 2 * 1024 * MiB + 8 * MiB;
    const src = await s.create('a', 'rbd', 'copy-huge-src', SIZE);
    const source = await s.open(src);
    await source.write(randomBytes(SIZE), 0);
    await source.createSnapshot('snap');
    const dst = await s.create('a', 'backups', 'copy-huge-dst', SIZE + EXCESS);
    const target = await s.open(dst);
    // Thin: data only at the start, the start of the excess, across 2 GiB into it, and at the end.
    const spots = [0, SIZE, SIZE + 2 * 1024 * MiB - 512 * KiB, SIZE + EXCESS - MiB];
    for (const at of spots) await target.write(randomBytes(MiB), at);
    const stats = await copyImage({ source, snapshot: 'snap', target });
    assertStats(stats, SIZE, EXCESS);
    for (const at of spots.slice(1)) {
      assert.equal((await target.read(at, MiB)).findIndex((b) => b !== 0), -1, `excess at ${at} reads as zeros`);
    }
    const name = uniqueName('after');
    await target.createSnapshot(name);
    const split = await rbdExportSplit('a', `${dst.spec}@${name}`, SIZE);
    assert.equal(split.headSha, await exportSha(src, 'snap'));
    assert.equal(split.tailLength, EXCESS);
    assert.deepEqual(split.tailNonZero, []);
  });
});

describe('copyImage: refusals and cancel', () => {
  test('a target smaller than the source: InvalidArgumentError, target unchanged', { timeout: 60_000 }, async (t) => {
    const s = clusterScratch(t);
    const src = await s.create('a', 'rbd', 'copy-small-src', 8 * MiB + 1);
    const source = await s.open(src);
    await fill(source, 0, 8 * MiB + 1);
    await source.createSnapshot('snap');
    const dst = await s.create('a', 'backups', 'copy-small-dst', 8 * MiB);
    const target = await s.open(dst);
    await fill(target, 0, 8 * MiB);
    const before = await exportSha(dst);
    await assertCephError(copyImage({ source, snapshot: 'snap', target }), InvalidArgumentError, {
      code: 'EINVAL', operation: 'copyImage', resource: resourceOf(src, 'snap', dst),
      message: /the target is 8388608 bytes, smaller than the source's 8388609/,
    });
    assert.equal(await exportSha(dst), before);
    assert.equal((await target.stat()).size, BigInt(8 * MiB));
  });

  test('bad arguments: InvalidArgumentError; a missing snapshot: NotFoundError; target unchanged', { timeout: 60_000 },
    async (t) => {
      const s = clusterScratch(t);
      const src = await s.create('a', 'rbd', 'copy-bad-src', 4 * MiB);
      const source = await s.open(src);
      await source.write(randomBytes(MiB), 0);
      await source.createSnapshot('snap');
      const dst = await s.create('a', 'backups', 'copy-bad-dst', 4 * MiB);
      const target = await s.open(dst);
      await target.write(randomBytes(MiB), MiB);
      await target.createSnapshot('mine');
      const before = await exportSha(dst);
      const bad: Array<[Partial<CopyImageOptions>, RegExp]> = [
        [{ chunkSize: 0 }, /chunkSize must be at least 1048576 bytes/],
        [{ chunkSize: 4096 }, /chunkSize must be at least 1048576 bytes \(default 134217728\), got 4096/],
        [{ chunkSize: -1 }, /chunkSize must be a non-negative integer/],
        [{ chunkSize: 1.5 }, /chunkSize must be a non-negative integer/],
        [{ chunkSize: 1n << 64n }, /chunkSize .* is outside 0\.\.2\^64-1/],
        [{ snapshot: 'a/b' }, /snapshot name "a\/b" must not contain/],
        [{ snapshot: '' }, /snapshot name must not be empty/],
        [{ concurrency: 0 }, /concurrency must be an integer/],
        [{ memoryBytes: 100 }, /memoryBytes must be an integer/],
      ];
      for (const [options, message] of bad) {
        await assertCephError(copyImage({ source, snapshot: 'snap', target, ...options }), InvalidArgumentError, {
          code: 'EINVAL', operation: 'copyImage', message,
        });
      }
      const atSnapshot = await s.open(dst, 'mine');
      await assertCephError(copyImage({ source, snapshot: 'snap', target: atSnapshot }), InvalidArgumentError, {
        code: 'EINVAL', operation: 'copyImage', message: /the target must be open at its head/,
      });
      await assertCephError(copyImage({ source, snapshot: 'missing', target }), NotFoundError, {
        code: 'ENOENT', message: /missing/,
      });
      assert.equal(await exportSha(dst), before);
    });

  test('cancel: aborted from onProgress gives CancelledError; an already-aborted signal writes nothing; a retry succeeds',
    { timeout: 180_000 }, async (t) => {
      const s = clusterScratch(t);
      const SIZE = 128 * MiB;
      const src = await s.create('a', 'rbd', 'copy-cancel-src', SIZE);
      const source = await s.open(src);
      await fill(source, 0, SIZE);
      await source.createSnapshot('snap');
      const dst = await s.create('a', 'backups', 'copy-cancel-dst', SIZE + 4 * MiB);
      const target = await s.open(dst);
      await target.write(randomBytes(2 * MiB), SIZE + MiB);

      const before = await exportSha(dst);
      const pre = new AbortController();
      pre.abort();
      await assertCephError(copyImage({ source, snapshot: 'snap', target, signal: pre.signal }), CancelledError, {
        code: 'ECANCELED', operation: 'copyImage', resource: resourceOf(src, 'snap', dst), message: /cancelled/,
      });
      assert.equal(await exportSha(dst), before, 'an already-aborted copy writes nothing');

      const controller = new AbortController();
      let abortedAt: Progress | undefined;
      await assertCephError(copyImage({
        source, snapshot: 'snap', target, concurrency: 1, memoryBytes: 4 * MiB, chunkSize: 16 * MiB,
        signal: controller.signal,
        onProgress: (p) => {
          if (abortedAt) return;
          abortedAt = { ...p };
          controller.abort(new Error('enough'));
        },
      }), CancelledError, {
        code: 'ECANCELED', operation: 'copyImage', resource: resourceOf(src, 'snap', dst), message: /cancelled \(enough\)/,
      });
      assert.ok(abortedAt && abortedAt.done < abortedAt.total, `aborted mid-way: ${show(abortedAt)}`);
      t.diagnostic(`aborted at ${show(abortedAt)}`);
      // The excess is only discarded after a copy that finished.
      assert.deepEqual((await target.read(SIZE + MiB, 2 * MiB)).some((b) => b !== 0), true);

      const stats = await copyImage({ source, snapshot: 'snap', target });
      assertStats(stats, SIZE, 4 * MiB);
      await assertCopied(src, 'snap', dst, target, SIZE);
    });
});
