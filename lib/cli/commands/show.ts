/** rbd-backup show: everything known about one backup. */
import { checkSourcePool } from '../../backup/delete.js';
import type { BackupEngine } from '../../backup/engine.js';
import { readMetaObject } from '../../backup/meta.js';
import { describeSubject, metaObjectName, resolveSubject, sourceImageName, type Subject } from '../../backup/naming.js';
import { recordLocation } from '../../backup/record.js';
import { NotFoundError } from '../../ceph/errors.js';
import { backupRef, optional, RECORD_HELP, RECORD_OPTIONS, subjectFlags, type Command } from '../command.js';
import { formatBytes, formatLocalTime } from '../format.js';
import { entryOf, type BackupEntry } from './ls.js';

/** Whether the backup's snapshot is still on the source volume or image ('volume missing' when it is gone). */
async function sourceSnapshot(engine: BackupEngine, pool: string, subject: Subject,
  entry: BackupEntry): Promise<'present' | 'absent' | 'volume missing'> {
  if (entry.snapshot === null) return 'absent';
  await using sourcePool = await engine.config.source.pool(pool, subject.kind === 'image' ? subject.namespace : '');
  let volume;
  try {
    volume = await sourcePool.openImage(sourceImageName(subject), { readOnly: true });
  } catch (error) {
    if (error instanceof NotFoundError) return 'volume missing';
    throw error;
  }
  await using opened = volume;
  return await opened.snapshotExists(entry.snapshot) ? 'present' : 'absent';
}

/** The volume metadata stored with the backup (its .meta object), undefined when there is none. */
async function storedMetadata(engine: BackupEngine, backupId: string): Promise<unknown> {
  await using pool = await engine.config.backupCluster.pool(engine.config.backupPool);
  return await readMetaObject(pool, backupId);
}

function describeMetadata(backupId: string, metadata: unknown): string {
  if (metadata === undefined) return '-';
  const fields = metadata && typeof metadata === 'object' ? Object.keys(metadata).filter((key) => key !== 'version') : [];
  return `${metaObjectName(backupId)}: ${fields.length === 0 ? 'no fields' : fields.join(', ')}`;
}

export const show: Command = {
  summary: 'show one backup: chain image, parent, snapshot, size, times, name, source snapshot',
  usage: `rbd-backup show (--volume ID --backup-id ID | --record TEXT | --record-file PATH) [-p POOL]

${RECORD_HELP}
  -p, --pool POOL   the source volume's pool: tells whether the backup's snapshot is still on the volume
                    (a named image's is looked at in its own pool, always)`,
  options: RECORD_OPTIONS,
  async prepare(values) {
    const ref = await backupRef(values);
    const subject = 'record' in ref ? recordLocation(ref.record, 'show').subject : resolveSubject(ref.subject, 'show');
    const pool = subject.kind === 'image' ? subject.pool : optional(values, 'pool');
    checkSourcePool(subject, optional(values, 'pool'), 'show');
    return {
      offline: false,
      async run(engine) {
        const backupId = 'record' in ref ? ref.record.id : ref.backupId;
        const listed = (await engine.listBackups(subject)).find((l) => l.record.id === backupId);
        if (listed === undefined) {
          throw new NotFoundError({
            code: 'ENOENT', operation: 'show', resource: `${engine.config.backupPool}/${subject.key}`,
            detail: `no backup ${backupId} of ${describeSubject(subject)} in pool ${engine.config.backupPool}; list them with: rbd-backup ls ${subjectFlags(subject)}`,
          });
        }
        const found = entryOf(listed);
        // A record in hand may carry what the pool does not (names, description).
        const entry: BackupEntry = 'record' in ref
          ? { ...found, name: ref.record.display_name ?? found.name, description: ref.record.display_description ?? found.description }
          : found;
        const snapshotOnSource = pool === undefined ? undefined : await sourceSnapshot(engine, pool, subject, entry);
        const volumeMetadata = await storedMetadata(engine, backupId);
        const data = { ...entry, sourceSnapshot: snapshotOnSource ?? null, volumeMetadata: volumeMetadata ?? null };
        return {
          data,
          text: [
            `backup        ${entry.backupId}`,
            subject.kind === 'volume' ? `volume        ${subject.volumeId}` : `source image  ${describeSubject(subject).slice('image '.length)}`,
            `type          ${entry.type}`,
            `parent        ${entry.parentId ?? '-'}`,
            `image         ${engine.config.backupPool}/${entry.image}${entry.snapshot === null ? ' (legacy full copy)' : ''}`,
            `snapshot      ${entry.snapshot ?? '-'}`,
            `size          ${formatBytes(entry.sizeBytes)}`,
            `written       ${entry.bytesWritten === null ? '-' : formatBytes(entry.bytesWritten)}`,
            `created       ${formatLocalTime(new Date(entry.createdAt))}`,
            `name          ${entry.name ?? '-'}`,
            `description   ${entry.description ?? '-'}`,
            `metadata      ${describeMetadata(backupId, volumeMetadata)}`,
            `on source     ${snapshotOnSource === undefined ? 'unknown (give -p POOL to check)' : `${snapshotOnSource} (${subject.kind === 'volume' ? `${pool}/${sourceImageName(subject)}` : describeSubject(subject).slice('image '.length)})`}`,
          ].join('\n'),
        };
      },
    };
  },
};
