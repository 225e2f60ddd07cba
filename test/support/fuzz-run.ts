/**
 * The seed and size of a fuzz fixture's run, from the environment:
 * DIFF_FUZZ_SEED=<n> replays a run (otherwise a new seed), and
 * RBD_FUZZ_ITERATIONS=<n> sets how many calls or variants it makes (default
 * 150). The fixture prints the seed so that a failure can be replayed.
 */
import { intBelow, prng } from '../../lib/dev/prng.js';

export interface FuzzRun {
  seed: number;
  count: number;
  /** Numbers in [0, 1), the same sequence for the same seed. */
  rng: () => number;
  /** One of items, by the next number. */
  pick: <T>(items: readonly T[]) => T;
}

export function fuzzRun(): FuzzRun {
  const seed = process.env.DIFF_FUZZ_SEED !== undefined
    ? Number(process.env.DIFF_FUZZ_SEED)
    : (Date.now() ^ (Math.random() * 0x7fffffff)) & 0x7fffffff;
  const count = Number(process.env.RBD_FUZZ_ITERATIONS ?? 150);
  const rng = prng(seed);
  return { seed, count, rng, pick: (items) => items[intBelow(rng, items.length)]! };
}
