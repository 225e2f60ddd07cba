/**
 * Fuzzing that could abort the process inside librbd runs in child
 * processes (test/fixtures/*-child.ts), so that a crash fails a test here
 * instead of ending the test run: corrupted diff streams, hostile arguments
 * to the binding and to BackupEngine, and, as a regression, streams whose size record is more
 * than librbd can represent (2^64-1 aborted the process in
 * ObjectMap::operator[] once resized to and written).
 *
 * RBD_FUZZ_ITERATIONS (default 150) and DIFF_FUZZ_SEED pass through to the children.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Pool } from '../../lib/index.js';
import { DIFF_HEADER, encodeExtentHead, encodeName, encodeSize, RECORD_END, RECORD_TO, RECORD_WRITE } from '../../lib/engine/diff-format.js';
import { maxImageSize } from '../../lib/ceph/limits.js';
import { closeTestPools, rbdExportSha256, testPool } from '../support/clusters.js';
import { clusterEnv, describeChild, runChild } from '../support/child.js';
import { scratch } from '../support/scratch.js';

const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));
const MiB = 1 << 20;
let pool: Pool;
let dir: string;

before(async () => {
  pool = await testPool('a', 'backups');
  dir = mkdtempSync(join(tmpdir(), 'diff-fuzz-'));
});

after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await closeTestPools();
});

/** Runs a node:test fixture in a child and fails unless all its tests passed. */
async function runFixture(name: string, timeoutMs: number): Promise<string[]> {
  const outcome = await runChild(fixture(name), [], await clusterEnv('a'), timeoutMs);
  assert.equal(outcome.signal, null, `the child was killed: ${describeChild(outcome)}`);
  assert.equal(outcome.code, 0, describeChild(outcome));
  // The child's own diagnostics (seed, outcomes), not its runner's summary.
  const summary = /^# (Subtest:|(tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) )/;
  return outcome.stdout.split('\n').filter((line) => line.startsWith('# ') && !summary.test(line));
}

test('a size record beyond what librbd can represent is refused in a child that survives, and the target is unchanged',
  { timeout: 120_000 }, async (t) => {
    const s = scratch(t, pool);
    // A new image, as in the reproduction: its first write after the resize is the one that aborted.
    const name = await s.createImage('over-limit', 8 * MiB);
    const image = await s.open(name);
    const sha = await rbdExportSha256('a', `backups/${name}`);
    const over = maxImageSize({ objectSize: 4n << 20n, stripeUnit: 4n << 20n, stripeCount: 1n }) + 1n;
    for (const size of [(1n << 64n) - 1n, (1n << 64n) - (4n << 20n), 1n << 63n, over]) {
      // A size record, then a write: the write after the resize is what failed librbd's assertion.
      const stream = Buffer.concat([DIFF_HEADER, encodeName(RECORD_TO, 'after'), encodeSize(size),
        encodeExtentHead(RECORD_WRITE, 0n, 4096n), Buffer.alloc(4096, 9), Buffer.from([RECORD_END])]);
      const file = join(dir, `size-${size}.bin`);
      writeFileSync(file, stream);
      const outcome = await runChild(fixture('import-child.js'), [file, 'backups', name], await clusterEnv('a'), 60_000);
      assert.equal(outcome.signal, null, `size ${size}: the child was killed: ${describeChild(outcome)}`);
      assert.equal(outcome.code, 0, `size ${size}: ${describeChild(outcome)}`);
      const line = outcome.stdout.split('\n').find((l) => l.startsWith('IMPORT-OUTCOME '));
      assert.ok(line, describeChild(outcome));
      const result = JSON.parse(line.slice('IMPORT-OUTCOME '.length)) as { name?: string; message?: string };
      assert.equal(result.name, 'DiffStreamError', `size ${size}: ${line}`);
      assert.match(result.message ?? '', new RegExp(`image size ${size} is larger than ${over - 1n}`));
      assert.equal((await image.stat()).size, BigInt(8 * MiB));
      assert.deepEqual(await image.listSnapshots(), []);
      assert.equal(await rbdExportSha256('a', `backups/${name}`), sha);
    }
  });

test('corrupted diff streams, in a child process', { timeout: 900_000 }, async (t) => {
  for (const line of await runFixture('diff-fuzz-child.js', 850_000)) t.diagnostic(line.slice(2));
});

test('hostile arguments to the binding, in a child process', { timeout: 600_000 }, async (t) => {
  for (const line of await runFixture('argument-fuzz-child.js', 550_000)) t.diagnostic(line.slice(2));
});

test('hostile arguments to BackupEngine and the backup exports, in a child process', { timeout: 600_000 }, async (t) => {
  for (const line of await runFixture('engine-argument-fuzz-child.js', 550_000)) t.diagnostic(line.slice(2));
});
