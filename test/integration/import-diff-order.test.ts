/**
 * importDiff against `rbd import-diff` on streams whose records overlap
 * (rbd applies them in stream order; our pipelined writes once raced and
 * matched it in 2 of 5 runs), and refused streams leaving the target's size
 * and snapshots as they were (36 of 1,000 refused fuzzed streams had already
 * resized it). Bytes are compared by sha256 of `rbd export`.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { DiffStreamError, importDiff, NotFoundError, type Pool } from '../../lib/index.js';
import {
  DIFF_HEADER, encodeExtentHead, encodeName, encodeSize, RECORD_END, RECORD_FROM, RECORD_TO, RECORD_WRITE, RECORD_ZERO,
} from '../../lib/engine/diff-format.js';
import { intBelow, prng } from '../../lib/dev/prng.js';
import { closeTestPools, rbdExportSha256, rbdImportDiff, testPool } from '../support/clusters.js';
import { assertCephError } from '../support/checks.js';
import { scratch } from '../support/scratch.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 8 * MiB;
const RUNS = 5;
let pool: Pool;

before(async () => { pool = await testPool('a', 'backups'); });
after(closeTestPools);

type Op = { kind: 'w'; offset: number; length: number } | { kind: 'z'; offset: number; length: number };

/** A v1 stream to snapshot 'end' of an image of SIZE bytes, with these records in this order. */
function stream(ops: readonly Op[], options: { from?: string; size?: bigint } = {}): Buffer {
  const parts: Buffer[] = [DIFF_HEADER];
  if (options.from !== undefined) parts.push(encodeName(RECORD_FROM, options.from));
  parts.push(encodeName(RECORD_TO, 'end'), encodeSize(options.size ?? BigInt(SIZE)));
  for (const op of ops) {
    parts.push(encodeExtentHead(op.kind === 'w' ? RECORD_WRITE : RECORD_ZERO, BigInt(op.offset), BigInt(op.length)));
    if (op.kind === 'w') parts.push(randomBytes(op.length));
  }
  parts.push(Buffer.from([RECORD_END]));
  return Buffer.concat(parts);
}

/** Small pieces, so that records arrive while earlier writes are still in flight. */
function pieces(bytes: Buffer): Readable {
  const chunks: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += 1500) chunks.push(bytes.subarray(at, at + 1500));
  return Readable.from(chunks);
}

const cases: Array<[string, () => Op[]]> = [
  ['write then a longer write', () => [{ kind: 'w', offset: 0, length: 5000 }, { kind: 'w', offset: 0, length: 8392 }]],
  ['write then a shorter write', () => [{ kind: 'w', offset: 0, length: 8392 }, { kind: 'w', offset: 100, length: 5000 }]],
  ['write then zero', () => [{ kind: 'w', offset: 4096, length: 64 * KiB }, { kind: 'z', offset: 8192, length: 16 * KiB }]],
  ['zero then write', () => [{ kind: 'z', offset: 0, length: 1 * MiB }, { kind: 'w', offset: 512 * KiB, length: 7000 }]],
  ['partial overlaps across objects', () => [
    { kind: 'w', offset: 4 * MiB - 3000, length: 6000 }, { kind: 'w', offset: 4 * MiB - 1000, length: 1500 },
    { kind: 'z', offset: 4 * MiB - 2000, length: 1200 }, { kind: 'w', offset: 4 * MiB + 400, length: 3000 },
  ]],
  ['empty records among them', () => [
    { kind: 'w', offset: 0, length: 0 }, { kind: 'z', offset: 4096, length: 0 }, { kind: 'w', offset: 0, length: 5000 },
    { kind: 'z', offset: 100, length: 0 }, { kind: 'w', offset: 8 * KiB, length: 0 },
  ]],
  ['many interleaved', () => {
    const rng = prng(7);
    return Array.from({ length: 300 }, (): Op => ({
      kind: rng() < 0.75 ? 'w' : 'z', offset: intBelow(rng, 256) * 512, length: 1 + intBelow(rng, 32 * KiB),
    }));
  }],
];

for (const [name, ops] of cases) {
  test(`overlapping records (${name}) give rbd import-diff's bytes, in every run`, { timeout: 180_000 }, async (t) => {
    const s = scratch(t, pool);
    for (let run = 0; run < RUNS; run++) {
      const bytes = stream(ops());
      const ours = await s.createImage('order-ours', SIZE);
      const theirs = await s.createImage('order-rbd', SIZE);
      const target = await pool.openImage(ours);
      try {
        await importDiff(pieces(bytes), target);
        await target.removeSnapshot('end');
      } finally {
        await target.close();
      }
      await rbdImportDiff('a', Readable.from([bytes]), `backups/${theirs}`);
      assert.equal(await rbdExportSha256('a', `backups/${ours}`), await rbdExportSha256('a', `backups/${theirs}`),
        `run ${run}: ${name}`);
      const image = await pool.openImage(theirs);
      await image.removeSnapshot('end');
      await image.close();
    }
  });
}

test('a refused stream leaves the target\'s size, snapshots and bytes as they were', { timeout: 180_000 }, async (t) => {
  const s = scratch(t, pool);
  const name = await s.createImage('refused', SIZE);
  const target = await s.open(name);
  await target.write(randomBytes(64 * KiB), 0);
  await target.createSnapshot('start');
  const data = [{ kind: 'w', offset: 0, length: 4096 }, { kind: 'w', offset: SIZE + MiB, length: 4096 }] as const;
  const grown = stream(data, { from: 'start', size: BigInt(SIZE + 2 * MiB) });
  const refusals: Array<[string, Buffer, new (...args: never[]) => DiffStreamError | NotFoundError, RegExp]> = [
    ['truncated after a write past the old end', grown.subarray(0, grown.length - 100), DiffStreamError, /truncated/],
    ['a bad record after data', Buffer.concat([grown.subarray(0, grown.length - 1), Buffer.from('?')]), DiffStreamError,
      /unknown record type/],
    ['a first write past the new end', stream([{ kind: 'w', offset: SIZE, length: 4096 }], { from: 'start' }),
      DiffStreamError, /passes the end of the image/],
    ['a missing from-snapshot', stream(data, { from: 'nope', size: BigInt(SIZE + 2 * MiB) }), NotFoundError,
      /does not have/],
    ['an over-limit size', stream(data, { from: 'start', size: (1n << 64n) - 1n }), DiffStreamError, /is larger than/],
  ];
  for (const [what, bytes, Class, message] of refusals) {
    const sha = await rbdExportSha256('a', `backups/${name}@start`);
    await assertCephError(importDiff(pieces(bytes), target), Class, { code: Class === NotFoundError ? 'ENOENT' : 'EINVAL', message });
    assert.equal((await target.stat()).size, BigInt(SIZE), what);
    assert.deepEqual((await target.listSnapshots()).map((x) => x.name), ['start'], what);
    assert.equal(await rbdExportSha256('a', `backups/${name}@start`), sha, what);
  }
  // The same stream whole imports, to the new size.
  await importDiff(pieces(grown), target);
  assert.equal((await target.stat()).size, BigInt(SIZE + 2 * MiB));
  await target.removeSnapshot('end');
  await target.removeSnapshot('start');
});
