/**
 * Backups into files (Cinder's chunked layout of its NFS and POSIX
 * drivers) against `rbd export-diff` into a file, in the same pass: a full
 * backup of the source volume, and an incremental after 1% of it changed
 * in scattered 4 KiB writes. Ours does more than the pipe: SHA-256 of every
 * 32 KiB block, md5 of every object, compression (zlib, Cinder's default,
 * and none), a sync of every file; the pipe writes one raw stream. A
 * backup into files is of a Cinder volume: rbd/src is renamed
 * volume-<id> for the group and named back after it. Bytes checked: our
 * incremental restored from its files into a new volume equals its
 * snapshot, and so does the pipe's full stream imported. Then that
 * incremental restored from its files against `rbd import-diff` of the
 * pipe's streams of the same snapshots.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BackupRecord } from '../lib/index.js';
import { medianRun, type Bench } from './bench.js';
import { STEPS } from './chains.js';
import { writeChanges } from './changes.js';
import type { Measure } from './results.js';
import { cliSteps } from './rbd-side.js';
import { SOURCE } from './source-backup.js';

const VOLUME_ID = 'bench-files';
const VOLUME = `${SOURCE.pool}/volume-${VOLUME_ID}`;
const CHANGE = STEPS.find((step) => step.id === 'incr-1pct-4k')!;

export async function filesBackups(bench: Bench): Promise<void> {
  const a = bench.a;
  const size = bench.sizeBytes;
  const dir = await mkdtemp(join(tmpdir(), 'bench-files-'));
  bench.log(`backups into files: ${SOURCE.pool}/${SOURCE.image} renamed ${VOLUME} (a Cinder volume) for this group`);
  await bench.rbd(a, ['rename', `${SOURCE.pool}/${SOURCE.image}`, VOLUME], 'rbd rename');
  let runs = 0;
  try {
    const ours = (full: boolean, compression: string, keep = false) => async (): Promise<Measure> => {
      const backupId = `bench-files-${++runs}`;
      const root = join(dir, backupId);
      await mkdir(root);
      const m = await bench.ours(`backup(${VOLUME}, { backupPath, ${full ? 'full' : 'incremental'}, compression: '${compression}' })`, {
        op: 'files-backup', cluster: a.ref, pool: SOURCE.pool, volumeId: VOLUME_ID, backupId, backupPath: root, full, compression,
      }, size);
      m.verified = `${String(m.stats?.['mode'])}: ${String(m.stats?.['objects'])} objects, ${(Number(m.stats?.['bytesStored']) / (1 << 20)).toFixed(0)} MiB stored`;
      if (!keep) {
        await rm(root, { recursive: true, force: true });
        await bench.rbd(a, ['snap', 'rm', `${VOLUME}@${String(m.stats?.['snapshot'])}`], 'rbd snap rm');
      }
      return m;
    };
    // The pipe's snapshot is made before its timing starts (ours makes its own inside the call).
    const pipe = (from: string | undefined) => async (): Promise<Measure> => {
      const snap = `rbd-files-${++runs}`;
      const file = join(dir, `${snap}.diff`);
      await bench.rbd(a, ['snap', 'create', `${VOLUME}@${snap}`], 'rbd snap create');
      const fromArgs = from === undefined ? [] : ['--from-snap', from];
      const m = await bench.cli(`export-diff (${from === undefined ? 'full' : 'incremental'}) > file`, 'rbd "$@"',
        [...a.rbdArgs, 'export-diff', '--no-progress', ...fromArgs, `${VOLUME}@${snap}`, file], size,
        `rbd snap create ${VOLUME}@${snap} (untimed); rbd export-diff ${fromArgs.join(' ')}${from === undefined ? '' : ' '}${VOLUME}@${snap} FILE`);
      m.verified = from === undefined ? await checkFullStream(bench, file, `${VOLUME}@${snap}`) : 'its stream not checked (its full one is)';
      await rm(file, { force: true });
      await bench.rbd(a, ['snap', 'rm', `${VOLUME}@${snap}`], 'rbd snap rm');
      return m;
    };

    const repeat = bench.config.repeat;
    bench.log('full backup into files (zlib, and none) vs rbd export-diff into a file');
    const [zlibRuns, noneRuns, rbdRuns] = await bench.runRotating(repeat, [ours(true, 'zlib'), ours(true, 'none'), pipe(undefined)]) as
      [Measure[], Measure[], Measure[]];
    bench.record({
      id: 'files-full', title: 'backup into files, full (zlib)', volumeBytes: size, noBar: true,
      ours: medianRun(zlibRuns), oursRuns: zlibRuns, rbd: medianRun(rbdRuns), rbdRuns,
      detail: 'BackupEngine.backup into a directory in Cinder\'s chunked layout (SHA-256 per 32 KiB, md5 and zlib per object, files synced) ' +
        'vs rbd export-diff of a snapshot into a file (a raw stream)',
    });
    bench.record({
      id: 'files-full-none', title: 'backup into files, full (none)', volumeBytes: size, noBar: true,
      ours: medianRun(noneRuns), oursRuns: noneRuns, rbd: medianRun(rbdRuns), rbdRuns,
      detail: 'the same, uncompressed',
    });

    bench.log('incremental backup into files after 1% changed (4 KiB writes) vs rbd export-diff --from-snap into a file');
    const parent = await ours(true, 'none', true)();
    const parentSnap = String(parent.stats?.['snapshot']);
    const change = await writeChanges(bench, { pool: SOURCE.pool, image: `volume-${VOLUME_ID}` }, CHANGE.fraction, CHANGE.seed, CHANGE.writeBytes);
    // The parent's root holds the chain: the incremental goes beside it.
    const incrementalId = `bench-files-${++runs}`;
    const root = join(dir, `bench-files-${runs - 1}`);
    const incremental = await bench.ours(`backup(${VOLUME}, { backupPath, incremental, compression: 'zlib' })`, {
      op: 'files-backup', cluster: a.ref, pool: SOURCE.pool, volumeId: VOLUME_ID, backupId: incrementalId, backupPath: root, full: false,
      compression: 'zlib',
    }, size);
    if (incremental.stats?.['mode'] !== 'incremental') throw new Error(`the backup after the change was ${String(incremental.stats?.['mode'])}, not incremental`);
    const incrementalSnap = `${VOLUME}@${String(incremental.stats?.['snapshot'])}`;
    const restored = await restoreRow(bench, JSON.parse(String(incremental.stats?.['record'])) as BackupRecord, root,
      { full: `${VOLUME}@${parentSnap}`, incremental: incrementalSnap }, dir);
    incremental.verified = `restored from its files (with its parent's): ${restored}`;
    const rbdIncremental = await pipe(parentSnap)();
    bench.record({
      id: 'files-incr-1pct-4k', title: 'backup into files, incremental 1% (4 KiB writes)', volumeBytes: size, noBar: true, change,
      ours: incremental, oursRuns: [incremental], rbd: rbdIncremental, rbdRuns: [rbdIncremental],
      detail: 'reads the 32 KiB blocks the RBD diff names, stores the runs whose SHA-256 changed (Cinder\'s objects); ' +
        'vs rbd export-diff --from-snap (the parent backup\'s snapshot) into a file',
    });
    await bench.rbd(a, ['snap', 'rm', `${VOLUME}@${String(incremental.stats?.['snapshot'])}`], 'rbd snap rm');
    await bench.rbd(a, ['snap', 'rm', `${VOLUME}@${parentSnap}`], 'rbd snap rm');
  } finally {
    await bench.rbd(a, ['rename', VOLUME, `${SOURCE.pool}/${SOURCE.image}`], 'rbd rename');
    await rm(dir, { recursive: true, force: true });
  }
}

/** The pipe's full stream imported into a new image: its bytes are the snapshot's. */
async function checkFullStream(bench: Bench, file: string, snapshot: string): Promise<string> {
  const a = bench.a;
  const check = `${SOURCE.pool}/files-check`;
  await bench.createImage(a, check, bench.sizeBytes);
  try {
    await bench.rbd(a, ['import-diff', '--no-progress', file, check], 'rbd import-diff', bench.sizeBytes);
    return await bench.verify('rbd export-diff into a file, imported', [a, snapshot], [a, check]);
  } finally {
    await bench.removeImage(a, check);
  }
}

/**
 * The incremental restored from its files (with its parent's) into a new
 * image, against `rbd import-diff` of the pipe's two streams of the same
 * snapshots (exported untimed) into a new image: both byte-checked against
 * the incremental's snapshot. Returns ours' check.
 */
async function restoreRow(bench: Bench, record: BackupRecord, root: string, snaps: { full: string; incremental: string }, dir: string): Promise<string> {
  const a = bench.a;
  const size = bench.sizeBytes;
  const ours = { pool: SOURCE.pool, name: 'files-restored' };
  const theirs = `${SOURCE.pool}/files-import-diff`;
  const [fullFile, incrementalFile] = [join(dir, 'full.diff'), join(dir, 'incremental.diff')];
  try {
    const m = await bench.ours('restore(backup in files: full + incremental, { backupPath }) into a new image', {
      op: 'restore', cluster: a.ref, backupPool: 'backups', backup: record, target: ours, how: { kind: 'files', backupPath: root },
    }, size);
    m.verified = await bench.verify('backup into files, restored', [a, snaps.incremental], [a, `${ours.pool}/${ours.name}`]);
    await bench.rbd(a, ['export-diff', '--no-progress', snaps.full, fullFile], 'rbd export-diff (untimed)');
    await bench.rbd(a, ['export-diff', '--no-progress', '--from-snap', snaps.full.split('@')[1]!, snaps.incremental, incrementalFile],
      'rbd export-diff (untimed)');
    const rbd = await cliSteps(bench, 'create + import-diff full + incremental', [
      { mark: 'create', args: ['create', '--size', `${size / (1 << 20)}M`, theirs] },
      { mark: 'full', args: ['import-diff', '--no-progress', fullFile, theirs] },
      { mark: 'incremental', args: ['import-diff', '--no-progress', incrementalFile, theirs] },
    ]);
    rbd.verified = await bench.verify('rbd import-diff of the two streams', [a, snaps.incremental], [a, theirs]);
    bench.record({
      id: 'files-restore', title: 'restore from files (full + 1% incremental) into a new image', volumeBytes: size, noBar: true,
      ours: m, oursRuns: [m], rbd, rbdRuns: [rbd],
      detail: 'BackupEngine.restore of the incremental in files with its full parent (every object read, md5-checked, inflated) ' +
        'vs rbd create + import-diff of the pipe\'s full and incremental streams of the same snapshots, read from files',
    });
    return m.verified;
  } finally {
    await bench.removeImage(a, `${ours.pool}/${ours.name}`).catch(() => undefined);
    await bench.removeImage(a, theirs).catch(() => undefined);
    await rm(fullFile, { force: true });
    await rm(incrementalFile, { force: true });
  }
}
