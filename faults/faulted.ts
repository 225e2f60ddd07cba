/**
 * One operation under one fault: a backup (full or incremental) or a
 * restore is started, the fault strikes at a seeded moment and is healed,
 * and then the bar is checked: the call settled within 1.5x its budget,
 * completed with the right bytes or failed typed, a retry (with another
 * backup id, or into the same restore target) succeeds with the right
 * bytes, and nothing is left over.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { BackupEngine, BackupResult, ConnectOptions, RestoreResult } from '../lib/index.js';
import { POOL } from '../test/support/backup-fixtures.js';
import {
  backupId, change, debrisOf, faultedEngine, filledVolume, healthyEngine, outcome, sameBytes, targetId, verifyBackup,
  worse, type Context,
} from './kit.js';
import type { RunOutcome, Settled } from './outcome.js';
import { describeError, settle, type Settling } from './settle.js';

export interface Fault {
  /** Runs once the volume (and the backup a restore or incremental needs) is made, before the call. */
  prepare?(): Promise<void>;
  /**
   * When it strikes, as a share of the call's expected duration (that of
   * the healthy backup made first): from the seed, in [0, 1).
   */
  at: number;
  /** Strikes (and, for a pause, lasts); resolves when it is over or left in place until heal. */
  strike(): Promise<void>;
  /** Makes the cluster healthy again; runs after the call settled, whatever happened. */
  heal(): Promise<void>;
  /** For the details: what was done (atMs: when it struck, after the call). */
  describe(atMs: number): string;
}

export type FaultedOperation = 'full backup' | 'incremental' | 'restore';

/** Picks the operation for a run from its seed. */
export function pickOperation(ctx: Context): FaultedOperation {
  const r = ctx.rng();
  return r < 0.4 ? 'full backup' : r < 0.75 ? 'incremental' : 'restore';
}

interface Prepared {
  volumeId: string;
  /** The backup a restore restores (and an incremental continues from): the healthy one, or the last one the run made. */
  base: BackupResult;
  /** How long the calls should take on a healthy cluster: when the fault may strike. */
  expectedMs: number;
}

/**
 * A filled volume and a healthy full backup of it, timed: a full backup or
 * a restore moves as much, an incremental (after a quarter of the volume
 * changed) about half as much time.
 */
async function prepare(ctx: Context, operations: readonly FaultedOperation[]): Promise<Prepared> {
  const volumeId = await filledVolume(ctx);
  const started = performance.now();
  const base = await healthyEngine(ctx).backup({ pool: POOL, volumeId, backupId: backupId() });
  const fullMs = performance.now() - started;
  if (operations[0] === 'incremental') await change(ctx, volumeId, 0.25);
  const expectedMs = operations.reduce((sum, op) => sum + (op === 'incremental' ? 0.5 : 1.2) * fullMs, 0);
  return { volumeId, base, expectedMs };
}

function call(engine: BackupEngine, operation: FaultedOperation, prepared: Prepared, target: string,
  id: string, timeoutMs: number): Promise<BackupResult | RestoreResult> {
  if (operation === 'restore') {
    return engine.restore({ backup: prepared.base.record, target: { volume: { pool: POOL, id: target } }, timeoutMs });
  }
  return engine.backup({ pool: POOL, volumeId: prepared.volumeId, backupId: id, full: operation === 'full backup', timeoutMs });
}

/** The bytes a completed operation produced, checked on the healthy connection. */
async function check(ctx: Context, operation: FaultedOperation, restored: BackupResult, target: string,
  result: BackupResult | RestoreResult) {
  if (operation === 'restore') {
    const same = await sameBytes(restored.record.volume_id, restored.snapshot, target);
    return { corrupt: !same, settled: 'completed' as const, detail: same ? 'restore byte-equal to the source snapshot' : 'restore differs' };
  }
  const backup = result as BackupResult;
  return verifyBackup(ctx, backup.record, backup.record.volume_id, backup.snapshot);
}

interface Call {
  operation: FaultedOperation;
  target: string;
  /** The backup a restore restored. */
  restores: BackupResult;
  settling: Settling<BackupResult | RestoreResult>;
}

/** The calls one after the other on the faulted connection; a restore restores the last backup that completed. */
async function callAll(ctx: Context, engine: BackupEngine, operations: readonly FaultedOperation[], prepared: Prepared): Promise<Call[]> {
  const calls: Call[] = [];
  for (const operation of operations) {
    const target = targetId(ctx);
    const restores = prepared.base;
    const settling = await settle(ctx.settings.budgetMs, (timeoutMs) => call(engine, operation, prepared, target, backupId(), timeoutMs));
    calls.push({ operation, target, restores, settling });
    if (operation !== 'restore' && settling.settled === 'completed') prepared.base = settling.value as BackupResult;
  }
  return calls;
}

/** After the heal: a completed call's bytes checked, a failed one retried on the healthy connection and checked. */
async function judge(ctx: Context, prepared: Prepared, c: Call, describe: string): Promise<RunOutcome> {
  const { operation, target, restores, settling } = c;
  const details = [`${describe}: ${settling.settled === 'completed' ? 'completed' : describeError(settling.error)}`];
  let settled: Settled = settling.settled;
  let corrupt = false;
  const debris: string[] = [];
  if (settling.settled === 'completed') {
    const checked = await check(ctx, operation, restores, target, settling.value!);
    corrupt = checked.corrupt;
    settled = worse(settled, checked.settled);
    details.push(checked.detail);
  } else {
    // The retry runs on the healthy connection: what the failed call left must not stand in its way.
    const retried = await settle(3 * ctx.settings.budgetMs,
      (timeoutMs) => call(healthyEngine(ctx), operation, { ...prepared, base: restores }, target, backupId(), timeoutMs));
    settled = worse(settled, retried.settled);
    if (retried.settled !== 'completed') {
      debris.push(`the retry failed: ${describeError(retried.error)}`);
    } else {
      const checked = await check(ctx, operation, restores, target, retried.value!);
      corrupt = checked.corrupt;
      settled = worse(settled, checked.settled);
      details.push(`retry (${Math.round(retried.ms)} ms): ${checked.detail}`);
    }
  }
  return outcome(ctx, operation, settling, { settled, corrupt, debris, detail: details.join('; ') });
}

/** Runs the operations under the fault, heals it, checks each, and looks for debris; one outcome per operation. */
export async function faultedRun(ctx: Context, operations: readonly FaultedOperation[], fault: Fault,
  connectOptions: ConnectOptions = {}): Promise<RunOutcome[]> {
  const prepared = await prepare(ctx, operations);
  await fault.prepare?.();
  const engine = await faultedEngine(ctx, connectOptions);
  const running = callAll(ctx, engine, operations, prepared);
  // Its failure is the suite's, not the library's: reported once the cluster is healed.
  const atMs = Math.round(fault.at * prepared.expectedMs);
  const striking = sleep(atMs).then(() => fault.strike()).then(() => undefined, (error: unknown) => error);
  let calls: Call[];
  try {
    calls = await running;
  } finally {
    const failedStrike = await striking;
    await fault.heal();
    if (failedStrike !== undefined) throw new Error(`${fault.describe(atMs)} failed: ${describeError(failedStrike)}`);
  }
  const outcomes: RunOutcome[] = [];
  for (const c of calls) outcomes.push(await judge(ctx, prepared, c, fault.describe(atMs)));
  outcomes.at(-1)!.debris.push(...await debrisOf(ctx, prepared.volumeId, calls.map((c) => c.target)));
  return outcomes;
}
