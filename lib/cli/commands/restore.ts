/** rbd-backup restore: a backup into a volume, a raw file or stdout. */
import { access, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { RestoreTarget } from '../../backup/restore.js';
import { AlreadyExistsError, NotFoundError } from '../../ceph/errors.js';
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
  if (volume !== undefined && pool === undefined) throw new UsageError('--target-volume needs --target-pool');
  if (pool !== undefined) return { volume: { pool, ...(volume === undefined ? {} : { id: volume }) } };
  const file = optional(values, 'target-file');
  if (file !== undefined) return { file };
  return { stream: process.stdout };
}

/**
 * A file target is checked before connecting: an existing file is never
 * overwritten, and a missing directory is named as such (the engine refuses
 * both too, but later and in its own words).
 */
async function checkTargetFile(path: string): Promise<void> {
  const existing = await stat(path).catch(() => undefined);
  if (existing !== undefined) {
    throw new AlreadyExistsError({
      code: 'EEXIST', operation: 'restore', resource: path,
      detail: `the --target-file ${path} already exists and is never overwritten; remove it or give another path`,
    });
  }
  const directory = dirname(resolve(path));
  if (!await access(directory).then(() => true, () => false)) {
    throw new NotFoundError({
      code: 'ENOENT', operation: 'restore', resource: directory,
      detail: `the directory ${directory} of --target-file ${path} does not exist; create it or give another path`,
    });
  }
}

export const restore: Command = {
  summary: 'restore a backup into a volume, a file or stdout',
  usage: `rbd-backup restore (--record TEXT | --record-file PATH | --volume ID --backup-id ID)
                   (--target-pool POOL [--target-volume ID] | --target-file PATH | --stdout)

${RECORD_HELP}
  --target-pool POOL    restore into volume-<target-volume> there (created when missing)
  --target-volume ID    default: a new volume id
  --target-file PATH    write a raw image file (an existing file is refused)
  --stdout              write the raw image to standard output`,
  options: {
    ...RECORD_OPTIONS,
    'target-pool': { type: 'string' }, 'target-volume': { type: 'string' }, 'target-file': { type: 'string' },
    'stdout': { type: 'boolean' },
  },
  async prepare(values) {
    const target = restoreTarget(values);
    if (target.file !== undefined) await checkTargetFile(target.file);
    const ref = await backupRef(values);
    return {
      offline: false,
      async run(engine, ui) {
        const record = await resolveRecord(engine, ref);
        // A raw image on stdout: progress would be the only thing on the terminal, and is left out.
        const progress = target.stream !== undefined ? undefined : ui.progress('restore');
        let r;
        try {
          r = await engine.restore({ backup: record, target, signal: ui.signal, onProgress: progress?.onProgress });
        } finally {
          progress?.finish();
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
