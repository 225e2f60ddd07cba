/** RBD image feature names and their bits (include/rbd/features.h). */
import { invalidArgument } from './errors.js';

const FEATURE_BITS = {
  'layering': 1n << 0n,
  'striping': 1n << 1n,
  'exclusive-lock': 1n << 2n,
  'object-map': 1n << 3n,
  'fast-diff': 1n << 4n,
  'deep-flatten': 1n << 5n,
  'journaling': 1n << 6n,
  'data-pool': 1n << 7n,
  'operations': 1n << 8n,
  'migrating': 1n << 9n,
  'non-primary': 1n << 10n,
  'dirty-cache': 1n << 11n,
} as const;

export type FeatureName = keyof typeof FEATURE_BITS;

export function featureBits(names: readonly string[], operation: string, resource: string): bigint {
  let bits = 0n;
  for (const name of names) {
    const bit = (FEATURE_BITS as Record<string, bigint>)[name];
    if (bit === undefined) {
      throw invalidArgument(operation, resource,
        `unknown image feature ${JSON.stringify(name)} (known: ${Object.keys(FEATURE_BITS).join(', ')})`);
    }
    bits |= bit;
  }
  return bits;
}

export function featureNames(bits: bigint): FeatureName[] {
  return (Object.entries(FEATURE_BITS) as Array<[FeatureName, bigint]>)
    .filter(([, bit]) => (bits & bit) !== 0n)
    .map(([name]) => name);
}
