/**
 * Long native calls must not block the JavaScript thread (DESIGN §3). A
 * 10 ms interval runs while a flatten, a big read and big diff iterations
 * run; the largest gap between its ticks must stay far below the duration of
 * the operation, which is sized to last well beyond the gap bound, so a call
 * that blocked the thread would show its whole duration as one gap.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import {
  type Pool,
} from '../../lib/index.js';
import { scratch, Scratch } from '../support/scratch.js';
import { closeTestPools, rbdExportSha256, sha256, testPool } from '../support/clusters.js';

const MiB = 1024 * 1024;
const POOL = 'rbd';
const TICK_MS = 10;
/** Generous: the bar is that nothing blocks; a blocking call shows its full duration. */
const GAP_BOUND_MS = 200;
const PARENT_SIZE = 256 * MiB;

let pool: Pool;

before(async () => {
  pool = await testPool('a', POOL);
});

after(closeTestPools);

interface Measured<T> {
  result: T;
  durationMs: number;
  ticks: number;
  /** Largest time between operation start, each tick and operation end. */
  maxGapMs: number;
  /** Largest event-loop delay perf_hooks saw, in ms. */
  maxDelayMs: number;
}

/** Runs op while a 10 ms interval ticks, and measures how the event loop fared. */
async function measure<T>(op: () => Promise<T>): Promise<Measured<T>> {
  const histogram = monitorEventLoopDelay({ resolution: TICK_MS });
  const ticks: number[] = [];
  histogram.enable();
  const start = performance.now();
  const timer = setInterval(() => ticks.push(performance.now()), TICK_MS);
  let result: T;
  let end: number;
  try {
    result = await op();
  } finally {
    end = performance.now();
    clearInterval(timer);
    histogram.disable();
  }
  const points = [start, ...ticks, end];
  let maxGapMs = 0;
  for (let i = 1; i < points.length; i++) maxGapMs = Math.max(maxGapMs, points[i]! - points[i - 1]!);
  return { result, durationMs: end - start, ticks: ticks.length, maxGapMs, maxDelayMs: histogram.max / 1e6 };
}

function assertResponsive(t: TestContext, what: string, m: Measured<unknown>): void {
  const detail = `${what}: ${m.durationMs.toFixed(0)} ms, ${m.ticks} ticks, largest gap ` +
    `${m.maxGapMs.toFixed(1)} ms, largest loop delay ${m.maxDelayMs.toFixed(1)} ms`;
  t.diagnostic(detail);
  // Otherwise a call that blocked the whole time could still pass.
  assert.ok(m.durationMs > GAP_BOUND_MS, `the operation must outlast the gap bound (${detail})`);
  assert.ok(m.maxGapMs < GAP_BOUND_MS, `the interval kept firing (${detail})`);
  assert.ok(m.maxDelayMs < GAP_BOUND_MS, `the event loop was never delayed long (${detail})`);
  const expected = m.durationMs / TICK_MS;
  assert.ok(m.ticks >= Math.max(20, expected / 4), `the interval fired many times (${detail})`);
}

describe('the JavaScript thread keeps running during long native calls', () => {
  let s: Scratch;
  let parentName: string;
  let parentSha: string;

  before(async () => {
    s = new Scratch(pool);
    // 16 KiB objects: per-object work makes the flatten and the read last
    // several times the gap bound even on a fast machine.
    parentName = await s.createImage('loop-parent', PARENT_SIZE, { order: 14 });
    const parent = await s.open(parentName);
    const hash = createHash('sha256');
    for (let offset = 0; offset < PARENT_SIZE; offset += 16 * MiB) {
      const data = randomBytes(16 * MiB);
      await parent.write(data, offset);
      hash.update(data);
    }
    parentSha = hash.digest('hex');
    await parent.createSnapshot('base');
    await parent.protectSnapshot('base');
  }, { timeout: 120_000 });

  after(() => s?.dispose(), { timeout: 120_000 });

  test('while a clone of a 256 MiB parent (16384 objects) is flattened', { timeout: 300_000 }, async (t) => {
    const local = scratch(t, pool);
    const childName = await local.clone(parentName, 'base', 'loop-child');
    const child = await local.open(childName);
    let progressCalls = 0;
    const m = await measure(() => child.flatten({ onProgress: () => { progressCalls++; } }));
    assertResponsive(t, 'flatten', m);
    assert.ok(progressCalls > 0, 'progress reached JavaScript during the flatten');
    assert.equal(await child.parent(), null);
    assert.equal(await rbdExportSha256('a', `${POOL}/${childName}`), parentSha);
  });

  test('while 256 MiB (16384 objects) are read in one call', { timeout: 300_000 }, async (t) => {
    const snap = await s.open(parentName, { snapshot: 'base' });
    const m = await measure(() => snap.read(0, PARENT_SIZE));
    assertResponsive(t, 'read', m);
    assert.equal(m.result.length, PARENT_SIZE);
    assert.equal(sha256(m.result), parentSha);
  });

  test('while a big sparse image is diffed and probed for extents', { timeout: 300_000 }, async (t) => {
    const local = scratch(t, pool);
    // Without an object map librbd asks the OSD about every one of the
    // 32768 objects: one hasExtents call takes long, and so does the diff.
    const size = 128 * MiB;
    const objectSize = 4096;
    const name = await local.createImage('loop-sparse', size, { order: 12, features: ['layering'] });
    const image = await local.open(name);
    const writes = [0, 37 * MiB + 5, size - 4096];
    for (const offset of writes) await image.write(randomBytes(100), offset);

    const m = await measure(async () => {
      const extents: Array<[bigint, bigint, boolean]> = [];
      for await (const batch of image.diff()) {
        for (const x of batch) extents.push([x.offset, x.length, x.exists]);
      }
      return extents;
    });
    assertResponsive(t, 'diff', m);
    assert.deepEqual(m.result, writes.map((offset) => {
      const object = Math.floor(offset / objectSize) * objectSize;
      return [BigInt(object), BigInt(offset + 100 - object), true];
    }));

    // hasExtents is one rbd_diff_iterate2 call over the whole image; with
    // the only data gone it has to look at every object.
    for (const offset of writes) await image.discard(Math.floor(offset / objectSize) * objectSize, objectSize);
    const probe = await measure(() => image.hasExtents());
    assertResponsive(t, 'hasExtents', probe);
    assert.equal(probe.result, false);
  });
});
