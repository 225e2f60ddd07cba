/**
 * A chain of backups (a full one, then incrementals) of a volume that
 * another client keeps writing to, as a running VM does: every backup's
 * restore must hold exactly its source snapshot's bytes, whatever was
 * written while it was taken.
 */
import { randomBytes } from 'node:crypto';
import { intBelow } from '../lib/dev/prng.js';
import { POOL } from '../test/support/backup-fixtures.js';
import { connect } from '../test/support/clusters.js';
import { backupId, debrisOf, faultedEngine, filledVolume, outcome, verifyBackup, worse, type Context } from './kit.js';
import type { RunOutcome } from './outcome.js';
import { describeError, settle } from './settle.js';

/** Writes 4 KiB .. 256 KiB of random data at seeded offsets until stopped; resolves with the count. */
async function writeUntil(ctx: Context, volumeId: string, stop: AbortSignal): Promise<number> {
  // Another client, as the VM would be: it holds the volume's exclusive lock between the backups' snapshots.
  const client = await connect('a');
  let writes = 0;
  try {
    await using pool = await client.pool(POOL);
    await using image = await pool.openImage(`volume-${volumeId}`);
    const { size } = await image.stat();
    const blocks = Number(size / 4096n);
    while (!stop.aborted) {
      const length = 4096 * (1 + intBelow(ctx.rng, 64));
      await image.write(randomBytes(length), 4096 * intBelow(ctx.rng, blocks - length / 4096));
      writes++;
    }
  } finally {
    await client.close();
  }
  return writes;
}

export async function liveWrites(ctx: Context): Promise<RunOutcome[]> {
  const volumeId = await filledVolume(ctx);
  const engine = await faultedEngine(ctx);
  const stop = new AbortController();
  const writing = writeUntil(ctx, volumeId, stop.signal);
  const outcomes: RunOutcome[] = [];
  try {
    for (let i = 0; i < ctx.settings.chain; i++) {
      const s = await settle(ctx.settings.budgetMs, (timeoutMs) => engine.backup({ pool: POOL, volumeId, backupId: backupId(), timeoutMs }));
      if (s.settled !== 'completed') {
        outcomes.push(outcome(ctx, `backup ${i + 1} of ${ctx.settings.chain}`, s));
        continue;
      }
      const { record, snapshot, mode } = s.value!;
      const checked = await verifyBackup(ctx, record, volumeId, snapshot);
      const wrongMode = mode !== (i === 0 ? 'full' : 'incremental');
      outcomes.push(outcome(ctx, `backup ${i + 1} of ${ctx.settings.chain}`, s, {
        settled: worse(s.settled, checked.settled), corrupt: checked.corrupt,
        debris: wrongMode ? [`backup ${i + 1} was ${mode}`] : [],
        detail: `${mode}: ${checked.detail}`,
      }));
    }
  } finally {
    stop.abort();
  }
  // The writer is the VM, not under test; its failure is noted, and does not hide the backups' outcomes.
  const writes = await writing.then((count) => `${count} writes during the chain`, (error: unknown) => `the writer failed: ${describeError(error)}`);
  const last = outcomes.at(-1)!;
  last.debris.push(...await debrisOf(ctx, volumeId));
  last.detail += ` (${writes})`;
  return outcomes;
}
