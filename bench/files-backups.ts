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
 * snapshot, and so does the pipe's full stream imported.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BackupRecord } from '../lib/index.js';
import { medianRun, type Bench } from './bench.js';
import { STEPS } from './chains.js';
import { writeChanges } from './changes.js';
import type { Measure } from './results.js';
import { SOURCE, withEngine } from './source-backup.js';

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
    incremental.verified = await checkRestore(bench, JSON.parse(String(incremental.stats?.['record'])) as BackupRecord, root,
      `${VOLUME}@${String(incremental.stats?.['snapshot'])}`);
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

/** Our backup restored from its files into a new volume (untimed): its bytes are the snapshot's. */
async function checkRestore(bench: Bench, record: BackupRecord, root: string, snapshot: string): Promise<string> {
  const a = bench.a;
  const target = 'files-restored';
  await withEngine(bench, (engine) => engine.restore({ backup: record, target: { volume: { pool: SOURCE.pool, id: target } }, backupPath: root }));
  try {
    return `restored from its files (with its parent's): ${await bench.verify('backup into files, restored', [a, snapshot], [a, `${SOURCE.pool}/volume-${target}`])}`;
  } finally {
    await bench.removeImage(a, `${SOURCE.pool}/volume-${target}`);
  }
}
