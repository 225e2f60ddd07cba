/**
 * The backups of a volume, read from the backup pool itself (no database):
 * the snapshots of its diff-format base image and its legacy images.
 */
import type { ResolvedConfig } from './config.js';
import { backupSnapshots } from './chain.js';
import { baseImageName, checkId, parseBackupSnapshotName, parseLegacyImageName } from './naming.js';
import { newRecord, type BackupRecord } from './record.js';

export interface ListedBackup {
  /** A record to restore or delete it with (or to export). */
  record: BackupRecord;
  /** The image holding it. */
  image: string;
  /** Its snapshot on the base image; undefined for a legacy image. */
  snapshot: string | undefined;
  sizeBytes: bigint;
  createdAt: Date;
}

export async function runList(config: ResolvedConfig, volumeIdInput: string): Promise<ListedBackup[]> {
  const volumeId = checkId('volume', volumeIdInput, 'listBackups');
  const pool = await config.backupCluster.pool(config.backupPool);
  try {
    const images = await pool.listImages();
    const listed: ListedBackup[] = [];
    const baseName = baseImageName(volumeId);
    if (images.includes(baseName)) {
      const base = await pool.openImage(baseName, { readOnly: true });
      try {
        const snapshots = await base.listSnapshots();
        let parentId: string | null = null;
        for (const name of backupSnapshots(snapshots.map((s) => s.name))) {
          const snap = snapshots.find((s) => s.name === name)!;
          const parsed = parseBackupSnapshotName(name)!;
          const createdAt = Number.isFinite(parsed.seconds) ? new Date(parsed.seconds * 1000) : snap.timestamp;
          // Each backup on the base holds the diff from the one before it.
          listed.push({
            record: newRecord({
              id: parsed.backupId, volumeId, container: config.backupPool, baseImage: baseName,
              sizeBytes: snap.size, parentId, createdAt,
            }),
            image: baseName, snapshot: name, sizeBytes: snap.size, createdAt,
          });
          parentId = parsed.backupId;
        }
      } finally {
        await base.close();
      }
    }
    for (const name of images) {
      const backupId = parseLegacyImageName(volumeId, name);
      if (backupId === undefined) continue;
      const image = await pool.openImage(name, { readOnly: true });
      try {
        const { size, createdAt } = await image.stat();
        listed.push({
          record: newRecord({
            id: backupId, volumeId, container: config.backupPool, baseImage: undefined,
            sizeBytes: size, parentId: null, createdAt,
          }),
          image: name, snapshot: undefined, sizeBytes: size, createdAt,
        });
      } finally {
        await image.close();
      }
    }
    return listed;
  } finally {
    await pool.close();
  }
}
