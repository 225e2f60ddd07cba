/**
 * Retention applied: the backups a policy (retention.ts) does not keep are
 * removed under the volume's lock, oldest first, each as a delete removes it
 * (a chain image goes with its last backup). The volume's newest backup
 * always stays.
 */
import { checkDate, checkFlag, checkKnownKeys, everyKeyOf, optionalOptions } from '../ceph/validate.js';
import { callBudget } from './budget.js';
import { OperationScope } from './cleanup.js';
import type { ResolvedConfig } from './config.js';
import { refuseIfCloned } from './clones.js';
import { checkSourcePool, removeBackup, removeSourceSnapshot } from './delete.js';
import { readBackupImages } from './inventory.js';
import { backupPoints, type BackupPoint } from './layout.js';
import { lockObjectName, VolumeLock } from './lock.js';
import { logBackup } from './log.js';
import { describeSubject, resolveSubject, type SubjectInput } from './naming.js';
import { decideRetention, parseRetentionPolicy } from './retention.js';

export interface PruneOptions {
  /** Decide and report, remove nothing. */
  dryRun?: boolean;
  /** The source volume's pool: removed backups' snapshots leave the volume too. */
  sourcePool?: string;
  /** Prune the volume's backups in this backup root (Cinder's chunked file layout). Default: the engine's backupPath when it backs up into files. */
  backupPath?: string;
  /** The time periods are counted back from; default now. */
  now?: Date;
  /**
   * The call's time budget, clean-up included. Default: three op timeouts
   * of the connections, plus one per backup to remove (see budget.ts).
   */
  timeoutMs?: number;
}

export interface PrunedBackup {
  backupId: string;
  /** The image holding it (and its snapshot there, for a chain image). */
  image: string;
  snapshot: string | undefined;
  createdAt: Date;
}

export interface PruneResult {
  kept: Array<PrunedBackup & { reasons: string[] }>;
  /** Removed (or, in a dry run, to be removed), oldest first. */
  removed: PrunedBackup[];
  /** Chain images removed with their last backup. */
  removedImages: string[];
  dryRun: boolean;
}

function describe(point: BackupPoint): PrunedBackup {
  return { backupId: point.backupId, image: point.image.name, snapshot: point.snapshot?.name, createdAt: point.createdAt };
}

/** Every option prune takes: another (a typo of dryRun) is refused, not ignored. */
export const PRUNE_OPTIONS = everyKeyOf<PruneOptions>()(['dryRun', 'sourcePool', 'backupPath', 'now', 'timeoutMs']);

/** A prune's options, in a backup pool or a backup root: now and dryRun as decideRetention and the removal need them. */
export function checkPruneOptions(given: PruneOptions | undefined, operation: string, resource: string): PruneOptions & { now: Date; dryRun: boolean } {
  const options = optionalOptions(given, operation);
  checkKnownKeys(options, PRUNE_OPTIONS, operation);
  const now = options.now === undefined ? new Date() : checkDate('now', options.now, operation, resource);
  return { ...options, now, dryRun: checkFlag('dryRun', options.dryRun, operation, resource) ?? false };
}

export async function runPrune(config: ResolvedConfig, of: SubjectInput, policyText: string,
  given?: PruneOptions): Promise<PruneResult> {
  const operation = 'prune';
  const subject = resolveSubject(of, operation);
  const policy = parseRetentionPolicy(policyText, operation);
  const resource = describeSubject(subject);
  const options = checkPruneOptions(given, operation, resource);
  const sourcePool = checkSourcePool(subject, options.sourcePool, operation);
  const { now, dryRun } = options;
  const budget = callBudget(options.timeoutMs, [config.source, config.backupCluster], operation, resource);

  return OperationScope.run({ operation, resource, timeoutMs: budget.timeoutMs }, async (scope) => {
    scope.doing = 'reading the volume\'s backups';
    const pool = await scope.adopt(config.backupCluster.pool(config.backupPool));
    const result: PruneResult = { kept: [], removed: [], removedImages: [], dryRun };
    if ((await readBackupImages(pool, subject)).length === 0) return result;
    if (!dryRun) {
      scope.doing = 'taking the volume\'s lock';
      const lock = await VolumeLock.acquire(pool, subject, operation, {
        waitMs: config.lockWaitMs, ttlMs: config.lockTtlMs, signal: scope.signal,
      });
      scope.defer(`release the volume lock ${pool.spec}/${lockObjectName(subject)}`, pool, () => lock.release(), 'lock');
      scope.guardBy(lock);
    }
    const images = await readBackupImages(pool, subject);
    const points = backupPoints(images);
    const decision = decideRetention(points, policy, now);
    if (budget.grows && !dryRun) scope.extend(decision.remove.length * budget.opTimeoutMs);
    const byId = new Map(points.map((p) => [p.backupId, p]));
    result.kept = decision.keep.map((k) => ({ ...describe(byId.get(k.backupId)!), reasons: k.reasons }));
    // All or nothing on that count: a prune that stopped half-way at a
    // cloned backup would leave the volume with another retention than asked.
    scope.doing = 'looking for clones of the backups to remove';
    for (const backupId of decision.remove) {
      const point = byId.get(backupId)!;
      if (point.snapshot?.protected === true) await refuseIfCloned(pool, point.image.name, point.snapshot.name, backupId, operation);
    }
    scope.doing = 'removing backups';
    for (const backupId of decision.remove) {
      const point = byId.get(backupId)!;
      result.removed.push(describe(point));
      if (dryRun) continue;
      scope.checkpoint();
      const removed = await removeBackup(pool, point, backupId, operation);
      result.removedImages.push(...removed.removedImages);
      if (sourcePool !== undefined && point.snapshot !== undefined) {
        await removeSourceSnapshot(config, sourcePool, subject, point.snapshot.name);
      }
    }
    logBackup('prune of %s (%s)%s: kept %d, removed %d', resource, policyText, dryRun ? ' (dry run)' : '',
      result.kept.length, result.removed.length);
    return result;
  });
}
