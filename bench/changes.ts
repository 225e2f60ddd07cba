/** The incrementals' changes: random writes of a given size to the source volume, at offsets that are the same in every run. */
import { randomBytes } from 'node:crypto';
import { prng } from '../lib/dev/prng.js';
import { Cluster } from '../lib/index.js';
import { CONNECT_TIMEOUT_MS, OP_TIMEOUT_MS, type Bench } from './bench.js';
import type { ChangeInfo } from './results.js';

const MiB = 1 << 20;
/** Writes start at offsets aligned to this. */
const CHANGE_ALIGN = 4 << 10;
const CHANGE_WINDOW = 16;

/**
 * Writes `fraction` of the volume as `writeBytes`-byte writes of random bytes
 * at random CHANGE_ALIGN-aligned offsets (mulberry32 with `seed`).
 */
export async function writeChanges(bench: Bench, spec: { pool: string; image: string }, fraction: number, seed: number,
  writeBytes: number): Promise<ChangeInfo> {
  const size = bench.sizeBytes;
  const writes = Math.round((fraction * size) / writeBytes);
  const random = prng(seed);
  const slots = (size - writeBytes) / CHANGE_ALIGN + 1;
  const blocks = new Uint8Array(size / CHANGE_ALIGN);
  const objects = new Set<number>();
  const offsets: number[] = [];
  for (let i = 0; i < writes; i++) {
    const offset = Math.floor(random() * slots) * CHANGE_ALIGN;
    offsets.push(offset);
    blocks.fill(1, offset / CHANGE_ALIGN, (offset + writeBytes) / CHANGE_ALIGN);
    objects.add(Math.floor(offset / (4 * MiB)));
    objects.add(Math.floor((offset + writeBytes - 1) / (4 * MiB)));
  }
  const started = performance.now();
  const cluster = await Cluster.connect({ ...bench.a.ref, timeoutMs: CONNECT_TIMEOUT_MS, opTimeoutMs: OP_TIMEOUT_MS });
  try {
    const pool = await cluster.pool(spec.pool);
    try {
      const image = await pool.openImage(spec.image);
      try {
        let next = 0;
        const worker = async (): Promise<void> => {
          while (next < offsets.length) {
            const offset = offsets[next++]!;
            await image.write(randomBytes(writeBytes), offset);
          }
        };
        await Promise.all(Array.from({ length: CHANGE_WINDOW }, worker));
        await image.flush();
      } finally {
        await image.close();
      }
    } finally {
      await pool.close();
    }
  } finally {
    await cluster.close();
  }
  const changedBlocks = blocks.reduce((sum, b) => sum + b, 0);
  return {
    fraction,
    pattern: `${writes} writes of ${writeBytes / 1024} KiB of random bytes at uniformly random ` +
      `${CHANGE_ALIGN / 1024} KiB-aligned offsets in [0, size - ${writeBytes / 1024} KiB] ` +
      `(mulberry32 seed ${seed}; overlaps possible), ${CHANGE_WINDOW} in flight`,
    seed,
    writes,
    writeBytes,
    bytesWritten: writes * writeBytes,
    bytesChanged: changedBlocks * CHANGE_ALIGN,
    objectsTouched: objects.size,
    objects: Math.ceil(size / (4 * MiB)),
    writeMs: performance.now() - started,
  };
}
