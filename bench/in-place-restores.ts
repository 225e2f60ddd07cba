/**
 * The restores into the backup's own volume after a bad change: 1% of
 * rbd/src rewritten as scattered 4 KiB writes (the 4 KiB incremental's
 * change, its seed), then brought back to the backup. Ours by
 * BackupEngine.restore with force: in place (converging from the backup
 * snapshot that the volume and its chain image share) and by full copy
 * (inPlace: false); the rbd tool's way back, `rbd snap rollback` of the
 * volume to that same snapshot (at 10 and 64 ops), needs no backup at all.
 * Every run starts with the change and ends with rbd/src's sha256 checked.
 */
import { medianRun, VerificationError, type Bench } from './bench.js';
import { STEPS } from './chains.js';
import { writeChanges } from './changes.js';
import { cliRollback, RBD_OPS_HIGH, type RbdOps } from './rbd-side.js';
import type { ChangeInfo, Measure } from './results.js';
import { BACKUP_POOL, SOURCE, type SourceBackup } from './source-backup.js';

const CHANGE = STEPS.find((step) => step.id === 'incr-1pct-4k')!;
const VOLUME = `${SOURCE.pool}/${SOURCE.image}`;

const bytesRead = (m: Measure): number => Number(m.stats?.['bytesRead']);

export async function inPlaceRestores(bench: Bench, backup: SourceBackup): Promise<void> {
  const a = bench.a;
  let change: ChangeInfo | undefined;
  const damage = async (): Promise<void> => {
    change = await writeChanges(bench, SOURCE, CHANGE.fraction, CHANGE.seed, CHANGE.writeBytes);
  };
  const check = (how: string): Promise<string> =>
    bench.verify(`${how} of ${VOLUME}`, [a, backup.sourceSpec], [a, VOLUME]);
  const ours = (inPlace: boolean) => async (): Promise<Measure> => {
    await damage();
    const m = await bench.ours(`restore(${VOLUME}, force${inPlace ? '' : ', inPlace: false'})`, {
      op: 'restore', cluster: a.ref, backupPool: BACKUP_POOL, backup: backup.record,
      target: { pool: SOURCE.pool, name: SOURCE.image }, how: { kind: 'into-source', inPlace },
    }, bench.sizeBytes);
    const expected = inPlace ? 'in-place' : 'full';
    if (m.stats?.['path'] !== expected) {
      throw new VerificationError(`the restore into ${VOLUME} took the ${String(m.stats?.['path'])} path, not ${expected}`);
    }
    m.verified = await check(`${expected} restore`);
    return m;
  };
  const rollback = (ops: RbdOps) => async (): Promise<Measure> => {
    await damage();
    const m = await cliRollback(bench, 'snap rollback', backup.sourceSpec, ops);
    m.verified = await check('rbd snap rollback');
    return m;
  };

  const repeat = bench.config.repeat;
  bench.log(`in-place restore into ${VOLUME} after 1% changed`);
  // First: a full copy or a rollback rewrites every object, after which
  // the volume differs from the snapshot everywhere as far as its diff can
  // tell, and an in-place restore would move it all. Each in-place run's
  // change hits the same extents (one seed), so every run finds the same.
  const [inPlaceRuns] = await bench.runRotating(repeat, [ours(true)]) as [Measure[]];
  bench.log(`restore into ${VOLUME} by full copy, and rbd snap rollback, after 1% changed`);
  const [fullRuns, rbdRuns, rbd64Runs] = await bench.runRotating(repeat, [ours(false), rollback(undefined), rollback(RBD_OPS_HIGH)]) as
    [Measure[], Measure[], Measure[]];

  const size = bench.sizeBytes;
  const inPlace = medianRun(inPlaceRuns);
  const full = medianRun(fullRuns);
  bench.record({
    id: 'restore-in-place', title: 'in-place restore, 1% changed (4 KiB writes)', volumeBytes: size, noBar: true,
    ours: inPlace, rbd: medianRun(rbdRuns), rbd64: medianRun(rbd64Runs), oursRuns: inPlaceRuns, rbdRuns, rbd64Runs,
    ofFullCopy: { time: inPlace.elapsedMs / full.elapsedMs, bytesRead: bytesRead(inPlace) / bytesRead(full) },
    ...(change ? { change } : {}),
    detail: `after a BackupEngine backup of ${VOLUME} and the change, ours: restore({ target: ${VOLUME}, force: true }), ` +
      'which converges from the backup snapshot the volume and the chain image share (stats.bytesRead: what it read ' +
      `from the backup); rbd: rbd snap rollback ${VOLUME}@<that snapshot>, the volume back to its own snapshot ` +
      '(the OSD copies each object from the snapshot\'s clone; no bytes reach the client). Run first, before the ' +
      'full copies and rollbacks rewrite every object. Checked: sha256 of the volume equals the snapshot\'s',
  });
  bench.record({
    id: 'restore-full-into-source', title: 'restore into the volume by full copy', volumeBytes: size, noBar: true,
    ours: full, oursRuns: fullRuns,
    detail: `the same change and restore with inPlace: false: a chunked full copy of the backup into ${VOLUME} ` +
      '(the in-place row\'s ofFullCopy compares the two). Checked: sha256 of the volume equals the snapshot\'s',
  });
}
