/** rbd-backup prune: remove what a retention policy does not keep. */
import { parseRetentionPolicy } from '../../backup/retention.js';
import { UsageError } from '../exit-codes.js';
import { optional, required, SUBJECT_HELP, SUBJECT_OPTIONS, subjectOption, type Command } from '../command.js';
import { formatLocalTime } from '../format.js';

export const prune: Command = {
  summary: 'remove the backups a retention policy does not keep (never the newest)',
  usage: `rbd-backup prune (--volume ID | --image NAME -p POOL [--namespace NS]) --keep POLICY [--dry-run] [-p POOL]

${SUBJECT_HELP}
  --keep POLICY     e.g. latest3,days7,weeks4,months6: the newest N backups, and the
                    newest of each of the last N hours/days/weeks/months/years (UTC)
  --dry-run         report what would be kept and removed, remove nothing
  -p, --pool POOL   the source volume's pool: removed backups' snapshots leave it too
                    (with --image, the image's pool, and they leave the image too)
  --backup-path DIR the volume's backups in files under this root (Cinder's NFS/POSIX
                    layout); a backup a kept incremental restores on top of is kept`,
  options: { ...SUBJECT_OPTIONS, keep: { type: 'string' }, 'dry-run': { type: 'boolean' }, 'backup-path': { type: 'string' } },
  async prepare(values) {
    const subject = subjectOption(values);
    if (subject === undefined) throw new UsageError('--volume ID or --image NAME is required');
    const policy = required(values, 'keep');
    // A policy that does not parse is refused before connecting.
    parseRetentionPolicy(policy);
    const sourcePool = optional(values, 'pool');
    const backupPath = optional(values, 'backup-path');
    return {
      offline: false,
      async run(engine) {
        const r = await engine.prune(subject, policy, {
          dryRun: values['dry-run'] === true, ...(sourcePool === undefined ? {} : { sourcePool }),
          ...(backupPath === undefined ? {} : { backupPath }),
        });
        return {
          data: r,
          text: [
            ...r.kept.map((k) => `keep    ${k.backupId}  ${formatLocalTime(k.createdAt)}  ${k.image}  (${k.reasons.join('; ')})`),
            ...r.removed.map((k) => `${r.dryRun ? 'remove' : 'removed'} ${k.backupId}  ${formatLocalTime(k.createdAt)}  ${k.image}`),
            ...r.removedImages.map((i) => `removed image ${i}`),
            `${r.kept.length} kept, ${r.removed.length} ${r.dryRun ? 'would remove' : 'removed'}`,
          ].join('\n'),
        };
      },
    };
  },
};
