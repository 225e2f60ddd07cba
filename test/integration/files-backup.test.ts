/**
 * Backups into files (BackupEngine.backup with backupPath, lib/files): a
 * full backup and incrementals by RBD diff in the chunked layout of
 * Cinder's POSIX and NFS drivers, with random writes between. Each one
 * restores byte for byte (by the engine, and by test/fixtures/
 * cinder-restore.py, which restores as Cinder's driver does); the
 * documents are checked field by field, and the sha256s and objects
 * against what Cinder's algorithm (test/fixtures/cinder-chunked.py) stores
 * for the same snapshot; an incremental reads and stores only what
 * changed. Then what goes wrong: a broken chain, a cancelled backup, a
 * second writer, the CLI.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Writable } from 'node:stream';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  AlreadyExistsError, BackupEngine, BusyError, CancelledError, CephError, NotFoundError, NotSupportedError, type BackupResult, type Cluster, type Pool,
} from '../../lib/index.js';
import { rbd, testCluster } from '../support/clusters.js';
import { startFixture } from '../support/fixture-process.js';
import { run } from '../support/cli-run.js';
import { POOL, randomRanges, snapshotSha, useBackupTestbed, volumeSha, type VolumeFixtures } from '../support/backup-fixtures.js';

const execFileAsync = promisify(execFile);
const fixture = (name: string): string => fileURLToPath(new URL(`../../../test/fixtures/${name}`, import.meta.url));
const ENGINE_CHILD = fileURLToPath(new URL('../fixtures/engine-child.js', import.meta.url));
const MiB = 1 << 20;
const SIZE = 24 * MiB;
/** backup_file_size of these tests: a volume of six chunks. */
const CHUNK = 4 * MiB;
const BLOCK = 32768;

let cluster: Cluster;
let volumes: Pool;
let fx: VolumeFixtures;
useBackupTestbed((testbed) => ({ cluster, volumes, fx } = testbed));

async function fileSha(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function tempDir(t: TestContext, name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `rbd-backup-${name}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

type Json = Record<string, unknown>;
const readJson = async (path: string): Promise<Json> => JSON.parse(await readFile(path, 'utf8')) as Json;
/** An object list's entries without their names (prefixes differ) or compression (Cinder stores 'none' where zlib does not shrink). */
const placed = (metadata: Json): Array<[number, number, string]> => (metadata.objects as Json[]).map((entry) => {
  const o = Object.values(entry)[0] as { offset: number; length: number; md5: string };
  return [o.offset, o.length, o.md5];
});

/** Bytes of the 32 KiB blocks the diff between two snapshots of the volume touches. */
async function diffBlocks(volumeId: string, snapshot: string, fromSnapshot: string): Promise<bigint> {
  const image = await volumes.openImage(`volume-${volumeId}`, { snapshot });
  try {
    const block = BigInt(BLOCK);
    const touched = new Set<bigint>();
    for await (const batch of image.diff({ fromSnapshot })) {
      for (const e of batch) for (let b = e.offset / block; b * block < e.offset + e.length; b++) touched.add(b);
    }
    return BigInt(touched.size) * block;
  } finally {
    await image.close();
  }
}

/** The volume's snapshot restored the way Cinder's driver restores (the python fixture), and its sha256. */
async function cinderRestoreSha(t: TestContext, root: string, backupId: string): Promise<string> {
  const out = join(await tempDir(t, 'cinder-restore'), 'volume.raw');
  await execFileAsync('/usr/bin/python3', [fixture('cinder-restore.py'), root, backupId, out, String(SIZE)]);
  return fileSha(out);
}

/** What Cinder's algorithm stores for the snapshot (into cinderRoot, chained by the same ids). */
async function cinderBackupOf(t: TestContext, cinderRoot: string, volumeId: string, snapshot: string, backupId: string,
  parentId: string | null, sizes = { chunk: CHUNK, block: BLOCK }): Promise<{ dir: string; prefix: string }> {
  const raw = join(await tempDir(t, 'export'), 'snap.raw');
  await rbd('a', ['export', '--no-progress', `${POOL}/volume-${volumeId}@${snapshot}`, raw]);
  const { stdout } = await execFileAsync('/usr/bin/python3', [fixture('cinder-chunked.py'), cinderRoot, backupId, volumeId,
    parentId ?? '-', raw, 'zlib', String(sizes.chunk), String(sizes.block)]);
  const made = JSON.parse(stdout) as { container: string; prefix: string };
  return { dir: join(cinderRoot, made.container), prefix: made.prefix };
}

test('a full backup and incrementals into files restore byte for byte, store what Cinder stores, and cost what changed',
  { timeout: 300_000 }, async (t) => {
    const root = await tempDir(t, 'files');
    const cinderRoot = await tempDir(t, 'cinder');
    const engine = new BackupEngine({ source: cluster, backupTo: 'files', backupPath: root, backupFileSize: CHUNK, maxSourceSnapshots: 0 });
    const volumeId = await fx.newVolume(t, SIZE);
    await fx.writeRandom(volumeId, [[0, 3 * MiB], [9 * MiB + 100, 2 * MiB], [SIZE - 64 * 1024, 64 * 1024]]);

    const results: BackupResult[] = [];
    const shas: string[] = [];
    for (let step = 0; step < 4; step++) {
      if (step > 0) {
        await fx.writeRandom(volumeId, randomRanges(SIZE, 6, 256 * 1024));
        // Zeros over data: an incremental must store them.
        if (step === 2) await fx.withVolume(volumeId, (image) => image.writeZeroes(9 * MiB, 512 * 1024));
      }
      const result = await engine.backup({ pool: POOL, volumeId, displayName: `step ${step}` });
      results.push(result);
      shas.push(await snapshotSha(volumeId, result.snapshot));
      assert.equal(result.mode, step === 0 ? 'full' : 'incremental');
      assert.equal(result.convertedToFull, undefined);
      if (step > 0) assert.equal(result.record.parent_id, results[step - 1]!.record.id);
    }

    // The record: Cinder's POSIX driver's, its container and prefix.
    const full = results[0]!;
    const id = full.record.id;
    assert.equal(full.record.service, 'cinder.backup.drivers.posix.PosixBackupDriver');
    assert.equal(full.record.container, `${id.slice(0, 2)}/${id.slice(2, 4)}/${id}`);
    assert.match(full.record.service_metadata!, new RegExp(`^volume_${volumeId}_\\d{14}_backup_${id}$`));
    assert.equal(full.record.object_count, SIZE / CHUNK);
    assert.equal(full.baseImage, join(root, full.record.container));

    // The container holds exactly the objects, the sha256file and the metadata, nothing partial.
    const prefix = full.record.service_metadata!;
    const names = (await readdir(full.baseImage)).sort();
    assert.deepEqual(names, [...Array.from({ length: SIZE / CHUNK }, (_, i) => `${prefix}-0000${i + 1}`), `${prefix}_metadata`, `${prefix}_sha256file`]);
    const metadata = await readJson(join(full.baseImage, `${prefix}_metadata`));
    assert.deepEqual(Object.keys(metadata), ['backup_description', 'backup_id', 'backup_name', 'created_at', 'objects', 'parent_id', 'version', 'volume_id', 'volume_meta']);
    assert.equal(metadata.version, '1.0.0');
    assert.equal(metadata.backup_id, id);
    assert.equal(metadata.volume_id, volumeId);
    assert.equal(metadata.backup_name, 'step 0');
    assert.equal(metadata.backup_description, null);
    assert.equal(metadata.parent_id, null);
    assert.equal(metadata.volume_meta, null);
    assert.match(metadata.created_at as string, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00:00$/);
    const first = (metadata.objects as Json[])[0]![`${prefix}-00001`] as Json;
    assert.deepEqual(Object.keys(first), ['compression', 'length', 'md5', 'offset']);
    // 3 MiB of random data and 1 MiB of zeros: zlib makes it smaller, as for Cinder.
    assert.deepEqual([first.offset, first.length, first.compression], [0, CHUNK, 'zlib']);
    const sha256file = await readJson(join(full.baseImage, `${prefix}_sha256file`));
    assert.deepEqual(Object.keys(sha256file), ['backup_description', 'backup_id', 'backup_name', 'chunk_size', 'created_at', 'sha256s', 'version', 'volume_id']);
    assert.equal(sha256file.chunk_size, BLOCK);
    assert.equal((sha256file.sha256s as string[]).length, SIZE / BLOCK);
    // Python's json.dumps(sort_keys=True, indent=2), byte for byte.
    const { stdout: dumped } = await execFileAsync('/usr/bin/python3', ['-c',
      'import json,sys; sys.stdout.write(json.dumps(json.load(open(sys.argv[1])), sort_keys=True, indent=2))', join(full.baseImage, `${prefix}_metadata`)]);
    assert.equal(await readFile(join(full.baseImage, `${prefix}_metadata`), 'utf8'), dumped);

    // What Cinder's algorithm stores for the same snapshots: the same sha256s and objects (offset, length, md5).
    for (const [step, result] of results.entries()) {
      const cinder = await cinderBackupOf(t, cinderRoot, volumeId, result.snapshot, result.record.id, result.record.parent_id);
      const ours = result.files!;
      const ourMetadata = await readJson(join(result.baseImage, `${ours.prefix}_metadata`));
      const theirMetadata = await readJson(join(cinder.dir, `${cinder.prefix}_metadata`));
      assert.deepEqual(placed(ourMetadata), placed(theirMetadata), `step ${step}: the objects Cinder's algorithm stores`);
      assert.deepEqual((await readJson(join(result.baseImage, `${ours.prefix}_sha256file`))).sha256s,
        (await readJson(join(cinder.dir, `${cinder.prefix}_sha256file`))).sha256s, `step ${step}: the sha256s`);
    }

    // Every backup restores to its snapshot's bytes: by the engine into a new volume and into a stream (the
    // layers merged in order), and as Cinder restores.
    for (const [step, result] of results.entries()) {
      const target = fx.targetId(t);
      const restored = await engine.restore({ backup: result.record, target: { volume: { pool: POOL, id: target } } });
      assert.equal(restored.path, 'files');
      assert.equal(await volumeSha(target), shas[step], `step ${step} restored by the engine`);
      const hash = createHash('sha256');
      await engine.restore({ backup: result.record, target: { stream: new Writable({ write(chunk: Buffer, _e, done) { hash.update(chunk); done(); } }) } });
      assert.equal(hash.digest('hex'), shas[step], `step ${step} restored into a stream`);
      assert.equal(await cinderRestoreSha(t, root, result.record.id), shas[step], `step ${step} restored as Cinder does`);
    }

    // An incremental reads exactly the 32 KiB blocks the RBD diff since its parent's snapshot names (not the
    // volume), stores no more than it read, and a fraction of the volume.
    for (const [step, result] of results.entries()) {
      if (step === 0) continue;
      const expected = await diffBlocks(volumeId, result.snapshot, results[step - 1]!.snapshot);
      assert.equal(result.stats.bytesRead, expected, `step ${step}: the diff's blocks`);
      assert.ok(result.stats.bytesWritten <= result.stats.bytesRead);
      assert.ok(result.files!.bytesStored < BigInt(SIZE / 4), `stored ${result.files!.bytesStored}`);
    }
    // A backup of no change stores no object, and still restores.
    const same = await engine.backup({ pool: POOL, volumeId });
    assert.equal(same.mode, 'incremental');
    assert.equal(same.files!.objects.length, 0);
    assert.equal(same.stats.bytesRead, 0n);
    assert.equal(await cinderRestoreSha(t, root, same.record.id), shas[3]);
  });

test('a backup into files falls back to a full one when its chain is broken, cleans up when cancelled, keeps a second writer out; zstd and bz2',
  { timeout: 240_000 }, async (t) => {
    const root = await tempDir(t, 'files');
    const engine = new BackupEngine({ source: cluster, backupFileSize: CHUNK });
    const volumeId = await fx.newVolume(t, SIZE);
    await fx.writeRandom(volumeId, [[0, SIZE]]);
    const full = await engine.backup({ pool: POOL, volumeId, backupPath: root, compression: 'none' });
    assert.equal(full.files!.objects.every((o) => o.compression === 'none'), true);
    assert.equal(full.files!.bytesStored, BigInt(SIZE));

    // The parent's snapshot gone from the volume: a full backup, and why.
    await fx.withVolume(volumeId, (image) => image.removeSnapshot(full.snapshot));
    await fx.writeRandom(volumeId, [[MiB, 4096]]);
    const converted = await engine.backup({ pool: POOL, volumeId, backupPath: root });
    assert.equal(converted.mode, 'full');
    assert.match(converted.convertedToFull!, /have no snapshot left on the volume \(the chain is broken\)/);
    assert.equal(await cinderRestoreSha(t, root, converted.record.id), await snapshotSha(volumeId, converted.snapshot));
    await assert.rejects(engine.backup({ pool: POOL, volumeId, backupPath: root, parentId: 'f00d-not-there' }), NotFoundError);

    // Cancelled midway: nothing of it stays (no container content, no snapshot), and the volume's backups go on.
    const controller = new AbortController();
    const cancelled = engine.backup({
      pool: POOL, volumeId, backupPath: root, backupId: 'cafe0001-cancelled', full: true, signal: controller.signal,
      onProgress: (p) => { if (p.done > 0n) controller.abort(); },
    });
    await assert.rejects(cancelled, CancelledError);
    const container = join(root, 'ca', 'fe', 'cafe0001-cancelled');
    assert.deepEqual(await readdir(container).catch(() => []), []);
    const snapshots = await fx.withVolume(volumeId, (image) => image.listSnapshots());
    assert.equal(snapshots.some((s) => s.name.includes('cafe0001-cancelled')), false);
    // The same id again makes the backup.
    const retried = await engine.backup({ pool: POOL, volumeId, backupPath: root, backupId: 'cafe0001-cancelled' });
    assert.equal(retried.mode, 'incremental');
    assert.equal(await cinderRestoreSha(t, root, retried.record.id), await snapshotSha(volumeId, retried.snapshot));

    // Two at once: the second is kept out while the first holds the volume's lock.
    const [a, b] = await Promise.allSettled([
      engine.backup({ pool: POOL, volumeId, backupPath: root, full: true, onBusy: 'skip' }),
      engine.backup({ pool: POOL, volumeId, backupPath: root, full: true, onBusy: 'skip' }),
    ]);
    const outcomes = [a.status, b.status].sort();
    assert.deepEqual(outcomes, ['fulfilled', 'rejected']);
    const refused = (a.status === 'rejected' ? a.reason : (b as PromiseRejectedResult).reason) as unknown;
    assert.ok(refused instanceof BusyError, String(refused));

    // zstd and bz2 (the addon's libzstd and libbz2): zeros compress, random data is stored as it is; both restore
    // (bz2 also as Cinder restores it).
    await fx.withVolume(volumeId, (image) => image.writeZeroes(8 * MiB, 8 * MiB));
    for (const compression of ['zstd', 'bz2'] as const) {
      const packed = await engine.backup({ pool: POOL, volumeId, backupPath: root, compression, full: true });
      assert.deepEqual(packed.files!.objects.map((o) => o.compression), ['none', 'none', compression, compression, 'none', 'none']);
      assert.ok(packed.files!.bytesStored < BigInt(SIZE - 7 * MiB), `${compression}: stored ${packed.files!.bytesStored}`);
      const target = fx.targetId(t);
      await engine.restore({ backup: packed.record, target: { volume: { pool: POOL, id: target } }, backupPath: root });
      assert.equal(await volumeSha(target), await snapshotSha(volumeId, packed.snapshot), `${compression} restored`);
      if (compression === 'bz2') assert.equal(await cinderRestoreSha(t, root, packed.record.id), await snapshotSha(volumeId, packed.snapshot));
    }
  });

test('the CLI backs up into files and restores from them', { timeout: 180_000 }, async (t) => {
  const root = await tempDir(t, 'files');
  const volumeId = await fx.newVolume(t, SIZE);
  await fx.writeRandom(volumeId, [[2 * MiB, 3 * MiB]]);
  const { info } = await testCluster('a');
  const auth = ['--conf', info.conf, '--keyring', info.keyring];
  const backup = await run(['backup', ...auth, '-p', POOL, '--volume', volumeId, '--backup-path', root, '--json']);
  assert.equal(backup.code, 0, backup.stderr);
  const done = JSON.parse(backup.stdout) as { record: { id: string }; snapshot: string; exportedRecord: string; files: { objects: unknown[] } };
  assert.equal(done.files.objects.length, 1);
  const expected = await snapshotSha(volumeId, done.snapshot);
  const target = fx.targetId(t);
  const restore = await run(['restore', ...auth, '--record', done.exportedRecord, '--target-pool', POOL, '--target-volume', target,
    '--backup-path', root]);
  assert.equal(restore.code, 0, restore.stderr);
  assert.equal(await volumeSha(target), expected);
  assert.ok((await stat(join(root, done.record.id.slice(0, 2)))).isDirectory());
  const listed = await run(['ls', ...auth, '--volume', volumeId, '--backup-path', root]);
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(listed.stdout, new RegExp(`${done.record.id} +full .* \\(files\\)$`, 'm'));
  const usage = await run(['backup', ...auth, '-p', POOL, '--volume', volumeId, '--compression', 'none']);
  assert.equal(usage.code, 2, usage.stderr);
});

test('backups in files are listed, deleted (with their dependents only when asked) and pruned', { timeout: 180_000 }, async (t) => {
  const root = await tempDir(t, 'files');
  const engine = new BackupEngine({ source: cluster, backupTo: 'files', backupPath: root, backupFileSize: CHUNK, maxSourceSnapshots: 0 });
  const volumeId = await fx.newVolume(t, SIZE);
  const made: BackupResult[] = [];
  for (let i = 0; i < 4; i++) {
    await fx.writeRandom(volumeId, [[i * MiB, 64 * 1024]]);
    made.push(await engine.backup({ pool: POOL, volumeId, displayName: `b${i}` }));
  }
  const ids = made.map((m) => m.record.id);
  const listed = await engine.listBackups(volumeId);
  assert.deepEqual(listed.map((l) => l.record.id), ids);
  assert.deepEqual(listed.map((l) => l.full), [true, false, false, false]);
  assert.deepEqual(listed.map((l) => l.record.display_name), ['b0', 'b1', 'b2', 'b3']);
  // Each the volume's size, incrementals too (their own objects cover only the change); a listed record restores.
  assert.deepEqual(listed.map((l) => l.sizeBytes), ids.map(() => BigInt(SIZE)));
  const hash = createHash('sha256');
  await engine.restore({ backup: listed[2]!.record, target: { stream: new Writable({ write(chunk: Buffer, _e, done) { hash.update(chunk); done(); } }) } });
  assert.equal(hash.digest('hex'), await snapshotSha(volumeId, made[2]!.snapshot));
  // Their md5s are checked by a restore; verify says so instead of looking in the backup pool.
  await assert.rejects(engine.verify(listed[0]!.record), (e: unknown) => e instanceof NotSupportedError && /md5s, not digests/.test(e.message));

  // b1 has b2 and b3 on top: refused, naming them; then with them.
  await assert.rejects(engine.delete(listed[1]!.record), (e: unknown) =>
    e instanceof BusyError && e.message.includes(ids[2]!) && e.message.includes(ids[3]!));
  const deleted = await engine.delete(listed[3]!.record, { sourcePool: POOL });
  assert.deepEqual(deleted.removedBackups, [ids[3]]);
  assert.match(deleted.removedSourceSnapshot!, new RegExp(`^backup-files\\.${ids[3]}\\.snap\\.`));
  assert.deepEqual((await readdir(root)).sort(), [...new Set(ids.slice(0, 3).map((id) => id.slice(0, 2)))].sort());
  const withDependents = await engine.delete(listed[1]!.record, { withDependents: true });
  assert.deepEqual(withDependents.removedBackups, [ids[2], ids[1]]);
  assert.deepEqual((await engine.listBackups(volumeId)).map((l) => l.record.id), [ids[0]]);

  // The next backup starts from b0's snapshot (the newest whose backup is left), and restores.
  const next = await engine.backup({ pool: POOL, volumeId });
  assert.equal(next.record.parent_id, ids[0]);
  assert.equal(await cinderRestoreSha(t, root, next.record.id), await snapshotSha(volumeId, next.snapshot));

  // latest1 keeps the newest, and the full backup it restores on top of.
  const pruned = await engine.prune(volumeId, 'latest1');
  assert.deepEqual(pruned.removed, []);
  assert.deepEqual(pruned.kept.map((k) => k.backupId), [next.record.id, ids[0]]);
  assert.match(pruned.kept[1]!.reasons.join(';'), /a kept incremental .* restores on top of it/);
  const full = await engine.backup({ pool: POOL, volumeId, full: true });
  const pruneFull = await engine.prune(volumeId, 'latest1');
  assert.deepEqual(pruneFull.removed.map((r) => r.backupId), [ids[0], next.record.id]);
  assert.deepEqual((await engine.listBackups(volumeId)).map((l) => l.record.id), [full.record.id]);
  assert.equal(await cinderRestoreSha(t, root, full.record.id), await snapshotSha(volumeId, full.snapshot));
});

test('a backup into files killed midway leaves nothing that looks like a backup; its retry with the id completes it', { timeout: 180_000 }, async (t) => {
  const root = await tempDir(t, 'files');
  const volumeId = await fx.newVolume(t, SIZE);
  await fx.writeRandom(volumeId, [[0, SIZE]]);
  const { info } = await testCluster('a');
  // Reads throttled to 4 MiB/s: the backup takes seconds, and the kill lands in it.
  const child = startFixture(ENGINE_CHILD, ['backup'], {
    env: {
      FIXTURE_CONF: info.conf, FIXTURE_KEYRING: info.keyring, FIXTURE_POOL: POOL, FIXTURE_VOLUME: volumeId, FIXTURE_BACKUP: 'dead0001-killed',
      FIXTURE_BACKUP_PATH: root, FIXTURE_FULL: '1', FIXTURE_READ_BPS: String(4 << 20),
    },
    timeoutMs: 120_000,
  });
  await child.line('ENGINE-PROGRESS');
  child.child.kill('SIGKILL');
  assert.equal((await child.exited).signal, 'SIGKILL');
  const container = join(root, 'de', 'ad', 'dead0001-killed');
  assert.equal((await readdir(container).catch(() => [])).some((n) => n.endsWith('_metadata')), false, 'no metadata: no backup');
  const engine = new BackupEngine({ source: cluster, backupFileSize: CHUNK });
  assert.deepEqual(await engine.listBackups(volumeId, { backupPath: root }), []);
  const retried = await engine.backup({ pool: POOL, volumeId, backupPath: root, backupId: 'dead0001-killed', full: true });
  const snapshots = await fx.withVolume(volumeId, (image) => image.listSnapshots());
  assert.deepEqual(snapshots.map((s) => s.name), [retried.snapshot], 'the killed run\'s snapshot is gone');
  assert.deepEqual((await readdir(container)).filter((n) => n.startsWith('.')), [], 'no partial file left');
  assert.equal(await cinderRestoreSha(t, root, retried.record.id), await snapshotSha(volumeId, retried.snapshot));
});

test('a backup into files that completed before its run was killed: its retry with the id and request returns it; a reuse of the id is refused',
  { timeout: 180_000 }, async (t) => {
    const root = await tempDir(t, 'files');
    const volumeId = await fx.newVolume(t, SIZE);
    await fx.writeRandom(volumeId, [[0, SIZE]]);
    const engine = new BackupEngine({ source: cluster, backupFileSize: CHUNK, maxSourceSnapshots: 0 });
    const asked = { pool: POOL, volumeId, backupPath: root, backupId: 'c0de0001-done', displayName: 'n1', volumeMetadata: { 'volume-metadata': { k: 'v' } } };
    const done = await engine.backup(asked);
    // What a run killed after its metadata was written leaves is what a completed run leaves: the retry finds it.
    await fx.writeRandom(volumeId, [[0, MiB]]);
    const again = await engine.backup(asked);
    assert.equal(again.alreadyComplete, true);
    assert.equal(again.snapshot, done.snapshot);
    assert.equal(again.record.id, done.record.id);
    assert.equal(again.stats.bytesRead, 0n);
    assert.deepEqual(again.files, done.files, 'the same objects, prefix and bytes stored');
    assert.deepEqual(again.record.service_metadata, done.record.service_metadata);
    assert.deepEqual((await fx.withVolume(volumeId, (image) => image.listSnapshots())).map((s) => s.name), [done.snapshot], 'no new snapshot');
    for (const other of [{ displayName: 'n2' }, { volumeMetadata: { 'volume-metadata': { k: 'w' } } }]) {
      await assert.rejects(engine.backup({ ...asked, ...other }), (error: unknown) => {
        assert.ok(error instanceof AlreadyExistsError, `${JSON.stringify(other)}: expected AlreadyExistsError, got ${String(error)}`);
        assert.match(error.message, /backup id c0de0001-done is already used .*: give another id/);
        return true;
      });
    }
    // A backup into files made since: the id is taken.
    const next = await engine.backup({ pool: POOL, volumeId, backupPath: root });
    await assert.rejects(engine.backup(asked), AlreadyExistsError);
    assert.equal(await cinderRestoreSha(t, root, again.record.id), await snapshotSha(volumeId, done.snapshot));
    assert.equal(await cinderRestoreSha(t, root, next.record.id), await snapshotSha(volumeId, next.snapshot));
  });

test('a hash block that does not divide 4 MiB (96 KiB, Cinder asks only that it divide backup_file_size): the same sha256s and objects as Cinder\'s',
  { timeout: 180_000 }, async (t) => {
    const root = await tempDir(t, 'files');
    const cinderRoot = await tempDir(t, 'cinder');
    const sizes = { block: 3 * 32768, chunk: 3 * 32768 * 50 };
    const engine = new BackupEngine({ source: cluster, backupPath: root, backupTo: 'files', shaBlockSize: sizes.block, backupFileSize: sizes.chunk });
    const volumeId = await fx.newVolume(t, SIZE);
    await fx.writeRandom(volumeId, [[0, 5 * MiB], [13 * MiB + 5, 3 * MiB]]);
    const full = await engine.backup({ pool: POOL, volumeId });
    await fx.writeRandom(volumeId, randomRanges(SIZE, 8, 200 * 1024));
    const incremental = await engine.backup({ pool: POOL, volumeId });
    assert.equal(incremental.mode, 'incremental');
    for (const result of [full, incremental]) {
      const cinder = await cinderBackupOf(t, cinderRoot, volumeId, result.snapshot, result.record.id, result.record.parent_id, sizes);
      const ours = await readJson(join(result.baseImage, `${result.files!.prefix}_metadata`));
      assert.deepEqual(placed(ours), placed(await readJson(join(cinder.dir, `${cinder.prefix}_metadata`))));
      assert.deepEqual((await readJson(join(result.baseImage, `${result.files!.prefix}_sha256file`))).sha256s,
        (await readJson(join(cinder.dir, `${cinder.prefix}_sha256file`))).sha256s);
      assert.equal(await cinderRestoreSha(t, root, result.record.id), await snapshotSha(volumeId, result.snapshot));
    }
  });

test('a full disk during a backup into files: a typed ENOSPC naming the file, nothing left behind, no new snapshot', { timeout: 120_000 }, async (t) => {
  // A file system of 8 MiB (tmpfs), for a backup of 24 MiB of random data stored uncompressed.
  const root = await mkdtemp(join(tmpdir(), 'rbd-backup-full-disk-'));
  try {
    await execFileAsync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', root]);
  } catch (error) {
    await rm(root, { recursive: true, force: true });
    t.skip(`cannot mount a small tmpfs here (${(error as Error).message.split('\n')[0]}): the full-disk case needs one`);
    return;
  }
  t.after(async () => {
    await execFileAsync('umount', [root]);
    await rm(root, { recursive: true, force: true });
  });
  const engine = new BackupEngine({ source: cluster, backupFileSize: CHUNK });
  const volumeId = await fx.newVolume(t, SIZE);
  await fx.writeRandom(volumeId, [[0, SIZE]]);
  await assert.rejects(engine.backup({ pool: POOL, volumeId, backupPath: root, compression: 'none', backupId: 'f0115-disk' }), (e: unknown) =>
    e instanceof CephError && e.code === 'ENOSPC' && e.message.includes(join(root, 'f0', '11', 'f0115-disk')));
  assert.deepEqual(await readdir(join(root, 'f0', '11')).catch(() => []), [], 'the container and everything in it removed');
  assert.deepEqual(await fx.withVolume(volumeId, (image) => image.listSnapshots()), [], 'no snapshot left on the volume');
  assert.deepEqual(await engine.listBackups(volumeId, { backupPath: root }), []);
});
