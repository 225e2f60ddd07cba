/** rbd-backup show: everything known about one backup. */
import type { BackupEngine } from '../../backup/engine.js';
import { volumeImageName } from '../../backup/naming.js';
import { NotFoundError } from '../../ceph/errors.js';
import { backupRef, optional, RECORD_HELP, RECORD_OPTIONS, type Command } from '../command.js';
import { formatBytes, formatLocalTime } from '../format.js';
import { entryOf, type BackupEntry } from './ls.js';

/** Whether the backup's snapshot is still on the source volume ('volume missing' when the volume is gone). */
async function sourceSnapshot(engine: BackupEngine, pool: string, entry: BackupEntry): Promise<'present' | 'absent' | 'volume missing'> {
  if (entry.snapshot === null) return 'absent';
  await using sourcePool = await engine.config.source.pool(pool);
  let volume;
  try {
    volume = await sourcePool.openImage(volumeImageName(entry.volumeId), { readOnly: true });
  } catch (error) {
    if (error instanceof NotFoundError) return 'volume missing';
    throw error;
  }
  await using opened = volume;
  return await opened.snapshotExists(entry.snapshot) ? 'present' : 'absent';
}

export const show: Command = {
  summary: 'show one backup: chain image, parent, snapshot, size, times, name, source snapshot',
  usage: `rbd-backup show (--volume ID --backup-id ID | --record TEXT | --record-file PATH) [-p POOL]

${RECORD_HELP}
  -p, --pool POOL   the source volume's pool: tells whether the backup's snapshot is still on the volume`,
  options: { ...RECORD_OPTIONS, pool: { type: 'string', short: 'p' } },
  async prepare(values) {
    const ref = await backupRef(values);
    const pool = optional(values, 'pool');
    return {
      offline: false,
      async run(engine) {
        const volumeId = 'record' in ref ? ref.record.volume_id : ref.volumeId;
        const backupId = 'record' in ref ? ref.record.id : ref.backupId;
        const listed = (await engine.listBackups(volumeId)).find((l) => l.record.id === backupId);
        if (listed === undefined) {
          throw new NotFoundError({
            code: 'ENOENT', operation: 'show', resource: `${engine.config.backupPool}/volume-${volumeId}`,
            detail: `no backup ${backupId} of volume ${volumeId} in pool ${engine.config.backupPool}; list them with: rbd-backup ls --volume ${volumeId}`,
          });
        }
        const found = entryOf(listed);
        // A record in hand may carry what the pool does not (names, description).
        const entry: BackupEntry = 'record' in ref
          ? { ...found, name: ref.record.display_name ?? found.name, description: ref.record.display_description ?? found.description }
          : found;
        const snapshotOnSource = pool === undefined ? undefined : await sourceSnapshot(engine, pool, entry);
        const data = { ...entry, sourceSnapshot: snapshotOnSource ?? null };
        return {
          data,
          text: [
            `backup        ${entry.backupId}`,
            `volume        ${entry.volumeId}`,
            `type          ${entry.type}`,
            `parent        ${entry.parentId ?? '-'}`,
            `image         ${engine.config.backupPool}/${entry.image}${entry.snapshot === null ? ' (legacy full copy)' : ''}`,
            `snapshot      ${entry.snapshot ?? '-'}`,
            `size          ${formatBytes(entry.sizeBytes)}`,
            `written       ${entry.bytesWritten === null ? '-' : formatBytes(entry.bytesWritten)}`,
            `created       ${formatLocalTime(new Date(entry.createdAt))}`,
            `name          ${entry.name ?? '-'}`,
            `description   ${entry.description ?? '-'}`,
            `on source     ${snapshotOnSource === undefined ? 'unknown (give -p POOL to check)' : `${snapshotOnSource}${pool === undefined ? '' : ` (${pool}/${volumeImageName(entry.volumeId)})`}`}`,
          ].join('\n'),
        };
      },
    };
  },
};
