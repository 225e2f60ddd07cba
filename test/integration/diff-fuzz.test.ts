/**
 * importDiff against corrupted diff streams, on a real cluster. Two small
 * valid incremental streams (ours and `rbd export-diff`'s, of an 8 MiB image
 * with a few extents: 'f', 't', 's', 'w', 'z' and 'e' records) are corrupted
 * in thousands of ways (byte flips, truncations, insertions, deletions,
 * extents pushed past the image size, records dropped, repeated, moved) and
 * fed to importDiff on a target that has the from-snapshot. Each variant
 * must either import (then the image must be sane, and it is noted) or be
 * refused with a CephError (a DiffStreamError where the stream is malformed),
 * never crash or hang, and after every refusal the target must not have the
 * end snapshot or any other new one.
 *
 * The mutations come from a seeded PRNG (logged; DIFF_FUZZ_SEED=<n> replays
 * them, DIFF_FUZZ_VARIANTS=<n> changes how many). A variant that breaks a
 * rule is written to a file named in the failure.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  CephError, DiffStreamError, exportDiff, importDiff,
  type Cluster, type ImportDiffStats, type Pool,
} from '../../lib/index.js';
import { intBelow, prng } from '../../lib/dev/prng.js';
import { connect, rbd, rbdExportSha256, testCluster, uniqueName } from '../support/clusters.js';
import { removeImageFully } from '../support/scratch.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 8 * MiB;

let cluster: Cluster;
let rbdPool: Pool;
let backups: Pool;
const made: Array<[Pool, string]> = [];

before(async () => {
  cluster = await connect('a');
  rbdPool = await cluster.pool('rbd');
  backups = await cluster.pool('backups');
});

after(async () => {
  for (const [pool, name] of made.reverse()) await removeImageFully(pool, name);
  await backups?.close();
  await rbdPool?.close();
  await cluster?.close();
});

// ---- the stream's layout, read independently of the library's parser ---------------

interface Rec {
  tag: string;
  at: number;
  /** Bytes of the record, data included. */
  length: number;
  /** Bytes of its head (tag and fixed fields). */
  head: number;
}

function walk(stream: Buffer): Rec[] {
  assert.equal(stream.subarray(0, 12).toString('latin1'), 'rbd diff v1\n');
  const recs: Rec[] = [];
  for (let p = 12; p < stream.length;) {
    const tag = String.fromCharCode(stream[p]);
    let length: number;
    let head: number;
    switch (tag) {
      case 'f': case 't': head = 5; length = 5 + stream.readUInt32LE(p + 1); break;
      case 's': head = length = 9; break;
      case 'w': head = 17; length = 17 + Number(stream.readBigUInt64LE(p + 9)); break;
      case 'z': head = length = 17; break;
      case 'e': head = length = 1; break;
      default: throw new Error(`unexpected tag ${tag} at ${p}`);
    }
    recs.push({ tag, at: p, length, head });
    p += length;
  }
  return recs;
}

// ---- variants ------------------------------------------------------------------------

type Expect = 'stream-error' | 'any';

interface Variant {
  kind: string;
  bytes: Buffer;
  expect: Expect;
  /** For extents pushed past the end: the record's offset, which the error must name. */
  recordAt?: number;
}

function splice(stream: Buffer, at: number, remove: number, insert: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([stream.subarray(0, at), insert, stream.subarray(at + remove)]);
}

class Mutator {
  readonly #rng: () => number;
  readonly stream: Buffer;
  readonly recs: Rec[];
  /** Offsets of bytes that carry structure: the header and every record head. */
  readonly structural: number[];

  constructor(rng: () => number, stream: Buffer) {
    this.#rng = rng;
    this.stream = stream;
    this.recs = walk(stream);
    this.structural = [...Array(12).keys()];
    for (const r of this.recs) {
      // Whole names too: they are metadata.
      const end = r.tag === 'w' ? r.at + r.head : r.at + r.length;
      for (let i = r.at; i < end; i++) this.structural.push(i);
    }
  }

  int(below: number): number {
    return intBelow(this.#rng, below);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  #position(): number {
    return this.#rng() < 0.6 ? this.pick(this.structural) : this.int(this.stream.length);
  }

  #records(tag: string): Rec[] {
    return this.recs.filter((r) => r.tag === tag);
  }

  /** One random variant. */
  next(): Variant {
    const s = this.stream;
    const roll = this.int(100);
    if (roll < 30) {
      const b = Buffer.from(s);
      const at = this.#position();
      b[at] = this.int(2) === 0 ? b[at] ^ (1 << this.int(8)) : this.int(256);
      return { kind: 'flip', bytes: b, expect: 'any' };
    }
    if (roll < 40) {
      const b = Buffer.from(s);
      const n = 2 + this.int(3);
      for (let i = 0; i < n; i++) b[this.#position()] = this.int(256);
      return { kind: 'flips', bytes: b, expect: 'any' };
    }
    if (roll < 50) {
      return { kind: 'truncate', bytes: s.subarray(0, this.int(s.length)), expect: 'stream-error' };
    }
    if (roll < 58) {
      return { kind: 'insert', bytes: splice(s, this.#position(), 0, randomBytes(1 + this.int(16))), expect: 'any' };
    }
    if (roll < 66) {
      const at = this.#position();
      return { kind: 'delete', bytes: splice(s, at, 1 + this.int(Math.min(16, s.length - at))), expect: 'any' };
    }
    if (roll < 74) {
      // An extent pushed past the image size (the 's' record's).
      const size = s.readBigUInt64LE(this.#records('s')[0].at + 1);
      const r = this.pick([...this.#records('w'), ...this.#records('z')]);
      const b = Buffer.from(s);
      const length = b.readBigUInt64LE(r.at + 9);
      const beyond = this.pick([1n, 4096n, BigInt(MiB), 1n << 40n]);
      b.writeBigUInt64LE(size - length + beyond, r.at + 1);
      return { kind: `${r.tag}-past-end`, bytes: b, expect: 'stream-error', recordAt: r.at };
    }
    if (roll < 80) {
      // A 'w' length off by a little or a lot: the records after it are misread.
      const r = this.pick(this.#records('w'));
      const b = Buffer.from(s);
      const length = b.readBigUInt64LE(r.at + 9);
      const wrong = this.pick([length + 1n, length - 1n, length * 2n, 0n, 1n << 62n, (1n << 64n) - 1n]);
      b.writeBigUInt64LE(wrong < 0n ? 0n : wrong, r.at + 9);
      return { kind: 'w-length', bytes: b, expect: 'any' };
    }
    if (roll < 86) {
      const r = this.pick(this.recs);
      // Without its end record a stream is truncated.
      return { kind: `drop-${r.tag}`, bytes: splice(s, r.at, r.length), expect: r.tag === 'e' ? 'stream-error' : 'any' };
    }
    if (roll < 90) {
      const r = this.pick(this.recs);
      const copy = s.subarray(r.at, r.at + r.length);
      return { kind: `repeat-${r.tag}`, bytes: splice(s, r.at + r.length, 0, copy), expect: r.tag === 'e' ? 'stream-error' : 'any' };
    }
    if (roll < 94) {
      // A metadata record moved after the first data record.
      const meta = this.pick(this.recs.filter((r) => 'fts'.includes(r.tag)));
      const firstData = this.recs.find((r) => 'wz'.includes(r.tag))!;
      const moved = Buffer.concat([
        s.subarray(0, meta.at), s.subarray(meta.at + meta.length, firstData.at + firstData.length),
        s.subarray(meta.at, meta.at + meta.length), s.subarray(firstData.at + firstData.length),
      ]);
      return { kind: `late-${meta.tag}`, bytes: moved, expect: 'stream-error' };
    }
    if (roll < 97) {
      return { kind: 'trailing', bytes: Buffer.concat([s, randomBytes(1 + this.int(64))]), expect: 'stream-error' };
    }
    // Two records swapped.
    const i = this.int(this.recs.length - 1);
    const [r1, r2] = [this.recs[i], this.recs[i + 1]];
    const swapped = Buffer.concat([
      s.subarray(0, r1.at), s.subarray(r2.at, r2.at + r2.length), s.subarray(r1.at, r1.at + r1.length),
      s.subarray(r2.at + r2.length),
    ]);
    return { kind: `swap-${r1.tag}${r2.tag}`, bytes: swapped, expect: 'any' };
  }

  /** Cuts at every length of the metadata, and around every record boundary. */
  *truncations(): Generator<Variant> {
    const cuts = new Set<number>();
    const metaEnd = this.recs.find((r) => 'wz'.includes(r.tag))!.at + 17;
    for (let i = 0; i <= metaEnd; i++) cuts.add(i);
    for (const r of this.recs) for (let d = -3; d <= 20; d++) cuts.add(r.at + d);
    for (const cut of [...cuts].sort((x, y) => x - y)) {
      if (cut >= 0 && cut < this.stream.length) {
        yield { kind: 'truncate-sweep', bytes: this.stream.subarray(0, cut), expect: 'stream-error' };
      }
    }
  }
}

// ---- the run -------------------------------------------------------------------------

function* chunked(bytes: Buffer, rng: () => number): Generator<Buffer> {
  const pieces = 1 + Math.floor(rng() * 4);
  const size = Math.max(1, Math.ceil(bytes.length / pieces));
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function rbdExportDiff(spec: string, from: string): Promise<Buffer> {
  const { info } = await testCluster('a');
  const child = spawn('rbd', ['-c', info.conf, '--keyring', info.keyring, 'export-diff', '--no-progress',
    '--from-snap', from, spec, '-'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const exited = new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`rbd export-diff: ${code} ${stderr}`))));
  });
  const [bytes] = await Promise.all([collect(child.stdout), exited]);
  return bytes;
}

test('corrupted diff streams: refused with typed errors or imported sanely, never an end snapshot after a refusal',
  { timeout: 600_000 }, async (t) => {
    const seed = process.env.DIFF_FUZZ_SEED !== undefined
      ? Number(process.env.DIFF_FUZZ_SEED)
      : (Date.now() ^ (Math.random() * 0x7fffffff)) & 0x7fffffff;
    const count = Number(process.env.DIFF_FUZZ_VARIANTS ?? 1000);
    t.diagnostic(`seed ${seed} (DIFF_FUZZ_SEED=${seed} replays the mutations), ${count} random variants per stream (two streams)`);
    const rng = prng(seed);

    // The source: a few extents at s1; at s2 writes (one with a long zero run
    // inside), a discarded object, write-zeroes, and a size change.
    const srcName = uniqueName('fuzz-src');
    await rbdPool.createImage(srcName, SIZE);
    made.push([rbdPool, srcName]);
    const source = await rbdPool.openImage(srcName);
    try {
      await source.write(randomBytes(20 * KiB), 4 * KiB);
      await source.write(randomBytes(64 * KiB), 4 * MiB + 100);
      await source.write(randomBytes(4 * KiB), 7 * MiB);
      await source.createSnapshot('s1');
      const withZeros = randomBytes(200 * KiB);
      withZeros.fill(0, 64 * KiB, 150 * KiB);
      await source.write(withZeros, 2 * MiB);
      await source.write(randomBytes(3 * KiB + 7), 10 * KiB + 1);
      await source.discard(4 * MiB, 4 * MiB);
      await source.writeZeroes(8 * KiB, 4 * KiB);
      await source.resize(SIZE + 12 * KiB);
      await source.write(randomBytes(5 * KiB), SIZE + 4 * KiB);
      await source.createSnapshot('s2');
    } finally {
      await source.close();
    }
    const sourceAtS1 = await rbdPool.openImage(srcName);
    const ours = await collect(exportDiff(sourceAtS1, { snapshot: 's2', fromSnapshot: 's1' }));
    const theirs = await rbdExportDiff(`rbd/${srcName}@s2`, 's1');
    const full = await collect(exportDiff(sourceAtS1, { snapshot: 's1' }));
    await sourceAtS1.close();
    for (const [name, stream] of [['ours', ours], ['rbd', theirs]] as const) {
      const tags = walk(stream).map((r) => r.tag).join('');
      t.diagnostic(`${name}: ${stream.length} bytes, records ${tags}`);
      for (const tag of 'ftswze') assert.ok(tags.includes(tag), `the ${name} stream has a '${tag}' record: ${tags}`);
    }

    // The target: s1 imported, nothing else.
    const dstName = uniqueName('fuzz-dst');
    await backups.createImage(dstName, SIZE);
    made.push([backups, dstName]);
    const target = await backups.openImage(dstName);
    const outcomes = new Map<string, number>();
    const successes = new Map<string, number>();
    const note = (map: Map<string, number>, key: string): void => { map.set(key, (map.get(key) ?? 0) + 1); };
    let tried = 0;
    try {
      await importDiff(Readable.from([full]), target);
      assert.deepEqual((await target.listSnapshots()).map((x) => x.name), ['s1']);

      const fail = (variant: Variant, index: number, why: string): never => {
        const file = join(tmpdir(), `diff-fuzz-${seed}-${index}.bin`);
        writeFileSync(file, variant.bytes);
        assert.fail(`variant ${index} (${variant.kind}, seed ${seed}, bytes in ${file}): ${why}`);
      };

      const run = async (variant: Variant, index: number): Promise<void> => {
        tried++;
        const controller = new AbortController();
        let timer: NodeJS.Timeout | undefined;
        const hung = new Promise<'hung'>((resolve) => { timer = setTimeout(() => resolve('hung'), 60_000); });
        type Outcome = { stats: ImportDiffStats } | { error: unknown } | 'hung';
        let result: Outcome;
        try {
          result = await Promise.race<Outcome>([
            importDiff(Readable.from(chunked(variant.bytes, rng)), target, { signal: controller.signal })
              .then((stats) => ({ stats }), (error: unknown) => ({ error })),
            hung,
          ]);
        } finally {
          clearTimeout(timer);
        }
        if (result === 'hung') {
          controller.abort();
          return fail(variant, index, 'importDiff did not settle within 60 s');
        }
        if ('error' in result) {
          const { error } = result;
          if (!(error instanceof CephError)) return fail(variant, index, `rejected with a non-CephError: ${String(error)}`);
          if (variant.expect === 'stream-error' && !(error instanceof DiffStreamError)) {
            fail(variant, index, `expected a DiffStreamError, got ${error.name}: ${error.message}`);
          }
          if (error instanceof DiffStreamError) {
            if (!(error.byteOffset >= 0 && error.byteOffset <= variant.bytes.length)) {
              fail(variant, index, `byteOffset ${error.byteOffset} outside the stream: ${error.message}`);
            }
            if (variant.recordAt !== undefined && error.byteOffset !== variant.recordAt) {
              fail(variant, index, `byteOffset ${error.byteOffset} does not name the record at ${variant.recordAt}: ` +
                error.message);
            }
          }
          note(outcomes, `${variant.kind}: ${error.name}`);
        } else {
          if (variant.expect === 'stream-error') fail(variant, index, 'a malformed stream was imported');
          // A sane image: the end snapshot (if the stream named one) exists with the stream's size.
          const { stats } = result;
          if (stats.snapshot !== undefined) {
            if (!(await target.snapshotExists(stats.snapshot))) fail(variant, index, 'no end snapshot after success');
            const at = await backups.openImage(dstName, { snapshot: stats.snapshot, readOnly: true });
            try {
              const { size } = await at.stat();
              if (stats.size !== undefined && size !== stats.size) {
                fail(variant, index, `snapshot size ${size}, stream said ${stats.size}`);
              }
              await at.read(0, size < 4096n ? size : 4096n);
            } finally {
              await at.close();
            }
            await target.removeSnapshot(stats.snapshot);
          }
          note(outcomes, `${variant.kind}: imported`);
          note(successes, `${variant.kind}${stats.snapshot === undefined ? ' (no end snapshot)' : ''}`);
        }
        const snapshots = (await target.listSnapshots()).map((x) => x.name);
        if (snapshots.length !== 1 || snapshots[0] !== 's1') {
          fail(variant, index, `the target's snapshots are ${JSON.stringify(snapshots)}`);
        }
      };

      let index = 0;
      for (const base of [ours, theirs]) {
        const mutator = new Mutator(rng, base);
        for (const variant of mutator.truncations()) await run(variant, index++);
        for (let i = 0; i < count; i++) await run(mutator.next(), index++);
      }

      // The target still works: back at s1, the real stream gives s2 exactly.
      await target.close();
      await rbd('a', ['snap', 'rollback', '--no-progress', `backups/${dstName}@s1`]);
      const again = await backups.openImage(dstName);
      try {
        await importDiff(Readable.from([ours]), again);
      } finally {
        await again.close();
      }
      assert.equal(await rbdExportSha256('a', `backups/${dstName}@s2`), await rbdExportSha256('a', `rbd/${srcName}@s2`));
    } finally {
      await target.close();
      const summary = [...outcomes].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k} ${v}`);
      t.diagnostic(`${tried} variants: ${summary.join('; ')}`);
      t.diagnostic(`imported: ${[...successes].map(([k, v]) => `${k} ${v}`).join('; ')}`);
    }
  });
