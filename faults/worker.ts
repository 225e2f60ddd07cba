/**
 * One run of one fault scenario, in a process of its own so that a crash
 * or a stuck native call ends only this run. The suite (suite.ts) starts
 * it with the cluster in RBD_TEST_A_* and FAULT_SCENARIO, FAULT_SEED and
 * FAULT_SETTINGS (JSON, kit.ts Settings); it prints one line,
 * FAULT-OUTCOMES <JSON array of RunOutcome>, or FAULT-ERROR <JSON> when
 * the run itself could not be carried out.
 */
import { CephError } from '../lib/index.js';
import { prng } from '../lib/dev/prng.js';
import { BACKUP_POOL, POOL, VolumeFixtures } from '../test/support/backup-fixtures.js';
import { connect, testCluster } from '../test/support/clusters.js';
import { clientLogOptions, type Context, type Settings } from './kit.js';
import { SCENARIOS } from './scenarios.js';

/** The least op timeout of the connection that sets up and checks. */
const CHECK_TIMEOUT_MS = 30_000;

function env(name: string): string {
  const value = process.env[name];
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
}

const scenario = SCENARIOS.find((s) => s.name === env('FAULT_SCENARIO'));
if (!scenario) throw new Error(`no scenario ${env('FAULT_SCENARIO')}`);
const seed = Number(env('FAULT_SEED'));
const settings = JSON.parse(env('FAULT_SETTINGS')) as Settings;

// The checker is not under test: it may wait longer than the faulted calls, for a cluster still settling after a heal.
const checkTimeoutMs = Math.max(settings.opTimeoutMs, CHECK_TIMEOUT_MS);
const admin = await connect('a', { timeoutMs: checkTimeoutMs, opTimeoutMs: checkTimeoutMs, ...clientLogOptions(settings, 'admin') });
const volumes = await admin.pool(POOL);
const backups = await admin.pool(BACKUP_POOL);
const steps: Array<() => Promise<void>> = [];
const ctx: Context = {
  cluster: await testCluster('a'), admin, volumes, backups, fx: new VolumeFixtures(volumes, [backups]),
  rng: prng(seed), seed, settings, teardown: { after: (step) => { steps.push(step); } },
};
let line: string;
try {
  line = `FAULT-OUTCOMES ${JSON.stringify(await scenario.run(ctx))}`;
} catch (error) {
  const e = error instanceof Error ? error : new Error(String(error));
  line = `FAULT-ERROR ${JSON.stringify({ typed: error instanceof CephError, message: `${e.name}: ${e.message}`, stack: e.stack })}`;
}
for (const step of steps.reverse()) {
  await step().catch((error: unknown) => process.stderr.write(`clean-up: ${String(error)}\n`));
}
// A call the run gave up on may still hold a native handle: do not wait for it, only for the line
// (into a pipe, a large write is still going out when write() returns).
process.stdout.write(`${line}\n`, () => process.exit(0));
