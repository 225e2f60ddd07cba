/** The CLI's progress lines and text formats (lib/cli/progress.ts, format.ts). No cluster needed. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { crossedTenths, progressBar, progressLine, progressReporter } from '../../lib/cli/progress.js';
import { formatBytes, formatDuration, formatLocalTime, formatTable } from '../../lib/cli/format.js';

const MiB = 1 << 20;

describe('formats', () => {
  test('bytes, durations, local time, tables', () => {
    assert.equal(formatBytes(512), '512 B');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(formatBytes(16n * BigInt(MiB)), '16.0 MiB');
    assert.equal(formatBytes(3 * 2 ** 40), '3.0 TiB');
    assert.equal(formatDuration(5), '0:05');
    assert.equal(formatDuration(65.4), '1:05');
    assert.equal(formatDuration(3725), '1:02:05');
    const date = new Date(2026, 10, 30, 1, 2, 3);
    assert.equal(formatLocalTime(date), '2026-11-30 01:02:03');
    assert.equal(formatTable(['A', 'BB'], [['long', 'x'], ['s', 'yy']]), 'A     BB\nlong  x\ns     yy');
  });
});

describe('progress', () => {
  test('the terminal line: bar, percent, done/total, rate and ETA', () => {
    const line = progressBar('backup', { done: BigInt(64 * MiB), total: BigInt(256 * MiB), bytesRead: BigInt(10 * MiB) }, 2000);
    assert.equal(line, `backup [${'#'.repeat(6)}${' '.repeat(18)}]  25% 64.0 MiB/256.0 MiB 32.0 MiB/s ETA 0:06`);
    assert.doesNotMatch(progressBar('x', { done: 0n, total: 10n, bytesRead: 0n }, 0), /ETA/, 'no ETA before anything moved');
  });

  test('every tenth crossed is reported, none twice', () => {
    assert.deepEqual(crossedTenths(-1, { done: 0n, total: 100n, bytesRead: 0n }), [0]);
    assert.deepEqual(crossedTenths(0, { done: 35n, total: 100n, bytesRead: 0n }), [1, 2, 3]);
    assert.deepEqual(crossedTenths(3, { done: 39n, total: 100n, bytesRead: 0n }), []);
    assert.deepEqual(crossedTenths(3, { done: 100n, total: 100n, bytesRead: 0n }), [4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual(crossedTenths(-1, { done: 0n, total: 0n, bytesRead: 0n }), [0]);
  });

  test('the plain line names the step, the bytes and the rate', () => {
    assert.equal(progressLine('restore', 3, { done: BigInt(30 * MiB), total: BigInt(100 * MiB), bytesRead: BigInt(12 * MiB) }, 1000),
      'restore: 30% (30.0 MiB of 100.0 MiB, 12.0 MiB read, 30.0 MiB/s)');
  });

  test('not on a terminal: one line per tenth, in order, even when progress jumps', () => {
    const written: string[] = [];
    const stream = { isTTY: false, write: (text: string) => { written.push(text); return true; } } as unknown as NodeJS.WriteStream;
    const reporter = progressReporter('backup', stream);
    reporter.onProgress({ done: 0n, total: 100n, bytesRead: 0n });
    reporter.onProgress({ done: 55n, total: 100n, bytesRead: 55n });
    reporter.onProgress({ done: 100n, total: 100n, bytesRead: 100n });
    reporter.finish();
    assert.deepEqual(written.map((line) => /^backup: (\d+)%/.exec(line)?.[1]),
      ['0', '10', '20', '30', '40', '50', '60', '70', '80', '90', '100']);
  });
});
