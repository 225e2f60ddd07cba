/**
 * The time budget of a BackupEngine call: the caller's timeoutMs, or one
 * derived from the connections' own timeouts. The default is a few op
 * timeouts (one stuck operation, and the clean-up after it), grown once
 * the call knows its work: a second per 16 MiB it moves, an op timeout
 * per volume gc visits or backup prune removes. So a healthy call never
 * runs out of it, and a stuck one ends in minutes, not never.
 */
import type { Cluster } from '../ceph/cluster.js';
import { toIntInRange } from '../ceph/validate.js';

/** Op timeouts in the default budget of every call. */
export const DEFAULT_TIMEOUT_OPS = 3;
/** The slowest transfer the default budget allows for: far below what any cluster moves when healthy. */
export const MIN_BYTES_PER_SECOND = 16 * 2 ** 20;
const MAX_TIMEOUT_MS = 7 * 24 * 3600_000;

/** How long one operation on the cluster may take: its OSD op timeout, else its monitor timeout. */
export function opTimeoutOf(cluster: Cluster): number {
  return cluster.opTimeoutMs ?? cluster.timeoutMs;
}

export interface CallBudget {
  timeoutMs: number;
  /** A default budget, which grows with the work the call finds. */
  grows: boolean;
  /** The longest op timeout of the call's clusters: what one more step of work may take. */
  opTimeoutMs: number;
}

export function callBudget(timeoutMs: unknown, clusters: readonly Cluster[], operation: string, resource: string): CallBudget {
  const opTimeoutMs = Math.max(...clusters.map(opTimeoutOf));
  if (timeoutMs === undefined) return { timeoutMs: DEFAULT_TIMEOUT_OPS * opTimeoutMs, grows: true, opTimeoutMs };
  return { timeoutMs: toIntInRange('timeoutMs', timeoutMs, 1, MAX_TIMEOUT_MS, operation, resource), grows: false, opTimeoutMs };
}

/** What the default budget adds for moving bytes. */
export function transferAllowanceMs(bytes: bigint): number {
  return Math.ceil((Number(bytes) / MIN_BYTES_PER_SECOND) * 1000);
}
