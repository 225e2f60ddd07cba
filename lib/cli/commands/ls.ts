/** rbd-backup ls: the backups of one volume or image, or of every one, read from the backup pool. */
import type { BackupEngine } from '../../backup/engine.js';
import type { ListedBackup } from '../../backup/list.js';
import { describeSubject, resolveSubject, subjectOfBackupImage, type Subject } from '../../backup/naming.js';
import { isFileLayoutRecord, type SourceImageField } from '../../backup/record.js';
import { UsageError } from '../exit-codes.js';
import { optional, SUBJECT_HELP, SUBJECT_OPTIONS, subjectOption, type Command } from '../command.js';
import { formatBytes, formatLocalTime, formatTable } from '../format.js';

/** One backup as `ls --json` and `show --json` print it (the README documents this shape). */
export interface BackupEntry {
  /** The Cinder volume backed up; null for a named image's backup. */
  volumeId: string | null;
  /** The named image backed up; null for a volume's backup. */
  sourceImage: SourceImageField | null;
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
  /** The chain image (or legacy full copy) in the backup pool; for a backup in files, its container's directory. */
  image: string;
  /** Its snapshot on the chain image; null for a legacy full copy. */
  snapshot: string | null;
  /** A record that restores exactly this backup (Cinder's field names). */
  record: ListedBackup['record'];
}

export function entryOf(listed: ListedBackup): BackupEntry {
  const { record, subject } = listed;
  return {
    volumeId: subject.kind === 'volume' ? subject.volumeId : null,
    sourceImage: subject.kind === 'image' ? { pool: subject.pool, namespace: subject.namespace, name: subject.image } : null,
    backupId: record.id, type: listed.full ? 'full' : 'incremental',
    parentId: record.parent_id, createdAt: listed.createdAt.toISOString(), sizeBytes: Number(listed.sizeBytes),
    bytesWritten: listed.bytesWritten === undefined ? null : Number(listed.bytesWritten),
    name: record.display_name, description: record.display_description,
    image: listed.image, snapshot: listed.snapshot ?? null, record,
  };
}

/**
 * The volumes and named images with backup images in the backup pool,
 * volumes first, each sorted. (The backup layer has no call for this yet.)
 */
async function subjectsWithBackups(engine: BackupEngine): Promise<Subject[]> {
  await using pool = await engine.config.backupCluster.pool(engine.config.backupPool);
  const found = new Map<string, Subject>();
  for (const name of await pool.listImages()) {
    const subject = subjectOfBackupImage(name);
    if (subject !== undefined) found.set(subject.key, subject);
  }
  const volumes = [...found.values()].filter((s) => s.kind === 'volume').sort((a, b) => a.key.localeCompare(b.key));
  const images = [...found.values()].filter((s) => s.kind === 'image').sort((a, b) => a.key.localeCompare(b.key));
  return [...volumes, ...images];
}

/** The VOLUME column: a volume id, or a named image's pool[/namespace]/name (a volume id has no '/'). */
function sourceOf(entry: BackupEntry): string {
  if (entry.volumeId !== null) return entry.volumeId;
  const image = entry.sourceImage!;
  return `${image.pool}${image.namespace ? `/${image.namespace}` : ''}/${image.name}`;
}

function table(entries: BackupEntry[], withVolume: boolean): string {
  const header = [...(withVolume ? ['VOLUME'] : []), 'BACKUP', 'TYPE', 'CREATED', 'SIZE', 'NAME', 'IMAGE@SNAPSHOT'];
  return formatTable(header, entries.map((e) => [
    ...(withVolume ? [sourceOf(e)] : []),
    e.backupId, e.type === 'full' ? 'full' : 'incr', formatLocalTime(new Date(e.createdAt)), formatBytes(e.sizeBytes),
    e.name ?? '-',
    isFileLayoutRecord(e.record) ? `${e.image} (files)` : e.snapshot === null ? `${e.image} (legacy full copy)` : `${e.image}@${e.snapshot}`,
  ]));
}

export const ls: Command = {
  summary: "list a volume's or image's backups, or every one's (read from the backup pool)",
  usage: `rbd-backup ls (--volume ID | --image NAME -p POOL [--namespace NS] | --all)

${SUBJECT_HELP}
                        (its backups, oldest first)
  --all                 the backups of every volume and image with backup images in the backup pool
  --backup-path DIR     the volume's backups in files under this root (Cinder's NFS/POSIX layout)`,
  options: { ...SUBJECT_OPTIONS, all: { type: 'boolean' }, 'backup-path': { type: 'string' } },
  async prepare(values) {
    const subject = subjectOption(values);
    const all = values.all === true;
    if ((subject === undefined) === !all) throw new UsageError('give --volume ID or --all (one of them; --image NAME -p POOL in place of --volume ID for any RBD image)');
    if (subject === undefined && values.pool !== undefined) throw new UsageError('-p/--pool goes with --image NAME');
    const backupPath = optional(values, 'backup-path');
    if (backupPath !== undefined && all) throw new UsageError('--backup-path goes with --volume ID');
    return {
      offline: false,
      async run(engine) {
        const subjects = subject === undefined ? await subjectsWithBackups(engine) : [subject];
        const entries: BackupEntry[] = [];
        const options = backupPath === undefined ? {} : { backupPath };
        for (const one of subjects) entries.push(...(await engine.listBackups(one, options)).map(entryOf));
        const where = backupPath === undefined ? `in pool ${engine.config.backupPool}` : `in ${backupPath}`;
        return {
          data: entries,
          text: entries.length > 0 ? table(entries, all)
            : subject === undefined ? `no backups ${where}` : `no backups of ${describeSubject(resolveSubject(subject, 'ls'))} ${where}`,
        };
      },
    };
  },
};
