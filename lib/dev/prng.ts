/**
 * A small seeded PRNG for the tests and the benchmark: the same seed gives
 * the same offsets and change patterns in every run, so a logged seed
 * replays a failure. Not for anything that needs real randomness. Not part
 * of the package's public API.
 */

/** mulberry32: numbers in [0, 1), a fixed sequence for each 32-bit seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [0, below), from one draw of rng. */
export function intBelow(rng: () => number, below: number): number {
  return Math.floor(rng() * below);
}
