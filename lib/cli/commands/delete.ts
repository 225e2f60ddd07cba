/** rbd-backup delete: one backup (its chain image goes with its last backup). */
import { backupRef, optional, RECORD_HELP, RECORD_OPTIONS, resolveRecord, type Command } from '../command.js';

export const deleteBackup: Command = {
  summary: 'delete a backup (its chain image goes with its last backup)',
  usage: `rbd-backup delete (--record TEXT | --record-file PATH | (--volume ID | --image NAME -p POOL) --backup-id ID) [-p POOL]

${RECORD_HELP}
  -p, --pool POOL       the source volume's pool: its snapshot of the backup goes too
                        (default: left for the volume's next backup to remove; with --image,
                        the image's pool, and its snapshot goes too)
  --backup-path DIR     a backup in files (Cinder's NFS/POSIX layout): its backup root
  --with-dependents     a backup in files: its incrementals go too (without, deleting a
                        backup that incrementals restore on top of is refused, naming them)`,
  options: { ...RECORD_OPTIONS, 'backup-path': { type: 'string' }, 'with-dependents': { type: 'boolean' } },
  async prepare(values) {
    const ref = await backupRef(values);
    const sourcePool = optional(values, 'pool');
    const backupPath = optional(values, 'backup-path');
    return {
      offline: false,
      async run(engine) {
        const r = await engine.delete(await resolveRecord(engine, ref, backupPath), {
          ...(sourcePool === undefined ? {} : { sourcePool }), ...(backupPath === undefined ? {} : { backupPath }),
          ...(values['with-dependents'] === true ? { withDependents: true } : {}),
        });
        return {
          data: r,
          text: [
            ...(r.removedBackups ?? []).map((b) => `removed backup ${b} (its files)`),
            ...r.removedSnapshots.map((s) => `removed snapshot ${s}`),
            ...r.removedImages.map((i) => `removed image ${i}`),
            ...(r.removedMetadata ? ['removed its .meta object'] : []),
            ...(r.removedDigests ? ['removed its .digests object'] : []),
            ...(r.removedSourceSnapshot ? [`removed source snapshot ${r.removedSourceSnapshot}`] : []),
          ].join('\n'),
        };
      },
    };
  },
};
