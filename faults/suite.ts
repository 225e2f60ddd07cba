/**
 * The fault suite: starts its own throwaway clusters (one at a time: a
 * memstore one, a file-backed BlueStore one for the OSD restart, a small
 * memstore one to fill up), runs every chosen scenario's seeded runs in
 * worker processes against them, and collects the outcomes. A worker that
 * dies is a crash; one that outlives its time is a hang. Every cluster is
 * stopped however the run ends.
 */
import { cpSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { ThrowawayCluster, trimSnapshotsWithoutSleep, type StartOptions } from '../lib/dev/throwaway-cluster.js';
import { startFixture, type ChildResult } from '../test/support/fixture-process.js';
import type { Settings } from './kit.js';
import { undoFaults } from './osd-faults.js';
import type { RunOutcome, ScenarioReport } from './outcome.js';
import { SCENARIOS, type ClusterKind, type Scenario } from './scenarios.js';

const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url));
const MiB = 1 << 20;
/** Fuzz inputs per worker process: a crash loses at most this many inputs' outcomes. */
const FUZZ_PER_WORKER = 2500;

export interface SuiteOptions {
  /** Worker runs per scenario (fuzz scenarios: see fuzz). */
  runs: number;
  /** Worker runs of the slow scenarios. */
  slowRuns: number;
  /** Inputs per fuzz scenario, in all. */
  fuzz: number;
  /** Scenario names; all when undefined. */
  only: readonly string[] | undefined;
  seed: number;
  settings: Omit<Settings, 'fuzz'>;
  /** The clusters' directories go under it. */
  workDir: string;
  /** Monitor port; default a free one. */
  port: number | undefined;
  /** Where each cluster's daemon logs are copied before it is stopped; nowhere when undefined. */
  keepLogs: string | undefined;
  /** Not the bounded CI subset: long enough that the memstore OSD must trim snapshots without its pauses. */
  longRun: boolean;
  log(line: string): void;
}

const CLUSTERS: Record<ClusterKind, Omit<StartOptions, 'dir' | 'port'>> = {
  // Roomy: memstore counts every snapshot's copy-on-write clone at the object's full size, and a live-writes
  // chain keeps a volume, its snapshots, a chain image and its snapshots (seen filling 3 GiB).
  memstore: { memstoreBytes: 6 * 1024 * MiB },
  bluestore: { objectstore: 'bluestore', bluestoreBytes: 8 * 1024 * MiB },
  // Small, so that ballast fills it quickly (faults/osd-faults.ts full()).
  full: { memstoreBytes: 512 * MiB },
};

/** The seed of run i of a scenario: fixed by the suite's seed, different for every run. */
function runSeed(base: number, scenario: Scenario, run: number): number {
  let hash = base >>> 0;
  for (const c of scenario.name) hash = (Math.imul(hash, 31) + c.charCodeAt(0)) >>> 0;
  return (hash + run * 7919) >>> 0;
}

/** The time a worker gets before it is killed and its run counted as a hang. */
function workerTimeoutMs(scenario: Scenario, settings: Settings): number {
  if (scenario.fuzz) return 300_000 + settings.fuzz * 500;
  return 30 * settings.budgetMs + 300_000;
}

function failedWorker(scenario: Scenario, seed: number, settled: RunOutcome['settled'], detail: string,
  debris: string[] = []): RunOutcome {
  return { operation: `${scenario.name} worker`, settled, corrupt: false, debris, settleMs: undefined, budgetMs: undefined, detail, seed };
}

/** What the worker's output says, or how it died. */
function outcomesOf(scenario: Scenario, seed: number, result: ChildResult): RunOutcome[] {
  const line = result.stdout.split('\n').find((l) => l.startsWith('FAULT-OUTCOMES ') || l.startsWith('FAULT-ERROR '));
  const tail = `${result.stderr.slice(-1500)}`;
  if (line?.startsWith('FAULT-OUTCOMES ')) {
    try {
      return JSON.parse(line.slice('FAULT-OUTCOMES '.length)) as RunOutcome[];
    } catch (error) {
      return [failedWorker(scenario, seed, 'crash', `unreadable outcomes (${(error as Error).message}): ${tail}`)];
    }
  }
  if (line?.startsWith('FAULT-ERROR ')) {
    const { typed, message, stack } = JSON.parse(line.slice('FAULT-ERROR '.length)) as { typed: boolean; message: string; stack?: string };
    const where = (stack ?? '').split('\n').filter((l) => l.includes('/faults/')).slice(0, 3).map((l) => l.trim()).join(' < ');
    return [failedWorker(scenario, seed, typed ? 'typed' : 'untyped', `${message} (${where})`, [`the run could not finish: ${message}`])];
  }
  return [failedWorker(scenario, seed, 'crash', `worker ended with ${result.signal ?? `exit code ${result.code}`} and no outcome: ${tail}`)];
}

async function runWorker(cluster: ThrowawayCluster, scenario: Scenario, seed: number, settings: Settings): Promise<RunOutcome[]> {
  const { info } = cluster;
  const fixture = startFixture(WORKER, [], {
    env: {
      RBD_TEST_A_DIR: info.dir, RBD_TEST_A_CONF: info.conf, RBD_TEST_A_KEYRING: info.keyring, RBD_TEST_A_MON_HOST: info.monHost,
      FAULT_SCENARIO: scenario.name, FAULT_SEED: String(seed), FAULT_SETTINGS: JSON.stringify(settings),
    },
    timeoutMs: workerTimeoutMs(scenario, settings),
  });
  let result: ChildResult;
  try {
    result = await fixture.exited;
  } catch (error) {
    await undoFaults(cluster);
    return [failedWorker(scenario, seed, 'hang', (error as Error).message.slice(0, 2000))];
  }
  const outcomes = outcomesOf(scenario, seed, result);
  if (outcomes.some((o) => o.operation === `${scenario.name} worker`)) await undoFaults(cluster);
  return outcomes;
}

/** Runs of a scenario, each with its settings. */
function plan(scenario: Scenario, options: SuiteOptions): Settings[] {
  if (!scenario.fuzz) {
    return Array.from({ length: scenario.slow ? options.slowRuns : options.runs }, () => ({ ...options.settings, fuzz: 0 }));
  }
  const runs: Settings[] = [];
  for (let left = options.fuzz; left > 0; left -= FUZZ_PER_WORKER) {
    runs.push({ ...options.settings, fuzz: Math.min(left, FUZZ_PER_WORKER) });
  }
  return runs;
}

export async function runSuite(options: SuiteOptions): Promise<ScenarioReport[]> {
  const chosen = SCENARIOS.filter((s) => options.only === undefined || options.only.includes(s.name));
  const reports: ScenarioReport[] = chosen.map((s) => ({ scenario: s.name, outcomes: [] }));
  for (const kind of ['memstore', 'bluestore', 'full'] as const) {
    const scenarios = chosen.filter((s) => s.cluster === kind);
    if (scenarios.length === 0) continue;
    const started = performance.now();
    const cluster = await ThrowawayCluster.start({
      ...CLUSTERS[kind], dir: join(options.workDir, kind), ...(options.port === undefined ? {} : { port: options.port }),
    });
    options.log(`${kind} cluster up in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    if (kind === 'memstore' && options.longRun) await trimSnapshotsWithoutSleep(cluster.info);
    try {
      scenarios: for (const scenario of scenarios) {
        const report = reports.find((r) => r.scenario === scenario.name)!;
        for (const [run, settings] of plan(scenario, options).entries()) {
          const seed = runSeed(options.seed, scenario, run);
          const t0 = performance.now();
          let outcomes: RunOutcome[];
          try {
            outcomes = await runWorker(cluster, scenario, seed, settings);
          } catch (error) {
            // The cluster itself could not be healed (a daemon gone): the
            // runs left on it would measure nothing. Counted as a crash, and
            // the suite goes on with the next cluster, its table still printed.
            const message = `the ${kind} cluster could not be healed: ${(error as Error).message.slice(0, 500)}`;
            report.outcomes.push(failedWorker(scenario, seed, 'crash', message));
            options.log(`${scenario.name} run ${run + 1} (seed ${seed}): ${message}; skipping the rest of this cluster's scenarios`);
            break scenarios;
          }
          report.outcomes.push(...outcomes);
          const slow = Math.max(0, ...outcomes.map((o) => o.settleMs ?? 0));
          options.log(`${scenario.name} run ${run + 1} (seed ${seed}): ${outcomes.length} outcome(s) in ` +
            `${((performance.now() - t0) / 1000).toFixed(1)} s, slowest call ${(slow / 1000).toFixed(1)} s` +
            `${outcomes.length === 1 ? `: ${outcomes[0]!.settled} ${outcomes[0]!.detail.slice(0, 300)}` : ''}`);
        }
      }
    } finally {
      if (options.keepLogs !== undefined) cpSync(join(cluster.info.dir, 'log'), join(options.keepLogs, kind), { recursive: true });
      await cluster.stop();
    }
  }
  return reports;
}
