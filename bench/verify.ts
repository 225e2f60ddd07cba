/**
 * The deep verify row: BackupEngine.verify(record, { mode: 'deep' }) of the
 * source backup (its snapshot on the chain image read again, every block
 * hashed and compared with the digests the backup stored), against `rbd
 * export <chain>@<snap> - | md5sum` of the same snapshot, with hashImage
 * of that snapshot alone beside them (where the verify's time goes); and
 * the read ceiling, `rbd bench --io-type read` of the chain image: the
 * cluster's read speed, which a deep verify is judged against.
 */
import { medianRun, VerificationError, type Bench } from './bench.js';
import type { Ceiling, Measure, ScenarioRecord } from './results.js';
import { BACKUP_POOL, type SourceBackup } from './source-backup.js';

const speed = (c: Ceiling): number => c.reportedMiBPerS ?? c.wallMiBPerS;
const MiB = 1 << 20;
const medianOf = (values: number[]): number => {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/** `rbd bench --io-type read` of the chain image (its head holds the backup's bytes), --repeat times; the fastest counts. */
async function readCeiling(bench: Bench, backup: SourceBackup): Promise<void> {
  bench.log(`read ceiling: rbd bench --io-type read of ${backup.chain}`);
  const runs: Ceiling[] = [];
  for (let rep = 0; rep < bench.config.repeat; rep++) runs.push(await bench.rbdBench('read', backup.chain, bench.sizeBytes));
  bench.pass.readCeilingRuns = runs;
  // As for the write ceiling: the rest of the machine only slows a run down.
  bench.pass.readCeiling = runs.reduce((best, c) => (speed(c) > speed(best) ? c : best));
  bench.log(`  read ceiling: ${runs.map((c) => speed(c).toFixed(0)).join(', ')} MiB/s reported by rbd bench; ` +
    `best ${speed(bench.pass.readCeiling).toFixed(0)}`);
}

export async function deepVerify(bench: Bench, backup: SourceBackup): Promise<void> {
  const a = bench.a;
  const size = bench.sizeBytes;
  const snap = `${backup.chain}@${backup.snapshot}`;
  bench.log(`deep verify of the source backup (${snap})`);
  // Once, untimed: the backup holds the volume's bytes, so its digests (computed as they passed) are the truth.
  const backupChecked = await bench.verify('the source backup', [a, backup.sourceSpec], [a, snap]);
  const expected = await bench.sourceHash(a, backup.sourceSpec);
  await readCeiling(bench, backup);
  const verify = async (): Promise<Measure> => {
    const m = await bench.ours(`verify(backup ${backup.record.id}, { mode: 'deep' })`, {
      op: 'verify', cluster: a.ref, backupPool: BACKUP_POOL, backup: backup.record,
    }, size);
    const blocks = Number(m.stats?.['blocks']);
    const compared = Number(m.stats?.['blocksChecked']);
    if (!(blocks > 0) || compared !== blocks) {
      throw new VerificationError(`VERIFICATION FAILED: the deep verify compared ${compared} of the backup's ${blocks} blocks`);
    }
    m.verified = `deep verify ok: all ${blocks} blocks match the stored digests; ${backupChecked} (once)`;
    return m;
  };
  const hash = (): Promise<Measure> => bench.ours(`hashImage(${snap})`, {
    op: 'hash', source: { cluster: a.ref, pool: BACKUP_POOL, image: backup.chain.slice(BACKUP_POOL.length + 1) },
    snapshot: backup.snapshot,
  }, size);
  const pipe = async (): Promise<Measure> => {
    const m = await bench.cli('export | md5sum', 'rbd "$@" | md5sum', [...a.rbdArgs, 'export', '--no-progress', snap, '-'],
      size, `rbd export ${snap} - | md5sum`, true);
    const md5 = m.printed?.split(/\s+/)[0];
    if (md5 !== expected.md5) {
      throw new VerificationError(`VERIFICATION FAILED: rbd export ${snap} | md5sum printed ${m.printed ?? 'nothing'}, ` +
        `rbd export of ${backup.sourceSpec} has md5 ${expected.md5}`);
    }
    m.verified = `md5 ${md5} equals that of rbd export of ${backup.sourceSpec}`;
    return m;
  };
  const [verifyRuns, hashRuns, rbdRuns] = await bench.runRotating(bench.config.repeat, [verify, hash, pipe]) as
    [Measure[], Measure[], Measure[]];
  // The stored digests' point digest, which every verify reported: every hashImage must have found the same.
  const stored = verifyRuns[0]!.stats?.['pointDigest'];
  for (const m of [...verifyRuns, ...hashRuns]) {
    if (m.stats?.['pointDigest'] !== stored) {
      throw new VerificationError(`VERIFICATION FAILED: a ${m.stats?.['mode'] === 'deep' ? 'deep verify' : 'hashImage'} of ` +
        `${snap} found the point digest ${String(m.stats?.['pointDigest'])}, the backup's digests have ${String(stored)}`);
    }
  }
  for (const m of hashRuns) m.verified = `its table's point digest equals the backup's stored digests' (${String(stored)})`;
  const record: ScenarioRecord = {
    id: 'verify-deep', title: 'deep verify of a backup', volumeBytes: size, noBar: true,
    ours: medianRun(verifyRuns), rbd: medianRun(rbdRuns), oursRuns: verifyRuns, rbdRuns,
    detail: `ours: BackupEngine.verify(record, { mode: 'deep' }) of the source backup, the whole call: it reads the ` +
      `backup's digests, finds its snapshot ${snap} and hashes every block of it with the transfer engine's window ` +
      `(hashImage, no target), then compares; rbd: rbd export ${snap} - | md5sum, spawn to exit. Checked: ours ` +
      'reports every block compared and no mismatch; the md5 equals that of rbd export of the volume\'s snapshot; the ' +
      `chain's sha256 was checked once before (untimed). Bars: at least the pipe, and at least the read ceiling ` +
      '(rbd bench --io-type read of the chain image)',
  };
  bench.record(record);
  bench.record({
    id: 'verify-hash', title: 'hashImage of the backup\'s snapshot', volumeBytes: size, noBar: true,
    ours: medianRun(hashRuns), rbd: record.rbd!, oursRuns: hashRuns, rbdRuns,
    detail: `ours: hashImage of ${snap} alone (what the deep verify spends most of its time in, without reading the ` +
      'backup\'s inventory and digests and without the comparison), in 64 KiB blocks, from a handle opened before ' +
      'timing; rbd: the same runs of rbd export | md5sum as the deep verify row. Checked: its table\'s point digest ' +
      'equals the backup\'s stored one. No bar: it shows where the deep verify\'s time goes',
  });
  const ceiling = speed(bench.pass.readCeiling!);
  // rbd bench reports the rate of its I/O phase, its open left out: the
  // same phase of hashImage is its native job's own elapsed time.
  const phase = medianOf(hashRuns.map((m) => Number(m.stats?.['elapsedMs'])));
  bench.log(`  of the read ceiling: deep verify ${(record.ours.mibPerS / ceiling * 100).toFixed(0)}%, hashImage ` +
    `${(medianRun(hashRuns).mibPerS / ceiling * 100).toFixed(0)}%, hashImage's read phase alone ` +
    `(${phase.toFixed(0)} ms, median) ${(size / MiB / (phase / 1000) / ceiling * 100).toFixed(0)}%`);
}
