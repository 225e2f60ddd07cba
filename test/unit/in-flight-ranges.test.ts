/**
 * InFlightRanges (lib/engine/in-flight-ranges.ts): an operation waits for
 * exactly the earlier ones that overlap its range, whether they succeed or
 * fail, and nothing else. No cluster needed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InFlightRanges } from '../../lib/engine/in-flight-ranges.js';

/** A promise settled from outside, and whether it has settled. */
function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void } {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

/** Whether the promise settles within a few turns of the event loop. */
async function settlesSoon(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  void promise.then(() => { settled = true; }, () => { settled = true; });
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  return settled;
}

test('a range that overlaps nothing in flight does not wait', async () => {
  const ranges = new InFlightRanges();
  const op = deferred();
  void ranges.track(0n, 100n, op.promise);
  assert.equal(await settlesSoon(ranges.overlapsSettled(100n, 200n)), true, 'touching at the end is no overlap');
  assert.equal(await settlesSoon(ranges.overlapsSettled(1000n, 2000n)), true);
  assert.equal(await settlesSoon(ranges.overlapsSettled(50n, 50n)), true, 'an empty range overlaps nothing');
  op.resolve();
});

test('an overlapping range waits until every overlapping operation has settled', async () => {
  const ranges = new InFlightRanges();
  const first = deferred();
  const second = deferred();
  void ranges.track(0n, 5000n, first.promise);
  void ranges.track(6000n, 9000n, second.promise);
  const waiting = ranges.overlapsSettled(4000n, 8392n);
  assert.equal(await settlesSoon(waiting), false);
  first.resolve();
  assert.equal(await settlesSoon(waiting), false, 'still overlaps the second');
  second.resolve();
  assert.equal(await settlesSoon(waiting), true);
  assert.equal(ranges.size, 0, 'settled operations are forgotten');
});

test('a failed operation releases its range; track returns the operation itself', async () => {
  const ranges = new InFlightRanges();
  const op = deferred();
  const tracked = ranges.track(0n, 10n, op.promise);
  const waiting = ranges.overlapsSettled(5n, 6n);
  op.reject(new Error('write failed'));
  await assert.rejects(tracked, /write failed/);
  assert.equal(await settlesSoon(waiting), true);
  assert.equal(ranges.size, 0);
});

test('ranges partly inside, around and inside another all overlap it', async () => {
  const ranges = new InFlightRanges();
  const op = deferred();
  void ranges.track(100n, 200n, op.promise);
  for (const [start, end] of [[0n, 101n], [199n, 300n], [0n, 1000n], [150n, 151n]] as const) {
    assert.equal(await settlesSoon(ranges.overlapsSettled(start, end)), false, `${start}..${end}`);
  }
  op.resolve();
});

test('an empty operation holds no range', async () => {
  const ranges = new InFlightRanges();
  const op = deferred();
  void ranges.track(50n, 50n, op.promise);
  assert.equal(ranges.size, 0);
  assert.equal(await settlesSoon(ranges.overlapsSettled(0n, 100n)), true);
  op.resolve();
});
