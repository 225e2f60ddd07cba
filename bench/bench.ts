/**
 * The scenarios: setting up the source volume, each pair of ours and rbd,
 * the verification after every run, and the measurements around them.
 */
import { createHash, randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Cluster } from '../lib/index.js';
import { prng } from '../lib/dev/prng.js';
import { forgetCluster, type BenchCluster } from './clusters.js';
import type { Config } from './options.js';
import type { ScenarioArgs, ScenarioResult } from './protocol.js';
import { run, runTimedBash, timedScript } from './proc.js';
import type { Ceiling, ChangeInfo, Measure, Results, ScenarioRecord } from './results.js';
import { cpuDelta, histogramSummary, processCpuMs, processMemoryMiB, sampleCpu } from './sample.js';

const MiB = 1 << 20;
const SCENARIO_JS = fileURLToPath(new URL('./scenario.js', import.meta.url));
const FEATURES = ['layering', 'exclusive-lock', 'object-map', 'fast-diff'];
const OBJECT_SIZE = '4M';
/** Random changes: this many bytes per write, at offsets aligned to ALIGN. */
const CHANGE_WRITE = 64 << 10;
const CHANGE_ALIGN = 4 << 10;
const CHANGE_WINDOW = 16;
const CONNECT_TIMEOUT_MS = 20_000;
const OP_TIMEOUT_MS = 120_000;

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

export class Bench {
  readonly config: Config;
  readonly results: Results;
  readonly #deadline: number;
  readonly #hashes = new Map<string, Promise<{ sha256: string; bytes: number }>>();
  a!: BenchCluster;
  /** Stopped (undefined) once the cross-cluster runs are done. */
  b: BenchCluster | undefined;

  constructor(config: Config, results: Results) {
    this.config = config;
    this.results = results;
    this.#deadline = performance.now() + config.deadlineMin * 60_000;
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
    process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
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

  async snapshot(c: BenchCluster, spec: string): Promise<void> {
    await this.rbd(c, ['snap', 'create', '--no-progress', spec], `snap create ${c.name}:${spec}`);
  }

  /** sha256 of `rbd export --no-progress SPEC -`; with countZeroBlocks, also how many 4 KiB blocks are all zero. */
  async exportHash(c: BenchCluster, spec: string, countZeroBlocks = false):
    Promise<{ sha256: string; bytes: number; zeroBlocks?: number }> {
    const hash = createHash('sha256');
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
        bytes += chunk.length;
        if (countZeroBlocks) account(chunk);
      },
    });
    return { sha256: hash.digest('hex'), bytes, ...(countZeroBlocks ? { zeroBlocks } : {}) };
  }

  sourceHash(c: BenchCluster, spec: string): Promise<{ sha256: string; bytes: number }> {
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
  async ours(label: string, args: Pick<ScenarioArgs, 'op' | 'source' | 'snapshot' | 'fromSnapshot' | 'target' | 'sink'>,
    volumeBytes: number): Promise<Measure> {
    const settleMs = await this.settle();
    const loadavg1 = loadavg()[0]!;
    this.log(`  ours: ${label}`);
    const full: ScenarioArgs = {
      ...args, engine: this.config.engine, samplePids: this.samplePids, clientOptions: this.config.clientOptions,
      connectTimeoutMs: CONNECT_TIMEOUT_MS, opTimeoutMs: OP_TIMEOUT_MS,
    };
    const control = monitorEventLoopDelay({ resolution: 10 });
    control.enable();
    let stdout: string;
    try {
      ({ stdout } = await run(process.execPath, [SCENARIO_JS, JSON.stringify(full)],
        { label: `ours: ${label}`, timeoutMs: this.timeout(60_000, volumeBytes), captureStdout: true }));
    } finally {
      control.disable();
    }
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
    };
  }

  /** One rbd command line (a pipeline, through bash -o pipefail), timed from spawn to exit. */
  async cli(label: string, body: string, args: string[], volumeBytes: number, shown: string): Promise<Measure> {
    const settleMs = await this.settle();
    const loadavg1 = loadavg()[0]!;
    this.log(`  rbd:  ${shown}`);
    const before = sampleCpu(this.samplePids);
    const result = await runTimedBash(timedScript(body), args,
      { label: `rbd: ${label}`, timeoutMs: this.timeout(60_000, volumeBytes) });
    const sampled = cpuDelta(before, sampleCpu(this.samplePids));
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
    };
  }

  /** `rbd -c X export-diff SRC - | rbd -c Y import-diff - DST`, timed as one. */
  cliTransfer(label: string, from: BenchCluster, snapSpec: string, fromSnap: string | undefined,
    to: BenchCluster, target: string): Promise<Measure> {
    const exportArgs = [...from.rbdArgs, 'export-diff', '--no-progress',
      ...(fromSnap ? ['--from-snap', fromSnap] : []), snapSpec, '-'];
    const importArgs = [...to.rbdArgs, 'import-diff', '--no-progress', '-', target];
    const shown = `rbd -c ${from.name} export-diff ${fromSnap ? `--from-snap ${fromSnap} ` : ''}${snapSpec} - | ` +
      `rbd -c ${to.name} import-diff - ${target}`;
    return this.cli(label, 'n=$1; shift; rbd "${@:1:n}" | rbd "${@:n+1}"',
      [String(exportArgs.length), ...exportArgs, ...importArgs], this.sizeBytes, shown);
  }

  /** Writes `fraction` of the volume as CHANGE_WRITE-byte random writes at random aligned offsets. */
  async writeChanges(spec: { pool: string; image: string }, fraction: number, seed: number): Promise<ChangeInfo> {
    const size = this.sizeBytes;
    const writes = Math.round((fraction * size) / CHANGE_WRITE);
    const random = prng(seed);
    const slots = (size - CHANGE_WRITE) / CHANGE_ALIGN + 1;
    const blocks = new Uint8Array(size / CHANGE_ALIGN);
    const objects = new Set<number>();
    const offsets: number[] = [];
    for (let i = 0; i < writes; i++) {
      const offset = Math.floor(random() * slots) * CHANGE_ALIGN;
      offsets.push(offset);
      blocks.fill(1, offset / CHANGE_ALIGN, (offset + CHANGE_WRITE) / CHANGE_ALIGN);
      objects.add(Math.floor(offset / (4 * MiB)));
      objects.add(Math.floor((offset + CHANGE_WRITE - 1) / (4 * MiB)));
    }
    const started = performance.now();
    const cluster = await Cluster.connect({
      ...this.a.ref, timeoutMs: CONNECT_TIMEOUT_MS, opTimeoutMs: OP_TIMEOUT_MS,
    });
    try {
      const pool = await cluster.pool(spec.pool);
      try {
        const image = await pool.openImage(spec.image);
        try {
          let next = 0;
          const worker = async (): Promise<void> => {
            while (next < offsets.length) {
              const offset = offsets[next++]!;
              await image.write(randomBytes(CHANGE_WRITE), offset);
            }
          };
          await Promise.all(Array.from({ length: CHANGE_WINDOW }, worker));
          await image.flush();
        } finally {
          await image.close();
        }
      } finally {
        await pool.close();
      }
    } finally {
      await cluster.close();
    }
    const changedBlocks = blocks.reduce((sum, b) => sum + b, 0);
    return {
      fraction,
      pattern: `${writes} writes of ${CHANGE_WRITE / 1024} KiB of random bytes at uniformly random ` +
        `${CHANGE_ALIGN / 1024} KiB-aligned offsets in [0, size - ${CHANGE_WRITE / 1024} KiB] ` +
        `(mulberry32 seed ${seed}; overlaps possible), ${CHANGE_WINDOW} in flight`,
      seed,
      writes,
      bytesWritten: writes * CHANGE_WRITE,
      bytesChanged: changedBlocks * CHANGE_ALIGN,
      objectsTouched: objects.size,
      objects: Math.ceil(size / (4 * MiB)),
      writeMs: performance.now() - started,
    };
  }

  /** Fills a fresh image with `rbd bench` (sequential 4 MiB writes, 16 in flight): the cluster's write ceiling. */
  async fill(spec: string, bytes: number): Promise<Ceiling> {
    await this.settle();
    const args = ['bench', '--io-type', 'write', '--io-size', '4M', '--io-threads', '16', '--io-pattern', 'seq',
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
    this.results.scenarios.push(scenario);
    const r = scenario.rbd;
    this.log(`  => ${scenario.title}: ours ${(scenario.ours.elapsedMs / 1000).toFixed(2)} s ` +
      `(${scenario.ours.mibPerS.toFixed(0)} MiB/s)` +
      (r ? `, rbd ${(r.elapsedMs / 1000).toFixed(2)} s (${r.mibPerS.toFixed(0)} MiB/s), ratio ${scenario.ratio!.toFixed(2)}` : ''));
  }

  osdSnapshot(label: string): void {
    const entry: Record<string, number | undefined> = {};
    for (const c of this.running) {
      entry[`${c.name}.rssMiB`] = processMemoryMiB(c.osdPid, 'VmRSS');
      entry[`${c.name}.peakRssMiB`] = processMemoryMiB(c.osdPid, 'VmHWM');
      entry[`${c.name}.cpuMs`] = processCpuMs(c.osdPid);
    }
    this.results.osd[label] = entry;
  }

  /** Runs a pair `reps` times, alternating which tool goes first, and records the medians. */
  async pairs(base: Omit<ScenarioRecord, 'ours' | 'rbd' | 'oursRuns' | 'rbdRuns'>, reps: number,
    runOurs: () => Promise<Measure>, runRbd: () => Promise<Measure>): Promise<ScenarioRecord> {
    const { oursRuns, rbdRuns } = await this.runPairs(reps, runOurs, runRbd);
    return { ...base, ours: medianRun(oursRuns), rbd: medianRun(rbdRuns), oursRuns, rbdRuns };
  }

  async runPairs(reps: number, runOurs: () => Promise<Measure>,
    runRbd: () => Promise<Measure>): Promise<{ oursRuns: Measure[]; rbdRuns: Measure[] }> {
    const oursRuns: Measure[] = [];
    const rbdRuns: Measure[] = [];
    for (let rep = 0; rep < reps; rep++) {
      if (reps > 1) this.log(`  run ${rep + 1} of ${reps}${rep % 2 === 1 ? ' (rbd first)' : ''}`);
      if (rep % 2 === 0) {
        oursRuns.push(await runOurs());
        rbdRuns.push(await runRbd());
      } else {
        rbdRuns.push(await runRbd());
        oursRuns.push(await runOurs());
      }
    }
    return { oursRuns, rbdRuns };
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

  async runAll(): Promise<void> {
    const a = this.a;
    const b = this.b!;
    const size = this.sizeBytes;
    const reps = this.config.repeat;
    const src = { cluster: a.ref, pool: 'rbd', image: 'src' };
    const inA = (image: string) => ({ cluster: a.ref, pool: 'backups', image });

    this.log(`source: rbd/src, ${this.config.sizeMiB} MiB, ${OBJECT_SIZE} objects, features ${FEATURES.join(',')}`);
    await this.createImage(a, 'rbd/src', size);
    this.results.cliStartupMs = await this.cliStartup();
    this.log('filling rbd/src with rbd bench (the write ceiling)');
    const ceilings = [await this.fill('rbd/src', size)];
    for (let rep = 1; rep < reps; rep++) {
      this.log(`  write ceiling again on a fresh scratch image (${rep + 1} of ${reps})`);
      await this.createImage(a, 'rbd/scratch', size);
      ceilings.push(await this.fill('rbd/scratch', size));
      await this.removeImage(a, 'rbd/scratch');
    }
    const speed = (c: Ceiling): number => c.reportedMiBPerS ?? c.wallMiBPerS;
    this.results.ceilingRuns = ceilings;
    // The best run: interference from the rest of the machine only ever
    // slows a run down, so the fastest one is the closest to what the
    // cluster can do (and the strictest yardstick for the 75% bar).
    this.results.ceiling = ceilings.reduce((best, c) => (speed(c) > speed(best) ? c : best));
    this.log(`  ceiling: ${ceilings.map((c) => speed(c).toFixed(0)).join(', ')} MiB/s reported by rbd bench; ` +
      `best ${speed(this.results.ceiling).toFixed(0)}`);
    await this.snapshot(a, 'rbd/src@s1');
    const s1 = await this.exportHash(a, 'rbd/src@s1', true);
    this.#hashes.set('A:rbd/src@s1', Promise.resolve(s1));
    if (s1.bytes !== size) throw new Error(`rbd export of rbd/src@s1 gave ${s1.bytes} bytes, expected ${size}`);
    if (s1.zeroBlocks !== 0) {
      throw new Error(`rbd bench left ${s1.zeroBlocks} all-zero 4 KiB blocks in rbd/src; the full transfer needs a fully written volume`);
    }
    this.log(`  rbd/src@s1: ${size} bytes, no all-zero 4 KiB block, sha256 ${s1.sha256.slice(0, 16)}…`);
    this.osdSnapshot('afterFill');

    // e. The diff stream into a sink that discards it. Ours is checked once
    // by applying its stream with the real tool (untimed); the stream is
    // deterministic, so every timed run must produce exactly as many bytes.
    this.log('e. export-diff stream to a null sink');
    {
      await this.createImage(a, 'backups/export-check', MiB);
      const args: ScenarioArgs = {
        op: 'export', source: src, snapshot: 's1', sink: 'stdout',
        engine: this.config.engine, samplePids: [], clientOptions: this.config.clientOptions, connectTimeoutMs: CONNECT_TIMEOUT_MS, opTimeoutMs: OP_TIMEOUT_MS,
      };
      const importArgs = [...a.rbdArgs, 'import-diff', '--no-progress', '-', 'backups/export-check'];
      const check = await run('bash', ['-o', 'pipefail', '-c', '"$1" "$2" "$3" | rbd "${@:4}"', 'bash',
        process.execPath, SCENARIO_JS, JSON.stringify(args), ...importArgs],
      { label: 'ours exportDiff | rbd import-diff (check)', timeoutMs: this.timeout(60_000, size, 4) });
      const checkBytes = (JSON.parse(check.stderr.trim().split('\n').pop() ?? '') as ScenarioResult).streamBytes;
      const checked = await this.verify('exportDiff stream applied by rbd import-diff',
        [a, 'rbd/src@s1'], [a, 'backups/export-check@s1']);
      await this.removeImage(a, 'backups/export-check');
      this.record(await this.pairs({
        id: 'export-null', title: 'export-diff stream -> null', volumeBytes: size,
        detail: 'whole-history diff stream of rbd/src@s1 into a sink that discards it; ours is checked by ' +
          'applying its stream with rbd import-diff (untimed), and each timed run by its stream length',
      }, reps, async () => {
        const m = await this.ours('exportDiff(rbd/src@s1) -> null Writable',
          { op: 'export', source: src, snapshot: 's1', sink: 'null' }, size);
        if (m.streamBytes !== checkBytes) {
          throw new VerificationError(`VERIFICATION FAILED: exportDiff produced ${m.streamBytes} bytes, ` +
            `the checked stream had ${checkBytes}`);
        }
        m.verified = `${checked}; ${checkBytes} stream bytes, same as the stream rbd import-diff applied`;
        return m;
      }, async () => {
        const m = await this.cli('export-diff > /dev/null', 'rbd "$@" >/dev/null',
          [...a.rbdArgs, 'export-diff', '--no-progress', 'rbd/src@s1', '-'], size,
          'rbd export-diff rbd/src@s1 - > /dev/null');
        m.verified = 'n/a (the reference)';
        return m;
      }));
    }

    // d. full copy.
    this.log('d. full copy');
    const cpArgs = ['cp', '--no-progress', '--object-size', OBJECT_SIZE,
      ...FEATURES.flatMap((f) => ['--image-feature', f]), 'rbd/src@s1', 'backups/cp-cli'];
    this.record(await this.pairs({
      id: 'copy', title: 'full copy', volumeBytes: size,
      detail: 'rbd/src@s1 into a new image of the same size (ours: created before timing; rbd cp creates its own)',
    }, reps, async () => {
      await this.createImage(a, 'backups/cp-ours', size);
      const m = await this.ours('copyImage(rbd/src@s1 -> backups/cp-ours)',
        { op: 'copy', source: src, snapshot: 's1', target: inA('cp-ours') }, size);
      m.verified = await this.verify('copyImage', [a, 'rbd/src@s1'], [a, 'backups/cp-ours']);
      await this.removeImage(a, 'backups/cp-ours');
      return m;
    }, async () => {
      const m = await this.cli('rbd cp', 'rbd "$@"', [...a.rbdArgs, ...cpArgs], size, 'rbd cp rbd/src@s1 backups/cp-cli');
      m.verified = await this.verify('rbd cp', [a, 'rbd/src@s1'], [a, 'backups/cp-cli']);
      await this.removeImage(a, 'backups/cp-cli');
      return m;
    }));

    // f. full transfer to the second cluster.
    this.log('f. full transfer across clusters (A -> B)');
    this.record(await this.pairs({
      id: 'full-cross', title: 'full transfer A -> B', volumeBytes: size,
      detail: 'whole-history diff of rbd/src@s1 on cluster A into a new 1 MiB image in pool backups on cluster B',
    }, reps, async () => {
      await this.createImage(b, 'backups/x-ours', MiB);
      const m = await this.ours('transferDiff(A rbd/src@s1 -> B backups/x-ours)', {
        op: 'transfer', source: src, snapshot: 's1', target: { cluster: b.ref, pool: 'backups', image: 'x-ours' },
      }, size);
      m.verified = await this.verify('cross-cluster transferDiff', [a, 'rbd/src@s1'], [b, 'backups/x-ours@s1']);
      await this.removeImage(b, 'backups/x-ours');
      return m;
    }, async () => {
      await this.createImage(b, 'backups/x-cli', MiB);
      const m = await this.cliTransfer('cross-cluster pipe', a, 'rbd/src@s1', undefined, b, 'backups/x-cli');
      m.verified = await this.verify('cross-cluster pipe', [a, 'rbd/src@s1'], [b, 'backups/x-cli@s1']);
      await this.removeImage(b, 'backups/x-cli');
      return m;
    }));
    this.osdSnapshot('afterCross');
    await this.stopB();

    // a. full transfer in one cluster: reps - 1 pairs into throwaway
    // targets, plus the full transfer that starts each tool's chain below.
    this.log('a. full transfer (A -> A)');
    const fullOurs = async (target: string): Promise<Measure> => {
      await this.createImage(a, `backups/${target}`, MiB);
      const m = await this.ours(`transferDiff(rbd/src@s1 -> backups/${target})`,
        { op: 'transfer', source: src, snapshot: 's1', target: inA(target) }, size);
      m.verified = await this.verify('full transfer, ours', [a, 'rbd/src@s1'], [a, `backups/${target}@s1`]);
      return m;
    };
    const fullRbd = async (target: string): Promise<Measure> => {
      await this.createImage(a, `backups/${target}`, MiB);
      const m = await this.cliTransfer('full transfer', a, 'rbd/src@s1', undefined, a, `backups/${target}`);
      m.verified = await this.verify('full transfer, rbd', [a, 'rbd/src@s1'], [a, `backups/${target}@s1`]);
      return m;
    };
    const standalone = await this.runPairs(reps - 1,
      async () => { const m = await fullOurs('full-ours'); await this.removeImage(a, 'backups/full-ours'); return m; },
      async () => { const m = await fullRbd('full-cli'); await this.removeImage(a, 'backups/full-cli'); return m; });

    // b, c. Incremental chains, one tool at a time (memstore keeps every
    // image in RAM, so only one base image exists at once): the full
    // transfer into the base, then 1% changed, 10% changed, unchanged. The
    // changes are written to the source once, during ours' chain; the rbd
    // chain replays the same snapshots.
    const steps = [
      { id: 'incr-1pct', title: 'incremental, 1% changed', fraction: 0.01, snap: 's2', from: 's1' },
      { id: 'incr-10pct', title: 'incremental, 10% changed', fraction: 0.10, snap: 's3', from: 's2' },
      { id: 'unchanged', title: 'incremental, unchanged', fraction: 0, snap: 's4', from: 's3' },
    ] as const;
    const changes = new Map<string, ChangeInfo>();
    const chainOurs: Measure[] = [];
    const chainRbd: Measure[] = [];
    this.log('b, c. incremental chain of ours: full transfer into backups/base-ours, then the incrementals');
    chainOurs.push(await fullOurs('base-ours'));
    for (const [i, step] of steps.entries()) {
      if (step.fraction > 0) {
        const change = await this.writeChanges({ pool: 'rbd', image: 'src' }, step.fraction, i + 1);
        changes.set(step.id, change);
        this.log(`  wrote ${change.pattern}: ${(change.bytesChanged / MiB).toFixed(1)} MiB changed ` +
          `in ${change.objectsTouched} of ${change.objects} objects`);
      }
      await this.snapshot(a, `rbd/src@${step.snap}`);
      const m = await this.ours(`transferDiff(rbd/src@${step.from}..@${step.snap} -> backups/base-ours)`, {
        op: 'transfer', source: src, snapshot: step.snap, fromSnapshot: step.from, target: inA('base-ours'),
      }, size);
      m.verified = await this.verify(`${step.id}, ours`, [a, `rbd/src@${step.snap}`], [a, `backups/base-ours@${step.snap}`]);
      chainOurs.push(m);
    }
    this.osdSnapshot('afterOursChain');
    await this.removeImage(a, 'backups/base-ours');
    this.log('b, c. incremental chain of rbd: full transfer into backups/base-cli, then the incrementals');
    chainRbd.push(await fullRbd('base-cli'));
    for (const step of steps) {
      const m = await this.cliTransfer(step.id, a, `rbd/src@${step.snap}`, step.from, a, 'backups/base-cli');
      m.verified = await this.verify(`${step.id}, rbd`, [a, `rbd/src@${step.snap}`], [a, `backups/base-cli@${step.snap}`]);
      chainRbd.push(m);
    }
    await this.removeImage(a, 'backups/base-cli');

    const fullOursRuns = [...standalone.oursRuns, chainOurs[0]!];
    const fullRbdRuns = [...standalone.rbdRuns, chainRbd[0]!];
    const full: ScenarioRecord = {
      id: 'full', title: 'full transfer', volumeBytes: size,
      detail: 'whole-history diff of rbd/src@s1 into a new 1 MiB image in pool backups (resized by the transfer), ' +
        'same cluster; the last run of each tool is the start of its incremental chain',
      ours: medianRun(fullOursRuns), rbd: medianRun(fullRbdRuns), oursRuns: fullOursRuns, rbdRuns: fullRbdRuns,
    };
    this.record(full);
    for (const [i, step] of steps.entries()) {
      const ours = chainOurs[i + 1]!;
      const rbd = chainRbd[i + 1]!;
      const change = changes.get(step.id);
      this.record({
        id: step.id, title: step.title, volumeBytes: size, ours, rbd, oursRuns: [ours], rbdRuns: [rbd],
        detail: `diff rbd/src@${step.from}..@${step.snap} into the tool's base image (backups/base-ours, backups/base-cli)`,
        fractionOfFull: { ours: ours.elapsedMs / full.ours.elapsedMs, rbd: rbd.elapsedMs / full.rbd!.elapsedMs },
        ...(change ? { change } : {}),
      });
    }

    if (this.config.rssCheckMiB !== undefined) {
      const small = this.config.rssCheckMiB * MiB;
      this.log(`RSS check: full transfer at ${this.config.rssCheckMiB} MiB`);
      await this.removeImage(a, 'rbd/src'); // only the small volume is needed now
      await this.createImage(a, 'rbd/src-small', small);
      this.results.rssCheckCeiling = await this.fill('rbd/src-small', small);
      await this.snapshot(a, 'rbd/src-small@s1');
      const runs: Measure[] = [];
      for (let rep = 0; rep < Math.max(1, Math.min(reps, 2)); rep++) {
        await this.createImage(a, 'backups/base-small', MiB);
        const m = await this.ours('transferDiff(rbd/src-small@s1 -> backups/base-small)', {
          op: 'transfer', source: { cluster: a.ref, pool: 'rbd', image: 'src-small' }, snapshot: 's1',
          target: inA('base-small'),
        }, small);
        m.verified = await this.verify('RSS check transfer', [a, 'rbd/src-small@s1'], [a, 'backups/base-small@s1']);
        await this.removeImage(a, 'backups/base-small');
        runs.push(m);
      }
      this.record({
        id: 'rss-check', title: `full transfer, ${this.config.rssCheckMiB} MiB`, volumeBytes: small,
        ours: medianRun(runs), oursRuns: runs,
        detail: `the full transfer again on a ${this.config.rssCheckMiB} MiB volume (ours only), to compare peak RSS`,
      });
    }
    this.osdSnapshot('end');
  }
}

/** The run with the median elapsed time (for an even count, the faster of the two middle ones). */
function medianRun(runs: Measure[]): Measure {
  const sorted = [...runs].sort((x, y) => x.elapsedMs - y.elapsedMs);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}
