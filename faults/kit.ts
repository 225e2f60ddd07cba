/**
 * What every fault scenario works with inside a worker process: the
 * cluster (for faults) and a healthy connection (for set-up and checks),
 * seeded volumes, the check of a backup's or restore's bytes against
 * `rbd export` of its source snapshot, and the debris check (gc's dry run
 * and a listing) after the retry.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BackupEngine, DigestsError, NotFoundError, TimeoutError, type BackupRecord, type BackupEngineConfig, type Cluster, type ConnectOptions, type Pool,
} from '../lib/index.js';
import { intBelow } from '../lib/dev/prng.js';
import type { ThrowawayCluster } from '../lib/dev/throwaway-cluster.js';
import { lockObjectName, restoreLockObjectName } from '../lib/backup/lock.js';
import { RESTORING_KEY } from '../lib/backup/restore-lock.js';
import { parseBackupSnapshotName } from '../lib/backup/naming.js';
import {
  BACKUP_POOL, POOL, removeImagePatiently, snapshotSha, snapshotsOf, VolumeFixtures, volumeSha, type Teardown,
} from '../test/support/backup-fixtures.js';
import { connect, rbd, uniqueName } from '../test/support/clusters.js';
import { fill } from '../test/support/cluster-scratch.js';
import type { RunOutcome, Settled } from './outcome.js';
import { describeError, settle, type Settling } from './settle.js';

const MiB = 1 << 20;
/** Looks for debris, a second apart, when an operation landing late gets in the way. */
const DEBRIS_ATTEMPTS = 10;
/** Tries of the restore that checks a backup's bytes. */
const VERIFY_ATTEMPTS = 3;
/** The name VolumeLock locks its objects under. */
const LOCK_NAME = 'rbd-backup';

/** What the suite passes every worker. */
export interface Settings {
  /** Size of the volumes backed up under faults. */
  sizeMiB: number;
  /** Size of the volume the OSD is restarted under (a transfer long enough to be struck mid-way). */
  restartSizeMiB: number;
  /** rados_osd_op_timeout and the monitor timeout of the connections. */
  opTimeoutMs: number;
  /** Each operation's time budget. */
  budgetMs: number;
  /** Backups per live-writes chain. */
  chain: number;
  /** Records or stream variants per fuzz worker. */
  fuzz: number;
  /** Kill points are drawn from [0, killWindowMs] after the operation starts. */
  killWindowMs: number;
  /** Where the workers' connections write librbd/objecter debug logs (--client-logs); none when unset. */
  clientLogDir?: string;
}

/**
 * Connect options that make a worker's connection log what librbd and the
 * objecter do (debug rbd 20, objecter 10) into clientLogDir, one file per
 * process and role: what found the librbd bug behind the lost snapshot.
 */
export function clientLogOptions(settings: Settings, role: 'faulted' | 'admin'): Pick<ConnectOptions, 'options'> {
  if (settings.clientLogDir === undefined) return {};
  return { options: { log_file: `${settings.clientLogDir}/${role}.${process.pid}.log`, debug_rbd: '20', debug_objecter: '10' } };
}

export interface Context {
  cluster: ThrowawayCluster;
  /** For set-up and checks, never faulted on purpose. */
  admin: Cluster;
  volumes: Pool;
  backups: Pool;
  fx: VolumeFixtures;
  rng: () => number;
  seed: number;
  settings: Settings;
  /** Removes what the run made when it ends. */
  teardown: Teardown;
}

/** An engine on a connection of its own (closed when the run ends), so a stuck one does not hold up the checks. */
export async function faultedEngine(ctx: Context, options: ConnectOptions = {},
  config: Omit<BackupEngineConfig, 'source'> = {}): Promise<BackupEngine> {
  const cluster = await connect('a', {
    timeoutMs: ctx.settings.opTimeoutMs, opTimeoutMs: ctx.settings.opTimeoutMs, ...clientLogOptions(ctx.settings, 'faulted'), ...options,
  });
  // A connection an abandoned call still uses refuses to close; it goes with the process.
  ctx.teardown.after(() => cluster.close().catch(() => undefined));
  return new BackupEngine({ source: cluster, ...config });
}

/** An engine on the healthy admin connection, for set-up, retries and checks. */
export function healthyEngine(ctx: Context): BackupEngine {
  return new BackupEngine({ source: ctx.admin, lockWaitMs: 2 * ctx.settings.budgetMs });
}

/** A new volume of sizeMiB filled with random data, removed with its backups when the run ends. */
export async function filledVolume(ctx: Context, sizeMiB = ctx.settings.sizeMiB): Promise<string> {
  const volumeId = await ctx.fx.newVolume(ctx.teardown, sizeMiB * MiB);
  await ctx.fx.withVolume(volumeId, (image) => fill(image, 0, sizeMiB * MiB));
  return volumeId;
}

/** Seeded random writes (4 KiB .. 1 MiB) of share of a volume's size, so that an incremental has work. */
export async function change(ctx: Context, volumeId: string, share = 0.05): Promise<void> {
  const size = ctx.settings.sizeMiB * MiB;
  await ctx.fx.withVolume(volumeId, async (image) => {
    for (let written = 0; written < share * size;) {
      const length = 4096 * (1 + intBelow(ctx.rng, 256));
      await image.write(randomBytes(length), intBelow(ctx.rng, (size - length) / 4096) * 4096);
      written += length;
    }
  });
}

/** A restore target id, removed when the run ends. */
export function targetId(ctx: Context): string {
  return ctx.fx.targetId(ctx.teardown);
}

/** A fresh backup id. */
export function backupId(): string {
  return uniqueName('b');
}

/** Whether the restored volume holds exactly the bytes of volumeId@snapshot. */
export async function sameBytes(volumeId: string, snapshot: string, target: string): Promise<boolean> {
  const [expected, actual] = await Promise.all([snapshotSha(volumeId, snapshot), volumeSha(target)]);
  return expected === actual;
}

/** The outcome of one operation, from its settling and what the run found after it. */
export function outcome(ctx: Context, operation: string, s: Settling<unknown> | undefined,
  found: { corrupt?: boolean; debris?: string[]; detail?: string; settled?: Settled } = {}): RunOutcome {
  return {
    operation,
    settled: found.settled ?? s?.settled ?? 'completed',
    corrupt: found.corrupt ?? false,
    debris: found.debris ?? [],
    settleMs: s?.ms,
    budgetMs: s === undefined ? undefined : ctx.settings.budgetMs,
    detail: found.detail ?? (s === undefined || s.error === undefined ? 'ok' : describeError(s.error)),
    seed: ctx.seed,
  };
}

/** The worse of two settlings: a hang or an untyped error in a retry or check counts against the run. */
export function worse(a: Settled, b: Settled): Settled {
  const rank: Settled[] = ['completed', 'typed', 'untyped', 'hang', 'crash'];
  return rank.indexOf(b) > rank.indexOf(a) && b !== 'typed' ? b : a;
}

/**
 * Restores a backup into a new volume on the healthy connection, checking
 * the restored bytes against the backup's stored digests as they are
 * written (a backup without digests is restored without), and compares
 * its bytes with the source snapshot; a backup that cannot be restored is
 * as bad as one that restores wrong, and digests that do not match its
 * data (a VerificationError) are as bad as either.
 */
export async function verifyBackup(ctx: Context, record: BackupRecord, volumeId: string,
  snapshot: string): Promise<{ corrupt: boolean; settled: Settled; detail: string }> {
  const target = targetId(ctx);
  let restored;
  let verify = true;
  // A cluster just healed may still be settling (PGs peering): a timeout is tried again.
  for (let attempt = 1; ; attempt++) {
    restored = await settle(ctx.settings.budgetMs, (timeoutMs) => healthyEngine(ctx).restore({
      backup: record, target: { volume: { pool: POOL, id: target } }, timeoutMs, verify,
    }));
    if (restored.error instanceof DigestsError && verify) {
      verify = false;
      continue;
    }
    if (!(restored.error instanceof TimeoutError) || attempt === VERIFY_ATTEMPTS) break;
  }
  if (restored.settled !== 'completed') {
    return { corrupt: restored.settled === 'typed', settled: restored.settled, detail: `its restore failed: ${describeError(restored.error)}` };
  }
  const same = await sameBytes(volumeId, snapshot, target);
  // Checked: its room goes back now (memstore holds it in RAM), not when the run ends.
  await removeImagePatiently(ctx.volumes, `volume-${target}`);
  const checked = verify ? 'restore verified against its digests and' : 'restore (the backup has no digests)';
  return { corrupt: !same, settled: 'completed', detail: same ? `${checked} byte-equal to the source snapshot` : `restore of ${record.id} differs from ${snapshot}` };
}

/**
 * What is left of a run's volume and restore targets that no next
 * operation or gc would clean: gc's dry run (which lists what it would
 * still remove), backup images without a backup, orphan source snapshots,
 * held locks, half-restored or still-locked restore targets.
 */
export async function debrisOf(ctx: Context, volumeId: string, targets: readonly string[] = []): Promise<string[]> {
  // An operation a faulted OSD queued may still land while the listing runs (a snapshot gone between
  // its listing and its details): look again.
  for (let attempt = 1; ; attempt++) {
    try {
      return await lookForDebris(ctx, volumeId, targets);
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
      // Still there after all the looks: an image listed in its pool that cannot be opened is debris.
      if (attempt === DEBRIS_ATTEMPTS) return [`listed but cannot be opened (a creation or removal cut short?): ${error.message}`];
      await sleep(1000);
    }
  }
}

/** Snapshots outside the user namespace, as `rbd snap ls --all` lists them: a removal cut short leaves one in the trash. */
async function trashedSnapshots(spec: string): Promise<string[]> {
  const all = JSON.parse(await rbd('a', ['snap', 'ls', '--all', '--format', 'json', spec])) as
    Array<{ name: string; namespace: { type: string; original_name?: string } }>;
  return all.filter((s) => s.namespace.type !== 'user')
    .map((s) => `${spec}@${s.name} (in the ${s.namespace.type} namespace${s.namespace.original_name ? `, was ${s.namespace.original_name}` : ''})`);
}

async function lookForDebris(ctx: Context, volumeId: string, targets: readonly string[]): Promise<string[]> {
  const found: string[] = [];
  const ours = (text: string): boolean => text.includes(`volume-${volumeId}`) || targets.some((t) => text.includes(`volume-${t}`));
  const gc = await healthyEngine(ctx).gc({ dryRun: true, sourcePool: POOL });
  for (const item of [...gc.removedImages, ...gc.removedSnapshots].filter(ours)) found.push(`gc would remove ${item}`);
  for (const skipped of gc.skipped.filter((s) => s.volumeId === volumeId || targets.includes(s.volumeId))) {
    found.push(`gc skips volume ${skipped.volumeId}: ${skipped.reason}`);
  }
  const chainSnapshots = new Set<string>();
  for (const name of (await ctx.backups.listImages()).filter((n) => n.startsWith(`volume-${volumeId}.backup.`))) {
    const snapshots = ((await snapshotsOf(ctx.backups, name)) ?? []).filter((s) => parseBackupSnapshotName(s));
    if (snapshots.length === 0) found.push(`${BACKUP_POOL}/${name} holds no backup`);
    for (const s of snapshots) chainSnapshots.add(s);
    found.push(...await trashedSnapshots(`${BACKUP_POOL}/${name}`));
  }
  found.push(...await trashedSnapshots(`${POOL}/volume-${volumeId}`));
  for (const s of ((await snapshotsOf(ctx.volumes, `volume-${volumeId}`)) ?? []).filter((x) => parseBackupSnapshotName(x))) {
    if (!chainSnapshots.has(s)) found.push(`${POOL}/volume-${volumeId}@${s} is on no chain image`);
  }
  const { lockers } = await ctx.backups.listLockers(lockObjectName(volumeId), LOCK_NAME);
  for (const l of lockers) found.push(`the lock of volume ${volumeId} is held by ${l.client}`);
  for (const target of targets) {
    if (await ctx.volumes.objectExists(restoreLockObjectName(target))) found.push(`${POOL}/${restoreLockObjectName(target)} is left`);
    const snapshots = await snapshotsOf(ctx.volumes, `volume-${target}`);
    if (snapshots === undefined) continue;
    if (snapshots.length > 0) found.push(`${POOL}/volume-${target} has snapshots ${snapshots.join(', ')}`);
    // A removal that landed late may take it between the listing and the open: gone is no debris.
    const image = await ctx.volumes.openImage(`volume-${target}`, { readOnly: true }).catch((error: unknown) => {
      if (error instanceof NotFoundError) return undefined;
      throw error;
    });
    if (image === undefined) continue;
    try {
      const mark = await image.getMetadata(RESTORING_KEY);
      if (mark !== undefined) found.push(`${POOL}/volume-${target} is still marked half-restored (${mark})`);
    } finally {
      await image.close();
    }
  }
  return found;
}
