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
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  ChunkedBackupError, InvalidArgumentError, NotFoundError, NotSupportedError, restoreChunked, VerificationError, type Image, type Pool,
} from '../../lib/index.js';
import { rbd } from '../support/clusters.js';
import { POOL, volumeSha, useBackupTestbed, type VolumeFixtures } from '../support/backup-fixtures.js';

const execFileAsync = promisify(execFile);
const FIXTURE = fileURLToPath(new URL('../../../test/fixtures/cinder-chunked.py', import.meta.url));
const MiB = 1 << 20;
const SIZE = 24 * MiB;
const CHUNK = 4 * MiB;

let volumes: Pool;
let fx: VolumeFixtures;
useBackupTestbed((testbed) => ({ volumes, fx } = testbed));

interface Made {
  container: string;
  prefix: string;
  objects: number;
}

/** A temporary backup root, removed when the test ends. */
async function backupRoot(t: TestContext): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'rbd-backup-chunked-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  return root;
}

/** Cinder's backup of the volume as it is now, by the fixture, from an `rbd export` of it. */
async function cinderBackup(root: string, volumeId: string, backupId: string, parentId: string | null, compression: string): Promise<Made> {
  const raw = join(root, `${backupId}.raw`);
  await rbd('a', ['export', '--no-progress', `${POOL}/volume-${volumeId}`, raw]);
  const { stdout } = await execFileAsync('/usr/bin/python3', [FIXTURE, root, backupId, volumeId, parentId ?? '-', raw, compression, String(CHUNK), '32768']);
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
});

test('bad containers: a flipped byte, a missing parent, a container outside the root, an unknown version, bz2 objects',
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

    // An unknown version, and bz2 objects (not restored by this version): refused before anything is written.
    // A chunk of zeros, which bz2 makes smaller (random data it cannot: Cinder stores that uncompressed).
    await fx.withVolume(volumeId, (volume) => volume.writeZeroes(0, CHUNK));
    const again = await cinderBackup(root, volumeId, 'd1e2f3a4-full', null, 'bz2');
    const againMetadata = join(root, again.container, `${again.prefix}_metadata`);
    await assert.rejects(restoreChunked({ root, backupId: 'd1e2f3a4-full', target: image }), (e: unknown) =>
      e instanceof NotSupportedError && /bz2/.test(e.message));
    const document = JSON.parse(await readFile(againMetadata, 'utf8')) as Record<string, unknown>;
    await writeFile(againMetadata, JSON.stringify({ ...document, version: '9.9.9' }));
    await assert.rejects(restoreChunked({ root, backupId: 'd1e2f3a4-full', target: image }), (e: unknown) =>
      e instanceof ChunkedBackupError && /version "9.9.9"/.test(e.message));
    // Nothing was written by the refused calls.
    assert.equal(await image.hasExtents(), false);
  });
