/**
 * cephx: backups and restores with the least privilege Cinder deployments
 * give (`mon 'profile rbd' osd 'profile rbd pool=<pool>'`, one user for the
 * volume pool and one for the backup pool), and a wrong key, which must
 * fail fast with a typed PermissionError.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { BackupEngine, Cluster, PermissionError } from '../lib/index.js';
import { BACKUP_POOL, POOL } from '../test/support/backup-fixtures.js';
import { connect, uniqueName } from '../test/support/clusters.js';
import { backupId, change, debrisOf, filledVolume, outcome, targetId, verifyBackup, worse, type Context } from './kit.js';
import type { RunOutcome } from './outcome.js';
import { describeError, settle } from './settle.js';

/** A wrong key must be refused well before any timeout: this long at most. */
const FAST_MS = 5000;

export async function leastPrivilege(ctx: Context): Promise<RunOutcome[]> {
  const volumeUser = uniqueName('vol');
  const backupUser = uniqueName('bak');
  const options = { timeoutMs: ctx.settings.opTimeoutMs, opTimeoutMs: ctx.settings.opTimeoutMs };
  const volumes = await connect('a', { ...options, user: volumeUser, keyring: await ctx.cluster.createUser(volumeUser, POOL) });
  const backups = await connect('a', { ...options, user: backupUser, keyring: await ctx.cluster.createUser(backupUser, BACKUP_POOL) });
  ctx.teardown.after(async () => {
    await volumes.close();
    await backups.close();
  });
  const engine = new BackupEngine({ source: volumes, backupCluster: backups });
  const volumeId = await filledVolume(ctx);
  const outcomes: RunOutcome[] = [];
  for (const kind of ['full', 'incremental'] as const) {
    if (kind === 'incremental') await change(ctx, volumeId);
    const s = await settle(ctx.settings.budgetMs, (timeoutMs) => engine.backup({ pool: POOL, volumeId, backupId: backupId(), timeoutMs }));
    if (s.settled !== 'completed') {
      outcomes.push(outcome(ctx, `${kind} backup as least-privilege users`, s));
      continue;
    }
    // The restore, too, as the two users.
    const target = targetId(ctx);
    const restored = await settle(ctx.settings.budgetMs, (timeoutMs) => engine.restore({
      backup: s.value!.record, target: { volume: { pool: POOL, id: target } }, timeoutMs,
    }));
    const checked = restored.settled === 'completed'
      ? await verifyBackup(ctx, s.value!.record, volumeId, s.value!.snapshot)
      : { corrupt: false, settled: restored.settled, detail: `restore: ${describeError(restored.error)}` };
    outcomes.push(outcome(ctx, `${kind} backup and restore as least-privilege users`, s, {
      settled: restored.settled === 'completed' ? worse(s.settled, checked.settled) : restored.settled,
      corrupt: checked.corrupt, detail: `${s.value!.mode}: ${checked.detail}`,
    }));
  }
  outcomes.at(-1)!.debris.push(...await debrisOf(ctx, volumeId));
  return outcomes;
}

export async function wrongKey(ctx: Context): Promise<RunOutcome[]> {
  const { conf } = ctx.cluster.info;
  // A well-formed key (a cephx key has a header before the secret), just not admin's.
  const key = (await promisify(execFile)('ceph-authtool', ['--gen-print-key'])).stdout.trim();
  const s = await settle(ctx.settings.budgetMs, async () => {
    const cluster = await Cluster.connect({ conf, user: 'admin', key, timeoutMs: ctx.settings.opTimeoutMs });
    await cluster.close();
  });
  let settled = s.settled;
  // Let in with a wrong key, or refused with another error: not what the contract allows.
  if (s.settled === 'completed' || (s.settled === 'typed' && !(s.error instanceof PermissionError))) settled = 'untyped';
  // Refused only after waiting: as bad as a hang.
  else if (s.settled === 'typed' && s.ms >= FAST_MS) settled = 'hang';
  return [outcome(ctx, 'connect with a wrong key', s, {
    settled, detail: `${s.settled === 'completed' ? 'connected' : describeError(s.error)} after ${Math.round(s.ms)} ms`,
  })];
}
