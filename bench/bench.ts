/**
 * The benchmark's toolkit for one pass: images, running one of ours or one
 * rbd command line with the measurements around it, the verification after
 * every run, and recording the pairs. The scenarios themselves are in
 * pass.ts, chains.ts and restores.ts.
 */
import { createHash } from 'node:crypto';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { forgetCluster, type BenchCluster } from './clusters.js';
import type { Config } from './options.js';
import type { Operation, ScenarioArgs, ScenarioResult } from './protocol.js';
import { run, runTimedBash, stepMarks, timedScript } from './proc.js';
import { opsDelta, osdCounters } from './osd-counters.js';
import type { Ceiling, Measure, Pass, ScenarioRecord } from './results.js';
import { cpuDelta, histogramSummary, processCpuMs, processMemoryMiB, sampleCpu } from './sample.js';

const MiB = 1 << 20;
export const SCENARIO_JS = fileURLToPath(new URL('./scenario.js', import.meta.url));
const FEATURES = ['layering', 'exclusive-lock', 'object-map', 'fast-diff'];
const OBJECT_SIZE = '4M';
export const CONNECT_TIMEOUT_MS = 20_000;
export const OP_TIMEOUT_MS = 120_000;

export { FEATURES, OBJECT_SIZE };

export class VerificationError extends Error {
  override name = 'VerificationError';
}


function mibPerS(bytes: number, ms: number): number {
  return bytes / MiB / (ms / 1000);
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const ZERO_BLOCK = Buffer.alloc(4096);

/** Checksums of an `rbd export` of an image or snapshot. */
export interface ExportHash {
  sha256: string;
  md5: string;
  bytes: number;
}

export class Bench {
  readonly config: Config;
  readonly pass: Pass;
  readonly #deadline: number;
  readonly #hashes = new Map<string, Promise<ExportHash>>();
  a!: BenchCluster;
  /** Stopped (undefined) once the cross-cluster runs are done. */
  b: BenchCluster | undefined;

  /** deadline: performance.now() by which the whole run (every pass) must be done. */
  constructor(config: Config, pass: Pass, deadline: number) {
    this.config = config;
    this.pass = pass;
    this.#deadline = deadline;
  }

  get sizeBytes(): number {
    return this.config.sizeMiB * MiB;
  }

  /** A step's time limit: generous for the volume size, never past the run's deadline. */
  timeout(baseMs: number, bytes = 0, minMiBPerS = 8): number {
    const wanted = baseMs + (bytes / MiB / minMiBPerS) * 1000;
    return Math.min(wanted, this.#deadline - performance.now());
  }

  get running(): BenchCluster[] {
    return this.b ? [this.a, this.b] : [this.a];
  }

  get samplePids(): number[] {
    return this.running.flatMap((c) => [c.osdPid, c.monPid]);
  }

  log(message: string): void {
    process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)} ~${this.pass.latency} ms] ${message}\n`);
  }

  async rbd(c: BenchCluster, args: string[], label: string, bytes = 0): Promise<string> {
    const { stdout } = await run('rbd', [...c.rbdArgs, ...args],
      { label, timeoutMs: this.timeout(60_000, bytes), captureStdout: true });
    return stdout;
  }

  async createImage(c: BenchCluster, spec: string, bytes: number): Promise<void> {
    await this.rbd(c, ['create', '--size', `${Math.ceil(bytes / MiB)}M`, '--object-size', OBJECT_SIZE,
      ...FEATURES.flatMap((f) => ['--image-feature', f]), spec], `create ${c.name}:${spec}`);
  }

  async removeImage(c: BenchCluster, spec: string): Promise<void> {
    await this.rbd(c, ['snap', 'purge', '--no-progress', spec], `snap purge ${c.name}:${spec}`);
    await this.rbd(c, ['rm', '--no-progress', spec], `rm ${c.name}:${spec}`, this.sizeBytes);
  }

  async removeSnapshot(c: BenchCluster, spec: string): Promise<void> {
    await this.rbd(c, ['snap', 'rm', '--no-progress', spec], `snap rm ${c.name}:${spec}`);
  }

  async snapshot(c: BenchCluster, spec: string): Promise<void> {
    await this.rbd(c, ['snap', 'create', '--no-progress', spec], `snap create ${c.name}:${spec}`);
  }

  /**
   * sha256 (and md5, which the deep verify's rbd pipe prints) of `rbd export
   * --no-progress SPEC -`; with countZeroBlocks, also how many 4 KiB blocks
   * are all zero.
   */
  async exportHash(c: BenchCluster, spec: string, countZeroBlocks = false):
    Promise<ExportHash & { zeroBlocks?: number }> {
    const hash = createHash('sha256');
    const md5 = createHash('md5');
    let bytes = 0;
    let zeroBlocks = 0;
    let blockFill = 0;
    let blockZero = true;
    const account = (chunk: Buffer): void => {
      let at = 0;
      while (at < chunk.length) {
        const take = Math.min(4096 - blockFill, chunk.length - at);
        if (blockZero && !chunk.subarray(at, at + take).equals(ZERO_BLOCK.subarray(0, take))) blockZero = false;
        blockFill += take;
        at += take;
        if (blockFill === 4096) {
          if (blockZero) zeroBlocks += 1;
          blockFill = 0;
          blockZero = true;
        }
      }
    };
    await run('rbd', [...c.rbdArgs, 'export', '--no-progress', spec, '-'], {
      label: `rbd export ${c.name}:${spec}`,
      timeoutMs: this.timeout(60_000, this.sizeBytes, 4),
      onStdout: (chunk) => {
        hash.update(chunk);
        md5.update(chunk);
        bytes += chunk.length;
        if (countZeroBlocks) account(chunk);
      },
    });
    return { sha256: hash.digest('hex'), md5: md5.digest('hex'), bytes, ...(countZeroBlocks ? { zeroBlocks } : {}) };
  }

  /** Remembers a source snapshot's checksum computed elsewhere (the s1 export that also counts zero blocks). */
  setSourceHash(c: BenchCluster, spec: string, hash: ExportHash): void {
    this.#hashes.set(`${c.name}:${spec}`, Promise.resolve(hash));
  }

  sourceHash(c: BenchCluster, spec: string): Promise<ExportHash> {
    const key = `${c.name}:${spec}`;
    let hash = this.#hashes.get(key);
    if (!hash) {
      hash = this.exportHash(c, spec);
      this.#hashes.set(key, hash);
    }
    return hash;
  }

  /** Fails the run loudly when the target's bytes differ from the source snapshot's. */
  async verify(label: string, source: [BenchCluster, string], target: [BenchCluster, string]): Promise<string> {
    const [expected, actual] = await Promise.all([this.sourceHash(...source), this.exportHash(...target)]);
    if (expected.sha256 !== actual.sha256 || expected.bytes !== actual.bytes) {
      throw new VerificationError(`VERIFICATION FAILED: ${label}: ${target[0].name}:${target[1]} ` +
        `(${actual.bytes} bytes, sha256 ${actual.sha256}) differs from ${source[0].name}:${source[1]} ` +
        `(${expected.bytes} bytes, sha256 ${expected.sha256})`);
    }
    this.log(`  verified ${label}: sha256 ${actual.sha256.slice(0, 16)}… of ${actual.bytes} bytes matches`);
    return `sha256 of rbd export matches ${source[1]}`;
  }

  /**
   * Waits until our OSDs are quiet (under 10% of a core over half a second),
   * so work left over from the previous step (snapshot trimming, deletes)
   * does not land in the next measurement. At most 30 s.
   */
  async settle(): Promise<number> {
    const started = performance.now();
    const osds = this.running.map((c) => c.osdPid);
    for (;;) {
      const before = osds.map(processCpuMs);
      await new Promise((done) => setTimeout(done, 500));
      const busy = osds.map((pid, i) => (processCpuMs(pid) ?? 0) - (before[i] ?? 0));
      if (busy.every((ms) => ms < 50) || performance.now() - started > 30_000) {
        return performance.now() - started;
      }
    }
  }

  #split(pids: Record<string, number>): { osd: number; mon: number } {
    const get = (pid: number): number => pids[String(pid)] ?? 0;
    let osd = 0;
    let mon = 0;
    for (const c of this.running) {
      osd += get(c.osdPid);
      mon += get(c.monPid);
    }
    return { osd, mon };
  }

  /** One of ours, in a child process of its own. */
  async ours(label: string, args: Operation, volumeBytes: number): Promise<Measure> {
    const settleMs = await this.settle();
    const loadavg1 = loadavg()[0]!;
    this.log(`  ours: ${label}`);
    const full: ScenarioArgs = {
      ...args, engine: this.config.engine, samplePids: this.samplePids, clientOptions: this.config.clientOptions,
      connectTimeoutMs: CONNECT_TIMEOUT_MS, opTimeoutMs: OP_TIMEOUT_MS,
    };
    const opsBefore = await osdCounters(this.running);
    const control = monitorEventLoopDelay({ resolution: 10 });
    control.enable();
    let stdout: string;
    try {
      ({ stdout } = await run(process.execPath, [SCENARIO_JS, JSON.stringify(full)],
        { label: `ours: ${label}`, timeoutMs: this.timeout(60_000, volumeBytes), captureStdout: true }));
    } finally {
      control.disable();
    }
    const osdOps = opsDelta(opsBefore, await osdCounters(this.running));
    const result = JSON.parse(stdout.trim().split('\n').pop() ?? '') as ScenarioResult;
    const clientCpuMs = result.cpu.userMs + result.cpu.systemMs;
    const { osd, mon } = this.#split(result.sampled.pids);
    return {
      tool: 'ours',
      elapsedMs: result.elapsedMs,
      mibPerS: mibPerS(volumeBytes, result.elapsedMs),
      clientCpuMs,
      osdCpuMs: osd,
      monCpuMs: mon,
      foreignCpuMs: Math.max(0, result.sampled.machineBusyMs - clientCpuMs - osd - mon),
      machineCapacityMs: result.sampled.machineCapacityMs,
      settleMs,
      loadavg1,
      verified: 'pending',
      rssPeakMiB: result.rss.peakMiB,
      rssBeforeMiB: result.rss.beforeMiB,
      setupMs: result.setupMs,
      eventLoop: result.eventLoop,
      controlEventLoop: histogramSummary(control, 10),
      progressCalls: result.progressCalls,
      threadsCpuMs: result.threadsCpuMs,
      ...(result.streamBytes !== undefined ? { streamBytes: result.streamBytes } : {}),
      stats: result.stats,
      osdOps,
    };
  }

  /**
   * One rbd command line (a pipeline, or commands one after another,
   * through bash -o pipefail), timed from spawn to exit; the steps the
   * script marks (markStep) are recorded as stepsMs, and with keepStdout
   * what it printed (a short line, such as md5sum's) as printed.
   */
  async cli(label: string, body: string, args: string[], volumeBytes: number, shown: string,
    keepStdout = false): Promise<Measure> {
    const settleMs = await this.settle();
    const loadavg1 = loadavg()[0]!;
    this.log(`  rbd:  ${shown}`);
    const opsBefore = await osdCounters(this.running);
    const before = sampleCpu(this.samplePids);
    const result = await runTimedBash(timedScript(body), args,
      { label: `rbd: ${label}`, timeoutMs: this.timeout(60_000, volumeBytes), captureStdout: keepStdout });
    const sampled = cpuDelta(before, sampleCpu(this.samplePids));
    const osdOps = opsDelta(opsBefore, await osdCounters(this.running));
    const { osd, mon } = this.#split(sampled.pids);
    return {
      tool: 'rbd',
      elapsedMs: result.elapsedMs,
      mibPerS: mibPerS(volumeBytes, result.elapsedMs),
      clientCpuMs: result.childCpuMs,
      osdCpuMs: osd,
      monCpuMs: mon,
      foreignCpuMs: Math.max(0, sampled.machineBusyMs - result.childCpuMs - osd - mon),
      machineCapacityMs: sampled.machineCapacityMs,
      settleMs,
      loadavg1,
      verified: 'pending',
      command: shown,
      stepsMs: stepMarks(result.stderr),
      ...(keepStdout ? { printed: result.stdout.trim() } : {}),
      osdOps,
    };
  }

  /** Fills a fresh image with `rbd bench` (sequential 4 MiB writes, 16 in flight): the cluster's write ceiling. */
  fill(spec: string, bytes: number): Promise<Ceiling> {
    return this.rbdBench('write', spec, bytes);
  }

  /**
   * `rbd bench` of the image's first `bytes` with sequential 4 MiB writes
   * or reads, 16 in flight: the cluster's write or read ceiling.
   */
  async rbdBench(io: 'write' | 'read', spec: string, bytes: number): Promise<Ceiling> {
    await this.settle();
    const args = ['bench', '--io-type', io, '--io-size', '4M', '--io-threads', '16', '--io-pattern', 'seq',
      '--io-total', `${bytes / MiB}M`, spec];
    const before = sampleCpu(this.samplePids);
    const result = await runTimedBash(timedScript('rbd "$@"'), [...this.a.rbdArgs, ...args], {
      label: `rbd bench ${spec}`, timeoutMs: this.timeout(60_000, bytes), captureStdout: true,
    });
    const sampled = cpuDelta(before, sampleCpu(this.samplePids));
    const match = /bytes\/sec:\s*([\d.]+)\s*([KMGT]?i?B)\/s/.exec(result.stdout);
    const unit: Record<string, number> = { B: 1 / MiB, KiB: 1 / 1024, MiB: 1, GiB: 1024, TiB: MiB };
    const reported = match ? Number(match[1]) * (unit[match[2]!] ?? NaN) : undefined;
    return {
      command: `rbd ${args.join(' ')}`,
      reportedMiBPerS: reported,
      wallMiBPerS: mibPerS(bytes, result.elapsedMs),
      elapsedMs: result.elapsedMs,
      osdCpuMs: this.#split(sampled.pids).osd,
      clientCpuMs: result.childCpuMs,
      output: result.stdout.trim().split('\n').slice(-2).join('\n'),
    };
  }

  async cliStartup(): Promise<number> {
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const result = await run('rbd', [...this.a.rbdArgs, 'info', 'rbd/src'],
        { label: 'rbd info', timeoutMs: this.timeout(30_000), captureStdout: true });
      times.push(result.elapsedMs);
    }
    return median(times);
  }

  record(scenario: ScenarioRecord): void {
    if (scenario.rbd) scenario.ratio = scenario.ours.mibPerS / scenario.rbd.mibPerS;
    if (scenario.rbd64) scenario.ratio64 = scenario.ours.mibPerS / scenario.rbd64.mibPerS;
    this.pass.scenarios.push(scenario);
    const other = (name: string, m: Measure | undefined, ratio: number | undefined): string =>
      (m ? `, ${name} ${(m.elapsedMs / 1000).toFixed(2)} s (${m.mibPerS.toFixed(0)} MiB/s), ratio ${ratio!.toFixed(2)}` : '');
    this.log(`  => ${scenario.title}: ours ${(scenario.ours.elapsedMs / 1000).toFixed(2)} s ` +
      `(${scenario.ours.mibPerS.toFixed(0)} MiB/s)` + other('rbd', scenario.rbd, scenario.ratio) +
      other('rbd@64', scenario.rbd64, scenario.ratio64));
  }

  osdSnapshot(label: string): void {
    const entry: Record<string, number | undefined> = {};
    for (const c of this.running) {
      entry[`${c.name}.rssMiB`] = processMemoryMiB(c.osdPid, 'VmRSS');
      entry[`${c.name}.peakRssMiB`] = processMemoryMiB(c.osdPid, 'VmHWM');
      entry[`${c.name}.cpuMs`] = processCpuMs(c.osdPid);
    }
    this.pass.osd[label] = entry;
  }

  /** Runs a pair `reps` times, alternating which tool goes first, and records the medians. */
  async pairs(base: Omit<ScenarioRecord, 'ours' | 'rbd' | 'oursRuns' | 'rbdRuns'>, reps: number,
    runOurs: () => Promise<Measure>, runRbd: () => Promise<Measure>): Promise<ScenarioRecord> {
    const [oursRuns, rbdRuns] = await this.runRotating(reps, [runOurs, runRbd]) as [Measure[], Measure[]];
    return { ...base, ours: medianRun(oursRuns), rbd: medianRun(rbdRuns), oursRuns, rbdRuns };
  }

  /**
   * Runs each runner `reps` times, rotating which one goes first (for two:
   * alternating), so that neither profits from running after the other.
   * Returns the runs of each runner, in the runners' order.
   */
  async runRotating(reps: number, runners: Array<() => Promise<Measure>>): Promise<Measure[][]> {
    const runs = runners.map((): Measure[] => []);
    for (let rep = 0; rep < reps; rep++) {
      if (reps > 1) this.log(`  run ${rep + 1} of ${reps}`);
      for (let k = 0; k < runners.length; k++) {
        const i = (k + rep) % runners.length;
        runs[i]!.push(await runners[i]!());
      }
    }
    return runs;
  }

  /** Stops cluster B once the cross-cluster runs are done: its OSD's memory goes back to the machine. */
  async stopB(): Promise<void> {
    const b = this.b;
    if (!b) return;
    this.b = undefined;
    this.log('stopping cluster B (no longer needed)');
    await b.cluster.stop();
    forgetCluster(b.dir);
  }
}

/** The run with the median elapsed time (for an even count, the faster of the two middle ones). */
export function medianRun(runs: Measure[]): Measure {
  const sorted = [...runs].sort((x, y) => x.elapsedMs - y.elapsedMs);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}
