/**
 * Transfers that resume (lib/engine/resume.ts) against a real cluster: a
 * transferDiff (whole history with digests, and an incremental) and a
 * copyImage into a used target, each SIGKILLed in a child process halfway,
 * then run again with the same arguments: the second run picks up where
 * the record on the target says, reads only the rest (from its stats),
 * and the target ends byte-identical to the source snapshot (sha256 of
 * `rbd export`), with digests equal to those of the whole snapshot. A
 * record of another transfer (the snapshot made again under its name) is
 * not taken: the run starts clean and says why.
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { copyImage, DigestTable, hashImage, transferDiff, type Image } from '../../lib/index.js';
import { RESUME_KEY } from '../../lib/engine/resume.js';
import { closeTestPools, testCluster, testPool } from '../support/clusters.js';
import { assertSameSnapshot, clusterScratch, exportSha, fill, type Made } from '../support/cluster-scratch.js';
import { startFixture } from '../support/fixture-process.js';

const MiB = 1024 * 1024;
const SIZE = 48 * MiB;
const BLOCK = 64n * 1024n;
const CHILD = fileURLToPath(new URL('../fixtures/resume-child.js', import.meta.url));

before(async () => {
  await testPool('a', 'rbd');
});

after(closeTestPools);

/** Runs the child's transfer and kills it halfway; returns the progress it recorded on the target. */
async function killedHalfway(kind: 'diff' | 'copy', source: Made, target: Made, snapshot: string,
  extra: Record<string, string> = {}): Promise<bigint> {
  const { info } = await testCluster('a');
  const fixture = startFixture(CHILD, [kind], {
    env: {
      FIXTURE_CONF: info.conf, FIXTURE_KEYRING: info.keyring, FIXTURE_POOL: 'rbd',
      FIXTURE_SOURCE: source.name, FIXTURE_TARGET: target.name, FIXTURE_SNAPSHOT: snapshot, ...extra,
    },
    timeoutMs: 120_000,
  });
  await fixture.line('HALF');
  const image = await target.pool.openImage(target.name, { readOnly: true });
  try {
    // Killed once a record is there (it is written every 20 ms).
    let record: string | undefined;
    for (let look = 0; look < 100 && record === undefined; look++) {
      record = await image.getMetadata(RESUME_KEY);
      if (record === undefined) await sleep(20);
    }
    fixture.child.kill('SIGKILL');
    const { signal, stdout } = await fixture.exited;
    assert.equal(signal, 'SIGKILL', `killed halfway (it printed: ${stdout.trim()})`);
    assert.ok(!stdout.includes('DONE'));
    record = await image.getMetadata(RESUME_KEY);
    assert.ok(record !== undefined, 'the killed transfer left its progress on the target');
    const done = BigInt((JSON.parse(record) as { done: string }).done);
    assert.ok(done > 0n && done < BigInt(SIZE), `recorded progress ${done}`);
    return done;
  } finally {
    await image.close();
  }
}

async function sourceWithData(t: TestContext): Promise<{ source: Made; image: Image; scratch: ReturnType<typeof clusterScratch> }> {
  const scratch = clusterScratch(t);
  const source = await scratch.create('a', 'rbd', 'rs-src', SIZE, { features: ['layering', 'exclusive-lock', 'object-map', 'fast-diff'] });
  const image = await scratch.open(source);
  await fill(image, 0, SIZE);
  await image.createSnapshot('s1');
  return { source, image, scratch };
}

test('a whole-history transferDiff with digests, killed halfway, resumes: only the rest read, bytes and digests exact', { timeout: 240_000 }, async (t) => {
  const { source, image, scratch } = await sourceWithData(t);
  const target = await scratch.create('a', 'rbd', 'rs-dst', SIZE);
  const recorded = await killedHalfway('diff', source, target, 's1', { FIXTURE_DIGEST_BLOCK: String(BLOCK) });
  const into = await scratch.open(target);
  const stats = await transferDiff({ source: image, snapshot: 's1', target: into, digests: { table: DigestTable.zeros(BigInt(SIZE), BLOCK) } });
  t.diagnostic(`recorded ${recorded}, resumed from ${String(stats.resumedFrom)}, read ${stats.bytesRead}`);
  assert.equal(stats.resumedFrom, (recorded / BLOCK) * BLOCK, 'picked up at the recorded block');
  assert.equal(stats.bytesRead, BigInt(SIZE) - stats.resumedFrom!, 'read only the rest');
  await assertSameSnapshot(source, target, 's1');
  const whole = await hashImage({ image, snapshot: 's1', blockSize: BLOCK });
  assert.ok(stats.digests !== undefined && stats.digests.entries.equals(whole.table.entries), 'digests of the whole snapshot');
  assert.equal(await into.getMetadata(RESUME_KEY), undefined, 'the record goes with the completed transfer');
});

test('an incremental transferDiff and a copyImage into a used target, killed halfway, resume to exact bytes', { timeout: 240_000 }, async (t) => {
  const { source, image, scratch } = await sourceWithData(t);
  const target = await scratch.create('a', 'rbd', 'rs-inc', SIZE);
  const into = await scratch.open(target);
  await transferDiff({ source: image, snapshot: 's1', target: into });
  await fill(image, 0, SIZE);
  await image.createSnapshot('s2');
  await killedHalfway('diff', source, target, 's2', { FIXTURE_FROM: 's1' });
  const incremental = await transferDiff({ source: image, fromSnapshot: 's1', snapshot: 's2', target: into });
  assert.ok(incremental.resumedFrom !== undefined && incremental.resumedFrom > 0n);
  assert.equal(incremental.bytesRead, BigInt(SIZE) - incremental.resumedFrom);
  await assertSameSnapshot(source, target, 's2');

  // A copy of s1 over the target, which holds s2's data: holes and all must end as s1's.
  const copied = await scratch.create('a', 'rbd', 'rs-copy', SIZE);
  const copyTarget = await scratch.open(copied);
  await fill(copyTarget, 0, SIZE);
  await killedHalfway('copy', source, copied, 's1');
  const copy = await copyImage({ source: image, snapshot: 's1', target: copyTarget, chunkSize: 4 * MiB });
  assert.ok(copy.resumedFrom !== undefined && copy.resumedFrom > 0n);
  assert.equal(copy.bytesRead, BigInt(SIZE) - copy.resumedFrom);
  assert.equal(await exportSha(copied), await exportSha(source, 's1'));
  assert.equal(await copyTarget.getMetadata(RESUME_KEY), undefined);
});

test('a record of another transfer (the snapshot made again under its name) is not taken: a clean start that says why', { timeout: 240_000 }, async (t) => {
  const { source, image, scratch } = await sourceWithData(t);
  const target = await scratch.create('a', 'rbd', 'rs-other', SIZE);
  await killedHalfway('diff', source, target, 's1');
  await image.removeSnapshot('s1');
  await fill(image, 0, 8 * MiB);
  await image.createSnapshot('s1');
  const into = await scratch.open(target);
  const stats = await transferDiff({ source: image, snapshot: 's1', target: into });
  assert.equal(stats.resumedFrom, undefined);
  assert.match(stats.resumeRefused ?? '', /snapshotId/);
  await assertSameSnapshot(source, target, 's1');
});
