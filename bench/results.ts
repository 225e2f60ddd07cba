/** What a run records (written to the results JSON), and the bars of DESIGN section 7 it is judged by. */
import type { EventLoopDelay } from './protocol.js';

export interface Measure {
  tool: 'ours' | 'rbd';
  elapsedMs: number;
  /** Volume size / elapsed. */
  mibPerS: number;
  /** CPU of the client side: our child process, or the rbd processes. */
  clientCpuMs: number;
  osdCpuMs: number;
  monCpuMs: number;
  /** Machine CPU busy time not accounted for by the client, the OSDs and the mons: other people's work. */
  foreignCpuMs: number;
  machineCapacityMs: number;
  /** Time spent waiting for the OSDs to go quiet before starting. */
  settleMs: number;
  loadavg1: number;
  verified: string;
  rssPeakMiB?: number;
  rssBeforeMiB?: number;
  setupMs?: number;
  eventLoop?: EventLoopDelay;
  /**
   * The same histogram in the benchmark's own process, idle meanwhile: the
   * delay the machine's scheduler alone causes (a control for eventLoop).
   */
  controlEventLoop?: EventLoopDelay;
  progressCalls?: number;
  /** Our client CPU by thread name. */
  threadsCpuMs?: Record<string, number>;
  streamBytes?: number;
  stats?: Record<string, number | string | null>;
  command?: string;
}

export interface ScenarioRecord {
  id: string;
  title: string;
  detail: string;
  volumeBytes: number;
  /** The median runs (by elapsed time) of oursRuns and rbdRuns. */
  ours: Measure;
  rbd?: Measure;
  oursRuns: Measure[];
  rbdRuns?: Measure[];
  /** ours MiB/s ÷ rbd MiB/s */
  ratio?: number;
  /** elapsed ÷ the same tool's full transfer */
  fractionOfFull?: { ours: number; rbd: number };
  change?: ChangeInfo;
}

export interface ChangeInfo {
  fraction: number;
  pattern: string;
  seed: number;
  writes: number;
  bytesWritten: number;
  /** Distinct bytes touched (overlapping writes counted once). */
  bytesChanged: number;
  objectsTouched: number;
  objects: number;
  writeMs: number;
}

export interface Ceiling {
  command: string;
  /** What rbd bench itself printed as bytes/sec. */
  reportedMiBPerS: number | undefined;
  /** Volume size / wall time of the whole command. */
  wallMiBPerS: number;
  elapsedMs: number;
  osdCpuMs: number;
  clientCpuMs: number;
  output: string;
}

export interface Bar {
  id: string;
  text: string;
  value: number | undefined;
  threshold: number;
  unit: string;
  pass: boolean | undefined;
  detail: string;
  informational?: boolean;
}

export interface Results {
  ok: boolean;
  error?: string;
  date: string;
  finishedAt?: string;
  command: string[];
  machine: Record<string, unknown>;
  config: Record<string, unknown>;
  clusters: Record<string, unknown>;
  cliStartupMs?: number;
  /** The fastest (by reported MiB/s) of ceilingRuns. */
  ceiling?: Ceiling;
  /** The fill of rbd/src, then rbd bench on fresh scratch images of the same size. */
  ceilingRuns?: Ceiling[];
  rssCheckCeiling?: Ceiling;
  scenarios: ScenarioRecord[];
  bars: Bar[];
  osd: Record<string, unknown>;
  durationMs?: number;
}

/** The run of ours with the highest event-loop p99 in a scenario. */
export function worstEventLoopRun(scenario: ScenarioRecord): Measure | undefined {
  return scenario.oursRuns.filter((m) => m.eventLoop)
    .reduce<Measure | undefined>((w, m) => (!w || m.eventLoop!.p99Ms > w.eventLoop!.p99Ms ? m : w), undefined);
}

export function evaluateBars(results: Results): Bar[] {
  const find = (id: string): ScenarioRecord | undefined => results.scenarios.find((s) => s.id === id);
  const bars: Bar[] = [];
  const fmt = (n: number | undefined, digits = 2): string => (n === undefined ? '?' : n.toFixed(digits));
  const full = find('full');
  const fullRatio = full?.ratio;
  bars.push({
    id: 'full-vs-pipe', text: 'full transfer ≥ 2x `rbd export-diff | rbd import-diff`',
    value: fullRatio, threshold: 2, unit: 'x', pass: fullRatio === undefined ? undefined : fullRatio >= 2,
    detail: `${fmt(full?.ours.mibPerS, 0)} vs ${fmt(full?.rbd?.mibPerS, 0)} MiB/s = ${fmt(fullRatio)}x`,
  });
  const ceiling = results.ceiling?.reportedMiBPerS ?? results.ceiling?.wallMiBPerS;
  const ofCeiling = full && ceiling ? full.ours.mibPerS / ceiling : undefined;
  bars.push({
    id: 'full-vs-ceiling', text: 'full transfer ≥ 75% of the rbd bench write ceiling',
    value: ofCeiling, threshold: 0.75, unit: 'of ceiling', pass: ofCeiling === undefined ? undefined : ofCeiling >= 0.75,
    detail: `${fmt(full?.ours.mibPerS, 0)} of ${fmt(ceiling, 0)} MiB/s = ${fmt(ofCeiling === undefined ? undefined : ofCeiling * 100, 0)}%`,
  });
  const incr = find('incr-1pct');
  const fraction = incr?.fractionOfFull?.ours;
  bars.push({
    id: 'incremental-1pct', text: '1% changed costs ≤ 5% of a full transfer (time, ours)',
    value: fraction, threshold: 0.05, unit: 'of full', pass: fraction === undefined ? undefined : fraction <= 0.05,
    detail: `${fmt(incr ? incr.ours.elapsedMs / 1000 : undefined)} s of ${fmt(full ? full.ours.elapsedMs / 1000 : undefined)} s = ` +
      `${fmt(fraction === undefined ? undefined : fraction * 100, 1)}% (rbd: ${fmt(incr?.fractionOfFull ? incr.fractionOfFull.rbd * 100 : undefined, 1)}%)`,
  });
  const unchanged = find('unchanged');
  bars.push({
    id: 'unchanged', text: 'unchanged volume backs up in < 1 s',
    value: unchanged?.ours.elapsedMs, threshold: 1000, unit: 'ms',
    pass: unchanged === undefined ? undefined : unchanged.ours.elapsedMs < 1000,
    detail: `${fmt(unchanged?.ours.elapsedMs, 0)} ms (rbd pipe: ${fmt(unchanged?.rbd?.elapsedMs, 0)} ms)`,
  });
  const copy = find('copy');
  bars.push({
    id: 'copy-vs-cp', text: 'full copy ≥ rbd cp',
    value: copy?.ratio, threshold: 1, unit: 'x', pass: copy?.ratio === undefined ? undefined : copy.ratio >= 1,
    detail: `${fmt(copy?.ours.mibPerS, 0)} vs ${fmt(copy?.rbd?.mibPerS, 0)} MiB/s = ${fmt(copy?.ratio)}x`,
  });
  let worst: { scenario: ScenarioRecord; run: Measure } | undefined;
  for (const scenario of results.scenarios) {
    const run = worstEventLoopRun(scenario);
    if (run && (!worst || run.eventLoop!.p99Ms > worst.run.eventLoop!.p99Ms)) worst = { scenario, run };
  }
  const p99 = worst?.run.eventLoop?.p99Ms;
  const control = worst?.run.controlEventLoop?.p99Ms;
  bars.push({
    id: 'event-loop', text: 'event-loop delay p99 < 20 ms in every run of ours',
    value: p99, threshold: 20, unit: 'ms', pass: p99 === undefined ? undefined : p99 < 20,
    detail: `worst p99 ${fmt(p99, 1)} ms (${worst?.scenario.title ?? '?'}; each sample includes the 10 ms timer ` +
      `period); the idle control process saw p99 ${fmt(control, 1)} ms meanwhile`,
  });
  const check = find('rss-check');
  const peak = (s: ScenarioRecord | undefined): number | undefined =>
    (s ? Math.max(...s.oursRuns.map((m) => m.rssPeakMiB ?? 0)) : undefined);
  const growth = full && check ? peak(full)! / peak(check)! : undefined;
  bars.push({
    id: 'rss-bounded', text: 'peak RSS does not grow with volume size (full transfer, big ÷ small ≤ 1.25)',
    value: growth, threshold: 1.25, unit: 'x', pass: growth === undefined ? undefined : growth <= 1.25,
    detail: check
      ? `${fmt(peak(full), 0)} MiB at ${results.config['sizeMiB']} MiB vs ${fmt(peak(check), 0)} MiB at ` +
        `${results.config['rssCheckMiB']} MiB = ${fmt(growth)}x (proportional growth would be ` +
        `${fmt(Number(results.config['sizeMiB']) / Number(results.config['rssCheckMiB']), 1)}x)`
      : `not measured (add --rss-check); peak RSS per scenario: ` +
        results.scenarios.map((s) => `${s.id} ${fmt(peak(s), 0)}`).join(', ') + ' MiB',
  });
  const cross = find('full-cross');
  bars.push({
    id: 'full-cross-vs-pipe', text: 'cross-cluster full transfer ≥ 2x the pipe (same bar, second cluster)',
    value: cross?.ratio, threshold: 2, unit: 'x', pass: cross?.ratio === undefined ? undefined : cross.ratio >= 2,
    detail: `${fmt(cross?.ours.mibPerS, 0)} vs ${fmt(cross?.rbd?.mibPerS, 0)} MiB/s = ${fmt(cross?.ratio)}x`,
    informational: true,
  });
  return bars;
}
