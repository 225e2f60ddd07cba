/** The latency a pass's cluster delivers (measured with `ceph-cluster.sh latency`), and serial round trips derived from it. */
import { CLUSTER_SCRIPT } from '../lib/dev/throwaway-cluster.js';
import { run } from './proc.js';
import type { DeliveredLatency, Pass, RoundTrips } from './results.js';

/** Seconds of each rados bench run (write and read, at qd1 and qd16): long enough for thousands of ops at ~4 ms. */
const BENCH_SECONDS = 3;

/** Parses the four lines `ceph-cluster.sh latency` prints ("write qd1  avg latency 4.12 ms, 0.9 MB/s"). */
export function parseLatency(output: string): Omit<DeliveredLatency, 'command' | 'output'> {
  const found = new Map<string, { ms: number; mbs: number }>();
  for (const match of output.matchAll(/^(write|read)\s+qd(\d+)\s+avg latency ([\d.]+) ms, ([\d.]+) MB\/s$/gm)) {
    found.set(`${match[1]}${match[2]}`, { ms: Number(match[3]), mbs: Number(match[4]) });
  }
  const get = (key: string): { ms: number; mbs: number } => {
    const value = found.get(key);
    if (!value) throw new Error(`ceph-cluster.sh latency printed no ${key} line: ${output}`);
    return value;
  };
  return {
    writeQd1Ms: get('write1').ms, readQd1Ms: get('read1').ms, writeQd16Ms: get('write16').ms, readQd16Ms: get('read16').ms,
    writeQd1MBs: get('write1').mbs, readQd1MBs: get('read1').mbs, writeQd16MBs: get('write16').mbs, readQd16MBs: get('read16').mbs,
  };
}

export async function measureLatency(dir: string, pool: string, timeoutMs: number): Promise<DeliveredLatency> {
  const args = [CLUSTER_SCRIPT, 'latency', '--dir', dir, '--pool', pool, '--seconds', String(BENCH_SECONDS)];
  const { stdout } = await run('bash', args, { label: 'ceph-cluster.sh latency', timeoutMs, captureStdout: true });
  return {
    ...parseLatency(stdout),
    command: `scripts/ceph-cluster.sh latency --pool ${pool} --seconds ${BENCH_SECONDS}`,
    output: stdout.trim(),
  };
}

/** A round trip at qd1: the mean of a 4 KiB write's and a read's average latency. */
export function qd1Ms(delivered: DeliveredLatency): number {
  return (delivered.writeQd1Ms + delivered.readQd1Ms) / 2;
}

/**
 * Serial round trips of the unchanged incremental, per tool: what the ~4 ms
 * pass added to its elapsed time, divided by what it added to one qd1 round
 * trip. Work done in parallel adds nothing, so this counts the operations
 * the tool had to wait for one after another (its fixed costs).
 */
export function roundTrips(passes: Pass[]): RoundTrips | undefined {
  const fast = passes.find((p) => p.latency === '0');
  const slow = passes.find((p) => p.latency === '4');
  if (!fast?.delivered || !slow?.delivered) return undefined;
  const added = qd1Ms(slow.delivered) - qd1Ms(fast.delivered);
  const at0 = fast.scenarios.find((s) => s.id === 'unchanged');
  const at4 = slow.scenarios.find((s) => s.id === 'unchanged');
  if (!at0 || !at4 || !(added > 0)) return undefined;
  const tools: RoundTrips['tools'] = [];
  for (const [tool, key] of [['ours', 'ours'], ['rbd pipe', 'rbd'], ['rbd pipe @64', 'rbd64']] as const) {
    const m0 = at0[key];
    const m4 = at4[key];
    if (!m0 || !m4) continue;
    tools.push({ tool, elapsedMs0: m0.elapsedMs, elapsedMs4: m4.elapsedMs, trips: (m4.elapsedMs - m0.elapsedMs) / added });
  }
  return { addedQd1Ms: added, tools };
}
