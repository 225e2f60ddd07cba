/**
 * The benchmark's pure logic: parsing `ceph-cluster.sh latency`, the step
 * marks of an rbd command line and the command line's --only, the serial
 * round trips of the unchanged incremental, what digests cost a transfer,
 * and judging the bars (with the shortfall a failed bar prints). No
 * cluster needed; no time is measured.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { evaluateBars, judge } from '../../bench/bars.js';
import { digestCost, withDigests } from '../../bench/digest-cost.js';
import { parseLatency, roundTrips } from '../../bench/latency.js';
import { GROUPS, parseArgs, UsageError } from '../../bench/options.js';
import { stepMarks } from '../../bench/proc.js';
import type { DeliveredLatency, Measure, Pass, Results, ScenarioRecord } from '../../bench/results.js';

const LATENCY_OUTPUT = `write qd1  avg latency 4.12 ms, 0.9 MB/s
read  qd1  avg latency 3.88 ms, 1.0 MB/s
write qd16 avg latency 4.50 ms, 13.9 MB/s
read  qd16 avg latency 4.20 ms, 14.8 MB/s`;

function delivered(qd1Ms: number): DeliveredLatency {
  return {
    writeQd1Ms: qd1Ms, readQd1Ms: qd1Ms, writeQd16Ms: qd1Ms, readQd16Ms: qd1Ms,
    writeQd1MBs: 1, readQd1MBs: 1, writeQd16MBs: 1, readQd16MBs: 1, command: 'latency', output: '',
  };
}

function measure(tool: 'ours' | 'rbd', elapsedMs: number): Measure {
  return {
    tool, elapsedMs, mibPerS: 1024 / (elapsedMs / 1000), clientCpuMs: 0, osdCpuMs: 0, monCpuMs: 0, foreignCpuMs: 0,
    machineCapacityMs: 0, settleMs: 0, loadavg1: 0, verified: 'yes',
  };
}

function scenario(id: string, ours: number, rbd?: number, rbd64?: number): ScenarioRecord {
  const s: ScenarioRecord = { id, title: id, detail: '', volumeBytes: 1 << 30, ours: measure('ours', ours), oursRuns: [] };
  s.oursRuns = [s.ours];
  if (rbd !== undefined) { s.rbd = measure('rbd', rbd); s.ratio = rbd / ours; }
  if (rbd64 !== undefined) { s.rbd64 = measure('rbd', rbd64); s.ratio64 = rbd64 / ours; }
  return s;
}

function pass(latency: '0' | '4', qd1Ms: number, scenarios: ScenarioRecord[]): Pass {
  return { latency, injectDelayMaxS: latency === '4' ? 0.001 : 0, delivered: delivered(qd1Ms), clusters: {}, scenarios, osd: {} };
}

describe('parseLatency', () => {
  test('reads the four lines', () => {
    const parsed = parseLatency(LATENCY_OUTPUT);
    assert.equal(parsed.writeQd1Ms, 4.12);
    assert.equal(parsed.readQd1Ms, 3.88);
    assert.equal(parsed.readQd16MBs, 14.8);
  });

  test('refuses output without a line', () => {
    assert.throws(() => parseLatency(LATENCY_OUTPUT.split('\n').slice(1).join('\n')), /write1/);
  });
});

describe('stepMarks', () => {
  test('times each marked step from the start mark, whatever the decimal point', () => {
    const stderr = 'mark start 1700000000.250000\nrbd: some warning\nmark cloned 1700000000,300500\nmark read 1700000000.400000\n0m0.1s 0m0.2s\n';
    const steps = stepMarks(stderr)!;
    assert.deepEqual(Object.keys(steps), ['cloned', 'read']);
    assert.ok(Math.abs(steps['cloned']! - 50.5) < 1e-3);
    assert.ok(Math.abs(steps['read']! - 150) < 1e-3);
  });

  test('none without a start mark', () => {
    assert.equal(stepMarks('mark cloned 1700000000.300000\n'), undefined);
  });
});

describe('roundTrips', () => {
  test('divides what the slow pass added by what it added to one qd1 round trip', () => {
    const trips = roundTrips([
      pass('0', 0.5, [scenario('unchanged', 100, 300)]),
      pass('4', 4.5, [scenario('unchanged', 140, 500)]),
    ]);
    assert.equal(trips?.addedQd1Ms, 4);
    assert.deepEqual(trips?.tools.map((t) => [t.tool, t.trips]), [['ours', 10], ['rbd pipe', 50]]);
  });

  test('needs both passes', () => {
    assert.equal(roundTrips([pass('4', 4, [scenario('unchanged', 100)])]), undefined);
  });
});

describe('bars', () => {
  test('a failed bar says by how much', () => {
    const bar = judge({ id: 'x', latency: '4', text: 'x', value: 4.2, threshold: 10, direction: 'min', unit: 'x', detail: '' });
    assert.equal(bar.pass, false);
    assert.equal(bar.shortfall, 'needs ≥ 10.00x, got 4.20x');
    const max = judge({ id: 'y', latency: '0', text: 'y', value: 0.07, threshold: 0.05, direction: 'max', unit: '%', detail: '' });
    assert.equal(max.shortfall, 'needs ≤ 5.0%, got 7.0%');
    assert.equal(judge({ ...bar, value: undefined }).pass, undefined);
  });

  test('judges the ~4 ms bars in the ~4 ms pass and the ~0 ones in the ~0 pass', () => {
    const results: Results = {
      ok: true, date: '', command: [], machine: {}, config: {}, bars: [],
      passes: [
        pass('0', 0.5, [scenario('full', 1000, 2000), scenario('incr-1pct', 40, 100), scenario('incr-1pct-4k', 60, 300)]),
        pass('4', 4.5, [
          scenario('full', 1000, 1300, 1250), scenario('incr-1pct-4k', 100, 1200, 150),
          scenario('restore-diff', 900, 1000), scenario('restore-copy', 1100, 1000), scenario('unchanged', 140, 500),
        ]),
      ],
    };
    results.passes[0]!.scenarios.push(scenario('unchanged', 100, 300));
    for (const s of results.passes[0]!.scenarios) s.fractionOfFull = { ours: s.ours.elapsedMs / 1000, rbd: s.rbd!.elapsedMs / 2000 };
    results.roundTrips = roundTrips(results.passes);
    const bars = new Map(evaluateBars(results).map((b) => [`${b.latency}:${b.id}`, b]));
    assert.equal(bars.get('4:incr-4k-vs-pipe')?.pass, true);
    assert.equal(bars.get('4:incr-4k-vs-pipe64')?.pass, false);
    assert.equal(bars.get('4:incr-4k-vs-pipe64')?.shortfall, 'needs ≥ 2.00x, got 1.50x');
    assert.equal(bars.get('4:full-vs-best-pipe')?.pass, true); // 1.25x the faster rbd@64
    assert.equal(bars.get('4:unchanged-round-trips')?.pass, true); // (140 − 100) ÷ 4 = 10
    assert.equal(bars.get('4:restore-diff-vs-backup')?.pass, true);
    assert.equal(bars.get('4:restore-copy-vs-cp')?.pass, false);
    assert.equal(bars.get('4:full-vs-ceiling')?.pass, undefined); // no ceiling measured
    assert.equal(bars.get('0:nothing-slower')?.pass, true);
    assert.equal(bars.get('0:incr-1pct-of-full')?.pass, true);
    assert.equal(bars.get('0:incr-1pct-4k-of-full')?.pass, false);
    assert.equal(bars.has('0:incr-4k-vs-pipe'), false);
  });

  test('a row no bar is about (an instant or in-place restore) is shown, never judged', () => {
    const rollbackFaster = { ...scenario('restore-in-place', 300, 100), noBar: true };
    const results: Results = {
      ok: true, date: '', command: [], machine: {}, config: {}, bars: [],
      passes: [pass('0', 0.5, [scenario('full', 1000, 2000), rollbackFaster])],
    };
    const nothingSlower = evaluateBars(results).find((b) => b.id === 'nothing-slower');
    assert.equal(nothingSlower?.pass, true);
    assert.doesNotMatch(nothingSlower?.detail ?? '', /restore-in-place/);
  });
});

describe('--only', () => {
  test('all groups by default, with cluster B', () => {
    const config = parseArgs([]);
    assert.deepEqual(config.groups, [...GROUPS]);
    assert.equal(config.skipCross, false);
  });

  test('selects groups in their order; without cross, no cluster B', () => {
    const config = parseArgs(['--only', 'restores,transfers,export']);
    assert.deepEqual(config.groups, ['export', 'transfers', 'restores']);
    assert.equal(config.skipCross, true);
    assert.equal(parseArgs(['--only=cross']).skipCross, false);
  });

  test('refuses an unknown or empty selection', () => {
    assert.throws(() => parseArgs(['--only', 'transfers,restore']), (error: unknown) =>
      error instanceof UsageError && /unknown group restore\b/.test(error.message));
    assert.throws(() => parseArgs(['--only', '']), UsageError);
  });
});

describe('digests', () => {
  const run = (elapsedMs: number, bytesRead: number, ops: number, osd: number): Measure => ({
    ...measure('ours', elapsedMs), stats: { bytesRead, ops }, osdOps: { opR: osd, opW: 0, opRw: 0, inBytes: 0, outBytes: 0 },
  });

  test('the cost is with ÷ without: time, bytes read, the library\'s and the OSD\'s operations', () => {
    const cost = digestCost(run(500, 10 << 20, 3000, 3200), run(600, 40 << 20, 3100, 3300), 'incr-1pct-4k');
    assert.equal(cost.of, 'incr-1pct-4k');
    assert.equal(cost.time, 1.2);
    assert.equal(cost.bytesRead, 4);
    assert.ok(Math.abs(cost.libOps - 3100 / 3000) < 1e-12);
    assert.ok(Math.abs(cost.osdOps - 3300 / 3200) < 1e-12);
  });

  test('what neither did has no ratio (an unchanged incremental reads nothing)', () => {
    const cost = digestCost(run(100, 0, 0, 20), run(110, 0, 0, 20), 'unchanged');
    assert.ok(Number.isNaN(cost.bytesRead));
    assert.ok(Number.isNaN(cost.libOps));
    assert.equal(cost.osdOps, 1);
  });

  test('a row with digests shares the pipe\'s runs with the row without, and no bar judges it', () => {
    const plain = scenario('incr-1pct-4k', 500, 2000, 1000);
    plain.ours = run(500, 10 << 20, 3000, 3200);
    const digests = run(1000, 40 << 20, 3000, 3200);
    const row = withDigests(plain, digests, [digests], 'with digests', '');
    assert.equal(row.id, 'incr-1pct-4k-digests');
    assert.equal(row.rbd, plain.rbd);
    assert.equal(row.rbd64, plain.rbd64);
    assert.equal(row.noBar, true);
    assert.equal(row.digestCost?.time, 2);
    const results: Results = {
      ok: true, date: '', command: [], machine: {}, config: {}, bars: [],
      passes: [pass('0', 0.5, [scenario('full', 1000, 2000), { ...row, ratio: 0.5 }])],
    };
    assert.equal(evaluateBars(results).find((b) => b.id === 'nothing-slower')?.pass, true);
  });
});

describe('the deep verify\'s bars', () => {
  const ceiling = (mibPerS: number) => ({
    command: 'rbd bench --io-type read', reportedMiBPerS: mibPerS, wallMiBPerS: mibPerS, elapsedMs: 0, osdCpuMs: 0,
    clientCpuMs: 0, output: '',
  });
  const judged = (p: Pass): Map<string, ReturnType<typeof judge>> => new Map(evaluateBars({
    ok: true, date: '', command: [], machine: {}, config: {}, bars: [], passes: [p],
  }).map((b) => [b.id, b]));

  test('judged in every pass against the read ceiling and the export pipe', () => {
    // 1024 MiB in 2 s: 512 MiB/s; the pipe 2.5 s.
    const verify = { ...scenario('verify-deep', 2000, 2500), noBar: true };
    for (const latency of ['0', '4'] as const) {
      const bars = judged({ ...pass(latency, 1, [verify]), readCeiling: ceiling(600) });
      assert.equal(bars.get('verify-vs-read-ceiling')?.pass, false);
      assert.equal(bars.get('verify-vs-read-ceiling')?.shortfall, 'needs ≥ 100.0%, got 85.3%');
      assert.equal(bars.get('verify-vs-export')?.pass, true);
    }
    assert.equal(judged({ ...pass('4', 1, [verify]), readCeiling: ceiling(500) }).get('verify-vs-read-ceiling')?.pass, true);
  });

  test('n/a when it did not run', () => {
    const bars = judged(pass('0', 1, [scenario('full', 1000, 2000)]));
    assert.equal(bars.get('verify-vs-read-ceiling')?.pass, undefined);
    assert.equal(bars.get('verify-vs-export')?.pass, undefined);
  });
});
