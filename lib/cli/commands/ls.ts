/** rbd-backup ls: the backups of one volume, or of every volume, read from the backup pool. */
import type { BackupEngine } from '../../backup/engine.js';
import type { ListedBackup } from '../../backup/list.js';
import { volumeOfBackupImage } from '../../backup/naming.js';
import { UsageError } from '../exit-codes.js';
import { optional, type Command } from '../command.js';
import { formatBytes, formatLocalTime, formatTable } from '../format.js';

/** One backup as `ls --json` and `show --json` print it (the README documents this shape). */
export interface BackupEntry {
  volumeId: string;
  backupId: string;
  type: 'full' | 'incremental';
  parentId: string | null;
  /** ISO 8601, UTC. */
  createdAt: string;
  /** The volume's size at the backup, in bytes. */
  sizeBytes: number;
  /** What its transfer wrote (changed since its parent), in bytes; null when the pool does not say (Cinder's backups). */
  bytesWritten: number | null;
  name: string | null;
  description: string | null;
  /** The chain image (or legacy full copy) in the backup pool. */
  image: string;
  /** Its snapshot on the chain image; null for a legacy full copy. */
  snapshot: string | null;
  /** A record that restores exactly this backup (Cinder's field names). */
  record: ListedBackup['record'];
}

export function entryOf(listed: ListedBackup): BackupEntry {
  const { record } = listed;
  return {
    volumeId: record.volume_id, backupId: record.id, type: listed.full ? 'full' : 'incremental',
    parentId: record.parent_id, createdAt: listed.createdAt.toISOString(), sizeBytes: Number(listed.sizeBytes),
    bytesWritten: listed.bytesWritten ?? null,
    name: record.display_name, description: record.display_description,
    image: listed.image, snapshot: listed.snapshot ?? null, record,
  };
}

/**
 * The volumes with backup images in the backup pool.
 * (The backup layer has no call for this yet; the image names are Cinder's.)
 */
async function volumesWithBackups(engine: BackupEngine): Promise<string[]> {
  await using pool = await engine.config.backupCluster.pool(engine.config.backupPool);
  const ids = new Set<string>();
  for (const name of await pool.listImages()) {
    const volumeId = volumeOfBackupImage(name);
    if (volumeId !== undefined) ids.add(volumeId);
  }
  return [...ids].sort();
}

function table(entries: BackupEntry[], withVolume: boolean): string {
  const header = [...(withVolume ? ['VOLUME'] : []), 'BACKUP', 'TYPE', 'CREATED', 'SIZE', 'NAME', 'IMAGE@SNAPSHOT'];
  return formatTable(header, entries.map((e) => [
    ...(withVolume ? [e.volumeId] : []),
    e.backupId, e.type === 'full' ? 'full' : 'incr', formatLocalTime(new Date(e.createdAt)), formatBytes(e.sizeBytes),
    e.name ?? '-', e.snapshot === null ? `${e.image} (legacy full copy)` : `${e.image}@${e.snapshot}`,
  ]));
}

export const ls: Command = {
  summary: "list a volume's backups, or every volume's (read from the backup pool)",
  usage: `rbd-backup ls (--volume ID | --all)

  --volume ID       the volume's backups, oldest first
  --all             the backups of every volume with backup images in the backup pool`,
  options: { volume: { type: 'string' }, all: { type: 'boolean' } },
  async prepare(values) {
    const volumeId = optional(values, 'volume');
    const all = values.all === true;
    if ((volumeId === undefined) === !all) throw new UsageError('give --volume ID or --all (one of them)');
    return {
      offline: false,
      async run(engine) {
        const volumes = volumeId === undefined ? await volumesWithBackups(engine) : [volumeId];
        const entries: BackupEntry[] = [];
        for (const id of volumes) entries.push(...(await engine.listBackups(id)).map(entryOf));
        const where = `in pool ${engine.config.backupPool}`;
        return {
          data: entries,
          text: entries.length > 0 ? table(entries, all)
            : volumeId === undefined ? `no backups ${where}` : `no backups of volume ${volumeId} ${where}`,
        };
      },
    };
  },
};
