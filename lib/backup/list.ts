/**
 * The backups of a volume or named image, read from the backup pool itself (no database):
 * every backup snapshot of every chain image and every legacy full copy,
 * oldest first, each with a record that restores exactly it.
 */
import type { ResolvedConfig } from './config.js';
import { readBackupImages } from './inventory.js';
import { backupPoints } from './layout.js';
import { resolveSubject, type Subject, type SubjectInput } from './naming.js';
import { newRecord, type BackupRecord } from './record.js';

export interface ListedBackup {
  /** The volume or named image it is a backup of. */
  subject: Subject;
  /** A record to restore or delete it with (or to export). */
  record: BackupRecord;
  /** The image holding it. */
  image: string;
  /** Its snapshot on the chain image; undefined for a legacy full copy. */
  snapshot: string | undefined;
  /** The first backup of its chain image (or a legacy copy): not an incremental. */
  full: boolean;
  sizeBytes: bigint;
  createdAt: Date;
  /** Bytes its transfer wrote (what changed since its parent); undefined when the pool does not say (Cinder's backups). */
  bytesWritten: bigint | undefined;
}

export async function runList(config: ResolvedConfig, of: SubjectInput): Promise<ListedBackup[]> {
  const subject = resolveSubject(of, 'listBackups');
  await using pool = await config.backupCluster.pool(config.backupPool);
  return backupPoints(await readBackupImages(pool, subject)).map((point) => ({
    subject,
    record: newRecord({
      id: point.backupId, subject, container: config.backupPool,
      // Cinder writes no service_metadata for a legacy full copy; its name says where it is.
      baseImage: point.snapshot === undefined ? undefined : point.image.name,
      sizeBytes: point.size, parentId: point.parentId, createdAt: point.createdAt,
      displayName: point.info?.displayName ?? undefined, displayDescription: point.info?.displayDescription ?? undefined,
    }),
    image: point.image.name,
    snapshot: point.snapshot?.name,
    full: point.parentId === null,
    sizeBytes: point.size,
    createdAt: point.createdAt,
    bytesWritten: point.info?.bytesWritten ?? undefined,
  }));
}
