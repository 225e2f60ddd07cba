/** rbd-backup delete: one backup (its chain image goes with its last backup). */
import { backupRef, optional, RECORD_HELP, RECORD_OPTIONS, resolveRecord, type Command } from '../command.js';

export const deleteBackup: Command = {
  summary: 'delete a backup (its chain image goes with its last backup)',
  usage: `rbd-backup delete (--record TEXT | --record-file PATH | (--volume ID | --image NAME -p POOL) --backup-id ID) [-p POOL]

${RECORD_HELP}
  -p, --pool POOL       the source volume's pool: its snapshot of the backup goes too
                        (default: left for the volume's next backup to remove; with --image,
                        the image's pool, and its snapshot goes too)`,
  options: RECORD_OPTIONS,
  async prepare(values) {
    const ref = await backupRef(values);
    const sourcePool = optional(values, 'pool');
    return {
      offline: false,
      async run(engine) {
        const r = await engine.delete(await resolveRecord(engine, ref), sourcePool === undefined ? {} : { sourcePool });
        return {
          data: r,
          text: [
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
