/**
 * The child's restore operation (run by bench/scenario.ts): BackupEngine.restore
 * of a backup in the child's one cluster (or in files). For an instant restore, then the
 * first 4 KiB read of the new volume, which is what its user waits for, and
 * with a background flatten the time until the flatten settled.
 */
import { BackupEngine, type Cluster, type Pool, type Progress } from '../lib/index.js';
import type { EngineSettings, RestoreOperation } from './protocol.js';

/** The first read: the volume's first 4 KiB block, where a guest's boot starts reading. */
const FIRST_READ_BYTES = 4096;

/** The timed part: the call, and after an instant restore the read (and the flatten). Returns the stats to record. */
export function restoreRun(cluster: Cluster, targetPool: Pool, op: RestoreOperation, engine: EngineSettings,
  onProgress: (progress: Progress) => void): () => Promise<object> {
  const backups = new BackupEngine({
    source: cluster, backupPool: op.backupPool, ioConcurrency: engine.concurrency, memoryBytes: engine.memoryBytes,
  });
  const target = { image: { pool: op.target.pool, name: op.target.name } };
  const how = op.how;
  return async () => {
    const started = performance.now();
    const since = (): number => performance.now() - started;
    if (how.kind === 'into-source') {
      const result = await backups.restore({ backup: op.backup, target, force: true, inPlace: how.inPlace, onProgress });
      return { ...result, returnedMs: since() };
    }
    if (how.kind === 'files') {
      const result = await backups.restore({ backup: op.backup, target, backupPath: how.backupPath, onProgress });
      return { ...result, returnedMs: since() };
    }
    const result = await backups.restore({ backup: op.backup, target, instant: true, flatten: how.flatten, onProgress });
    const returnedMs = since();
    let firstReadMs: number;
    {
      // Read-only: a read needs no exclusive lock, and this handle stays
      // out of the way of the background flatten, which takes it.
      await using volume = await targetPool.openImage(op.target.name, { readOnly: true });
      await volume.read(0, FIRST_READ_BYTES);
      firstReadMs = since();
    }
    if (how.flatten === 'never') return { ...result, returnedMs, firstReadMs };
    await result.flattening!.done;
    return { ...result, returnedMs, firstReadMs, flattenedMs: since() };
  };
}
