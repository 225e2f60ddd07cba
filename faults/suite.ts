/**
 * The fault suite: starts its own throwaway clusters (one at a time: a
 * memstore one, a file-backed BlueStore one for the OSD restart, a small
 * memstore one to fill up), runs every chosen scenario's seeded runs in
 * worker processes against them, and collects the outcomes. A worker that
 * dies is a crash; one that outlives its time is a hang. Every cluster is
 * stopped however the run ends.
 */
import { cpSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  DAEMONS, osdUsage, ThrowawayCluster, trimSnapshotsWithoutSleep, type DaemonName, type StartOptions,
} from '../lib/dev/throwaway-cluster.js';
import { startFixture, type ChildResult } from '../test/support/fixture-process.js';
import type { Settings } from './kit.js';
import { undoFaults } from './osd-faults.js';
import type { RunOutcome, ScenarioReport } from './outcome.js';
import { SCENARIOS, type ClusterKind, type Scenario } from './scenarios.js';

const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url));
const MiB = 1 << 20;
/** Fuzz inputs per worker process: a crash loses at most this many inputs' outcomes. */
const FUZZ_PER_WORKER = 2500;
/** How often the suite looks whether its cluster's daemons still run. */
const WATCH_EVERY_MS = 2000;
/** A daemon gone this long is dead (an OSD the osd-restart scenario restarts is gone for a moment only). */
const GONE_FOR_MS = 8000;
/** Lost clusters of one kind the suite replaces; at the next loss it gives up on the runs left on that kind. */
const MAX_LOST_CLUSTERS = 3;

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

/** A lost cluster: a daemon's process gone (a Ceph crash), or a cluster that could not be healed. Not a product verdict. */
export interface ClusterLoss {
  kind: ClusterKind;
  /** The lost cluster's name (memstore, memstore-2, ...). */
  cluster: string;
  /** Minutes into the suite when it was found. */
  minutes: number;
  /** What was gone, and how its log says it ended. */
  cause: string;
  /** The run that was going on, stopped without a verdict and run again on the next cluster. */
  during?: string;
  /** The run that had ended last on it, whose verdict counts as it was reported. */
  after?: string;
  /** The fresh cluster the runs went on on; undefined when no more were started (MAX_LOST_CLUSTERS). */
  replacement: string | undefined;
  /** Where its daemon logs were kept (--keep-logs). */
  logs?: string;
}

/** Everything the suite ran: each scenario's outcomes, and the clusters lost on the way. */
export interface SuiteResult {
  reports: ScenarioReport[];
  losses: ClusterLoss[];
}

/** One line on a lost cluster, for the log and the summary. */
export function describeLoss(loss: ClusterLoss): string {
  const when = loss.during !== undefined
    ? `during ${loss.during}, which was stopped (no verdict) and runs again`
    : `between runs${loss.after === undefined ? ' (before the first)' : ` (after ${loss.after}, whose verdict counts as reported)`}`;
  return `the ${loss.cluster} cluster was lost ${loss.minutes.toFixed(1)} min into the suite, ${when}: ${loss.cause}; ` +
    (loss.replacement === undefined
      ? `${MAX_LOST_CLUSTERS} ${loss.kind} clusters had been replaced already: no more were started, the runs left were not run`
      : `the suite went on with a fresh cluster, ${loss.replacement}`) +
    (loss.logs === undefined ? '' : `; its logs: ${loss.logs}`);
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

/** What became of a worker run: its outcomes, or the suite stopped it because a daemon of its cluster was gone. */
type WorkerResult =
  | { outcomes: RunOutcome[]; goneAfter?: DaemonName[] }
  | { stopped: DaemonName[] };

/** Every process below pid, then pid itself (from /proc, collected before any is killed: an orphan is adopted out of reach). */
async function processTree(root: number): Promise<number[]> {
  const children = new Map<number, number[]>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    // "pid (comm) state ppid ...", where comm may hold spaces and parentheses.
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (Number.isInteger(ppid)) children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
  }
  const tree: number[] = [];
  const visit = (pid: number): void => {
    for (const child of children.get(pid) ?? []) visit(child);
    tree.push(pid);
  };
  visit(root);
  return tree;
}

/**
 * SIGKILL to a worker and every process it started (the children of the
 * kill scenarios, rbd exports, fuzz fixtures); the worker alone when /proc
 * cannot be read.
 */
async function killWorker(pid: number | undefined): Promise<void> {
  if (pid === undefined) return;
  const tree = await processTree(pid).catch(() => [pid]);
  for (const p of tree) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
}

/**
 * The cluster's daemons that are gone and stay gone for GONE_FOR_MS (an
 * OSD restart, which the osd-restart scenario strikes, leaves it gone for
 * a moment only); none when every daemon runs.
 */
async function confirmedGone(cluster: ThrowawayCluster): Promise<DaemonName[]> {
  let gone = await cluster.goneDaemons();
  for (let waited = 0; gone.length > 0 && waited < GONE_FOR_MS; waited += WATCH_EVERY_MS) {
    await sleep(WATCH_EVERY_MS);
    const now = await cluster.goneDaemons();
    gone = gone.filter((name) => now.includes(name));
  }
  return gone;
}

/**
 * Looks at the cluster's daemons every WATCH_EVERY_MS while a worker runs;
 * once one has been gone for GONE_FOR_MS, calls onGone (once) with them.
 */
function watchDaemons(cluster: ThrowawayCluster, onGone: (gone: DaemonName[]) => void): { stop(): void } {
  const stop = new AbortController();
  const goneSince = new Map<DaemonName, number>();
  const look = async (): Promise<void> => {
    for (;;) {
      await sleep(WATCH_EVERY_MS, undefined, { signal: stop.signal });
      const gone = await cluster.goneDaemons();
      if (stop.signal.aborted) return;
      const now = Date.now();
      for (const name of DAEMONS) {
        if (!gone.includes(name)) goneSince.delete(name);
        else if (!goneSince.has(name)) goneSince.set(name, now);
      }
      const dead = [...goneSince].filter(([, since]) => now - since >= GONE_FOR_MS).map(([name]) => name);
      if (dead.length > 0) {
        onGone(dead);
        return;
      }
    }
  };
  look().catch(() => undefined);
  return { stop: () => stop.abort() };
}

async function runWorker(cluster: ThrowawayCluster, scenario: Scenario, seed: number, settings: Settings): Promise<WorkerResult> {
  const { info } = cluster;
  const fixture = startFixture(WORKER, [], {
    env: {
      RBD_TEST_A_DIR: info.dir, RBD_TEST_A_CONF: info.conf, RBD_TEST_A_KEYRING: info.keyring, RBD_TEST_A_MON_HOST: info.monHost,
      FAULT_SCENARIO: scenario.name, FAULT_SEED: String(seed), FAULT_SETTINGS: JSON.stringify(settings),
    },
    timeoutMs: workerTimeoutMs(scenario, settings),
  });
  // A daemon of the cluster died under the run (a Ceph crash, such as the memstore OSD's snap-trimmer
  // segfault): what the run would go on to report is about a dead cluster, so it is stopped now,
  // no verdict, and the suite runs it again on a fresh cluster.
  let stopped: DaemonName[] | undefined;
  const watch = watchDaemons(cluster, (gone) => {
    stopped = gone;
    void killWorker(fixture.child.pid);
  });
  let result: ChildResult;
  try {
    result = await fixture.exited;
  } catch (error) {
    watch.stop();
    if (stopped !== undefined) return { stopped };
    // Hung for its whole time: a verdict, whatever became of the cluster since.
    const hang = [failedWorker(scenario, seed, 'hang', (error as Error).message.slice(0, 2000))];
    const goneAfter = await confirmedGone(cluster);
    if (goneAfter.length > 0) return { outcomes: hang, goneAfter };
    await undoFaults(cluster);
    return { outcomes: hang };
  }
  watch.stop();
  // What the worker reported itself counts as it is, even when the cluster is found dead after it
  // (or it was being stopped as it reported): only a run that reported nothing is no verdict.
  // Whole lines only: the kill may have cut one short.
  const reported = result.stdout.split('\n').slice(0, -1).some((l) => l.startsWith('FAULT-OUTCOMES ') || l.startsWith('FAULT-ERROR '));
  if (stopped !== undefined && !reported) return { stopped };
  const outcomes = outcomesOf(scenario, seed, result);
  if (stopped !== undefined) return { outcomes, goneAfter: stopped };
  const goneAfter = await cluster.goneDaemons().then((gone) => (gone.length > 0 ? confirmedGone(cluster) : gone));
  if (goneAfter.length > 0) return { outcomes, goneAfter };
  if (outcomes.some((o) => o.operation === `${scenario.name} worker`)) await undoFaults(cluster);
  return { outcomes };
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

/** One run of a scenario as the suite plans it. */
interface Job {
  scenario: Scenario;
  /** Its index among the scenario's runs. */
  run: number;
  seed: number;
  settings: Settings;
}

/** Bytes in GiB, for the log. */
function gib(bytes: number): string {
  return (bytes / 2 ** 30).toFixed(2);
}

/** A run, as the losses name it. */
function runName(job: Job): string {
  return `${job.scenario.name} run ${job.run + 1} (seed ${job.seed})`;
}

/** The clusters of one kind the suite has started, one after the other when one is lost. */
class ClusterSeries {
  /** The current one; undefined once too many were lost. */
  current: ThrowawayCluster | undefined;
  /** Its name: its directory under the work dir and that of its logs under --keep-logs (memstore, memstore-2, ...). */
  name = '';
  #count = 0;
  /** The most the current cluster's OSD held after a run, and after which. */
  #peak: { used: number; total: number; after: string } | undefined;

  constructor(readonly kind: ClusterKind, readonly options: SuiteOptions, readonly started: number) {}

  /** Starts the next cluster of the kind. */
  async next(): Promise<void> {
    this.#count++;
    this.name = this.#count === 1 ? this.kind : `${this.kind}-${this.#count}`;
    const t0 = performance.now();
    const cluster = await ThrowawayCluster.start({
      ...CLUSTERS[this.kind], dir: join(this.options.workDir, this.name),
      ...(this.options.port === undefined ? {} : { port: this.options.port }),
    });
    this.current = cluster;
    this.#peak = undefined;
    this.options.log(`${this.name} cluster up in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    // Long runs make and remove snapshots faster than the HDD pause lets the OSD free their clones,
    // and without the pause two PGs trimming at once crash memstore (see trimSnapshotsWithoutSleep).
    if (this.kind === 'memstore' && this.options.longRun) await trimSnapshotsWithoutSleep(cluster.info, { oneTrimmingPg: true });
    // BlueStore has no such race, and the osd-restart runs restart its OSD.
    if (this.kind === 'bluestore' && this.options.longRun) await trimSnapshotsWithoutSleep(cluster.info, { acrossRestarts: true });
  }

  /**
   * What the OSD holds now, for the log (snapshot clones the trimmer has
   * not freed yet pile up here); the peak is logged when the cluster goes.
   */
  async usage(after: string): Promise<string> {
    if (this.current === undefined) return '';
    try {
      const { used, total } = await osdUsage(this.current.info);
      if (this.#peak === undefined || used > this.#peak.used) this.#peak = { used, total, after };
      return `OSD holds ${gib(used)} of ${gib(total)} GiB`;
    } catch (error) {
      return `OSD usage unknown (${(error as Error).message.split('\n')[0]})`;
    }
  }

  /** Keeps the current cluster's logs (--keep-logs) and stops it. */
  async retire(): Promise<void> {
    const cluster = this.current;
    this.current = undefined;
    if (cluster === undefined) return;
    const peak = this.#peak;
    if (peak !== undefined) {
      this.options.log(`${this.name} cluster: its OSD held at most ${gib(peak.used)} of ${gib(peak.total)} GiB (after ${peak.after})`);
    }
    try {
      if (this.options.keepLogs !== undefined) cpSync(join(cluster.info.dir, 'log'), join(this.options.keepLogs, this.name), { recursive: true });
    } finally {
      await cluster.stop();
    }
  }

  /**
   * The current cluster is lost: its logs kept, it is stopped, and a fresh
   * one started (MAX_LOST_CLUSTERS times per kind at most); the loss recorded.
   */
  async replace(loss: Pick<ClusterLoss, 'during' | 'after' | 'cause'>, losses: ClusterLoss[]): Promise<void> {
    const lost = this.name;
    const minutes = (performance.now() - this.started) / 60_000;
    await this.retire();
    const tooMany = losses.filter((l) => l.kind === this.kind).length >= MAX_LOST_CLUSTERS;
    if (!tooMany) await this.next();
    const record: ClusterLoss = {
      kind: this.kind, cluster: lost, minutes, ...loss, replacement: tooMany ? undefined : this.name,
      ...(this.options.keepLogs === undefined ? {} : { logs: join(this.options.keepLogs, lost) }),
    };
    losses.push(record);
    this.options.log(`TEST INFRASTRUCTURE: ${describeLoss(record)}`);
  }
}

/** What is gone of a cluster and, from each daemon's log, how it ended. */
async function causeOf(cluster: ThrowawayCluster, gone: readonly DaemonName[]): Promise<string> {
  const parts: string[] = [];
  for (const name of gone) {
    const crash = await cluster.crashOf(name);
    parts.push(crash === undefined
      ? `${name}'s process is gone, without a crash report in its log`
      : `${name} crashed${crash.at === undefined ? '' : ` at ${crash.at.toISOString()}`}: ${crash.what}` +
        (crash.frames.length === 0 ? '' : ` in ${crash.frames.slice(0, 5).join(' < ')}`));
  }
  return parts.join('; ');
}

export async function runSuite(options: SuiteOptions): Promise<SuiteResult> {
  const started = performance.now();
  const chosen = SCENARIOS.filter((s) => options.only === undefined || options.only.includes(s.name));
  const reports: ScenarioReport[] = chosen.map((s) => ({ scenario: s.name, outcomes: [], lost: 0, notRun: 0 }));
  const reportOf = (scenario: Scenario): ScenarioReport => reports.find((r) => r.scenario === scenario.name)!;
  const losses: ClusterLoss[] = [];
  for (const kind of ['memstore', 'bluestore', 'full'] as const) {
    const jobs: Job[] = chosen.filter((s) => s.cluster === kind).flatMap((scenario) => plan(scenario, options)
      .map((settings, run) => ({ scenario, run, seed: runSeed(options.seed, scenario, run), settings })));
    if (jobs.length === 0) continue;
    const clusters = new ClusterSeries(kind, options, started);
    let next = 0;
    try {
      await clusters.next();
      let previous: Job | undefined;
      while (next < jobs.length && clusters.current !== undefined) {
        const cluster = clusters.current;
        const job = jobs[next]!;
        const report = reportOf(job.scenario);
        // Dead since the last run ended (the snap trimmer goes on after it): no run is lost, the next goes to a fresh cluster.
        const goneBefore = await confirmedGone(cluster);
        if (goneBefore.length > 0) {
          await clusters.replace({ cause: await causeOf(cluster, goneBefore), ...(previous ? { after: runName(previous) } : {}) }, losses);
          continue;
        }
        const t0 = performance.now();
        let result: WorkerResult;
        try {
          result = await runWorker(cluster, job.scenario, job.seed, job.settings);
        } catch (error) {
          // The cluster itself could not be healed, its daemons running: counted as a crash of the run,
          // as before; the runs left go to a fresh cluster, where they measure something.
          const message = `the ${clusters.name} cluster could not be healed: ${(error as Error).message.slice(0, 500)}`;
          report.outcomes.push(failedWorker(job.scenario, job.seed, 'crash', message));
          options.log(`${runName(job)}: ${message}`);
          next++;
          previous = job;
          await clusters.replace({ cause: message, after: runName(job) }, losses);
          continue;
        }
        if ('stopped' in result) {
          // No verdict: the run goes again, same seed, on the fresh cluster.
          report.lost++;
          options.log(`${runName(job)}: stopped after ${((performance.now() - t0) / 1000).toFixed(1)} s, ` +
            `${result.stopped.join(' and ')} of the ${clusters.name} cluster gone; it runs again on a fresh cluster`);
          await clusters.replace({ cause: await causeOf(cluster, result.stopped), during: runName(job) }, losses);
          continue;
        }
        const { outcomes } = result;
        report.outcomes.push(...outcomes);
        const slow = Math.max(0, ...outcomes.map((o) => o.settleMs ?? 0));
        options.log(`${runName(job)}: ${outcomes.length} outcome(s) in ` +
          `${((performance.now() - t0) / 1000).toFixed(1)} s, slowest call ${(slow / 1000).toFixed(1)} s` +
          `${outcomes.length === 1 ? `: ${outcomes[0]!.settled} ${outcomes[0]!.detail.slice(0, 300)}` : ''}` +
          ` [${await clusters.usage(runName(job))}]`);
        next++;
        previous = job;
        if (result.goneAfter !== undefined) {
          // Its verdict stands as reported; the cluster it ran on died by the time it ended.
          await clusters.replace({ cause: await causeOf(cluster, result.goneAfter), after: runName(job) }, losses);
        }
      }
    } finally {
      // Too many clusters lost (or none started): the runs left are not run, which the suite reports.
      for (const job of jobs.slice(next)) reportOf(job.scenario).notRun++;
      await clusters.retire();
    }
  }
  return { reports, losses };
}
