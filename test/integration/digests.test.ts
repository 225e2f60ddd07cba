/**
 * Block digests computed by the transfer engine as data passes
 * (native/transfer.cc + lib/engine/digest-table.ts) and by hashImage,
 * against real clusters: every table is compared entry by entry with the
 * digests of the bytes `rbd export` gives for the same snapshot, through a
 * whole-history transfer, incrementals with writes, discards and
 * write-zeroes, resizes both ways, a sample, and a byte flipped in a RADOS
 * object, which exactly its block shows.
 *
 * Offsets come from a seeded PRNG; DIGESTS_TEST_SEED=<n> replays a run.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { DigestTable, hashImage, transferDiff } from '../../lib/index.js';
import { closeTestPools, testPool } from '../support/clusters.js';
import { exportedTable, flipByte } from '../support/digest-checks.js';
import { clusterScratch, fill, mutate, seeded, type Made } from '../support/cluster-scratch.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = 64n * 1024n;

before(async () => {
  await testPool('a', 'rbd');
  await testPool('a', 'backups');
});

after(closeTestPools);

/** The table the bytes of made@snapshot give. */
function expectedTable(made: Made, snapshot: string): Promise<DigestTable> {
  return exportedTable(made.which, `${made.spec}@${snapshot}`, BLOCK);
}

function assertSameTable(actual: DigestTable | undefined, expected: DigestTable, what: string): void {
  assert.ok(actual !== undefined, `${what}: a table`);
  assert.equal(actual.size, expected.size, `${what}: size`);
  assert.deepEqual(actual.compare(expected), [], `${what}: blocks that differ`);
  assert.equal(actual.unknownBlocks(), 0, `${what}: every block known`);
  assert.ok(actual.entries.equals(expected.entries), `${what}: entries equal`);
}

test('digests of a whole history and of incrementals with discards, zeroes and resizes equal those of the exported bytes', async (t) => {
  const scratch = clusterScratch(t);
  const rng = seeded(t, 'DIGESTS_TEST_SEED');
  const size = 24 * MiB + 100 * KiB; // a short last block
  const source = await scratch.create('a', 'rbd', 'dg-src', size, { features: ['layering', 'exclusive-lock', 'object-map', 'fast-diff'] });
  const target = await scratch.create('a', 'backups', 'dg-dst', size);
  const image = await scratch.open(source);
  const into = await scratch.open(target);
  await fill(image, 3 * MiB + 5000, 2 * MiB);
  await image.write(randomBytes(7000), size - 7000);
  await image.write(randomBytes(3), 11 * MiB + 65535);
  await image.createSnapshot('s1');
  const full = await transferDiff({ source: image, snapshot: 's1', target: into, digests: { table: DigestTable.zeros(BigInt(size), BLOCK) } });
  assertSameTable(full.digests, await expectedTable(source, 's1'), 'whole history');
  assert.ok((full.blocksHashed ?? 0) > 0 && (full.blocksHashed ?? 0) < DigestTable.blocksOf(BigInt(size), BLOCK), 'only blocks with data are read');

  let previous = full.digests!;
  let from = 's1';
  const sizes = [size, size + 3 * MiB + 12345, 20 * MiB + 999, 20 * MiB + 999];
  for (const [i, nextSize] of sizes.entries()) {
    const snapshot = `s${i + 2}`;
    if (BigInt(nextSize) !== (await image.stat()).size) await image.resize(nextSize);
    await mutate(image, rng, nextSize, 12, 0.5);
    // A few 4 KiB writes: each touches one block that must be read whole.
    for (let k = 0; k < 5; k++) await image.write(randomBytes(4 * KiB), Math.floor(rng() * (nextSize - 4 * KiB)));
    await image.createSnapshot(snapshot);
    const { table, extraBlocks } = previous.resizedTo(BigInt(nextSize));
    const stats = await transferDiff({ source: image, fromSnapshot: from, snapshot, target: into, digests: { table, extraBlocks } });
    assertSameTable(stats.digests, await expectedTable(source, snapshot), `incremental ${from} -> ${snapshot} (${nextSize} bytes)`);
    const check = await hashImage({ image: into, snapshot, blockSize: BLOCK });
    assertSameTable(check.table, stats.digests!, `hashImage of the target at ${snapshot}`);
    previous = stats.digests!;
    from = snapshot;
  }
});

test('a sample hashes only its blocks; a byte flipped in a RADOS object shows in exactly its block', async (t) => {
  const scratch = clusterScratch(t);
  const size = 16 * MiB;
  const made = await scratch.create('a', 'backups', 'dg-flip', size);
  const image = await scratch.open(made);
  await fill(image, 0, 9 * MiB);
  await image.createSnapshot('s');
  const before = await hashImage({ image, snapshot: 's', blockSize: BLOCK });
  assertSameTable(before.table, await expectedTable(made, 's'), 'hashImage');

  const sample = await hashImage({ image, snapshot: 's', blockSize: BLOCK, blocks: [0n, 7n, 255n] });
  assert.equal(sample.blocksHashed, 3);
  assert.equal(sample.table.unknownBlocks(), sample.table.count - 3);
  for (const i of [0, 7, 255]) assert.equal(sample.table.entry(i), before.table.entry(i), `sampled block ${i}`);

  const at = 5 * MiB + 70 * KiB + 3;
  await flipByte('a', 'backups', made.name, at);
  const after = await hashImage({ image, snapshot: 's', blockSize: BLOCK });
  const blockStart = (BigInt(at) / BLOCK) * BLOCK;
  assert.deepEqual(before.table.compare(after.table), [{ offset: blockStart, length: BLOCK }]);
});
