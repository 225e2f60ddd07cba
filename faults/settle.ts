/**
 * Timing one operation against its time budget and sorting how it ended
 * (DESIGN section 7: completed or a typed error, within 1.5x the budget).
 */
import { CephError } from '../lib/index.js';
import type { Settled } from './outcome.js';

/** Settling later than this multiple of the budget is a hang. */
export const HANG_FACTOR = 1.5;
/**
 * A worker stops waiting for an operation after this multiple of its
 * budget (a hang either way) and moves on to healing the cluster.
 */
const GIVE_UP_FACTOR = 3;

export interface Settling<T> {
  settled: Exclude<Settled, 'crash'>;
  value: T | undefined;
  error: unknown;
  ms: number;
}

export function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}

/** Runs call with its budget (for the call's own timeoutMs), timing it; gives up waiting after GIVE_UP_FACTOR budgets. */
export async function settle<T>(budgetMs: number, call: (timeoutMs: number) => Promise<T>): Promise<Settling<T>> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const giveUp = new Promise<'gave up'>((resolve) => {
    timer = setTimeout(() => resolve('gave up'), GIVE_UP_FACTOR * budgetMs);
  });
  type Result = { value: T } | { error: unknown } | 'gave up';
  try {
    const result = await Promise.race<Result>([
      Promise.resolve(budgetMs).then(call).then((value) => ({ value }), (error: unknown) => ({ error })),
      giveUp,
    ]);
    const ms = performance.now() - started;
    if (result === 'gave up') {
      return { settled: 'hang', value: undefined, error: new Error(`no result after ${Math.round(ms)} ms`), ms };
    }
    const late = ms > HANG_FACTOR * budgetMs;
    if ('error' in result) {
      const kind = result.error instanceof CephError ? 'typed' : 'untyped';
      return { settled: late ? 'hang' : kind, value: undefined, error: result.error, ms };
    }
    return { settled: late ? 'hang' : 'completed', value: result.value, error: undefined, ms };
  } finally {
    clearTimeout(timer);
  }
}
