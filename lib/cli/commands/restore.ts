/** rbd-backup restore: a backup into a volume, a raw file or stdout. */
import type { RestoreTarget } from '../../backup/restore.js';
import { checkExportPath } from '../../engine/raw-export.js';
import { UsageError } from '../exit-codes.js';
import { backupRef, optional, RECORD_HELP, RECORD_OPTIONS, resolveRecord, type Command, type Values } from '../command.js';
import { formatBytes } from '../format.js';

function restoreTarget(values: Values): RestoreTarget {
  const given = ['target-pool', 'target-file', 'stdout'].filter((name) => values[name] !== undefined);
  if (given.length !== 1) {
    throw new UsageError(`give exactly one of --target-pool, --target-file, --stdout${given.length ? ` (got ${given.map((g) => `--${g}`).join(' and ')})` : ''}`);
  }
  const pool = optional(values, 'target-pool');
  const volume = optional(values, 'target-volume');
  const image = optional(values, 'target-image');
  const namespace = optional(values, 'target-namespace');
  if (volume !== undefined && image !== undefined) throw new UsageError('give --target-volume ID or --target-image NAME, not both');
  if ((volume !== undefined || image !== undefined) && pool === undefined) {
    throw new UsageError(`--target-${volume !== undefined ? 'volume' : 'image'} needs --target-pool`);
  }
  if (namespace !== undefined && image === undefined) throw new UsageError('--target-namespace goes with --target-image NAME');
  if (pool !== undefined && image !== undefined) {
    return { image: { pool, name: image, ...(namespace === undefined ? {} : { namespace }) } };
  }
  if (pool !== undefined) return { volume: { pool, ...(volume === undefined ? {} : { id: volume }) } };
  const file = optional(values, 'target-file');
  if (file !== undefined) return { file };
  return { stream: process.stdout };
}

export const restore: Command = {
  summary: 'restore a backup into a volume, a file or stdout',
  usage: `rbd-backup restore (--record TEXT | --record-file PATH | (--volume ID | --image NAME -p POOL) --backup-id ID)
                   (--target-pool POOL [--target-volume ID | --target-image NAME [--target-namespace NS]]
                    | --target-file PATH | --stdout)
                   [--force] [--dry-run]

${RECORD_HELP}
  --target-pool POOL    restore into volume-<target-volume> there (created when missing)
  --target-volume ID    default: a new volume id
  --target-image NAME   restore into this image of --target-pool instead (created when missing)
  --target-namespace NS the target image's namespace (default: none)
  --target-file PATH    write a raw image file (an existing file is refused)
  --stdout              write the raw image to standard output
  --force               write into a target volume that holds data, that another
                        client has open, or that is the backup's own source volume
  --dry-run             say which path the restore would take and why; change nothing`,
  options: {
    ...RECORD_OPTIONS,
    'target-pool': { type: 'string' }, 'target-volume': { type: 'string' }, 'target-file': { type: 'string' },
    'target-image': { type: 'string' }, 'target-namespace': { type: 'string' },
    'stdout': { type: 'boolean' }, 'force': { type: 'boolean' }, 'dry-run': { type: 'boolean' },
  },
  async prepare(values) {
    if (values.pool !== undefined && values.image === undefined) throw new UsageError('-p/--pool goes with --image NAME (the restore target is --target-pool)');
    const target = restoreTarget(values);
    // Before connecting: an existing file is never overwritten, a missing directory is named.
    if (target.file !== undefined) await checkExportPath(target.file);
    const ref = await backupRef(values);
    const dryRun = values['dry-run'] === true;
    return {
      offline: false,
      async run(engine, ui) {
        const record = await resolveRecord(engine, ref);
        // A raw image on stdout: progress would be the only thing on the terminal, and is left out.
        const progress = target.stream !== undefined || dryRun ? undefined : ui.progress('restore');
        let r;
        try {
          r = await engine.restore({
            backup: record, target, force: values.force === true, dryRun, signal: ui.signal, onProgress: progress?.onProgress,
          });
        } finally {
          progress?.finish();
        }
        if (r.dryRun) {
          return {
            data: r,
            text: [
              `dry run: would restore ${r.source} -> ${r.target} by ${r.path === 'diff' ? 'the diff path' : 'a full copy'}; nothing was changed`,
              ...(r.failedCondition ? [`full copy because condition ${r.failedCondition.number} fails: ${r.failedCondition.reason}`] : []),
            ].join('\n'),
          };
        }
        return {
          data: r,
          text: target.stream !== undefined ? undefined : [
            `restored ${r.source} -> ${r.target} by ${r.path === 'diff' ? 'the diff path' : 'a full copy'}`,
            ...(r.failedCondition ? [`full copy because condition ${r.failedCondition.number} failed: ${r.failedCondition.reason}`] : []),
            `${formatBytes(r.size)} volume, ${formatBytes(r.bytesRead)} read in ${(r.elapsedMs / 1000).toFixed(2)} s`,
          ].join('\n'),
        };
      },
    };
  },
};
