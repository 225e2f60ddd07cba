/**
 * The benchmark: our transfer engine against the `rbd` tool, side by side
 * in one run, in a pass at loopback latency (~0) and a pass at ~4 ms per
 * operation, each on throwaway clusters this process starts (and always
 * stops), with every result checked by sha256 of `rbd export`.
 *
 *   node dist/bench/run.js [--size-mib N] [--latency both|0|4] [--size-mib M | --rss-check] [--only G,...] [--json PATH]
 *
 * See bench/README.md for what is measured and how to read the numbers.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, release, totalmem } from 'node:os';
import { dirname } from 'node:path';
import { evaluateBars } from './bars.js';
import { Bench, FEATURES, OBJECT_SIZE } from './bench.js';
import {
  makeWorkDir, startCluster, startsInFlight, stopClusters, stopClustersSync, type BenchCluster,
} from './clusters.js';
import { roundTrips } from './latency.js';
import { INJECT_DELAY_MAX_S, parseArgs, USAGE, UsageError, type Config } from './options.js';
import { runPass } from './pass.js';
import { killChildren, refuseNewChildren } from './proc.js';
import { printReport } from './report.js';
import type { Pass, Results } from './results.js';

const MiB = 1 << 20;
/** The OSD's peak RSS per MiB of volume in a pass (measured: ~7.6 MiB per MiB), plus our clients (bench/README.md). */
const RAM_PER_SIZE = 8;

function text(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 10_000 });
  return (result.stdout ?? '').trim() || (result.stderr ?? '').trim();
}

function memAvailableMiB(): number {
  const match = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return match ? Number(match[1]) / 1024 : NaN;
}

function writeResults(path: string, results: Results): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(results, null, 2)}\n`);
}

async function main(): Promise<number> {
  let config: Config;
  try {
    config = parseArgs(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`${error.message}\n${USAGE}`);
    return 2;
  }
  const started = performance.now();
  const size = config.sizeMiB;
  // Memory, per pass (a pass's clusters are stopped before the next one
  // starts). memstore counts a cloned object (the copy-on-write of a
  // snapshotted object) at full size although its data is shared, so A's
  // accounting limit covers the source with the chain's snapshots (~3.7
  // sizes: a 4 KiB write in every object clones every object), one base
  // image with its clones (~3.7), one restore target and headroom (at 8
  // sizes, the 1024 MiB run's rbd chain filled the OSD). The RAM
  // really used is what the OSD holds: about twice the live data (the
  // source, one base, one restore target), B only while A holds just the
  // source.
  const memstoreA = Math.ceil((11 * size + 1024) * MiB);
  const memstoreB = Math.ceil((1.5 * size + 1024) * MiB);
  const ramNeededMiB = Math.ceil(RAM_PER_SIZE * size + 1536);
  const results: Results = {
    ok: false,
    date: new Date().toISOString(),
    command: ['node', ...process.argv.slice(1).map((arg, i) => (i === 0 ? 'dist/bench/run.js' : arg))],
    machine: {
      nproc: availableParallelism(),
      cpuModel: cpus()[0]?.model,
      totalMemoryMiB: Math.round(totalmem() / MiB),
      memAvailableMiBAtStart: Math.round(memAvailableMiB()),
      loadavgAtStart: loadavg(),
      kernel: release(),
      node: process.version,
      ceph: text('ceph', ['--version']),
      rbd: text('rbd', ['--version']),
    },
    config: {
      sizeMiB: size,
      rssCheckMiB: config.rssCheckMiB,
      objectSize: OBJECT_SIZE,
      features: FEATURES,
      engine: { ...config.engine, defaults: 'unset options use the library defaults (concurrency 64, memory 64 MiB, wholeObject false)' },
      throughput: 'MiB/s = volume size / elapsed time of the operation (incrementals too)',
      timing: 'ours: the library call alone, in a fresh child process after connecting and opening; ' +
        'rbd: the whole command line (pipeline) from spawn to exit, start-up included (see cliStartupMs)',
      repeat: config.repeat,
      clientOptions: config.clientOptions,
      order: 'repeatable pairs (export, copy, full transfers) run --repeat times, rotating which tool goes ' +
        'first, and report the median run; the incremental chains run once per tool, ours first; before every ' +
        'measured run the OSDs are left to go quiet',
      latencies: config.latencies.map((l) => `~${l} ms per operation (ms_inject_delay_max ${INJECT_DELAY_MAX_S[l]} s on the OSD)`),
      rbdConcurrentManagementOps: 'rbd: the tool\'s default (10, what Cinder runs); rbd@64: --rbd-concurrent-management-ops 64 ' +
        'on both export-diff and import-diff (or rbd cp)',
      skipCross: config.skipCross,
      groups: config.groups,
      digests: 'rows "..., with digests": ours with transferDiff\'s digests (64 KiB blocks up to 64 GiB), beside the same ' +
        'transfer without; an incremental\'s start table is hashImage of the source\'s from-snapshot, computed by the ' +
        'benchmark before the child starts (untimed, its operations not counted); rbd: the same pipe runs as the row without',
    },
    passes: [],
    bars: [],
  };
  const available = memAvailableMiB();
  if (available < ramNeededMiB) {
    results.error = `not enough free memory: ${Math.round(available)} MiB available, about ${ramNeededMiB} MiB needed ` +
      `for a ${size} MiB run (memstore keeps the data in RAM); try a smaller --size-mib`;
    process.stderr.write(`${results.error}\n`);
    writeResults(config.jsonPath, results);
    return 1;
  }

  let exiting = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (exiting) return;
    exiting = true;
    process.stderr.write(`\n[bench] ${signal}: stopping child processes and clusters\n`);
    refuseNewChildren(`interrupted by ${signal}`);
    killChildren('SIGKILL');
    results.error = `interrupted by ${signal}`;
    void Promise.race([
      Promise.allSettled([...startsInFlight]),
      new Promise((done) => setTimeout(done, 130_000)),
    ]).then(() => {
      stopClustersSync();
      try { writeResults(config.jsonPath, results); } catch { /* best effort */ }
      process.exit(signal === 'SIGINT' ? 130 : signal === 'SIGHUP' ? 129 : 143);
    });
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);
  process.on('exit', () => {
    killChildren('SIGKILL');
    stopClustersSync();
  });

  const workDir = makeWorkDir();
  const deadline = started + config.deadlineMin * 60_000;
  let code = 0;
  try {
    for (const latency of config.latencies) {
      const pass: Pass = { latency, injectDelayMaxS: INJECT_DELAY_MAX_S[latency], clusters: {}, scenarios: [], osd: {} };
      results.passes.push(pass);
      const bench = new Bench(config, pass, deadline);
      const running: BenchCluster[] = [];
      try {
        const names = config.skipCross ? (['A'] as const) : (['A', 'B'] as const);
        bench.log(`starting cluster${names.length > 1 ? 's A and B' : ' A'} (memstore ${(memstoreA / 2 ** 30).toFixed(1)} GiB` +
          `${names.length > 1 ? `, ${(memstoreB / 2 ** 30).toFixed(1)} GiB` : ''}, ms_inject_delay_max ${pass.injectDelayMaxS} s) ` +
          `under ${workDir}`);
        const startedAt = performance.now();
        const starts = await Promise.allSettled(names.map((name) => (name === 'A'
          ? startCluster('A', latency, memstoreA, ['rbd', 'backups'], pass.injectDelayMaxS)
          : startCluster('B', latency, memstoreB, ['backups'], pass.injectDelayMaxS))));
        for (const s of starts) if (s.status === 'fulfilled') running.push(s.value);
        const failed = starts.find((s): s is PromiseRejectedResult => s.status === 'rejected');
        if (failed) throw failed.reason;
        bench.a = running.find((c) => c.name === 'A')!;
        bench.b = running.find((c) => c.name === 'B');
        pass.clusters = {
          startMs: Math.round(performance.now() - startedAt),
          A: { memstoreBytes: memstoreA, pools: ['rbd', 'backups'] },
          ...(bench.b ? { B: { memstoreBytes: memstoreB, pools: ['backups'] } } : {}),
          layout: 'one mon + one memstore OSD each (scripts/ceph-cluster.sh), cephx on, pool size 1, ' +
            `ms_inject_delay_type client, probability 1, max ${pass.injectDelayMaxS} s`,
        };
        await runPass(bench);
      } finally {
        if (!exiting) {
          bench.log('stopping clusters');
          await stopClusters(running);
        }
      }
    }
    results.roundTrips = roundTrips(results.passes);
    results.bars = evaluateBars(results);
    results.ok = true;
    if (config.strict && results.bars.some((bar) => !bar.informational && bar.pass === false)) code = 2;
  } catch (error) {
    killChildren('SIGKILL');
    results.error = error instanceof Error ? error.message : String(error);
    results.roundTrips = roundTrips(results.passes);
    results.bars = evaluateBars(results);
    process.stderr.write(`\n[bench] FAILED: ${results.error}\n`);
    code = 1;
  }
  if (exiting) return 130;
  results.finishedAt = new Date().toISOString();
  results.durationMs = Math.round(performance.now() - started);
  (results.machine as Record<string, unknown>)['loadavgAtEnd'] = loadavg();
  printReport(results);
  writeResults(config.jsonPath, results);
  process.stderr.write(`[bench] results written to ${config.jsonPath}\n`);
  return code;
}

main().then((code) => {
  process.exitCode = code;
}, (error: unknown) => {
  process.stderr.write(`[bench] ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
