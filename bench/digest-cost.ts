/**
 * The rows of the transfers with digests: each beside the same transfer
 * without them, with what the digests cost (with ÷ without: time, bytes
 * read, the library's operations, the OSD's). Pure: no cluster, no time
 * measured here.
 */
import { totalOps } from './osd-counters.js';
import type { DigestCost, Measure, ScenarioRecord } from './results.js';

const stat = (m: Measure, key: string): number => Number(m.stats?.[key]);

/** with ÷ without; NaN when neither did any (an unchanged incremental reads nothing). */
function ratio(withDigests: number, without: number): number {
  return withDigests === 0 && without === 0 ? NaN : withDigests / without;
}

export function digestCost(without: Measure, withDigests: Measure, of: string): DigestCost {
  return {
    of,
    time: ratio(withDigests.elapsedMs, without.elapsedMs),
    bytesRead: ratio(stat(withDigests, 'bytesRead'), stat(without, 'bytesRead')),
    libOps: ratio(stat(withDigests, 'ops'), stat(without, 'ops')),
    osdOps: withDigests.osdOps && without.osdOps ? ratio(totalOps(withDigests.osdOps), totalOps(without.osdOps)) : NaN,
  };
}

/**
 * The row of a transfer with digests (ours: its median run and all runs),
 * beside the row without: the rbd side is the same runs as that row's (the
 * pipe hashes nothing), so its ratios say how the transfer with digests
 * compares with the pipe. No bar of DESIGN section 7 is about it.
 */
export function withDigests(plain: ScenarioRecord, ours: Measure, oursRuns: Measure[], title: string, detail: string): ScenarioRecord {
  return {
    id: `${plain.id}-digests`, title, detail, volumeBytes: plain.volumeBytes, ours, oursRuns, noBar: true,
    ...(plain.rbd ? { rbd: plain.rbd, rbdRuns: plain.rbdRuns ?? [plain.rbd] } : {}),
    ...(plain.rbd64 ? { rbd64: plain.rbd64, rbd64Runs: plain.rbd64Runs ?? [plain.rbd64] } : {}),
    digestCost: digestCost(plain.ours, ours, plain.id),
  };
}
