/** What one run of a fault scenario came to, and the suite's table of them. */
import { table } from '../lib/dev/table.js';

/**
 * How the operation under test ended: completed, rejected with a CephError,
 * rejected with anything else, settled later than 1.5x its time budget (or
 * never), or its process died.
 */
export type Settled = 'completed' | 'typed' | 'untyped' | 'hang' | 'crash';

export interface RunOutcome {
  /** The operation, for the details: 'backup', 'restore', 'import record', ... */
  operation: string;
  settled: Settled;
  /** Its bytes differ from `rbd export` of the exact source snapshot (or a refused input changed a target). */
  corrupt: boolean;
  /**
   * What it left that the next operation and gc did not clean up, and a
   * retry that did not succeed: each a sentence.
   */
  debris: string[];
  /** From the call to its settling. */
  settleMs: number | undefined;
  budgetMs: number | undefined;
  /** The error (class and message), or what was checked, for the log. */
  detail: string;
  /** The seed of the worker run it came from: FAULT_SEED=<seed> with --only <scenario> replays it. */
  seed: number;
}

export interface ScenarioReport {
  scenario: string;
  outcomes: RunOutcome[];
  /**
   * Runs the suite stopped without a verdict because a daemon of their
   * cluster died (a Ceph crash, not a product outcome), each run again on a
   * fresh cluster: a test-infrastructure loss, in no other column.
   */
  lost: number;
  /** Runs never run: too many of their clusters were lost (see the suite's losses). */
  notRun: number;
}

/** Whether a run breaks the bar (DESIGN section 7): the suite exits non-zero for these. */
export function failed(outcome: RunOutcome): boolean {
  return outcome.corrupt || outcome.settled === 'hang' || outcome.settled === 'untyped' || outcome.settled === 'crash';
}

/** The slowest settling, as a multiple of its budget. */
function slowest(outcomes: readonly RunOutcome[]): string {
  const ratios = outcomes.filter((o) => o.settleMs !== undefined && o.budgetMs !== undefined)
    .map((o) => o.settleMs! / o.budgetMs!);
  return ratios.length === 0 ? '-' : `${Math.max(...ratios).toFixed(2)}x`;
}

export function renderTable(reports: readonly ScenarioReport[]): string {
  const rows = [['scenario', 'runs', 'correct', 'typed errors', 'hangs', 'corruptions', 'debris',
    'untyped errors', 'crashes', 'slowest/budget', 'infra: lost', 'not run']];
  const count = (outcomes: readonly RunOutcome[], test: (o: RunOutcome) => boolean): string =>
    String(outcomes.filter(test).length);
  for (const { scenario, outcomes, lost, notRun } of reports) {
    rows.push([
      scenario, String(outcomes.length),
      count(outcomes, (o) => o.settled === 'completed' && !o.corrupt && o.debris.length === 0),
      count(outcomes, (o) => o.settled === 'typed'),
      count(outcomes, (o) => o.settled === 'hang'),
      count(outcomes, (o) => o.corrupt),
      count(outcomes, (o) => o.debris.length > 0),
      count(outcomes, (o) => o.settled === 'untyped'),
      count(outcomes, (o) => o.settled === 'crash'),
      slowest(outcomes),
      String(lost), String(notRun),
    ]);
  }
  return table(rows, (column) => column > 0);
}

/** The runs worth reading about: every failure and every run that left debris. */
export function notable(reports: readonly ScenarioReport[]): string[] {
  const lines: string[] = [];
  for (const { scenario, outcomes } of reports) {
    for (const o of outcomes.filter((x) => failed(x) || x.debris.length > 0)) {
      const time = o.settleMs === undefined ? '' : ` after ${(o.settleMs / 1000).toFixed(1)} s` +
        (o.budgetMs === undefined ? '' : ` (budget ${(o.budgetMs / 1000).toFixed(0)} s)`);
      lines.push(`${scenario} (seed ${o.seed}) ${o.operation}: ${o.settled}${o.corrupt ? ', CORRUPT' : ''}${time}: ${o.detail}` +
        (o.debris.length > 0 ? `; debris: ${o.debris.join('; ')}` : ''));
    }
  }
  return lines;
}
