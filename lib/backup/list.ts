/**
 * The backups of a volume, read from the backup pool itself (no database):
 * the snapshots of its diff-format base image and its legacy images.
 */
import type { ResolvedConfig } from './config.js';
import { backupSnapshots } from './chain.js';
import { baseImageName, checkId, parseBackupSnapshotName, parseLegacyImageName } from './naming.js';
import { CEPH_BACKUP_SERVICE, isoTime, type BackupRecord } from './record.js';

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

const GiB = 1n << 30n;

function record(config: ResolvedConfig, volumeId: string, backupId: string, image: string,
  sizeBytes: bigint, createdAt: Date, parentId: string | null, base: boolean): BackupRecord {
  return {
    id: backupId,
    volume_id: volumeId,
    container: config.backupPool,
    service: CEPH_BACKUP_SERVICE,
    service_metadata: base ? JSON.stringify({ base: image }) : null,
    size: Number((sizeBytes + GiB - 1n) / GiB),
    object_count: 0,
    parent_id: parentId,
    status: 'available',
    display_name: null,
    display_description: null,
    created_at: isoTime(createdAt),
    updated_at: null,
    data_timestamp: isoTime(createdAt),
    availability_zone: null,
    snapshot_id: null,
    num_dependent_backups: 0,
  };
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
            record: record(config, volumeId, parsed.backupId, baseName, snap.size, createdAt, parentId, true),
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
          record: record(config, volumeId, backupId, name, size, createdAt, null, false),
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
