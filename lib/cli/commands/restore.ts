/** rbd-backup restore: a backup into a volume, a raw file or stdout. */
import { FLATTEN_MODES, type BackgroundFlatten, type FlattenMode } from '../../backup/instant-restore.js';
import type { RestoreResult, RestoreTarget } from '../../backup/restore.js';
import { checkExportPath } from '../../engine/target-file.js';
import { UsageError } from '../exit-codes.js';
import { backupRef, optional, RECORD_HELP, RECORD_OPTIONS, resolveRecord, type Command, type Output, type Ui, type Values } from '../command.js';
import { formatBytes } from '../format.js';
import type { ProgressReporter } from '../progress.js';

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

function pathText(r: RestoreResult): string {
  switch (r.path) {
    case 'diff': return 'the diff path';
    case 'instant': return 'an instant clone';
    case 'in-place': return `moving only what differs from ${r.commonSnapshot}, which the volume shares with the backup`;
    case 'files': return 'copying its files (Cinder\'s chunked layout), each object\'s md5 checked';
    default: return 'a full copy';
  }
}

/**
 * An instant restore's background flatten, waited for with its own progress
 * once the volume is announced usable. Ctrl-C stops the flatten only: the
 * volume stays a whole clone, and the command fails saying so.
 */
async function waitForFlatten(r: RestoreResult, flattening: BackgroundFlatten, ui: Ui,
  shown: { progress: ProgressReporter | undefined }): Promise<Output> {
  ui.notice(`restored ${r.source} -> ${r.target} by an instant clone: the volume is usable now; flattening it (Ctrl-C stops the flatten and leaves the clone)`);
  const stop = () => flattening.cancel();
  ui.signal.addEventListener('abort', stop, { once: true });
  if (ui.signal.aborted) stop();
  if (shown.progress !== undefined) shown.progress = ui.progress('flatten');
  try {
    await flattening.done;
  } catch (error) {
    ui.notice(`${r.target} is restored and usable, as a clone of ${r.source}: its flatten did not finish`);
    throw error;
  } finally {
    shown.progress?.finish();
    ui.signal.removeEventListener('abort', stop);
  }
  const data = { ...r, flattening: undefined, flattened: true, elapsedMs: r.elapsedMs };
  return { data, text: `${r.target} flattened: it no longer depends on the backup` };
}

export const restore: Command = {
  summary: 'restore a backup into a volume, a file or stdout',
  usage: `rbd-backup restore (--record TEXT | --record-file PATH | (--volume ID | --image NAME -p POOL) --backup-id ID)
                   (--target-pool POOL [--target-volume ID | --target-image NAME [--target-namespace NS]]
                    | --target-file PATH | --stdout)
                   [--force] [--dry-run] [--full-copy] [--verify] [--instant [--flatten background|now|never]]

${RECORD_HELP}
  --target-pool POOL    restore into volume-<target-volume> there (created when missing)
  --target-volume ID    default: a new volume id
  --target-image NAME   restore into this image of --target-pool instead (created when missing)
  --target-namespace NS the target image's namespace (default: none)
  --target-file PATH    write a raw image file (an existing file is refused)
  --stdout              write the raw image to standard output
  --force               write into a target volume that holds data, that another
                        client has open, or that is the backup's own source volume
  --dry-run             say which path the restore would take and why; change nothing
  --full-copy           copy everything into the backup's own volume, even when it
                        still shares a backup snapshot with the backup (by default only
                        what differs from that snapshot moves: an in-place restore)
  --verify              hash the restored bytes and compare them with the backup's
                        digests; a mismatch fails the restore (exit 8) and removes a
                        volume it created, or leaves no file (not with --instant)
  --instant             clone the backup instead of copying it: the volume is usable
                        at once (target pool in the backup's cluster, new volume only)
  --flatten MODE        with --instant: background (default: the volume is usable and
                        the command waits for the flatten; Ctrl-C stops the flatten and
                        leaves a clone), now (flatten before returning), never (stay a
                        clone: the backup cannot be deleted until it is flattened)
  --backup-path DIR     the backup root of a record of Cinder's NFS or POSIX backup
                        driver (its chunked file layout): the share's mount point`,
  options: {
    ...RECORD_OPTIONS,
    'target-pool': { type: 'string' }, 'target-volume': { type: 'string' }, 'target-file': { type: 'string' },
    'target-image': { type: 'string' }, 'target-namespace': { type: 'string' },
    'stdout': { type: 'boolean' }, 'force': { type: 'boolean' }, 'dry-run': { type: 'boolean' },
    'instant': { type: 'boolean' }, 'flatten': { type: 'string' }, 'full-copy': { type: 'boolean' }, 'verify': { type: 'boolean' },
    'backup-path': { type: 'string' },
  },
  async prepare(values) {
    if (values.pool !== undefined && values.image === undefined) throw new UsageError('-p/--pool goes with --image NAME (the restore target is --target-pool)');
    const target = restoreTarget(values);
    // Before connecting: an existing file is never overwritten, a missing directory is named.
    if (target.file !== undefined) await checkExportPath(target.file);
    const ref = await backupRef(values);
    const dryRun = values['dry-run'] === true;
    const instant = values.instant === true;
    const flatten = optional(values, 'flatten');
    if (flatten !== undefined && !instant) throw new UsageError('--flatten goes with --instant');
    if (flatten !== undefined && !(FLATTEN_MODES as readonly string[]).includes(flatten)) throw new UsageError(`--flatten is one of ${FLATTEN_MODES.join(', ')}, not ${flatten}`);
    if (instant && target.volume === undefined && target.image === undefined) {
      throw new UsageError('--instant makes a volume: give --target-pool (a file or stdout needs a restore without --instant)');
    }
    return {
      offline: false,
      async run(engine, ui) {
        const record = await resolveRecord(engine, ref);
        // A raw image on stdout: progress would be the only thing on the terminal, and is left out.
        const progress = target.stream !== undefined || dryRun ? undefined : ui.progress('restore');
        // A background flatten reports after the call: to its own bar then.
        const shown = { progress };
        let r;
        try {
          r = await engine.restore({
            backup: record, target, force: values.force === true, dryRun, signal: ui.signal,
            onProgress: progress === undefined ? undefined : (p) => shown.progress?.onProgress(p),
            ...(instant ? { instant, ...(flatten === undefined ? {} : { flatten: flatten as FlattenMode }) } : {}),
            ...(values['full-copy'] === true ? { inPlace: false } : {}),
            ...(values.verify === true ? { verify: true } : {}),
            ...(values['backup-path'] === undefined ? {} : { backupPath: optional(values, 'backup-path') }),
          });
        } finally {
          progress?.finish();
        }
        if (r.flattening !== undefined) return await waitForFlatten(r, r.flattening, ui, shown);
        if (r.dryRun) {
          return {
            data: r,
            text: [
              `dry run: would restore ${r.source} -> ${r.target} by ${pathText(r)}; nothing was changed`,
              ...(r.failedCondition ? [`${r.path === 'full' ? 'full copy' : 'not the diff path'} because condition ${r.failedCondition.number} fails: ${r.failedCondition.reason}`] : []),
            ].join('\n'),
          };
        }
        return {
          data: r,
          text: target.stream !== undefined ? undefined : [
            `restored ${r.source} -> ${r.target} by ${pathText(r)}${r.path === 'instant' ? ` (flatten: ${flatten ?? 'background'})` : ''}`,
            ...(r.failedCondition ? [`${r.path === 'full' ? 'full copy' : 'not the diff path'} because condition ${r.failedCondition.number} failed: ${r.failedCondition.reason}`] : []),
            `${formatBytes(r.size)} volume, ${formatBytes(r.bytesRead)} read in ${(r.elapsedMs / 1000).toFixed(2)} s`,
            ...(r.verifiedBlocks === undefined ? [] : [`verified: ${r.verifiedBlocks} blocks match the backup's digests`]),
          ].join('\n'),
        };
      },
    };
  },
};
