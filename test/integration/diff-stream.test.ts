/**
 * exportDiff / importDiff (lib/engine/export-diff.ts, import-diff.ts) against
 * real clusters and the real `rbd` tool: our streams go into
 * `rbd import-diff`, `rbd export-diff` streams come into importDiff, full and
 * incremental (discards, write-zeroes, resizes), and our own round trip.
 * Then back-pressure (resident memory while a slow consumer reads a 256 MiB
 * export), import-diff's rules (from-snapshot, end snapshot, created only at
 * the end), truncation, cancellation and handle release.
 *
 * Offsets come from a seeded PRNG; the seed is logged and
 * DIFF_STREAM_TEST_SEED=<n> replays a run.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AlreadyExistsError, CancelledError, DiffStreamError, exportDiff, importDiff, InvalidArgumentError,
  NotFoundError, type ExportDiffOptions, type Image,
} from '../../lib/index.js';
import { DiffStreamParser, type DiffRecord } from '../../lib/engine/diff-parser.js';
import { closeTestPools, rbdArgs, rbdImportDiff, sha256, testCluster, testPool, waitExit, type Which } from '../support/clusters.js';
import {
  assertSameSnapshot, ClusterScratch, clusterScratch, fill, mutate, seeded, targetState, type Made,
} from '../support/cluster-scratch.js';
import { assertCephError, show } from '../support/checks.js';

const KiB = 1024;
const MiB = 1024 * KiB;
/** mutate's share of writes here, below its default: a few more discards for the streams to carry. */
const WRITE_SHARE = 0.55;

before(async () => {
  await testPool('a', 'rbd');
  await testPool('a', 'backups');
});

after(closeTestPools);

/** Random data with zero runs of every length inside it (zero runs become 'z' records). */
async function writeWithZeroRuns(image: Image, offset: number, length: number): Promise<void> {
  const data = randomBytes(length);
  for (const [at, run] of [[4 * KiB, 64 * KiB], [100 * KiB, 4 * KiB], [200 * KiB + 3, 130 * KiB], [length - 70 * KiB, 70 * KiB]]) {
    if (at + run <= length) data.fill(0, at, at + run);
  }
  await image.write(data, offset);
}

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

// ---- the rbd tool ------------------------------------------------------------------

/** `rbd export-diff [--from-snap from] spec@snap -`, as a Readable, and its exit. */
async function rbdExportDiff(which: Which, specAtSnap: string, from?: string, extra: string[] = []): Promise<{
  stdout: Readable; exited: Promise<void>;
}> {
  const args = ['export-diff', '--no-progress', ...extra, ...(from ? ['--from-snap', from] : []), specAtSnap, '-'];
  const child = spawn('rbd', await rbdArgs(which, args), { stdio: ['ignore', 'pipe', 'pipe'] });
  return { stdout: child.stdout!, exited: waitExit(child, `rbd export-diff ${specAtSnap}`) };
}

// ---- checks ------------------------------------------------------------------------

function parseAll(stream: Buffer): DiffRecord[] {
  const parser = new DiffStreamParser('test', 'stream');
  const records = parser.push(stream);
  parser.finish();
  return records;
}

/** Where each record of a well-formed stream starts, read from its bytes (not by the parser under test). */
function walk(stream: Buffer): Array<{ tag: string; at: number }> {
  const recs: Array<{ tag: string; at: number }> = [];
  for (let p = 12; p < stream.length;) {
    const tag = String.fromCharCode(stream[p]);
    recs.push({ tag, at: p });
    if (tag === 'f' || tag === 't') p += 5 + stream.readUInt32LE(p + 1);
    else if (tag === 's') p += 9;
    else if (tag === 'w') p += 17 + Number(stream.readBigUInt64LE(p + 9));
    else if (tag === 'z') p += 17;
    else p += 1;
  }
  return recs;
}

/** Applies a parsed stream to older content (resizing like import-diff does). */
function applyStream(older: Buffer, records: readonly DiffRecord[]): Buffer {
  let image = Buffer.from(older);
  for (const record of records) {
    if (record.kind === 'size') {
      const resized = Buffer.alloc(Number(record.size));
      image.copy(resized, 0, 0, Math.min(image.length, resized.length));
      image = resized;
    } else if (record.kind === 'data') {
      record.data.copy(image, Number(record.offset));
    } else if (record.kind === 'zero') {
      image.fill(0, Number(record.offset), Number(record.offset + record.length));
    }
  }
  return image;
}

/** Records are in the order rbd writes them: f?, t, s, then w/z, then e. */
function assertShape(records: readonly DiffRecord[], from: string | undefined, to: string, size: bigint): void {
  const kinds = records.map((r) => r.kind);
  const head = from === undefined ? ['to', 'size'] : ['from', 'to', 'size'];
  assert.deepEqual(kinds.slice(0, head.length), head);
  assert.equal(kinds.at(-1), 'end');
  assert.ok(kinds.slice(head.length, -1).every((k) => k === 'data' || k === 'zero'));
  if (from !== undefined) assert.deepEqual(records[0], { kind: 'from', name: from, at: 12 });
  const toRecord = records[head.length - 2];
  assert.equal(toRecord.kind === 'to' ? toRecord.name : undefined, to);
  const sizeRecord = records[head.length - 1];
  assert.equal(sizeRecord.kind === 'size' ? sizeRecord.size : undefined, size);
}

async function readAll(image: Image): Promise<Buffer> {
  const { size } = await image.stat();
  return image.read(0, size);
}

/**
 * A source with four snapshots: s1 (data with zero runs), s2 (writes,
 * discards and write-zeroes over data, shrunk to an unaligned size), s3
 * (grown, more changes), s4 (shrunk and grown again with no snapshot in
 * between, so only holes tell).
 */
async function chain(s: ClusterScratch, rng: () => number, which: Which = 'a'): Promise<{ src: Made; source: Image }> {
  const src = await s.create(which, 'rbd', 'stream-src', 24 * MiB);
  const source = await s.open(src);
  await fill(source, 0, 2 * MiB);
  await fill(source, 8 * MiB, 4 * MiB);
  await mutate(source, rng, 24 * MiB, 8, WRITE_SHARE);
  await writeWithZeroRuns(source, 5 * MiB + 3, 2 * MiB);
  await source.createSnapshot('s1');
  await mutate(source, rng, 24 * MiB, 8, WRITE_SHARE);
  await source.discard(8 * MiB, 4 * MiB);
  await source.writeZeroes(1 * MiB + 100, 300 * KiB);
  await source.resize(19 * MiB + 12 * KiB + 1);
  await source.createSnapshot('s2');
  await source.resize(30 * MiB);
  await source.write(randomBytes(2 * MiB + 5), 26 * MiB);
  await mutate(source, rng, 30 * MiB, 6, WRITE_SHARE);
  await source.createSnapshot('s3');
  await source.resize(3 * MiB + 5);
  await source.resize(30 * MiB);
  await source.write(randomBytes(100 * KiB), 2 * MiB);
  await source.createSnapshot('s4');
  return { src, source };
}

// ---- back-pressure ------------------------------------------------------------------------

/**
 * Measures in a child process of its own, so that what earlier tests left
 * on the heap neither hides nor inflates the growth: the child exports
 * pool/image@snapshot into a slow consumer (20 ms per chunk, 16 KiB
 * high-water mark) that hands each chunk on to `rbd import-diff` (waiting
 * for its stdin to drain), sampling its RSS every 5 ms and on every chunk,
 * and reports on stderr.
 */
const RSS_CHILD = `
import v8 from 'node:v8';
import vm from 'node:vm';
import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
const args = JSON.parse(process.env.RSS_CHILD_ARGS);
const { Cluster, exportDiff } = await import(args.lib);
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
const cluster = await Cluster.connect({ conf: args.conf, keyring: args.keyring, timeoutMs: 20000, opTimeoutMs: 60000 });
const pool = await cluster.pool(args.pool);
const image = await pool.openImage(args.image, { readOnly: true });
const importer = spawn('rbd', args.importArgs, { stdio: ['pipe', 'ignore', 'inherit'] });
const imported = new Promise((resolve, reject) => {
  importer.once('error', reject);
  importer.once('close', (code) => (code === 0 ? resolve() : reject(new Error('rbd import-diff exited ' + code))));
});
gc(); await sleep(100); gc();
const baseline = process.memoryUsage().rss;
let peak = baseline;
let chunks = 0;
let bytes = 0;
const sample = () => { peak = Math.max(peak, process.memoryUsage().rss); };
const sampler = setInterval(sample, 5);
const slow = new Writable({
  highWaterMark: 16 * 1024,
  write(chunk, _encoding, callback) {
    sample();
    chunks++;
    bytes += chunk.length;
    const next = () => setTimeout(callback, 20);
    if (importer.stdin.write(chunk)) next();
    else importer.stdin.once('drain', next);
  },
  final(callback) {
    importer.stdin.end(callback);
  },
});
const options = { snapshot: args.snapshot };
if (args.memoryBytes !== null) options.memoryBytes = args.memoryBytes;
await pipeline(exportDiff(image, options), slow);
clearInterval(sampler);
await imported;
await image.close();
await pool.close();
await cluster.close();
process.stdout.write(JSON.stringify({ baseline, peak, chunks, bytes }));
`;

describe('exportDiff: back-pressure', () => {
  const s = new ClusterScratch();
  const SIZE = 256 * MiB;
  let src: Made;

  before(async () => {
    // Filled by rbd import from /dev/urandom: no image data passes through a test process.
    src = await s.reserve('a', 'rbd', 'stream-big');
    const importArgs = await rbdArgs('a', ['import', '--no-progress', '-', src.spec]);
    const filler = spawn('bash', ['-c', `head -c ${SIZE} /dev/urandom | rbd "$@"`, 'fill', ...importArgs],
      { stdio: ['ignore', 'ignore', 'pipe'] });
    await waitExit(filler, 'rbd import');
    const source = await src.pool.openImage(src.name);
    await source.createSnapshot('big');
    await source.close();
  }, { timeout: 120_000 });

  after(() => s.dispose());

  /** Runs the child on src@big with memoryBytes, its stdout going into rbd import-diff on cluster b. */
  async function measure(t: TestContext, memoryBytes: number | null): Promise<{ growth: number; dst: Made }> {
    const ts = clusterScratch(t);
    const dst = await ts.create('b', 'backups', 'stream-big-dst', SIZE);
    const { info } = await testCluster('a');
    const child = spawn(process.execPath, ['--input-type=module', '-e', RSS_CHILD], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        RSS_CHILD_ARGS: JSON.stringify({
          lib: new URL('../../lib/index.js', import.meta.url).href, conf: info.conf, keyring: info.keyring,
          pool: 'rbd', image: src.name, snapshot: 'big', memoryBytes,
          importArgs: await rbdArgs('b', ['import-diff', '--no-progress', '-', dst.spec]),
        }),
      },
    });
    let report = '';
    child.stdout!.on('data', (chunk: Buffer) => { report += chunk.toString(); });
    await waitExit(child, 'the exporting child');
    const { baseline, peak, chunks, bytes } = JSON.parse(report) as {
      baseline: number; peak: number; chunks: number; bytes: number;
    };
    const growth = peak - baseline;
    t.diagnostic(`memoryBytes ${memoryBytes === null ? 'default' : memoryBytes / MiB + ' MiB'}: ` +
      `rss baseline ${(baseline / MiB).toFixed(1)} MiB, peak ${(peak / MiB).toFixed(1)} MiB, ` +
      `growth ${(growth / MiB).toFixed(1)} MiB over a ${SIZE / MiB} MiB export (${chunks} chunks, ${bytes} bytes)`);
    assert.ok(bytes > SIZE, 'the whole image went through');
    // The stream the slow consumer passed on is right: rbd import-diff rebuilt the image from it.
    await assertSameSnapshot(src, dst, 'big');
    return { growth, dst };
  }

  test('a slow consumer of a 256 MiB export (memoryBytes 16 MiB): RSS grows well below the image size',
    { timeout: 300_000 }, async (t) => {
      const { growth } = await measure(t, 16 * MiB);
      assert.ok(growth < 96 * MiB, `resident memory grew by ${(growth / MiB).toFixed(1)} MiB`);
    });

  test('a slow consumer of a 256 MiB export with the default memoryBytes: RSS grows below 96 MiB', { timeout: 300_000, }, async (t) => {
    const { growth } = await measure(t, null);
    assert.ok(growth < 96 * MiB, `resident memory grew by ${(growth / MiB).toFixed(1)} MiB`);
  });
});

// ---- compatibility with the rbd tool ----------------------------------------------------

describe('diff streams: byte-compatible with the rbd tool', () => {
  test('our exportDiff into `rbd import-diff -`: full, then incrementals with discards and resizes',
    { timeout: 180_000 }, async (t) => {
      const s = clusterScratch(t);
      const { src, source } = await chain(s, seeded(t, 'DIFF_STREAM_TEST_SEED'));
      const dst = await s.create('a', 'backups', 'stream-to-rbd', 1 * MiB);
      await rbdImportDiff('a', exportDiff(source, { snapshot: 's1' }), dst.spec);
      await assertSameSnapshot(src, dst, 's1');
      await rbdImportDiff('a', exportDiff(source, { snapshot: 's2', fromSnapshot: 's1' }), dst.spec);
      await assertSameSnapshot(src, dst, 's2');
      await rbdImportDiff('a', exportDiff(source, { snapshot: 's3', fromSnapshot: 's2', wholeObject: true }), dst.spec);
      await assertSameSnapshot(src, dst, 's3');
      await rbdImportDiff('a', exportDiff(source, { snapshot: 's4', fromSnapshot: 's3' }), dst.spec);
      await assertSameSnapshot(src, dst, 's4');
      const snaps = (await (await s.open(dst)).listSnapshots()).map((x) => x.name);
      assert.deepEqual(snaps, ['s1', 's2', 's3', 's4']);
    });

  test('`rbd export-diff` into our importDiff: full, incremental, whole-object', { timeout: 180_000 }, async (t) => {
    const s = clusterScratch(t);
    const { src } = await chain(s, seeded(t, 'DIFF_STREAM_TEST_SEED'));
    const dst = await s.create('a', 'backups', 'stream-from-rbd', 4 * MiB);
    const target = await s.open(dst);
    const steps: Array<[string | undefined, string, string[]]> = [
      [undefined, 's1', []], ['s1', 's2', []], ['s2', 's3', ['--whole-object']], ['s3', 's4', []],
    ];
    for (const [from, to, extra] of steps) {
      const { stdout, exited } = await rbdExportDiff('a', `${src.spec}@${to}`, from, extra);
      const [stats] = await Promise.all([importDiff(stdout, target), exited]);
      assert.equal(stats.fromSnapshot, from);
      assert.equal(stats.snapshot, to);
      const { size } = await (await s.open(src, to)).stat();
      assert.equal(stats.size, size);
      assert.equal((await target.stat()).size, size);
      // Every step changes something; which of data or zeros depends on the seed (s1..s2 may hold only discards and zeroes).
      assert.ok(stats.streamBytes > 0 && stats.bytesWritten + stats.bytesZeroed > 0, show({ ...stats, size: undefined }));
      await assertSameSnapshot(src, dst, to);
    }
  });

  test('our stream and rbd\'s stream of the same diff apply to the same bytes; two exports are identical',
    { timeout: 120_000 }, async (t) => {
      const s = clusterScratch(t);
      const { src, source } = await chain(s, seeded(t, 'DIFF_STREAM_TEST_SEED'));
      const atS1 = await readAll(await s.open(src, 's1'));
      const atS2 = await readAll(await s.open(src, 's2'));
      for (const [from, older, to, newer] of [[undefined, Buffer.alloc(0), 's1', atS1], ['s1', atS1, 's2', atS2]] as const) {
        const ours = await collect(exportDiff(source, { snapshot: to, fromSnapshot: from }));
        const again = await collect(exportDiff(source, { snapshot: to, fromSnapshot: from, concurrency: 1 }));
        assert.equal(sha256(again), sha256(ours), 'the export does not depend on the window');
        const { stdout, exited } = await rbdExportDiff('a', `${src.spec}@${to}`, from);
        const [theirs] = await Promise.all([collect(stdout), exited]);
        const ourRecords = parseAll(ours);
        const theirRecords = parseAll(theirs);
        assertShape(ourRecords, from, to, BigInt(newer.length));
        assertShape(theirRecords, from, to, BigInt(newer.length));
        assert.equal(sha256(applyStream(older, ourRecords)), sha256(newer), `our ${from ?? ''}..${to} stream`);
        assert.equal(sha256(applyStream(older, theirRecords)), sha256(newer), `rbd's ${from ?? ''}..${to} stream`);
        t.diagnostic(`${from ?? '(start)'}..${to}: ours ${ours.length} bytes / ${ourRecords.length} records, ` +
          `rbd ${theirs.length} bytes / ${theirRecords.length} records`);
      }
    });

  test('exportDiff progress: done never above total, the last report covers the image', { timeout: 60_000 },
    async (t) => {
      const s = clusterScratch(t);
      const { src, source } = await chain(s, seeded(t, 'DIFF_STREAM_TEST_SEED'));
      for (const [from, to] of [[undefined, 's3'], ['s1', 's2']] as const) {
        const reports: Array<{ done: bigint; total: bigint; bytesRead: bigint }> = [];
        await collect(exportDiff(source, { snapshot: to, fromSnapshot: from, onProgress: (p) => reports.push({ ...p }) }));
        const { size } = await (await s.open(src, to)).stat();
        assert.ok(reports.length > 0);
        for (const r of reports) {
          assert.equal(r.total, size);
          assert.ok(r.done <= r.total);
        }
        assert.equal(reports.at(-1)!.done, size);
      }
    });

  test('diffs without data: resize only (shrink, grow) and no change at all, both ways', { timeout: 120_000 },
    async (t) => {
      const s = clusterScratch(t);
      const src = await s.create('a', 'rbd', 'stream-nodata', 12 * MiB);
      const source = await s.open(src);
      await fill(source, 0, 12 * MiB);
      await source.createSnapshot('n1');
      await source.resize(9 * MiB + 3);
      await source.createSnapshot('n2');
      await source.resize(16 * MiB);
      await source.createSnapshot('n3');
      await source.createSnapshot('n4');
      const viaRbd = await s.create('a', 'backups', 'stream-nodata-rbd', 1 * MiB);
      const viaUs = await s.create('a', 'backups', 'stream-nodata-us', 1 * MiB);
      const target = await s.open(viaUs);
      const steps: Array<[string | undefined, string]> = [[undefined, 'n1'], ['n1', 'n2'], ['n2', 'n3'], ['n3', 'n4']];
      for (const [from, to] of steps) {
        const stream = await collect(exportDiff(source, { snapshot: to, fromSnapshot: from }));
        if (from !== undefined) {
          const kinds = parseAll(stream).map((r) => r.kind);
          assert.ok(!kinds.includes('data'), `no data records from ${from} to ${to}: ${kinds.join(',')}`);
        }
        await rbdImportDiff('a', Readable.from([stream]), viaRbd.spec);
        const stats = await importDiff(Readable.from([stream]), target);
        assert.equal(stats.snapshot, to);
        const { size } = await (await s.open(src, to)).stat();
        assert.equal(stats.size, size);
        assert.equal((await target.stat()).size, size, `the size record was applied (${from}..${to})`);
        await assertSameSnapshot(src, viaRbd, to);
        await assertSameSnapshot(src, viaUs, to);
      }
    });

  test('our own export into our own import, cross-cluster (a -> b), full and incremental', { timeout: 180_000 },
    async (t) => {
      const s = clusterScratch(t);
      const { src, source } = await chain(s, seeded(t, 'DIFF_STREAM_TEST_SEED'));
      const dst = await s.create('b', 'backups', 'stream-round', 30 * MiB, { order: 20 });
      const target = await s.open(dst);
      const full = await importDiff(exportDiff(source, { snapshot: 's1' }), target);
      assert.equal(full.snapshot, 's1');
      assert.equal(full.fromSnapshot, undefined);
      await assertSameSnapshot(src, dst, 's1');
      const inc = await importDiff(exportDiff(source, { snapshot: 's2', fromSnapshot: 's1' }), target,
        { concurrency: 2, memoryBytes: 4 * MiB });
      assert.equal(inc.fromSnapshot, 's1');
      assert.ok(inc.bytesZeroed > 0, 'discards travel as zero records');
      await assertSameSnapshot(src, dst, 's2');
      await importDiff(exportDiff(source, { snapshot: 's3', fromSnapshot: 's2', wholeObject: true }), target);
      await assertSameSnapshot(src, dst, 's3');
      const holes = await importDiff(exportDiff(source, { snapshot: 's4', fromSnapshot: 's3' }), target);
      assert.ok(holes.bytesZeroed > 0, 'the data cut off by the shrink is zeroed');
      await assertSameSnapshot(src, dst, 's4');
      const atS4 = await s.open(dst, 's4');
      const regrown = await atS4.read(3 * MiB + 5, 27 * MiB - 5);
      assert.equal(regrown.findIndex((b) => b !== 0), -1, 'the re-grown region reads as zeros');
    });
});

// ---- import-diff's rules ------------------------------------------------------------------

describe('importDiff: refusals, truncation, the end snapshot', () => {
  /** A source at s1 and s2 (s2 adds data, discards, grows), and a target already holding s1. */
  async function setup(t: TestContext): Promise<{
    s: ClusterScratch; src: Made; dst: Made; source: Image; target: Image; full: Buffer; incremental: Buffer;
  }> {
    const s = clusterScratch(t);
    const rng = seeded(t, 'DIFF_STREAM_TEST_SEED');
    const src = await s.create('a', 'rbd', 'stream-rule-src', 8 * MiB);
    const source = await s.open(src);
    await mutate(source, rng, 8 * MiB, 6, WRITE_SHARE);
    await source.createSnapshot('s1');
    await source.write(randomBytes(300 * KiB), 1 * MiB + 7);
    await source.write(randomBytes(2 * MiB), 5 * MiB);
    await source.discard(0, 64 * KiB);
    await source.resize(8 * MiB + 4 * KiB);
    await source.createSnapshot('s2');
    const dst = await s.create('a', 'backups', 'stream-rule-dst', 8 * MiB);
    const target = await s.open(dst);
    await importDiff(exportDiff(source, { snapshot: 's1' }), target);
    const full = await collect(exportDiff(source, { snapshot: 's2' }));
    const incremental = await collect(exportDiff(source, { snapshot: 's2', fromSnapshot: 's1' }));
    return { s, src, dst, source, target, full, incremental };
  }

  test('the from-snapshot missing on the target: NotFoundError, nothing written', { timeout: 60_000 }, async (t) => {
    const { dst, target, incremental } = await setup(t);
    await target.removeSnapshot('s1');
    const before = await targetState(dst, target);
    await assertCephError(importDiff(Readable.from([incremental]), target), NotFoundError, {
      code: 'ENOENT', operation: 'importDiff', resource: dst.spec,
      message: /the stream starts at snapshot s1, which the target does not have/,
    });
    assert.deepEqual(await targetState(dst, target), before);
  });

  test('the end snapshot already on the target: AlreadyExistsError, nothing written', { timeout: 60_000 }, async (t) => {
    const { dst, target, full, incremental } = await setup(t);
    await target.createSnapshot('s2');
    const before = await targetState(dst, target);
    for (const stream of [full, incremental]) {
      await assertCephError(importDiff(Readable.from([stream]), target), AlreadyExistsError, {
        code: 'EEXIST', operation: 'importDiff', resource: dst.spec,
        message: /the target already has the end snapshot s2/,
      });
      assert.deepEqual(await targetState(dst, target), before);
    }
  });

  test('the end snapshot is created only after the last record, and only then', { timeout: 60_000 }, async (t) => {
    const { s, src, dst, target, incremental } = await setup(t);
    const checker = await s.open(dst);
    let checked = 0;
    async function* slowly(): AsyncGenerator<Buffer> {
      // Everything but the end record, in pieces; the snapshot must not exist at any point.
      for (let at = 0; at < incremental.length - 1; at += 100 * KiB) {
        yield incremental.subarray(at, Math.min(at + 100 * KiB, incremental.length - 1));
        assert.equal(await checker.snapshotExists('s2'), false, `no s2 after ${at} bytes`);
        checked++;
      }
      await sleep(50);
      assert.equal(await checker.snapshotExists('s2'), false, 'no s2 before the end record');
      yield incremental.subarray(incremental.length - 1);
    }
    const stats = await importDiff(slowly(), target);
    assert.ok(checked > 1);
    assert.equal(stats.snapshot, 's2');
    assert.equal(stats.streamBytes, BigInt(incremental.length));
    assert.equal(await checker.snapshotExists('s2'), true);
    await assertSameSnapshot(src, dst, 's2');
  });

  test('a stream cut anywhere is refused with DiffStreamError and no end snapshot; the whole one then imports',
    { timeout: 120_000 }, async (t) => {
      const { src, dst, target, incremental } = await setup(t);
      const recs = walk(incremental);
      const w = recs.find((r) => r.tag === 'w')!;
      const cuts = [0, 5, 12, 13, 20, recs[2].at + 4, w.at, w.at + 10, w.at + 17, w.at + 1000,
        incremental.length - 1];
      for (const cut of cuts) {
        const error = await assertCephError(importDiff(Readable.from([incremental.subarray(0, cut)]), target),
          DiffStreamError, { code: 'EINVAL', operation: 'importDiff', resource: dst.spec, message: /truncated/ });
        const expectedAt = cut < 12 ? 0 : Math.max(...recs.map((r) => r.at).filter((at) => at <= cut));
        assert.equal((error as DiffStreamError).byteOffset, expectedAt, `cut at ${cut}: ${error.message}`);
        assert.equal(await target.snapshotExists('s2'), false, `no end snapshot after a cut at ${cut}`);
      }
      await importDiff(Readable.from([incremental]), target);
      await assertSameSnapshot(src, dst, 's2');
    });

  test('an extent past the image size: DiffStreamError naming its record, no end snapshot', { timeout: 60_000 },
    async (t) => {
      const { dst, target, incremental } = await setup(t);
      const size = 8n * BigInt(MiB) + 4096n;
      const w = walk(incremental).find((r) => r.tag === 'w')!;
      const length = incremental.readBigUInt64LE(w.at + 9);
      const bad = Buffer.from(incremental);
      bad.writeBigUInt64LE(size - length + 1n, w.at + 1);
      const error = await assertCephError(importDiff(Readable.from([bad]), target), DiffStreamError, {
        code: 'EINVAL', operation: 'importDiff', resource: dst.spec,
        message: new RegExp(`at offset ${size - length + 1n} passes the end of the image \\(size ${size}\\)`),
      });
      assert.equal((error as DiffStreamError).byteOffset, w.at, 'the error names the write record');
      assert.equal(await target.snapshotExists('s2'), false);

      // A zero record past the end.
      const zero = Buffer.concat([incremental.subarray(0, w.at), Buffer.from('z'), Buffer.alloc(16), Buffer.from('e')]);
      zero.writeBigUInt64LE(8n << 20n, w.at + 1);
      zero.writeBigUInt64LE(4097n + 4096n, w.at + 9);
      const zeroError = await assertCephError(importDiff(Readable.from([zero]), target), DiffStreamError, {
        code: 'EINVAL', message: /extent of 8193 bytes at offset 8388608 passes the end of the image/,
      });
      assert.equal((zeroError as DiffStreamError).byteOffset, w.at);
      assert.equal(await target.snapshotExists('s2'), false);

      // A write record longer than one piece (4 MiB) whose last piece passes
      // the end: the error still names the record, not the piece.
      const long = Buffer.concat([incremental.subarray(0, w.at), Buffer.from('w'), Buffer.alloc(16),
        randomBytes(Number(size)), Buffer.from('e')]);
      long.writeBigUInt64LE(1n, w.at + 1);
      long.writeBigUInt64LE(size, w.at + 9);
      const longError = await assertCephError(importDiff(Readable.from([long]), target), DiffStreamError, {
        code: 'EINVAL', message: /passes the end of the image/,
      });
      assert.equal((longError as DiffStreamError).byteOffset, w.at);
      assert.equal(await target.snapshotExists('s2'), false);
    });

  test('a stream that fails while being read: its error, no end snapshot', { timeout: 60_000 }, async (t) => {
    const { target, incremental } = await setup(t);
    const boom = new Error('the network went away');
    async function* failing(): AsyncGenerator<Buffer> {
      yield incremental.subarray(0, incremental.length >> 1);
      throw boom;
    }
    await assert.rejects(importDiff(failing(), target), (error) => error === boom);
    assert.equal(await target.snapshotExists('s2'), false);
  });

  test('cancel: an already-aborted signal writes nothing; aborting mid-stream gives CancelledError and no snapshot',
    { timeout: 60_000 }, async (t) => {
      const { src, dst, target, incremental } = await setup(t);
      const before = await targetState(dst, target);
      const pre = new AbortController();
      pre.abort();
      await assertCephError(importDiff(Readable.from([incremental]), target, { signal: pre.signal }), CancelledError, {
        code: 'ECANCELED', operation: 'importDiff', resource: dst.spec, message: /cancelled/,
      });
      assert.deepEqual(await targetState(dst, target), before);

      const controller = new AbortController();
      async function* pieces(): AsyncGenerator<Buffer> {
        for (let at = 0; at < incremental.length; at += 64 * KiB) {
          if (at >= 512 * KiB) controller.abort(new Error('stop now'));
          yield incremental.subarray(at, at + 64 * KiB);
        }
      }
      await assertCephError(importDiff(pieces(), target, { signal: controller.signal }), CancelledError, {
        code: 'ECANCELED', operation: 'importDiff', resource: dst.spec, message: /cancelled \(stop now\)/,
      });
      assert.equal(await target.snapshotExists('s2'), false);
      await importDiff(Readable.from([incremental]), target);
      await assertSameSnapshot(src, dst, 's2');
    });

  test('bad arguments: a target at a snapshot, bad options, garbage', { timeout: 60_000 }, async (t) => {
    const { s, dst, target, incremental } = await setup(t);
    const atS1 = await s.open(dst, 's1');
    await assertCephError(importDiff(Readable.from([incremental]), atS1), InvalidArgumentError, {
      code: 'EINVAL', operation: 'importDiff', message: /the target must be open at its head/,
    });
    await assertCephError(importDiff(Readable.from([incremental]), target, { concurrency: 0 }), InvalidArgumentError, {
      code: 'EINVAL', operation: 'importDiff', message: /concurrency/,
    });
    const error = await assertCephError(importDiff(Readable.from([Buffer.from('not a diff at all')]), target),
      DiffStreamError, { code: 'EINVAL', operation: 'importDiff', message: /bad header/ });
    assert.equal((error as DiffStreamError).byteOffset, 0);
    assert.equal(await target.snapshotExists('s2'), false);
  });
});

// ---- exportDiff's own errors, cancel and clean-up ------------------------------------------------

describe('exportDiff: errors, cancel, handle release', () => {
  async function consume(options: ExportDiffOptions, image: Image): Promise<Buffer> {
    return collect(exportDiff(image, options));
  }

  test('bad names and missing snapshots fail the stream with typed errors', { timeout: 60_000 }, async (t) => {
    const s = clusterScratch(t);
    const src = await s.create('a', 'rbd', 'stream-err', 4 * MiB);
    const source = await s.open(src);
    await source.write(randomBytes(MiB), 0);
    await source.createSnapshot('only');
    await assertCephError(consume({ snapshot: 'a@b' }, source), InvalidArgumentError, {
      code: 'EINVAL', operation: 'exportDiff', message: /must not contain '\/' or '@'/,
    });
    await assertCephError(consume({ snapshot: 'only', fromSnapshot: '' }, source), InvalidArgumentError, {
      code: 'EINVAL', operation: 'exportDiff', message: /snapshot name must not be empty/,
    });
    await assertCephError(consume({ snapshot: 'only', fromSnapshot: 'gone' }, source), NotFoundError, {
      code: 'ENOENT', operation: 'exportDiff', resource: `${src.spec}@only`, message: /from-snapshot gone does not exist/,
    });
    await assertCephError(consume({ snapshot: 'gone' }, source), NotFoundError, { code: 'ENOENT', message: /gone/ });
    await assertCephError(consume({ snapshot: 'only', memoryBytes: 10 }, source), InvalidArgumentError, {
      code: 'EINVAL', operation: 'exportDiff', message: /memoryBytes/,
    });
  });

  test('aborting mid-stream fails it with CancelledError; the snapshot handle is released', { timeout: 120_000 },
    async (t) => {
      const s = clusterScratch(t);
      const src = await s.create('a', 'rbd', 'stream-cancel', 64 * MiB);
      const source = await s.open(src);
      await fill(source, 0, 64 * MiB);
      await source.createSnapshot('c');
      const controller = new AbortController();
      let received = 0;
      await assertCephError((async () => {
        for await (const chunk of exportDiff(source, { snapshot: 'c', signal: controller.signal, concurrency: 2 })) {
          received += (chunk as Buffer).length;
          if (received > 8 * MiB) controller.abort(new Error('enough of it'));
        }
      })(), CancelledError, {
        code: 'ECANCELED', operation: 'exportDiff', resource: `${src.spec}@c`, message: /cancelled \(enough of it\)/,
      });
      assert.ok(received < 64 * MiB, `stopped early (${received} bytes)`);
      // Nothing holds the image any more: it closes and can be removed.
      await source.close();
      await source.close();
      const again = await src.pool.openImage(src.name);
      await again.removeSnapshot('c');
      await again.close();
      await src.pool.removeImage(src.name);
    });

  test('a consumer that stops early (destroy) releases the snapshot handle', { timeout: 120_000 }, async (t) => {
    const s = clusterScratch(t);
    const src = await s.create('a', 'rbd', 'stream-destroy', 32 * MiB);
    const source = await s.open(src);
    await fill(source, 0, 32 * MiB);
    await source.createSnapshot('d');
    const stream = exportDiff(source, { snapshot: 'd' });
    await once(stream, 'readable');
    assert.ok(stream.read() !== null);
    stream.destroy();
    await once(stream, 'close');
    await source.close();
    const again = await src.pool.openImage(src.name);
    await again.removeSnapshot('d');
    await again.close();
    await src.pool.removeImage(src.name);
  });

  test('an already-aborted signal fails an export with data with CancelledError', { timeout: 60_000 }, async (t) => {
    const s = clusterScratch(t);
    const src = await s.create('a', 'rbd', 'stream-preabort', 8 * MiB);
    const source = await s.open(src);
    await source.write(randomBytes(MiB), 0);
    await source.createSnapshot('p');
    const controller = new AbortController();
    controller.abort();
    await assertCephError(consume({ snapshot: 'p', signal: controller.signal }, source), CancelledError, {
      code: 'ECANCELED', operation: 'exportDiff', message: /cancelled/,
    });
  });

  test('an already-aborted signal fails an export without data too', { timeout: 60_000 }, async (t) => {
    const s = clusterScratch(t);
    const src = await s.create('a', 'rbd', 'stream-preabort-empty', 8 * MiB);
    const source = await s.open(src);
    await source.createSnapshot('p');
    const controller = new AbortController();
    controller.abort();
    await assertCephError(consume({ snapshot: 'p', signal: controller.signal }, source), CancelledError, {
      code: 'ECANCELED', operation: 'exportDiff', message: /cancelled/,
    });
  });
});
