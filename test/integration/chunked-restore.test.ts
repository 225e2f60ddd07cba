/**
 * restoreChunked (lib/files): backups in Cinder's chunked file layout, as
 * its POSIX and NFS drivers write them (made here by
 * test/fixtures/cinder-chunked.py, which follows Cinder's backup algorithm
 * apart from the library), restored into RBD volumes: a full backup and an
 * incremental on top (zlib and uncompressed objects, zeros written by the
 * incremental over data), bytes checked against `rbd export` of the volume
 * at each backup; and what bad containers get.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  BackupEngine, ChunkedBackupError, importRecord, InvalidArgumentError, NotFoundError, restoreChunked, VerificationError,
  type Image, type Pool,
} from '../../lib/index.js';
import { rbd, testCluster } from '../support/clusters.js';
import { run } from '../support/cli-run.js';
import { POOL, volumeSha, useBackupTestbed, type VolumeFixtures } from '../support/backup-fixtures.js';

const execFileAsync = promisify(execFile);
const FIXTURE = fileURLToPath(new URL('../../../test/fixtures/cinder-chunked.py', import.meta.url));
const MiB = 1 << 20;
const SIZE = 24 * MiB;
const CHUNK = 4 * MiB;

let volumes: Pool;
let fx: VolumeFixtures;
let engine: BackupEngine;
useBackupTestbed((testbed) => ({ volumes, fx, engine } = testbed));

interface Made {
  container: string;
  prefix: string;
  objects: number;
}

async function fileSha(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** A temporary backup root, removed when the test ends. */
async function backupRoot(t: TestContext): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'rbd-backup-chunked-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  return root;
}

/** Cinder's backup of the volume as it is now, by the fixture, from an `rbd export` of it. */
async function cinderBackup(root: string, volumeId: string, backupId: string, parentId: string | null, compression: string,
  chunk = CHUNK): Promise<Made> {
  const raw = join(root, `${backupId}.raw`);
  await rbd('a', ['export', '--no-progress', `${POOL}/volume-${volumeId}`, raw]);
  const { stdout } = await execFileAsync('/usr/bin/python3', [FIXTURE, root, backupId, volumeId, parentId ?? '-', raw, compression, String(chunk), '32768']);
  await rm(raw);
  return JSON.parse(stdout) as Made;
}

/** A new volume of SIZE to restore into (removed when the test ends), open: the caller closes it. */
async function newTarget(t: TestContext): Promise<{ id: string; image: Image }> {
  const id = fx.targetId(t);
  await volumes.createImage(`volume-${id}`, SIZE);
  return { id, image: await volumes.openImage(`volume-${id}`) };
}

test('a full backup and an incremental of Cinder\'s layout restore byte for byte into new volumes', { timeout: 180_000 }, async (t) => {
  const root = await backupRoot(t);
  const volumeId = await fx.newVolume(t, SIZE);
  // Data here and there, zeros between (the full backup stores them too: Cinder reads everything).
  await fx.writeRandom(volumeId, [[0, 3 * MiB], [9 * MiB + 100, 2 * MiB], [SIZE - 64 * 1024, 64 * 1024]]);
  const full = await cinderBackup(root, volumeId, 'f0a1b2c3-full', null, 'zlib');
  const fullSha = await volumeSha(volumeId);
  // Changed, some of it zeroed over data (an incremental layer's zeros must be written).
  await fx.writeRandom(volumeId, [[1 * MiB + 4096, 32 * 1024], [12 * MiB, MiB]]);
  await fx.withVolume(volumeId, (image) => image.writeZeroes(9 * MiB + 100, 512 * 1024));
  const incremental = await cinderBackup(root, volumeId, 'a9b8c7d6-incr', 'f0a1b2c3-full', 'none');
  const incrementalSha = await volumeSha(volumeId);
  t.diagnostic(`full: ${full.objects} objects, incremental: ${incremental.objects} objects`);
  assert.equal(full.objects, SIZE / CHUNK);
  assert.ok(incremental.objects >= 3 && incremental.objects < 8, `only the changed runs: ${incremental.objects}`);

  const first = await newTarget(t);
  await using firstImage = first.image;
  const restoredFull = await restoreChunked({ root, backupId: 'f0a1b2c3-full', target: firstImage, targetIsZero: true });
  assert.deepEqual(restoredFull.backups, ['f0a1b2c3-full']);
  assert.ok(restoredFull.bytesSkipped > 0n, 'zeros of the full backup not written to the new volume');
  assert.equal(restoredFull.bytesWritten + restoredFull.bytesSkipped, BigInt(SIZE));
  assert.equal(await volumeSha(first.id), fullSha);

  const second = await newTarget(t);
  await using secondImage = second.image;
  const restored = await restoreChunked({ root, backupId: 'a9b8c7d6-incr', container: incremental.container, prefix: incremental.prefix,
    target: secondImage, targetIsZero: true });
  assert.deepEqual(restored.backups, ['f0a1b2c3-full', 'a9b8c7d6-incr']);
  assert.equal(restored.objects, full.objects + incremental.objects);
  assert.equal(await volumeSha(second.id), incrementalSha);

  // Into a raw file of the volume's size: sparse, byte-equal.
  const out = await mkdtemp(join(tmpdir(), 'rbd-backup-chunked-out-'));
  t.after(() => rm(out, { recursive: true, force: true }));
  const file = join(out, 'volume.raw');
  const toFile = await restoreChunked({ root, backupId: 'a9b8c7d6-incr', target: { file, size: BigInt(SIZE) } });
  assert.ok(toFile.bytesSkipped > 0n);
  assert.equal(await fileSha(file), incrementalSha);
  // Refused: an existing file; then a damaged object: no file, and no partial one, is left.
  await assert.rejects(restoreChunked({ root, backupId: 'a9b8c7d6-incr', target: { file, size: BigInt(SIZE) } }), (e: unknown) =>
    e instanceof Error && 'code' in e && e.code === 'EEXIST');
  const damaged = join(root, incremental.container, `${incremental.prefix}-00001`);
  const bytes = await readFile(damaged);
  bytes[0] = bytes[0]! ^ 0x80;
  await writeFile(damaged, bytes);
  await assert.rejects(restoreChunked({ root, backupId: 'a9b8c7d6-incr', target: { file: join(out, 'other.raw'), size: BigInt(SIZE) } }),
    VerificationError);
  assert.deepEqual(await readdir(out), ['volume.raw']);
});

test('bad containers: a flipped byte, a missing parent, a container outside the root, an unknown version; bz2 objects restore',
  { timeout: 180_000 }, async (t) => {
    const root = await backupRoot(t);
    const volumeId = await fx.newVolume(t, SIZE);
    await fx.writeRandom(volumeId, [[0, SIZE]]);
    const full = await cinderBackup(root, volumeId, 'b1c2d3e4-full', null, 'none');
    await fx.writeRandom(volumeId, [[5 * MiB, MiB]]);
    await cinderBackup(root, volumeId, 'c1d2e3f4-incr', 'b1c2d3e4-full', 'none');
    await using image = (await newTarget(t)).image;
    await using flipTarget = (await newTarget(t)).image;

    // A byte flipped in an object of the full backup: its md5 fails the restore, naming the file and its range.
    const dir = join(root, full.container);
    const object = join(dir, `${full.prefix}-00002`);
    const data = await readFile(object);
    data[777] = data[777]! ^ 0xff;
    await writeFile(object, data);
    await assert.rejects(restoreChunked({ root, backupId: 'c1d2e3f4-incr', target: flipTarget }), (e: unknown) =>
      e instanceof VerificationError && e.message.includes(object) && e.mismatches[0]!.offset === BigInt(CHUNK));
    data[777] = data[777]! ^ 0xff;
    await writeFile(object, data);

    await assert.rejects(restoreChunked({ root, backupId: 'c1d2e3f4-incr', container: '../../etc', target: image }), InvalidArgumentError);

    // The parent's metadata gone: the chain is broken, and says whose.
    await rm(join(dir, `${full.prefix}_metadata`));
    await assert.rejects(restoreChunked({ root, backupId: 'c1d2e3f4-incr', target: image }), (e: unknown) =>
      e instanceof ChunkedBackupError && /no \*_metadata file/.test(e.message));
    await rm(dir, { recursive: true });
    await assert.rejects(restoreChunked({ root, backupId: 'c1d2e3f4-incr', target: image }), (e: unknown) =>
      e instanceof NotFoundError && /parent b1c2d3e4-full is not in the backup root/.test(e.message));

    // bz2 objects (Cinder's bz2.compress, decompressed by the addon's libbz2) restore; a damaged one is refused.
    // A chunk of zeros, which bz2 makes smaller (random data it cannot: Cinder stores that uncompressed).
    await fx.withVolume(volumeId, (volume) => volume.writeZeroes(0, CHUNK));
    const again = await cinderBackup(root, volumeId, 'd1e2f3a4-full', null, 'bz2');
    const againMetadata = join(root, again.container, `${again.prefix}_metadata`);
    const bz2Objects = (JSON.parse(await readFile(againMetadata, 'utf8')) as { objects: Array<Record<string, { compression: string }>> })
      .objects.filter((o) => Object.values(o)[0]!.compression === 'bz2').length;
    assert.ok(bz2Objects >= 1, 'the fixture stored the zero chunk with bz2');
    const bz2Target = await newTarget(t);
    await using bz2Image = bz2Target.image;
    await restoreChunked({ root, backupId: 'd1e2f3a4-full', target: bz2Image, targetIsZero: true });
    assert.equal(await volumeSha(bz2Target.id), await volumeSha(volumeId));
    const bz2File = join(root, again.container, `${again.prefix}-00001`);
    const packed = await readFile(bz2File);
    await writeFile(bz2File, packed.subarray(0, packed.length - 8));
    await assert.rejects(restoreChunked({ root, backupId: 'd1e2f3a4-full', target: { file: join(root, 'bz2.raw'), size: BigInt(SIZE) } }),
      (e: unknown) => e instanceof ChunkedBackupError && e.message.includes(bz2File) && /bz2/.test(e.message));
    await writeFile(bz2File, packed);
    // An unknown version: refused before anything is written.
    const document = JSON.parse(await readFile(againMetadata, 'utf8')) as Record<string, unknown>;
    await writeFile(againMetadata, JSON.stringify({ ...document, version: '9.9.9' }));
    await assert.rejects(restoreChunked({ root, backupId: 'd1e2f3a4-full', target: image }), (e: unknown) =>
      e instanceof ChunkedBackupError && /version "9.9.9"/.test(e.message));
    // Nothing was written by the refused calls.
    assert.equal(await image.hasExtents(), false);
  });

test('a record of Cinder\'s NFS driver restores through BackupEngine.restore and the CLI with the backup root', { timeout: 240_000 }, async (t) => {
  const root = await backupRoot(t);
  // Cinder volumes are whole GiB, and its record says how many.
  const volumeId = await fx.newVolume(t, 1024 * MiB);
  await fx.writeRandom(volumeId, [[0, MiB], [300 * MiB + 7, 2 * MiB], [1024 * MiB - 4096, 4096]]);
  const made = await cinderBackup(root, volumeId, 'e1f2a3b4-nfs', null, 'zlib', 64 * MiB);
  const expected = await volumeSha(volumeId);
  const text = Buffer.from(JSON.stringify({
    id: 'e1f2a3b4-nfs', volume_id: volumeId, container: made.container, service_metadata: made.prefix, object_count: made.objects,
    size: 1, display_name: 'nfs backup', display_description: null, parent_id: null,
    service: 'cinder.backup.drivers.nfs.NFSBackupDriver',
  })).toString('base64');
  const record = importRecord(text);
  const into = (id: string) => ({ volume: { pool: POOL, id } });

  const first = fx.targetId(t);
  await assert.rejects(engine.restore({ backup: record, target: into(first) }), (e: unknown) =>
    e instanceof InvalidArgumentError && /backup root \(backupPath, the CLI's --backup-path\)/.test(e.message));
  // Into a stream: the volume's bytes in order.
  const hash = createHash('sha256');
  const piped = await engine.restore({
    backup: record, backupPath: root,
    target: { stream: new Writable({ write(chunk: Buffer, _encoding, done) { hash.update(chunk); done(); } }) },
  });
  assert.equal(piped.path, 'files');
  assert.equal(hash.digest('hex'), expected);
  // A raw file: complete under its name, or nothing.
  const raw = join(root, 'restored.raw');
  const toFile = await engine.restore({ backup: record, target: { file: raw }, backupPath: root });
  assert.equal(toFile.path, 'files');
  assert.equal(await fileSha(raw), expected);
  await rm(raw);
  const plan = await engine.restore({ backup: record, target: into(first), backupPath: root, dryRun: true });
  assert.equal(plan.path, 'files');
  assert.equal(await volumes.imageExists(`volume-${first}`), false, 'a dry run makes nothing');
  const restored = await engine.restore({ backup: record, target: into(first), backupPath: root });
  assert.equal(restored.path, 'files');
  assert.equal(restored.size, 1024n * BigInt(MiB));
  assert.equal(await volumeSha(first), expected);

  const second = fx.targetId(t);
  const { info } = await testCluster('a');
  const cli = await run(['restore', '--conf', info.conf, '--keyring', info.keyring, '--record', text,
    '--target-pool', POOL, '--target-volume', second, '--backup-path', root]);
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(cli.stdout, /by copying its files \(Cinder's chunked layout\)/);
  assert.equal(await volumeSha(second), expected);

  // A damaged object: the restore fails naming it, and the volume it created goes.
  const object = join(root, made.container, `${made.prefix}-00001`);
  const data = await readFile(object);
  data[100] = data[100]! ^ 0x01;
  await writeFile(object, data);
  const third = fx.targetId(t);
  await assert.rejects(engine.restore({ backup: record, target: into(third), backupPath: root }), (e: unknown) =>
    (e instanceof VerificationError || e instanceof ChunkedBackupError) && e.message.includes(object));
  assert.equal(await volumes.imageExists(`volume-${third}`), false, 'the volume the failed restore created is removed');
});

test('objects of one backup that overlap restore in their order, into a volume and into a file', { timeout: 180_000 }, async (t) => {
  const root = await backupRoot(t);
  const volumeId = await fx.newVolume(t, SIZE);
  await fx.writeRandom(volumeId, [[0, SIZE]]);
  const made = await cinderBackup(root, volumeId, 'b0c1d2e3-over', null, 'none');
  const volume = await fx.withVolume(volumeId, (image) => image.read(0, SIZE));
  // Cinder never writes such a backup; its restore applies objects in their order, each over the ones before.
  // Copies of the 6th, 5th, 4th and 3rd chunks at 1, 3, 5 and 7 MiB: each overlaps the one before it by 2 MiB.
  const dir = join(root, made.container);
  const metadataPath = join(dir, `${made.prefix}_metadata`);
  const metadata = JSON.parse(await readFile(metadataPath, 'utf8')) as { objects: Array<Record<string, { offset: number }>> };
  const expected = Buffer.from(volume);
  for (const [i, chunk] of [5, 4, 3, 2].entries()) {
    const original = `${made.prefix}-${String(chunk + 1).padStart(5, '0')}`;
    const copy = `${made.prefix}-${String(900 + i).padStart(5, '0')}`;
    await writeFile(join(dir, copy), await readFile(join(dir, original)));
    const offset = (1 + 2 * i) * MiB;
    metadata.objects.push({ [copy]: { ...metadata.objects[chunk]![original]!, offset } });
    volume.copy(expected, offset, chunk * CHUNK, (chunk + 1) * CHUNK);
  }
  await writeFile(metadataPath, JSON.stringify(metadata));
  const sha = createHash('sha256').update(expected).digest('hex');

  const target = await newTarget(t);
  await using image = target.image;
  const restored = await restoreChunked({ root, backupId: 'b0c1d2e3-over', target: image, targetIsZero: true });
  assert.equal(restored.objects, SIZE / CHUNK + 4);
  assert.equal(await volumeSha(target.id), sha);

  const raw = join(root, 'over.raw');
  await restoreChunked({ root, backupId: 'b0c1d2e3-over', target: { file: raw, size: BigInt(SIZE) } });
  assert.equal(await fileSha(raw), sha);
});
