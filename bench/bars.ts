/**
 * The bars of DESIGN section 7 that a run is judged by (most at ~4 ms per
 * operation, some at ~0), and the verified backups' bar for a deep verify.
 */
import type { Latency } from './options.js';
import type { Bar, Measure, Pass, Results, ScenarioRecord } from './results.js';

const fmt = (n: number | undefined, digits = 2): string => (n === undefined || Number.isNaN(n) ? '?' : n.toFixed(digits));

/** The run of ours with the highest event-loop p99 in a scenario. */
export function worstEventLoopRun(scenario: ScenarioRecord): Measure | undefined {
  return scenario.oursRuns.filter((m) => m.eventLoop)
    .reduce<Measure | undefined>((w, m) => (!w || m.eventLoop!.p99Ms > w.eventLoop!.p99Ms ? m : w), undefined);
}

/** A bar, judged: a missing value is n/a, a failed one says by how much. */
export function judge(bar: Omit<Bar, 'pass' | 'shortfall'>): Bar {
  const { value, threshold, direction, unit } = bar;
  if (value === undefined || Number.isNaN(value)) return { ...bar, pass: undefined };
  const pass = direction === 'min' ? value >= threshold : value <= threshold;
  const scale = unit === '%' ? 100 : 1;
  const show = (n: number): string => `${fmt(n * scale, unit === 'ms' ? 0 : unit === '%' ? 1 : 2)}${unit}`;
  return pass ? { ...bar, pass } : {
    ...bar, pass, shortfall: `needs ${direction === 'min' ? '≥' : '≤'} ${show(threshold)}, got ${show(value)}`,
  };
}

const ratio = (ours: Measure | undefined, rbd: Measure | undefined): number | undefined =>
  (ours && rbd ? ours.mibPerS / rbd.mibPerS : undefined);

function barsAt4(pass: Pass, results: Results): Bar[] {
  const latency: Latency = '4';
  const find = (id: string): ScenarioRecord | undefined => pass.scenarios.find((s) => s.id === id);
  const bars: Bar[] = [];
  const small = find('incr-1pct-4k');
  bars.push(judge({
    id: 'incr-4k-vs-pipe', latency, text: '1% as 4 KiB writes ≥ 10x the default pipe', value: small?.ratio,
    threshold: 10, direction: 'min', unit: 'x',
    detail: `${fmt(small ? small.ours.elapsedMs / 1000 : undefined)} s vs ${fmt(small?.rbd ? small.rbd.elapsedMs / 1000 : undefined)} s`,
  }));
  bars.push(judge({
    id: 'incr-4k-vs-pipe64', latency, text: '1% as 4 KiB writes ≥ 2x the pipe at 64 ops', value: small?.ratio64,
    threshold: 2, direction: 'min', unit: 'x',
    detail: `${fmt(small ? small.ours.elapsedMs / 1000 : undefined)} s vs ${fmt(small?.rbd64 ? small.rbd64.elapsedMs / 1000 : undefined)} s`,
  }));
  const full = find('full');
  const best = [full?.rbd, full?.rbd64].filter((m): m is Measure => m !== undefined)
    .reduce<Measure | undefined>((b, m) => (!b || m.mibPerS > b.mibPerS ? m : b), undefined);
  bars.push(judge({
    id: 'full-vs-best-pipe', latency, text: 'full transfer ≥ 1.2x the pipe\'s best setting', value: ratio(full?.ours, best),
    threshold: 1.2, direction: 'min', unit: 'x',
    detail: `${fmt(full?.ours.mibPerS, 0)} vs ${fmt(best?.mibPerS, 0)} MiB/s (${best?.command ?? '?'})`,
  }));
  const ceiling = pass.ceiling?.reportedMiBPerS ?? pass.ceiling?.wallMiBPerS;
  bars.push(judge({
    id: 'full-vs-ceiling', latency, text: 'full transfer ≥ 85% of the rbd bench write ceiling (same pass)',
    value: full && ceiling ? full.ours.mibPerS / ceiling : undefined, threshold: 0.85, direction: 'min', unit: '%',
    detail: `${fmt(full?.ours.mibPerS, 0)} of ${fmt(ceiling, 0)} MiB/s`,
  }));
  const ours = results.roundTrips?.tools.find((t) => t.tool === 'ours');
  const others = results.roundTrips?.tools.filter((t) => t.tool !== 'ours').map((t) => `${t.tool} ${fmt(t.trips, 1)}`).join(', ');
  bars.push(judge({
    id: 'unchanged-round-trips', latency, text: 'unchanged incremental ≤ 15 serial round trips', value: ours?.trips,
    threshold: 15, direction: 'max', unit: '',
    detail: ours
      ? `(${fmt(ours.elapsedMs4, 0)} − ${fmt(ours.elapsedMs0, 0)} ms) ÷ ${fmt(results.roundTrips!.addedQd1Ms)} ms = ` +
        `${fmt(ours.trips, 1)} (${others})`
      : 'needs both passes',
  }));
  const restore = find('restore-diff');
  bars.push(judge({
    id: 'restore-diff-vs-backup', latency, text: 'restore by diff at least as fast as our full transfer (backup)',
    value: ratio(restore?.ours, full?.ours), threshold: 1, direction: 'min', unit: 'x',
    detail: `${fmt(restore?.ours.mibPerS, 0)} vs ${fmt(full?.ours.mibPerS, 0)} MiB/s`,
  }));
  const copy = find('restore-copy');
  bars.push(judge({
    id: 'restore-copy-vs-cp', latency, text: 'restore by full copy at least as fast as rbd cp', value: copy?.ratio,
    threshold: 1, direction: 'min', unit: 'x',
    detail: `${fmt(copy?.ours.mibPerS, 0)} vs ${fmt(copy?.rbd?.mibPerS, 0)} MiB/s (rbd cp at 64 ops: ${fmt(copy?.rbd64?.mibPerS, 0)})`,
  }));
  return bars;
}

function barsAt0(pass: Pass): Bar[] {
  const latency: Latency = '0';
  const bars: Bar[] = [];
  const paired = pass.scenarios.filter((s) => s.ratio !== undefined && s.noBar !== true);
  const slowest = paired.reduce<ScenarioRecord | undefined>((w, s) => (!w || s.ratio! < w.ratio! ? s : w), undefined);
  bars.push(judge({
    id: 'nothing-slower', latency, text: 'nothing slower than the pipe (every scenario, ours ÷ rbd at its default)',
    value: slowest?.ratio, threshold: 1, direction: 'min', unit: 'x',
    detail: `lowest: ${slowest?.title ?? '?'}; ` + paired.map((s) => `${s.id} ${fmt(s.ratio)}`).join(', '),
  }));
  for (const id of ['incr-1pct', 'incr-1pct-4k']) {
    const incr = pass.scenarios.find((s) => s.id === id);
    bars.push(judge({
      id: `${id}-of-full`, latency, text: `${incr?.title ?? id} ≤ 5% of a full transfer (time, ours)`,
      value: incr?.fractionOfFull?.ours, threshold: 0.05, direction: 'max', unit: '%',
      detail: `rbd: ${fmt(incr?.fractionOfFull ? incr.fractionOfFull.rbd * 100 : undefined, 1)}%`,
      ...(id === 'incr-1pct-4k' ? { informational: true } : {}),
    }));
  }
  return bars;
}

/**
 * Bars every pass is judged by: peak RSS flat in size, the event loop never
 * stalled, the deep verify at the cluster's read speed and the pipe's (the
 * verified backups' bar, not section 7's), the cross-cluster ratio (info).
 */
function barsEvery(pass: Pass, results: Results): Bar[] {
  const latency = pass.latency;
  const find = (id: string): ScenarioRecord | undefined => pass.scenarios.find((s) => s.id === id);
  const bars: Bar[] = [];
  let worst: { scenario: ScenarioRecord; run: Measure } | undefined;
  for (const scenario of pass.scenarios) {
    const run = worstEventLoopRun(scenario);
    if (run && (!worst || run.eventLoop!.p99Ms > worst.run.eventLoop!.p99Ms)) worst = { scenario, run };
  }
  bars.push(judge({
    id: 'event-loop', latency, text: 'event-loop delay p99 < 20 ms in every run of ours', value: worst?.run.eventLoop?.p99Ms,
    threshold: 20, direction: 'max', unit: 'ms',
    detail: `worst: ${worst?.scenario.title ?? '?'} (each sample includes the 10 ms timer period); the idle control ` +
      `process saw p99 ${fmt(worst?.run.controlEventLoop?.p99Ms, 1)} ms meanwhile`,
  }));
  const full = find('full');
  const check = find('rss-check');
  const peak = (s: ScenarioRecord | undefined): number | undefined =>
    (s ? Math.max(...s.oursRuns.map((m) => m.rssPeakMiB ?? 0)) : undefined);
  bars.push(judge({
    id: 'rss-bounded', latency, text: 'peak RSS does not grow with volume size (full transfer, big ÷ small ≤ 1.25)',
    value: full && check ? peak(full)! / peak(check)! : undefined, threshold: 1.25, direction: 'max', unit: 'x',
    detail: check
      ? `${fmt(peak(full), 0)} MiB at ${String(results.config['sizeMiB'])} MiB vs ${fmt(peak(check), 0)} MiB at ` +
        `${String(results.config['rssCheckMiB'])} MiB`
      : 'not measured (add --rss-check); peak RSS per scenario: ' +
        pass.scenarios.map((s) => `${s.id} ${fmt(peak(s), 0)}`).join(', ') + ' MiB',
  }));
  // Verified backups: a deep verify reads at least at the cluster's read speed.
  const verify = find('verify-deep');
  const read = pass.readCeiling?.reportedMiBPerS ?? pass.readCeiling?.wallMiBPerS;
  bars.push(judge({
    id: 'verify-vs-read-ceiling', latency, text: 'deep verify ≥ the read ceiling (rbd bench --io-type read, same pass)',
    value: verify && read ? verify.ours.mibPerS / read : undefined, threshold: 1, direction: 'min', unit: '%',
    detail: verify ? `${fmt(verify.ours.mibPerS, 0)} of ${fmt(read, 0)} MiB/s` : 'not run (--only without verify)',
  }));
  bars.push(judge({
    id: 'verify-vs-export', latency, text: 'deep verify ≥ rbd export | md5sum of the same snapshot', value: verify?.ratio,
    threshold: 1, direction: 'min', unit: 'x',
    detail: verify ? `${fmt(verify.ours.mibPerS, 0)} vs ${fmt(verify.rbd?.mibPerS, 0)} MiB/s` : 'not run (--only without verify)',
  }));
  const cross = find('full-cross');
  bars.push(judge({
    id: 'full-cross-vs-pipe', latency, text: 'cross-cluster full transfer vs the pipe', value: cross?.ratio,
    threshold: 1, direction: 'min', unit: 'x', informational: true,
    detail: cross ? `${fmt(cross.ours.mibPerS, 0)} vs ${fmt(cross.rbd?.mibPerS, 0)} MiB/s` : 'not run (--skip-cross)',
  }));
  return bars;
}

export function evaluateBars(results: Results): Bar[] {
  return results.passes.flatMap((pass) => [
    ...(pass.latency === '4' ? barsAt4(pass, results) : barsAt0(pass)),
    ...barsEvery(pass, results),
  ]);
}
