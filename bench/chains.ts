/**
 * The incremental chains: per tool (ours, ours with digests, the rbd pipe
 * at its default and at 64 ops), a full transfer into a base image, then
 * 1% (64 KiB writes), 1% (4 KiB writes), 10% and unchanged incrementals,
 * then (but for ours with digests, whose restores would be ours') the
 * restores from the base's last snapshot.
 */
import { type Bench } from './bench.js';
import { writeChanges } from './changes.js';
import { checkDigests, fromSnapshotStart, zerosStart } from './digests.js';
import type { DigestsStart } from './protocol.js';
import { cliTransfer, RBD_OPS_HIGH, type RbdOps } from './rbd-side.js';
import { runRestores, type RestoreRuns } from './restores.js';
import type { ChangeInfo, Measure } from './results.js';

const MiB = 1 << 20;

export type ToolKey = 'ours' | 'oursDigests' | 'rbd' | 'rbd64';

export interface ChainTool {
  key: ToolKey;
  /** rbd_concurrent_management_ops of the rbd tool (undefined: its default, 10). */
  ops: RbdOps;
  /** The chain's base image in pool backups. */
  base: string;
  /**
   * Ours with digests (transferDiff's digests): the full transfer starts
   * from the zeros table, each incremental from hashImage of the source's
   * from-snapshot (untimed), and each table it computes is checked.
   */
  digests?: true;
}

/**
 * In this order: ours first writes the changes and takes the snapshots;
 * ours with digests and the rbd chains replay them (the last one removes
 * the source's snapshots).
 */
export const TOOLS: readonly ChainTool[] = [
  { key: 'ours', ops: undefined, base: 'base-ours' },
  { key: 'oursDigests', ops: undefined, base: 'base-digests', digests: true },
  { key: 'rbd', ops: undefined, base: 'base-cli' },
  { key: 'rbd64', ops: RBD_OPS_HIGH, base: 'base-cli64' },
];

/** The tool of a key. */
export function tool(key: ToolKey): ChainTool {
  return TOOLS.find((t) => t.key === key)!;
}

/** One of ours, with or without digests, from rbd/src@FROM (or the start) to rbd/src@SNAP into backups/TARGET. */
async function oursTransfer(bench: Bench, chain: ChainTool, snap: string, from: string | undefined, target: string): Promise<Measure> {
  const a = bench.a;
  let digests: DigestsStart | undefined;
  if (chain.digests) digests = from === undefined ? zerosStart(bench) : await fromSnapshotStart(bench, from);
  const m = await bench.ours(`transferDiff(rbd/src@${from === undefined ? '' : `${from}..@`}${snap} -> backups/${target}` +
    `${digests ? ', digests' : ''})`, {
    op: 'transfer', source: { cluster: a.ref, pool: 'rbd', image: 'src' }, snapshot: snap,
    ...(from === undefined ? {} : { fromSnapshot: from }),
    target: { cluster: a.ref, pool: 'backups', image: target }, ...(digests ? { digests } : {}),
  }, bench.sizeBytes);
  if (digests?.entriesFile !== undefined) m.stats = { ...m.stats, startTable: `hashImage of rbd/src@${from} (untimed)` };
  return m;
}

/** The run's check: sha256 of the target's end snapshot; with digests, also its digest table. */
async function verifyTransfer(bench: Bench, label: string, m: Measure, chain: ChainTool, snap: string, target: string): Promise<string> {
  const a = bench.a;
  const verified = await bench.verify(label, [a, `rbd/src@${snap}`], [a, `backups/${target}@${snap}`]);
  return chain.digests ? `${verified}; ${await checkDigests(bench, m, 'backups', target, snap)}` : verified;
}

export interface Step {
  id: string;
  title: string;
  fraction: number;
  /** Bytes per random write. */
  writeBytes: number;
  seed: number;
  snap: string;
  from: string;
}

export const STEPS: readonly Step[] = [
  { id: 'incr-1pct', title: 'incremental, 1% (64 KiB writes)', fraction: 0.01, writeBytes: 64 << 10, seed: 1, snap: 's2', from: 's1' },
  { id: 'incr-1pct-4k', title: 'incremental, 1% (4 KiB writes)', fraction: 0.01, writeBytes: 4 << 10, seed: 3, snap: 's3', from: 's2' },
  { id: 'incr-10pct', title: 'incremental, 10% (64 KiB writes)', fraction: 0.10, writeBytes: 64 << 10, seed: 2, snap: 's4', from: 's3' },
  { id: 'unchanged', title: 'incremental, unchanged', fraction: 0, writeBytes: 0, seed: 0, snap: 's5', from: 's4' },
];

/** The chains' last snapshot, which the restores start from. */
export const LAST_SNAP = STEPS[STEPS.length - 1]!.snap;

const isOurs = (chain: ChainTool): boolean => chain.key === 'ours' || chain.key === 'oursDigests';

/** One full transfer of rbd/src@s1 into a new 1 MiB image backups/TARGET, verified. */
export async function fullTransfer(bench: Bench, chain: ChainTool, target: string): Promise<Measure> {
  const a = bench.a;
  await bench.createImage(a, `backups/${target}`, MiB);
  const m = isOurs(chain)
    ? await oursTransfer(bench, chain, 's1', undefined, target)
    : await cliTransfer(bench, 'full transfer', a, 'rbd/src@s1', undefined, a, `backups/${target}`, chain.ops);
  m.verified = await verifyTransfer(bench, `full transfer, ${chain.key}`, m, chain, 's1', target);
  return m;
}

export interface ChainRuns {
  /** Each tool's full transfer into its base. */
  full: Map<ToolKey, Measure>;
  /** By step id, then tool. */
  steps: Map<string, Map<ToolKey, Measure>>;
  changes: Map<string, ChangeInfo>;
  restores: Map<ToolKey, RestoreRuns>;
}

/**
 * One tool at a time: memstore keeps every image in RAM, so only one base
 * exists at once. Each base keeps only its newest snapshot (the next
 * from-snapshot): memstore counts every snapshot's clones at full size, and
 * a 4 KiB write in every object clones every object. The source keeps its
 * snapshots until the last chain has replayed them, and that chain drops
 * each one as soon as it has been used as the from-snapshot.
 */
export async function runChains(bench: Bench): Promise<ChainRuns> {
  const a = bench.a;
  const runs: ChainRuns = { full: new Map(), steps: new Map(), changes: new Map(), restores: new Map() };
  for (const [t, chain] of TOOLS.entries()) {
    const last = t === TOOLS.length - 1;
    bench.log(`incremental chain of ${chain.key}: full transfer into backups/${chain.base}, then the incrementals`);
    runs.full.set(chain.key, await fullTransfer(bench, chain, chain.base));
    for (const step of STEPS) {
      if (t === 0) {
        if (step.fraction > 0) {
          const change = await writeChanges(bench, { pool: 'rbd', image: 'src' }, step.fraction, step.seed, step.writeBytes);
          runs.changes.set(step.id, change);
          bench.log(`  wrote ${change.pattern}: ${(change.bytesChanged / MiB).toFixed(1)} MiB changed ` +
            `in ${change.objectsTouched} of ${change.objects} objects`);
        }
        await bench.snapshot(a, `rbd/src@${step.snap}`);
      }
      const target = `backups/${chain.base}`;
      const m = isOurs(chain)
        ? await oursTransfer(bench, chain, step.snap, step.from, chain.base)
        : await cliTransfer(bench, step.id, a, `rbd/src@${step.snap}`, step.from, a, target, chain.ops);
      m.verified = await verifyTransfer(bench, `${step.id}, ${chain.key}`, m, chain, step.snap, chain.base);
      if (!runs.steps.has(step.id)) runs.steps.set(step.id, new Map());
      runs.steps.get(step.id)!.set(chain.key, m);
      await bench.removeSnapshot(a, `${target}@${step.from}`);
      if (last) await bench.removeSnapshot(a, `rbd/src@${step.from}`);
    }
    bench.osdSnapshot(`afterChain.${chain.key}`);
    if (!chain.digests) runs.restores.set(chain.key, await runRestores(bench, chain, LAST_SNAP));
    await bench.removeImage(a, `backups/${chain.base}`);
  }
  return runs;
}
