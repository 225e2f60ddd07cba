/**
 * The benchmark: our transfer engine against the `rbd` tool, side by side
 * in one run on two throwaway clusters this process starts (and always
 * stops), with every result checked by sha256 of `rbd export`.
 *
 *   node dist/bench/run.js [--size-mib N] [--size-mib M | --rss-check] [--json PATH]
 *
 * See bench/README.md for what is measured and how to read the numbers.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, release, totalmem } from 'node:os';
import { dirname } from 'node:path';
import { Bench, FEATURES, OBJECT_SIZE } from './bench.js';
import {
  makeWorkDir, startCluster, startsInFlight, stopClusters, stopClustersSync, type BenchCluster,
} from './clusters.js';
import { parseArgs, USAGE, UsageError, type Config } from './options.js';
import { killChildren, refuseNewChildren } from './proc.js';
import { printReport } from './report.js';
import { evaluateBars, type Results } from './results.js';

const MiB = 1 << 20;

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
  // Memory. memstore counts a cloned object (the copy-on-write of a
  // snapshotted object) at full size although its data is shared, so A's
  // accounting limit covers ~2.5 sizes for each image that keeps snapshots
  // (the source, a base image, one still being trimmed) plus headroom. The
  // RAM really used is what the OSD holds: about twice the live data (seen
  // here: 1071 MiB of RSS after writing 512 MiB), and at most the source and
  // one base image (~2.5 sizes) are live at once, B only while A holds just
  // the source.
  const memstoreA = Math.ceil((9 * size + 1024) * MiB);
  const memstoreB = Math.ceil((1.5 * size + 1024) * MiB);
  const ramNeededMiB = Math.ceil(5.5 * size + 1536);
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
      order: 'repeatable pairs (export, copy, full transfers) run --repeat times, alternating which tool goes ' +
        'first, and report the median run; the incremental chains run once per tool, ours first; before every ' +
        'measured run the OSDs are left to go quiet',
    },
    clusters: {},
    scenarios: [],
    bars: [],
    osd: {},
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
  const bench = new Bench(config, results);
  const started2: BenchCluster[] = [];
  let code = 0;
  try {
    bench.log(`starting clusters A (memstore ${(memstoreA / 2 ** 30).toFixed(1)} GiB) and B ` +
      `(${(memstoreB / 2 ** 30).toFixed(1)} GiB) under ${workDir}`);
    const startedAt = performance.now();
    const starts = await Promise.allSettled([
      startCluster('A', memstoreA, ['rbd', 'backups']),
      startCluster('B', memstoreB, ['backups']),
    ]);
    for (const s of starts) if (s.status === 'fulfilled') started2.push(s.value);
    const failed = starts.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    bench.a = started2.find((c) => c.name === 'A')!;
    bench.b = started2.find((c) => c.name === 'B')!;
    results.clusters = {
      startMs: Math.round(performance.now() - startedAt),
      A: { memstoreBytes: memstoreA, pools: ['rbd', 'backups'] },
      B: { memstoreBytes: memstoreB, pools: ['backups'] },
      layout: 'one mon + one memstore OSD each (scripts/ceph-cluster.sh), cephx on, pool size 1',
    };
    await bench.runAll();
    results.bars = evaluateBars(results);
    results.ok = true;
    if (config.strict && results.bars.some((bar) => !bar.informational && bar.pass === false)) code = 2;
  } catch (error) {
    killChildren('SIGKILL');
    results.error = error instanceof Error ? error.message : String(error);
    results.bars = evaluateBars(results);
    process.stderr.write(`\n[bench] FAILED: ${results.error}\n`);
    code = 1;
  } finally {
    if (!exiting) {
      bench.log('stopping clusters');
      await stopClusters(started2);
    }
  }
  if (exiting) return 130;
  results.finishedAt = new Date().toISOString();
  results.durationMs = Math.round(performance.now() - started);
  (results.machine as Record<string, unknown>)['loadavgAtEnd'] = loadavg();
  printReport(results);
  writeResults(config.jsonPath, results);
  bench.log(`results written to ${config.jsonPath}`);
  return code;
}

main().then((code) => {
  process.exitCode = code;
}, (error: unknown) => {
  process.stderr.write(`[bench] ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
