/** rbd-backup gc: what killed runs left. */
import { optional, type Command } from '../command.js';

export const gc: Command = {
  summary: 'remove what killed runs left (unfinished images, orphan snapshots, dead locks)',
  usage: `rbd-backup gc [-p POOL] [--dry-run]

  -p, --pool POOL   the source volumes' pool: orphan backup snapshots on the volumes
                    and half-restored volumes there are removed too
  --dry-run         report what would be removed, remove nothing`,
  options: { pool: { type: 'string', short: 'p' }, 'dry-run': { type: 'boolean' } },
  async prepare(values) {
    const sourcePool = optional(values, 'pool');
    return {
      offline: false,
      async run(engine) {
        const r = await engine.gc({ dryRun: values['dry-run'] === true, ...(sourcePool === undefined ? {} : { sourcePool }) });
        const verb = r.dryRun ? 'would remove' : 'removed';
        return {
          data: r,
          text: [
            ...r.removedImages.map((i) => `${verb} image ${i}`),
            ...r.removedSnapshots.map((s) => `${verb} snapshot ${s}`),
            ...r.brokenLocks.map((b) => `broke the lock ${b.object} of ${b.holder.description} (${b.holder.client}, fenced)`),
            ...r.skipped.map((s) => `skipped ${s.image === undefined ? `volume ${s.volumeId}` : `image ${s.image}`}: ${s.reason}`),
            `${r.removedImages.length} image(s) and ${r.removedSnapshots.length} snapshot(s) ${verb}`,
          ].join('\n'),
        };
      },
    };
  },
};
