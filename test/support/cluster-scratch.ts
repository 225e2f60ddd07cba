/**
 * Scratch images on either test cluster and in any pool, for the tests that
 * move data between images (copy, transfer, diff streams): images removed
 * whatever happens, seeded random changes to make between snapshots, and
 * checks by `rbd export` checksums.
 */
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { CreateImageOptions, Image, Pool } from '../../lib/index.js';
import { intBelow, prng } from '../../lib/dev/prng.js';
import { rbdExportSha256, testPool, uniqueName, type Which } from './clusters.js';
import { removeImageFully, UndoStack } from './scratch.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** An image a test made (or reserved). */
export interface Made {
  which: Which;
  pool: Pool;
  name: string;
  /** 'pool/name', for rbd. */
  spec: string;
}

/** What a test makes, undone in reverse order by dispose(). */
export class ClusterScratch extends UndoStack {
  async create(which: Which, poolName: string, prefix: string, size: number,
    options: CreateImageOptions = {}): Promise<Made> {
    const p = await testPool(which, poolName);
    const name = uniqueName(prefix);
    await p.createImage(name, size, options);
    this.defer(() => removeImageFully(p, name));
    return { which, pool: p, name, spec: `${poolName}/${name}` };
  }

  /** A name for an image some tool will create; removed at the end if it exists. */
  async reserve(which: Which, poolName: string, prefix: string): Promise<Made> {
    const p = await testPool(which, poolName);
    const name = uniqueName(prefix);
    this.defer(() => removeImageFully(p, name));
    return { which, pool: p, name, spec: `${poolName}/${name}` };
  }

  /** The image, or a read-only view of its snapshot; closed at the end. */
  async open(made: Made, snapshot?: string): Promise<Image> {
    const image = await made.pool.openImage(made.name, snapshot === undefined ? {} : { snapshot, readOnly: true });
    this.defer(() => image.close());
    return image;
  }
}

/** A ClusterScratch disposed when test t ends. */
export function clusterScratch(t: TestContext): ClusterScratch {
  const s = new ClusterScratch();
  t.after(() => s.dispose());
  return s;
}

// ---- seeded random changes ----------------------------------------------------

/**
 * A PRNG seeded from the environment variable `replayVariable` when it is
 * set, otherwise at random; the seed goes to the test's diagnostics so that
 * a failing run can be replayed.
 */
export function seeded(t: TestContext, replayVariable: string): () => number {
  const seed = process.env[replayVariable] !== undefined
    ? Number(process.env[replayVariable])
    : (Date.now() ^ (Math.random() * 0x7fffffff)) & 0x7fffffff;
  t.diagnostic(`seed ${seed} (${replayVariable}=${seed} replays the offsets)`);
  return prng(seed);
}

/** An offset, 4 KiB-aligned half of the time and anywhere otherwise. */
export function offsetIn(rng: () => number, size: number): number {
  const at = intBelow(rng, size);
  return rng() < 0.5 ? at - (at % (4 * KiB)) : at;
}

export interface Change {
  kind: 'write' | 'discard' | 'writeZeroes';
  offset: number;
  length: number;
}

/**
 * count random writes (writeShare of them), discards and write-zeroes of up
 * to 2 MiB each; returns what was done, for the log.
 */
export async function mutate(image: Image, rng: () => number, size: number, count: number,
  writeShare = 0.6): Promise<Change[]> {
  const changes: Change[] = [];
  for (let i = 0; i < count; i++) {
    const r = rng();
    const kind: Change['kind'] = r < writeShare ? 'write' : r < 0.8 ? 'discard' : 'writeZeroes';
    const offset = offsetIn(rng, size);
    const length = Math.min(size - offset, 1 + intBelow(rng, 2 * MiB));
    if (length <= 0) continue;
    if (kind === 'write') await image.write(randomBytes(length), offset);
    else if (kind === 'discard') await image.discard(offset, length);
    else await image.writeZeroes(offset, length);
    changes.push({ kind, offset, length });
  }
  return changes;
}

/** Fills [offset, offset + length) with random data in 4 MiB writes. */
export async function fill(image: Image, offset: number, length: number): Promise<void> {
  for (let at = offset; at < offset + length; at += 4 * MiB) {
    await image.write(randomBytes(Math.min(4 * MiB, offset + length - at)), at);
  }
}

// ---- checks -------------------------------------------------------------------

/** sha256 of `rbd export` of the image, or of its snapshot. */
export async function exportSha(made: Made, snapshot?: string): Promise<string> {
  return rbdExportSha256(made.which, snapshot === undefined ? made.spec : `${made.spec}@${snapshot}`);
}

/** target@snapshot holds the bytes of source@snapshot; context goes into the failure message. */
export async function assertSameSnapshot(source: Made, target: Made, snapshot: string,
  context?: string): Promise<void> {
  const [expected, actual] = await Promise.all([exportSha(source, snapshot), exportSha(target, snapshot)]);
  const differs = `${target.spec}@${snapshot} differs from ${source.spec}@${snapshot}`;
  assert.equal(actual, expected, context === undefined ? differs : `${differs} ${context}`);
}

/** What must stay as it was when an operation is refused before writing. */
export interface TargetState {
  sha: string;
  size: bigint;
  snapshots: string[];
}

export async function targetState(made: Made, image: Image): Promise<TargetState> {
  return {
    sha: await exportSha(made),
    size: (await image.stat()).size,
    snapshots: (await image.listSnapshots()).map((s) => s.name),
  };
}

/** The resource an engine error names for a transfer or copy of source@snapshot into target. */
export function resourceOf(source: Made, snapshot: string, target: Made): string {
  return `${source.spec}@${snapshot} -> ${target.spec}`;
}
