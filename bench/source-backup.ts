/**
 * A BackupEngine backup of the bench's source volume (rbd/src, backed up as
 * a named image into pool backups), made and deleted in the benchmark's own
 * process and untimed: the backup that the instant and in-place restore
 * rows restore.
 */
import { BackupEngine, Cluster, type BackupRecord } from '../lib/index.js';
import { CONNECT_TIMEOUT_MS, OP_TIMEOUT_MS, type Bench } from './bench.js';

export const BACKUP_POOL = 'backups';
export const SOURCE = { pool: 'rbd', image: 'src' };

export interface SourceBackup {
  record: BackupRecord;
  /** The backup's snapshot, on rbd/src and on the chain image. */
  snapshot: string;
  /** pool/image of the chain image. */
  chain: string;
  /** rbd/src@snapshot: the bytes every restore of the backup must hold. */
  sourceSpec: string;
}

/** An engine on cluster A (backups in pool backups), connected for `use` alone. */
export async function withEngine<T>(bench: Bench, use: (engine: BackupEngine) => Promise<T>): Promise<T> {
  const cluster = await Cluster.connect({ ...bench.a.ref, timeoutMs: CONNECT_TIMEOUT_MS, opTimeoutMs: OP_TIMEOUT_MS });
  try {
    return await use(new BackupEngine({ source: cluster, backupPool: BACKUP_POOL }));
  } finally {
    await cluster.close();
  }
}

export async function backUpSource(bench: Bench): Promise<SourceBackup> {
  const started = performance.now();
  const result = await withEngine(bench, (engine) => engine.backup({
    pool: SOURCE.pool, image: SOURCE.image, full: true, displayName: 'bench restores',
  }));
  const backup = {
    record: result.record, snapshot: result.snapshot, chain: `${BACKUP_POOL}/${result.baseImage}`,
    sourceSpec: `${SOURCE.pool}/${SOURCE.image}@${result.snapshot}`,
  };
  bench.log(`  backed up ${SOURCE.pool}/${SOURCE.image} with BackupEngine (full, untimed: ` +
    `${((performance.now() - started) / 1000).toFixed(2)} s): ${backup.chain}@${backup.snapshot}`);
  return backup;
}

/** The backup's snapshots (on the volume and the chain image) and its chain image go. */
export async function deleteSourceBackup(bench: Bench, backup: SourceBackup): Promise<void> {
  await withEngine(bench, (engine) => engine.delete(backup.record, { sourcePool: SOURCE.pool }));
}
