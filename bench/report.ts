/** The printed form of a benchmark run: both latencies side by side, then per pass the ceiling, operations and CPU, and the bars. */
import { table } from '../lib/dev/table.js';
import { worstEventLoopRun } from './bars.js';
import { totalOps } from './osd-counters.js';
import type { Ceiling, Measure, Pass, Results, ScenarioRecord } from './results.js';

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

const MiB = 2 ** 20;

/** The three tools' measures of a scenario, in column order. */
const toolsOf = (s: ScenarioRecord | undefined): Array<Measure | undefined> => [s?.ours, s?.rbd, s?.rbd64];

const opsCell = (s: ScenarioRecord | undefined): string =>
  (s ? toolsOf(s).map((m) => (m?.osdOps ? String(totalOps(m.osdOps)) : '-')).join(' / ') : '');

/** One row per scenario, and per pass: times of ours, rbd, rbd@64, the ratios, the OSD operations. */
function sideBySide(results: Results): string {
  const passes = results.passes;
  const header = ['scenario'];
  for (const p of passes) {
    header.push(`~${p.latency}ms ours s`, 'rbd s', 'rbd@64 s', 'x rbd', 'x @64', 'OSD ops ours / rbd / @64');
  }
  const rows: string[][] = [header];
  const ids: Array<{ id: string; title: string }> = [];
  for (const p of passes) for (const s of p.scenarios) if (!ids.some((x) => x.id === s.id)) ids.push({ id: s.id, title: s.title });
  for (const { id, title } of ids) {
    const row = [title];
    for (const p of passes) {
      const s = p.scenarios.find((x) => x.id === id);
      row.push(seconds(s?.ours), seconds(s?.rbd), seconds(s?.rbd64), n(s?.ratio, 2), n(s?.ratio64, 2), opsCell(s));
    }
    rows.push(row);
  }
  return table(rows, (column) => column > 0);
}

/** The instant and in-place restores: what their times hold, and their ratios (no bar judges them). */
function backupRestoreLines(p: Pass): string[] {
  const find = (id: string): ScenarioRecord | undefined => p.scenarios.find((s) => s.id === id);
  const at = (value: unknown): string => (typeof value === 'number' ? `${n(value)} ms` : '-');
  const x = (ratio: number | undefined): string => `${n(ratio, 2)}x`;
  const lines: string[] = [];
  const read = find('restore-instant-read');
  if (read) {
    const steps = read.rbd?.stepsMs ?? {};
    lines.push(`  instant restore, to first 4 KiB read: ours ${at(read.ours.elapsedMs)} (the call returned at ` +
      `${at(read.ours.stats?.['returnedMs'])}); rbd ${at(read.rbd?.elapsedMs)} (snap protect returned at ` +
      `${at(steps['protected'])}, clone at ${at(steps['cloned'])}, the read by rbd bench at ${at(steps['read'])}): ${x(read.ratio)}`);
  }
  const flat = find('restore-instant-flat');
  if (flat) {
    const flattened = (m: Measure | undefined): string => `${seconds(m)} s (cloned at ${at(m?.stepsMs?.['cloned'])})`;
    lines.push(`  instant restore, until flattened: ours ${seconds(flat.ours)} s (returned at ${at(flat.ours.stats?.['returnedMs'])}, ` +
      `first read at ${at(flat.ours.stats?.['firstReadMs'])}); rbd ${flattened(flat.rbd)}: ${x(flat.ratio)}; ` +
      `rbd@64 ${flattened(flat.rbd64)}: ${x(flat.ratio64)}`);
  }
  const inPlace = find('restore-in-place');
  const full = find('restore-full-into-source');
  if (inPlace?.ofFullCopy && full) {
    const mib = (m: Measure): string => `${n(Number(m.stats?.['bytesRead']) / MiB, 1)} MiB`;
    lines.push(`  in-place restore after 1% changed: ours ${seconds(inPlace.ours)} s, ${mib(inPlace.ours)} read from the backup; ` +
      `by full copy ${seconds(full.ours)} s, ${mib(full.ours)} read: in place took ${n(100 * inPlace.ofFullCopy.time, 1)}% of ` +
      `the time (${x(1 / inPlace.ofFullCopy.time)}) and read ${n(100 * inPlace.ofFullCopy.bytesRead, 1)}% of the bytes`);
    lines.push(`  rbd snap rollback of the volume to that snapshot of its own (reads no backup; one rollback operation per ` +
      `object, done in the OSD): ${seconds(inPlace.rbd)} s, ours in place ${x(inPlace.ratio)} its speed; at 64 ops ` +
      `${seconds(inPlace.rbd64)} s, ${x(inPlace.ratio64)}`);
  }
  return lines.length === 0 ? [] : ['', 'instant and in-place restores (no bar is about them: the figures and their ratios; ' +
    'times from the call\'s or the command line\'s start, median runs):', ...lines];
}

const ceilingSpeed = (c: Ceiling | undefined): number | undefined => (c ? c.reportedMiBPerS ?? c.wallMiBPerS : undefined);

/** The deep verify against the pipe and the pass's read figures, and what digests cost the transfers. */
function digestLines(p: Pass): string[] {
  const lines: string[] = [];
  const verify = p.scenarios.find((s) => s.id === 'verify-deep');
  if (verify) {
    const read = ceilingSpeed(p.readCeiling);
    const exportDiff = p.scenarios.find((s) => s.id === 'export-null')?.rbd;
    const outMiB = (m: Measure | undefined): string => n(m?.osdOps ? m.osdOps.outBytes / MiB : undefined, 1);
    const ops = (m: Measure | undefined): string => (m?.osdOps ? String(totalOps(m.osdOps)) : '-');
    lines.push(`  deep verify of a backup (BackupEngine.verify, mode deep): ours ${seconds(verify.ours)} s, ` +
      `${n(verify.ours.mibPerS)} MiB/s, ${n(Number(verify.ours.stats?.['bytesRead']) / MiB, 1)} MiB read (OSD: ` +
      `${outMiB(verify.ours)} MiB out, ${ops(verify.ours)} ops); rbd export | md5sum ${seconds(verify.rbd)} s, ` +
      `${n(verify.rbd?.mibPerS)} MiB/s (OSD: ${outMiB(verify.rbd)} MiB out, ${ops(verify.rbd)} ops): ${n(verify.ratio, 2)}x`);
    const hash = p.scenarios.find((s) => s.id === 'verify-hash');
    if (hash) {
      lines.push(`  hashImage of the same snapshot alone (the verify without its inventory, digests and comparison): ` +
        `${seconds(hash.ours)} s, ${n(hash.ours.mibPerS)} MiB/s (OSD: ${ops(hash.ours)} ops); the verify around it ` +
        `${n(verify.ours.elapsedMs - hash.ours.elapsedMs)} ms more (median runs)`);
    }
    lines.push(`  the pass's read figures: read ceiling (rbd bench --io-type read, 4 MiB, 16 threads, best of ` +
      `${(p.readCeilingRuns ?? []).map((c) => n(ceilingSpeed(c))).join(', ')}) ${n(read)} MiB/s: the deep verify ran at ` +
      `${n(read === undefined ? undefined : (100 * verify.ours.mibPerS) / read, 1)}% of it` +
      (hash && read !== undefined ? `, hashImage alone at ${n((100 * hash.ours.mibPerS) / read, 1)}%` : '') +
      (exportDiff ? `; rbd export-diff > /dev/null (the stream export row) ${n(exportDiff.mibPerS)} MiB/s` : ''));
  }
  const costs = p.scenarios.filter((s) => s.digestCost);
  if (costs.length > 0) {
    lines.push('  what digests cost ours (with ÷ without; the row without digests is the one above it):');
    for (const s of costs) {
      const plain = p.scenarios.find((x) => x.id === s.digestCost!.of);
      const c = s.digestCost!;
      const mib = (m: Measure | undefined): string => n(m ? Number(m.stats?.['bytesRead']) / MiB : undefined, 1);
      const lib = (m: Measure | undefined): string => n(m ? Number(m.stats?.['ops']) : undefined);
      const osd = (m: Measure | undefined): string => (m?.osdOps ? String(totalOps(m.osdOps)) : '-');
      lines.push(`    ${plain?.title ?? c.of}: ${seconds(plain?.ours)} -> ${seconds(s.ours)} s (${n(c.time, 2)}x the time), ` +
        `read ${mib(plain?.ours)} -> ${mib(s.ours)} MiB (${n(c.bytesRead, 2)}x), lib ops ${lib(plain?.ours)} -> ` +
        `${lib(s.ours)} (${n(c.libOps, 2)}x), OSD ops ${osd(plain?.ours)} -> ${osd(s.ours)} (${n(c.osdOps, 2)}x); ` +
        `with digests ${n(s.ratio, 2)}x the pipe, ${n(s.ratio64, 2)}x at 64 ops`);
    }
  }
  return lines.length === 0 ? [] : ['', 'verified backups (deep verify; the rows with digests):', ...lines];
}

function latencyLine(p: Pass): string {
  const d = p.delivered;
  if (!d) return `~${p.latency} ms pass: delivered latency not measured`;
  return `~${p.latency} ms pass (ms_inject_delay_max ${p.injectDelayMaxS} s): rados bench 4 KiB, avg latency ` +
    `write qd1 ${n(d.writeQd1Ms, 2)} ms, read qd1 ${n(d.readQd1Ms, 2)} ms, write qd16 ${n(d.writeQd16Ms, 2)} ms, ` +
    `read qd16 ${n(d.readQd16Ms, 2)} ms`;
}

/** Per run: the OSD's client operations and bytes, and for ours the library's own counts. */
function opsTable(p: Pass): string {
  const rows: string[][] = [['scenario', 'tool', 'op_r', 'op_w', 'op_rw', 'in MiB', 'out MiB', 'lib ops', 'objectReads',
    'lib read MiB', 'lib written MiB']];
  const stat = (m: Measure, key: string): number | undefined => {
    const value = m.stats?.[key];
    return typeof value === 'number' ? value : undefined;
  };
  for (const s of p.scenarios) {
    for (const [i, m] of toolsOf(s).entries()) {
      if (!m) continue;
      const o = m.osdOps;
      rows.push([i === 0 ? s.title : '', i === 2 ? 'rbd@64' : m.tool, n(o?.opR), n(o?.opW), n(o?.opRw), n(o ? o.inBytes / MiB : undefined, 1),
        n(o ? o.outBytes / MiB : undefined, 1), n(stat(m, 'ops')), n(stat(m, 'objectReads')),
        n(stat(m, 'bytesRead') === undefined ? undefined : stat(m, 'bytesRead')! / MiB, 1),
        n(stat(m, 'bytesWritten') === undefined ? undefined : stat(m, 'bytesWritten')! / MiB, 1)]);
    }
  }
  return table(rows, (column) => column > 1);
}

export function printReport(results: Results): void {
  const out: string[] = [];
  const size = results.config['sizeMiB'];
  out.push('', `ceph-rbd-backup benchmark, ${results.date}: ${String(size)} MiB volume, 4 MiB objects`,
    `machine: ${String(results.machine['nproc'])} cores, ${String(results.machine['totalMemoryMiB'])} MiB RAM, ` +
    `node ${String(results.machine['node'])}, ${String(results.machine['ceph'])}`,
    'ours: the library call in a child process after connecting; rbd: the whole command from spawn to exit (the',
    'pipe for transfers, at its default rbd_concurrent_management_ops 10 and at 64). x = ours MiB/s ÷ theirs.',
    'OSD ops: client operations the OSD counted (op_r + op_w + op_rw) from the process\'s start to its exit.', '');
  for (const p of results.passes) out.push(latencyLine(p));
  out.push('', sideBySide(results),
    '(times: the median run; every run is listed per pass below)');
  const trips = results.roundTrips;
  if (trips) {
    out.push('', `serial round trips of the unchanged incremental ((elapsed at ~4 − at ~0) ÷ ${n(trips.addedQd1Ms, 2)} ms, ` +
      'the qd1 latency the ~4 ms pass added):');
    for (const t of trips.tools) {
      out.push(`  ${t.tool}: ${n(t.elapsedMs0)} ms at ~0, ${n(t.elapsedMs4)} ms at ~4 -> ${n(t.trips, 1)} round trips`);
    }
  }
  for (const p of results.passes) printPass(p, out);
  if (results.bars.length > 0) {
    out.push('', 'bars (DESIGN section 7, and the verified backups\' deep verify at the read speed):');
    for (const bar of results.bars) {
      const verdict = bar.pass === undefined ? 'n/a ' : bar.pass ? 'PASS' : 'FAIL';
      out.push(`  ${verdict}  ~${bar.latency} ms: ${bar.text}${bar.informational ? ' [info]' : ''}: ` +
        `${bar.shortfall ? `${bar.shortfall}; ` : ''}${bar.detail}`);
    }
  }
  if (results.error) out.push('', `RUN FAILED: ${results.error}`);
  out.push('');
  process.stdout.write(out.join('\n'));
}

function printPass(p: Pass, out: string[]): void {
  out.push('', `==== ~${p.latency} ms per operation${p.durationMs ? ` (pass took ${n(p.durationMs / 60_000, 1)} min)` : ''} ====`);
  const rows: string[][] = [[
    'scenario', 'runs', 'ours MiB/s', 'rbd MiB/s', 'rbd@64 MiB/s', 'of full (ours/rbd/@64)',
    'ours peak RSS MiB', 'ours ELD p99 ms', '(control)',
  ]];
  for (const s of p.scenarios) {
    const worst = worstEventLoopRun(s);
    rows.push([
      s.title, String(s.oursRuns.length), n(s.ours.mibPerS), n(s.rbd?.mibPerS), n(s.rbd64?.mibPerS),
      s.fractionOfFull
        ? `${n(100 * s.fractionOfFull.ours, 1)}% / ${n(100 * s.fractionOfFull.rbd, 1)}% / ${n(100 * (s.fractionOfFull.rbd64 ?? NaN), 1)}%`
        : '',
      n(Math.max(...s.oursRuns.map((m) => m.rssPeakMiB ?? NaN))), n(worst?.eventLoop?.p99Ms, 1),
      n(worst?.controlEventLoop?.p99Ms, 1),
    ]);
  }
  out.push(table(rows, (column) => column > 0));
  out.push('(MiB/s: the median run; peak RSS: the highest of the runs; ELD p99: the worst run, and in',
    'brackets what an idle process (the benchmark itself) saw meanwhile — the machine\'s own scheduling delay)');
  const repeated = p.scenarios.filter((s) => s.oursRuns.length > 1 || (s.rbdRuns?.length ?? 0) > 1);
  if (repeated.length > 0) {
    out.push('', 'all runs, elapsed s:');
    for (const s of repeated) {
      out.push(`  ${s.title}: ours ${runList(s.oursRuns)}${s.rbdRuns ? `; rbd ${runList(s.rbdRuns)}` : ''}` +
        `${s.rbd64Runs ? `; rbd@64 ${runList(s.rbd64Runs)}` : ''}`);
    }
  }
  out.push('', 'operations and bytes per run (OSD perf counters; lib = the library\'s own stats):', opsTable(p));

  const ceiling = p.ceiling;
  if (ceiling) {
    const all = (p.ceilingRuns ?? []).map((c) => n(c.reportedMiBPerS)).join(', ');
    out.push('', `write ceiling: ${n(ceiling.reportedMiBPerS)} MiB/s (best of ${all}) as reported by \`${ceiling.command}\` ` +
      `(${n(ceiling.wallMiBPerS)} MiB/s by wall clock, ${n(ceiling.elapsedMs / 1000, 2)} s; ` +
      `OSD CPU ${n(ceiling.osdCpuMs / 1000, 2)} s, rbd CPU ${n(ceiling.clientCpuMs / 1000, 2)} s)`);
  }
  const read = p.readCeiling;
  if (read) {
    out.push(`read ceiling: ${n(read.reportedMiBPerS)} MiB/s (best of ${(p.readCeilingRuns ?? []).map((c) => n(c.reportedMiBPerS)).join(', ')}) ` +
      `as reported by \`${read.command}\` (${n(read.wallMiBPerS)} MiB/s by wall clock, ${n(read.elapsedMs / 1000, 2)} s; ` +
      `OSD CPU ${n(read.osdCpuMs / 1000, 2)} s, rbd CPU ${n(read.clientCpuMs / 1000, 2)} s)`);
  }
  for (const s of p.scenarios) {
    if (s.change) {
      out.push(`${s.title}: ${s.change.pattern}; ${n(s.change.bytesChanged / 2 ** 20, 1)} MiB distinct bytes changed ` +
        `in ${s.change.objectsTouched} of ${s.change.objects} objects`);
    }
  }
  out.push(...digestLines(p));
  out.push(...backupRestoreLines(p));
  for (const s of p.scenarios) {
    const native = s.ours.stats?.['elapsedMs'];
    if (!s.fractionOfFull || typeof native !== 'number') continue;
    out.push(`${s.title}: ours took ${n(s.ours.elapsedMs)} ms, of which the native diff-and-copy loop ${n(native)} ms ` +
      `(${n(Number(s.ours.stats?.['bytesWritten'] ?? 0) / 2 ** 20, 1)} MiB written); the rest is the calls around it ` +
      `(snapshot checks, opening the source snapshot, resize check, creating the end snapshot)`);
  }

  const cpu: string[][] = [[
    'scenario', 'tool', 'elapsed s', 'client CPU s', 'OSD CPU s', 'machine used by this', 'others CPU s', 'load 1m',
  ]];
  for (const s of p.scenarios) {
    cpu.push(cpuRow(s.title, s.ours));
    if (s.rbd) cpu.push(cpuRow('', s.rbd));
    if (s.rbd64) cpu.push([...cpuRow('', s.rbd64).slice(0, 1), 'rbd@64', ...cpuRow('', s.rbd64).slice(2)]);
  }
  const perGiB: string[] = [];
  for (const s of p.scenarios) {
    if (!s.id.startsWith('full') && s.id !== 'copy' && s.id !== 'export-null' && !s.id.startsWith('verify')) continue;
    const gib = s.volumeBytes / 2 ** 30;
    const of = (m: Measure): string => `client ${n(m.clientCpuMs / 1000 / gib, 2)} + OSD ${n(m.osdCpuMs / 1000 / gib, 2)}`;
    perGiB.push(`  ${s.title}: ours ${of(s.ours)}${s.rbd ? `; rbd ${of(s.rbd)}` : ''} CPU s per GiB`);
  }
  out.push('', 'where the time went (client = our child process or the rbd processes; OSD = both clusters\' OSDs;',
    '"machine used by this" = (client + OSD + mon CPU) / (elapsed × cores); others = the rest of the machine\'s busy CPU):',
    table(cpu, (column) => column > 1), '', 'CPU per GiB moved (median runs):', ...perGiB);
  const threads: string[] = [];
  for (const s of p.scenarios) {
    const byThread = s.ours.threadsCpuMs;
    if (!byThread || s.ours.clientCpuMs < 200) continue;
    const top = Object.entries(byThread).sort((x, y) => y[1] - x[1]).slice(0, 6)
      .map(([name, ms]) => `${name} ${n(ms / 1000, 2)}`).join(', ');
    threads.push(`  ${s.title}: ${top} (CPU s)`);
  }
  if (threads.length > 0) out.push('', 'our client CPU by thread (median run):', ...threads);

}
