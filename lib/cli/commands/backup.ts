/** rbd-backup backup: a full or incremental backup of one volume or named image. */
import { randomUUID } from 'node:crypto';
import type { VolumeMetadata } from '../../backup/backup.js';
import { describeSubject, resolveSubject } from '../../backup/naming.js';
import { invalidArgument } from '../../ceph/errors.js';
import { UsageError } from '../exit-codes.js';
import { optional, readUserFile, required, SUBJECT_HELP, SUBJECT_OPTIONS, subjectOption, type Command } from '../command.js';
import { formatBytes } from '../format.js';

/** --metadata: a JSON object, read and checked before anything connects. */
async function readMetadata(path: string): Promise<VolumeMetadata> {
  const text = await readUserFile(path, '--metadata');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw invalidArgument('read', path,
      `--metadata ${path} is not valid JSON (${(error as Error).message}); give a file holding a JSON object such as {"volume-metadata": {...}}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw invalidArgument('read', path, `--metadata ${path} must hold a JSON object, got ${Array.isArray(parsed) ? 'an array' : typeof parsed}`);
  }
  return parsed as VolumeMetadata;
}

export const backup: Command = {
  summary: 'back up a volume or image (full the first time, incremental after)',
  usage: `rbd-backup backup -p POOL (--volume ID | --image NAME [--namespace NS]) [--backup-id ID] [--parent ID] [--full]
                  [--metadata PATH] [--name TEXT] [--description TEXT]
                  [--backup-path DIR [--compression zlib|zstd|bz2|none]]

  -p, --pool POOL    the pool holding volume-<ID> or the image
${SUBJECT_HELP}
  --namespace NS     the image's namespace in POOL (default: none)
  --backup-id ID     default: a new UUID (printed first: the same command with it
                     continues a run that was killed or cut off)
  --parent ID        make an incremental from this backup (it must be a backup of the volume)
  --full             a full backup even when an incremental is possible
  --metadata PATH    a JSON object (volume metadata) to store as backup.<id>.meta
  --name TEXT        the backup's display name (in its record)
  --description TEXT the backup's display description (in its record)
  --backup-path DIR  back up into this directory (an NFS share's mount point, say) in
                     the layout of Cinder's NFS and POSIX backup drivers, instead of
                     the backup pool; incremental by RBD diff (a volume only)
  --compression ALG  of a backup into files: zlib (default, as Cinder's), zstd, bz2 or none`,
  options: {
    ...SUBJECT_OPTIONS, 'backup-id': { type: 'string' },
    'parent': { type: 'string' }, 'full': { type: 'boolean' }, 'metadata': { type: 'string' },
    'name': { type: 'string' }, 'description': { type: 'string' },
    'backup-path': { type: 'string' }, 'compression': { type: 'string' },
  },
  async prepare(values) {
    const pool = required(values, 'pool', '-p/--pool');
    const subject = subjectOption(values);
    if (subject === undefined) throw new UsageError('--volume ID or --image NAME is required');
    const named = typeof subject === 'string' ? { volumeId: subject } : { image: subject.image, namespace: subject.namespace };
    const metadataPath = optional(values, 'metadata');
    const backupPath = optional(values, 'backup-path');
    const compression = optional(values, 'compression');
    if (compression !== undefined && backupPath === undefined) throw new UsageError('--compression goes with --backup-path (backups into files)');
    const volumeMetadata = metadataPath === undefined ? undefined : await readMetadata(metadataPath);
    return {
      offline: false,
      async run(engine, ui) {
        // Chosen here and said first: a run killed or cut off is continued by the same command with this id.
        const backupId = optional(values, 'backup-id') ?? randomUUID();
        ui.notice(`backup ${backupId}: if this run is interrupted, run it again with --backup-id ${backupId} ` +
          '(it continues the transfer where it can, or finds the backup complete)');
        const progress = ui.progress('backup');
        let result;
        try {
          result = await engine.backup({
            pool, ...named, backupId, parentId: optional(values, 'parent'),
            full: values.full === true, volumeMetadata,
            ...(backupPath === undefined ? {} : { backupPath }), ...(compression === undefined ? {} : { compression }),
            displayName: optional(values, 'name'), displayDescription: optional(values, 'description'),
            onLockWait: (holder) => ui.notice(`waiting for the volume's lock, held by ${holder.description} (${holder.client} at ${holder.address})`),
            signal: ui.signal, onProgress: progress?.onProgress,
          });
        } finally {
          progress?.finish();
        }
        const exportedRecord = engine.exportRecord(result.record);
        const r = result;
        return {
          data: { ...r, exportedRecord },
          text: [
            `backup ${r.record.id} of ${describeSubject(resolveSubject(subject, 'backup'))}: ${r.mode}${r.fromSnapshot ? ` from ${r.fromSnapshot}` : ''}`,
            ...(r.convertedToFull ? [`converted to a full backup: ${r.convertedToFull}`] : []),
            ...(r.resumedFrom === undefined ? [] : [`continued the transfer of a killed run of this backup at ${formatBytes(r.resumedFrom)}`]),
            ...(r.alreadyComplete ? [`already complete: the last run of this backup had finished it (at ${r.record.created_at}); nothing was moved`] : []),
            `snapshot ${r.snapshot} on ${r.files === undefined ? r.baseImage : 'the volume'}`,
            ...(r.files === undefined ? [] : [`${r.files.objects.length} objects, ${formatBytes(r.files.bytesStored)} stored in ${r.baseImage} (prefix ${r.files.prefix})`]),
            `${formatBytes(r.stats.bytesWritten)} written, ${formatBytes(r.stats.bytesRead)} read in ${(r.stats.elapsedMs / 1000).toFixed(2)} s`,
            ...(r.digests === undefined ? [] : [`digests: ${r.digests.blocks} blocks of ${formatBytes(r.digests.blockSize)}${r.digests.unknownBlocks > 0 ? ` (${r.digests.unknownBlocks} unknown: the parent had none)` : ''}, point digest ${r.digests.pointDigest}`]),
            `record: ${exportedRecord}`,
          ].join('\n'),
        };
      },
    };
  },
};
