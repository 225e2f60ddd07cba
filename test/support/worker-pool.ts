/**
 * For the worker-thread fixtures of test/integration/lifecycle.test.ts:
 * what the test hands each worker (workerData: the cluster's conf and
 * keyring, the pool, and the fixture's own names) and the pool on a
 * connection of the worker's own.
 */
import { workerData } from 'node:worker_threads';
import { Cluster, type Pool } from '../../lib/index.js';

export type WorkerInput = { conf: string; keyring: string; pool: string } & Record<string, string>;

export const input = workerData as WorkerInput;

export async function workerPool(): Promise<Pool> {
  const cluster = await Cluster.connect({ conf: input.conf, keyring: input.keyring, timeoutMs: 20_000 });
  return cluster.pool(input.pool);
}
