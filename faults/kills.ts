/**
 * A backup or a restore SIGKILLed at a seeded moment in a child process
 * (test/fixtures/engine-child.ts), then retried here: a backup with
 * another backup id or (half the time, when it did not complete) its own,
 * a restore into the same target. The retry must
 * succeed with the right bytes, and with it and gc nothing may be left:
 * the library recognises a dead run's leftovers and breaks its locks.
 */
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { POOL } from '../test/support/backup-fixtures.js';
import { startFixture } from '../test/support/fixture-process.js';
import {
  backupId, change, debrisOf, filledVolume, healthyEngine, outcome, sameBytes, targetId, verifyBackup, worse,
  type Context,
} from './kit.js';
import type { RunOutcome } from './outcome.js';
import { describeError, settle } from './settle.js';

const ENGINE_CHILD = fileURLToPath(new URL('../test/fixtures/engine-child.js', import.meta.url));

/**
 * Starts the child's operation and kills it at a seeded moment after it
 * began; says when, or how it ended otherwise, and whether it completed.
 */
async function killedChild(ctx: Context, operation: 'backup' | 'restore',
  env: Record<string, string>): Promise<{ detail: string; completed: boolean }> {
  const { conf, keyring } = ctx.cluster.info;
  const fixture = startFixture(ENGINE_CHILD, [operation], {
    env: { FIXTURE_CONF: conf, FIXTURE_KEYRING: keyring, FIXTURE_POOL: POOL, ...env }, timeoutMs: 4 * ctx.settings.budgetMs,
  });
  await fixture.line('ENGINE-START');
  const afterMs = Math.round(ctx.rng() * ctx.settings.killWindowMs);
  await sleep(afterMs);
  fixture.child.kill('SIGKILL');
  const { signal, code, stdout, stderr } = await fixture.exited;
  if (signal === 'SIGKILL') {
    return { detail: `${operation} killed ${afterMs} ms after it started${stdout.includes('ENGINE-PROGRESS') ? ' (mid-transfer)' : ''}`, completed: false };
  }
  if (signal !== null) throw new Error(`the ${operation} child died of ${signal} before the kill: ${stderr.slice(-2000)}`);
  return {
    detail: `${operation} ended (exit ${code}) before the kill at ${afterMs} ms${code === 0 ? '' : `: ${stderr.trim().split('\n').at(-1)}`}`,
    completed: code === 0,
  };
}

export async function killBackup(ctx: Context): Promise<RunOutcome[]> {
  const volumeId = await filledVolume(ctx);
  const full = ctx.rng() < 0.4;
  if (!full) {
    await healthyEngine(ctx).backup({ pool: POOL, volumeId, backupId: backupId() });
    await change(ctx, volumeId);
  }
  const killedId = backupId();
  const { detail: killed, completed } = await killedChild(ctx, 'backup', {
    // Progress recorded often, so that a kill mid-transfer leaves some to resume.
    FIXTURE_VOLUME: volumeId, FIXTURE_BACKUP: killedId, FIXTURE_FULL: full ? '1' : '0', FIXTURE_CHECKPOINT_MS: '50',
    // Half the runs write at 64 MiB/s at most: their transfer outlasts the kill window, so the kill lands in it.
    ...(ctx.rng() < 0.5 ? { FIXTURE_WRITE_BPS: String(64 << 20) } : {}),
  });
  // Half the retries reuse the killed run's id (and continue what it left, wherever it was killed).
  const sameId = !completed && ctx.rng() < 0.5;
  const retry = await settle(ctx.settings.budgetMs,
    (timeoutMs) => healthyEngine(ctx).backup({ pool: POOL, volumeId, backupId: sameId ? killedId : backupId(), timeoutMs }));
  if (retry.settled !== 'completed') {
    return [outcome(ctx, 'backup retry', retry, {
      debris: [`the retry failed: ${describeError(retry.error)}`, ...await debrisOf(ctx, volumeId)], detail: killed,
    })];
  }
  const checked = await verifyBackup(ctx, retry.value!.record, volumeId, retry.value!.snapshot);
  return [outcome(ctx, 'backup retry', retry, {
    settled: worse(retry.settled, checked.settled), corrupt: checked.corrupt,
    debris: await debrisOf(ctx, volumeId),
    detail: `${killed}; ${retry.value!.mode} retry${sameId ? ` with its id${retry.value!.resumedFrom === undefined ? '' : `, resumed at ${retry.value!.resumedFrom}`}${retry.value!.alreadyComplete ? ', already complete' : ''}` : ''}: ${checked.detail}`,
  })];
}

export async function killRestore(ctx: Context): Promise<RunOutcome[]> {
  const volumeId = await filledVolume(ctx);
  const engine = healthyEngine(ctx);
  const backup = await engine.backup({ pool: POOL, volumeId, backupId: backupId() });
  const target = targetId(ctx);
  const { detail: killed, completed } = await killedChild(ctx, 'restore', {
    FIXTURE_RECORD: engine.exportRecord(backup.record), FIXTURE_VOLUME: target,
  });
  // A killed restore's retry must need no force; restoring over one that
  // completed is an overwrite of a volume holding data, which does.
  const retry = await settle(ctx.settings.budgetMs, (timeoutMs) => engine.restore({
    backup: backup.record, target: { volume: { pool: POOL, id: target } }, force: completed, timeoutMs,
  }));
  const debris = retry.settled === 'completed' ? [] : [`the retry failed: ${describeError(retry.error)}`];
  const same = retry.settled === 'completed' && await sameBytes(volumeId, backup.snapshot, target);
  return [outcome(ctx, 'restore retry', retry, {
    corrupt: retry.settled === 'completed' && !same,
    debris: [...debris, ...await debrisOf(ctx, volumeId, [target])],
    detail: `${killed}; retry ${retry.settled === 'completed' ? `(${retry.value!.path}) ${same ? 'byte-equal' : 'DIFFERS'}` : describeError(retry.error)}`,
  })];
}
