/** The printed form of a benchmark run: the comparison table, the ceiling, where the CPU went, and the bars. */
import { table } from '../lib/dev/table.js';
import { worstEventLoopRun, type Measure, type Results, type ScenarioRecord } from './results.js';

const n = (value: number | undefined, digits = 0): string =>
  (value === undefined || Number.isNaN(value) ? '-' : value.toFixed(digits));

function runList(runs: ScenarioRecord['oursRuns']): string {
  return runs.map((m) => n(m.elapsedMs / 1000, 2)).join(', ');
}

const seconds = (m: Measure | undefined): string => n(m === undefined ? undefined : m.elapsedMs / 1000, 2);

/** Share of the machine (all cores) a measure's own work used, and what others used. */
function cpuRow(title: string, m: Measure): string[] {
  const own = m.clientCpuMs + m.osdCpuMs + m.monCpuMs;
  return [
    title, m.tool, seconds(m), n(m.clientCpuMs / 1000, 2), n(m.osdCpuMs / 1000, 2),
    `${n((100 * own) / m.machineCapacityMs)}%`, n(m.foreignCpuMs / 1000, 2), n(m.loadavg1, 2),
  ];
}

export function printReport(results: Results): void {
  const out: string[] = [];
  const size = results.config['sizeMiB'];
  out.push('', `ceph-rbd-backup benchmark, ${results.date}: ${size} MiB volume, 4 MiB objects`,
    `machine: ${String(results.machine['nproc'])} cores, ${String(results.machine['totalMemoryMiB'])} MiB RAM, ` +
    `node ${String(results.machine['node'])}, ${String(results.machine['ceph'])}`,
    'MiB/s = volume size / elapsed time of the operation (for incrementals too). ours: the library call in a',
    `child process after connecting; rbd: the whole command from spawn to exit (rbd start-up alone: ` +
    `${n(results.cliStartupMs)} ms).`, '');

  const rows: string[][] = [[
    'scenario', 'runs', 'ours s', 'rbd s', 'ours MiB/s', 'rbd MiB/s', 'ratio', 'of full (ours/rbd)',
    'ours peak RSS MiB', 'ours ELD p99 ms', '(control)',
  ]];
  for (const s of results.scenarios) {
    const worst = worstEventLoopRun(s);
    rows.push([
      s.title, String(s.oursRuns.length), seconds(s.ours), seconds(s.rbd), n(s.ours.mibPerS), n(s.rbd?.mibPerS),
      n(s.ratio, 2),
      s.fractionOfFull ? `${n(100 * s.fractionOfFull.ours, 1)}% / ${n(100 * s.fractionOfFull.rbd, 1)}%` : '',
      n(Math.max(...s.oursRuns.map((m) => m.rssPeakMiB ?? NaN))), n(worst?.eventLoop?.p99Ms, 1),
      n(worst?.controlEventLoop?.p99Ms, 1),
    ]);
  }
  out.push(table(rows, (column) => column > 0));
  out.push('(times and MiB/s: the median run; peak RSS: the highest of the runs; ELD p99: the worst run, and in',
    'brackets what an idle process (the benchmark itself) saw meanwhile — the machine\'s own scheduling delay)');
  const repeated = results.scenarios.filter((s) => s.oursRuns.length > 1 || (s.rbdRuns?.length ?? 0) > 1);
  if (repeated.length > 0) {
    out.push('', 'all runs, elapsed s:');
    for (const s of repeated) out.push(`  ${s.title}: ours ${runList(s.oursRuns)}${s.rbdRuns ? `; rbd ${runList(s.rbdRuns)}` : ''}`);
  }

  const ceiling = results.ceiling;
  if (ceiling) {
    const all = (results.ceilingRuns ?? []).map((c) => n(c.reportedMiBPerS)).join(', ');
    out.push('', `write ceiling: ${n(ceiling.reportedMiBPerS)} MiB/s (best of ${all}) as reported by \`${ceiling.command}\` ` +
      `(${n(ceiling.wallMiBPerS)} MiB/s by wall clock, ${n(ceiling.elapsedMs / 1000, 2)} s; ` +
      `OSD CPU ${n(ceiling.osdCpuMs / 1000, 2)} s, rbd CPU ${n(ceiling.clientCpuMs / 1000, 2)} s)`);
  }
  for (const s of results.scenarios) {
    if (s.change) {
      out.push(`${s.title}: ${s.change.pattern}; ${n(s.change.bytesChanged / 2 ** 20, 1)} MiB distinct bytes changed ` +
        `in ${s.change.objectsTouched} of ${s.change.objects} objects`);
    }
  }
  for (const s of results.scenarios) {
    const native = s.ours.stats?.['elapsedMs'];
    if (!s.fractionOfFull || typeof native !== 'number') continue;
    out.push(`${s.title}: ours took ${n(s.ours.elapsedMs)} ms, of which the native diff-and-copy loop ${n(native)} ms ` +
      `(${n(Number(s.ours.stats?.['bytesWritten'] ?? 0) / 2 ** 20, 1)} MiB written); the rest is the calls around it ` +
      `(snapshot checks, opening the source snapshot, resize check, creating the end snapshot)`);
  }

  const cpu: string[][] = [[
    'scenario', 'tool', 'elapsed s', 'client CPU s', 'OSD CPU s', 'machine used by this', 'others CPU s', 'load 1m',
  ]];
  for (const s of results.scenarios) {
    cpu.push(cpuRow(s.title, s.ours));
    if (s.rbd) cpu.push(cpuRow('', s.rbd));
  }
  const perGiB: string[] = [];
  for (const s of results.scenarios) {
    if (!s.id.startsWith('full') && s.id !== 'copy' && s.id !== 'export-null') continue;
    const gib = s.volumeBytes / 2 ** 30;
    const of = (m: Measure): string => `client ${n(m.clientCpuMs / 1000 / gib, 2)} + OSD ${n(m.osdCpuMs / 1000 / gib, 2)}`;
    perGiB.push(`  ${s.title}: ours ${of(s.ours)}${s.rbd ? `; rbd ${of(s.rbd)}` : ''} CPU s per GiB`);
  }
  out.push('', 'where the time went (client = our child process or the rbd processes; OSD = both clusters\' OSDs;',
    '"machine used by this" = (client + OSD + mon CPU) / (elapsed × cores); others = the rest of the machine\'s busy CPU):',
    table(cpu, (column) => column > 1), '', 'CPU per GiB moved (median runs):', ...perGiB);
  const threads: string[] = [];
  for (const s of results.scenarios) {
    const byThread = s.ours.threadsCpuMs;
    if (!byThread || s.ours.clientCpuMs < 200) continue;
    const top = Object.entries(byThread).sort((x, y) => y[1] - x[1]).slice(0, 6)
      .map(([name, ms]) => `${name} ${n(ms / 1000, 2)}`).join(', ');
    threads.push(`  ${s.title}: ${top} (CPU s)`);
  }
  if (threads.length > 0) out.push('', 'our client CPU by thread (median run):', ...threads);

  if (results.bars.length > 0) {
    out.push('', 'bars (DESIGN section 7):');
    for (const bar of results.bars) {
      const verdict = bar.pass === undefined ? 'n/a ' : bar.pass ? 'PASS' : 'FAIL';
      out.push(`  ${verdict}  ${bar.text}${bar.informational ? ' [info]' : ''}: ${bar.detail}`);
    }
  }
  if (results.error) out.push('', `RUN FAILED: ${results.error}`);
  out.push('');
  process.stdout.write(out.join('\n'));
}
