/**
 * The fault suite's command: `npm run faults` (node dist/faults/run.js).
 * Starts its own clusters, runs seeded, bounded fault scenarios against the
 * BackupEngine, prints a table per scenario and exits non-zero on any hang,
 * corruption, crash or untyped error (--ci: also on debris), with 3 when
 * none failed but runs were not run because their clusters kept dying.
 *
 *   node dist/faults/run.js [--ci] [--runs N] [--fuzz N] [--only a,b] [--seed S]
 *     [--op-timeout-ms N] [--budget-ms N] [--size-mib N] [--restart-size-mib N]
 *     [--chain N] [--kill-window-ms N] [--work-dir DIR] [--port N] [--keep-logs DIR] [--client-logs DIR]
 *
 * --ci is the bounded subset scripts/test.sh runs: 2 runs per scenario (1
 * of the slow ones), 200 fuzz inputs each, 5 s op timeouts, small volumes,
 * a fixed seed. See README.md.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { failed, notable, renderTable } from './outcome.js';
import { SCENARIOS } from './scenarios.js';
import { describeLoss, runSuite, type SuiteOptions } from './suite.js';

const USAGE = 'usage: node dist/faults/run.js [--ci] [--runs N] [--fuzz N] [--only a,b] [--seed S] ' +
  '[--op-timeout-ms N] [--budget-ms N] [--size-mib N] [--restart-size-mib N] [--chain N] [--kill-window-ms N] ' +
  `[--work-dir DIR] [--port N] [--keep-logs DIR] [--client-logs DIR]\nscenarios: ${SCENARIOS.map((s) => s.name).join(', ')}\n`;

/** The exit code when no run failed but some were not run, their clusters lost (1 is a product failure, 2 a usage error). */
const EXIT_INCOMPLETE = 3;

/** The seed of the CI subset. */
const CI_SEED = 20261129;

/** A whole number from an option, or the default. */
function count(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a whole number, got ${value}`);
  return n;
}

/** The directory for the workers' client logs, made now, as an absolute path (the workers run elsewhere). */
function clientLogDir(dir: string): string {
  const absolute = resolve(dir);
  mkdirSync(absolute, { recursive: true });
  return absolute;
}

function options(argv: string[]): SuiteOptions & { ci: boolean } {
  const { values } = parseArgs({
    args: argv, strict: true,
    options: {
      ci: { type: 'boolean', default: false }, runs: { type: 'string' }, fuzz: { type: 'string' }, only: { type: 'string' },
      seed: { type: 'string' }, 'op-timeout-ms': { type: 'string' }, 'budget-ms': { type: 'string' },
      'size-mib': { type: 'string' }, 'restart-size-mib': { type: 'string' }, chain: { type: 'string' },
      'kill-window-ms': { type: 'string' }, 'work-dir': { type: 'string' }, port: { type: 'string' },
      'keep-logs': { type: 'string' }, 'client-logs': { type: 'string' },
    },
  });
  const ci = values.ci === true;
  const only = values.only?.split(',').filter(Boolean);
  for (const name of only ?? []) {
    if (!SCENARIOS.some((s) => s.name === name)) throw new Error(`no scenario ${name}`);
  }
  const opTimeoutMs = count(values['op-timeout-ms'], ci ? 5000 : 20_000, 'op-timeout-ms');
  return {
    ci,
    runs: count(values.runs, ci ? 2 : 6, 'runs'),
    slowRuns: count(values.runs, ci ? 1 : 6, 'runs'),
    fuzz: count(values.fuzz, ci ? 200 : 10_000, 'fuzz'),
    only,
    // CI replays one fixed, passing draw (a new failure there is a regression); a full run draws anew.
    seed: count(values.seed, ci ? CI_SEED : (Date.now() ^ (Math.random() * 0x7fffffff)) & 0x7fffffff, 'seed'),
    settings: {
      opTimeoutMs,
      // Three op timeouts: room for one to run out and the clean-up after it.
      budgetMs: count(values['budget-ms'], 3 * opTimeoutMs, 'budget-ms'),
      sizeMiB: count(values['size-mib'], ci ? 64 : 128, 'size-mib'),
      restartSizeMiB: count(values['restart-size-mib'], ci ? 128 : 512, 'restart-size-mib'),
      chain: count(values.chain, ci ? 3 : 4, 'chain'),
      killWindowMs: count(values['kill-window-ms'], ci ? 400 : 800, 'kill-window-ms'),
      ...(values['client-logs'] === undefined ? {} : { clientLogDir: clientLogDir(values['client-logs']) }),
    },
    workDir: values['work-dir'] ?? '',
    port: values.port === undefined ? undefined : count(values.port, 0, 'port'),
    keepLogs: values['keep-logs'],
    longRun: !ci,
    log: (line) => process.stderr.write(`[faults] ${line}\n`),
  };
}

async function main(): Promise<number> {
  let chosen: ReturnType<typeof options>;
  try {
    chosen = options(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const madeDir = chosen.workDir === '' ? mkdtempSync(join(tmpdir(), 'rbd-backup-faults-')) : undefined;
  const started = performance.now();
  chosen.log(`seed ${chosen.seed} (--seed ${chosen.seed} replays the runs); settings ${JSON.stringify(chosen.settings)}`);
  let result;
  try {
    result = await runSuite({ ...chosen, workDir: madeDir ?? chosen.workDir });
  } finally {
    if (madeDir) rmSync(madeDir, { recursive: true, force: true });
  }
  const { reports, losses } = result;
  const minutes = (performance.now() - started) / 60_000;
  process.stdout.write(`\nfault suite, seed ${chosen.seed}, ${minutes.toFixed(1)} min; op timeout ${chosen.settings.opTimeoutMs / 1000} s, ` +
    `budget ${chosen.settings.budgetMs / 1000} s per call (a hang: settled after 1.5x it)\n\n${renderTable(reports)}\n`);
  if (losses.length > 0) {
    process.stdout.write(`\nTEST INFRASTRUCTURE, not product verdicts: ${losses.length} cluster(s) lost (a run stopped when its ` +
      'cluster died is counted under "infra: lost" only, and runs again, same seed, on a fresh cluster):\n' +
      `${losses.map((loss) => `- ${describeLoss(loss)}`).join('\n')}\n`);
  }
  const lines = notable(reports);
  if (lines.length > 0) process.stdout.write(`\n${lines.join('\n')}\n`);
  const outcomes = reports.flatMap((r) => r.outcomes);
  const bad = outcomes.filter((o) => failed(o) || (chosen.ci && o.debris.length > 0));
  if (bad.length > 0) return 1;
  // No product failure, but not every run was run: no pass either.
  const notRun = reports.reduce((sum, r) => sum + r.notRun, 0);
  if (notRun > 0) {
    process.stdout.write(`\n${notRun} run(s) not run: too many clusters lost (exit ${EXIT_INCOMPLETE})\n`);
    return EXIT_INCOMPLETE;
  }
  return 0;
}

process.exitCode = await main();
