/**
 * exportRaw into files: the bytes are `rbd export`'s; every file-system
 * failure is a typed CephError naming the path (an existing file used to
 * surface as Node's own EEXIST Error); a failure leaks no image view (the
 * pool then closes); and a file the export created is removed again when
 * the export fails or is cancelled part-way. A stream that fails, is
 * closed early or never drains ends the export with a CephError (an abort
 * ends the wait), never a hang or its own untyped error.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import {
  AlreadyExistsError, CancelledError, CephError, exportRaw, NotFoundError, PermissionError, type Cluster,
  type ExportRawOptions, type Pool,
} from '../../lib/index.js';
import { connect, rbdExportSha256, uniqueName } from '../support/clusters.js';
import { assertCephError } from '../support/checks.js';
import { removeImageFully } from '../support/scratch.js';

const MiB = 1 << 20;
let cluster: Cluster;
let pool: Pool;
let dir: string;
const name = uniqueName('raw-export');

before(async () => {
  cluster = await connect('a');
  pool = await cluster.pool('rbd');
  dir = mkdtempSync(join(tmpdir(), 'raw-export-'));
  await pool.createImage(name, 32 * MiB);
  const image = await pool.openImage(name);
  for (let at = 0; at < 32 * MiB; at += 4 * MiB) await image.write(randomBytes(MiB), at + 512);
  await image.createSnapshot('s');
  await image.close();
});

after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await removeImageFully(pool, name);
  await pool.close();
  await cluster.close();
});

const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

/** Runs one export on a pool of its own, and checks that the pool closes afterwards (no image view leaked). */
async function exportOnOwnPool(to: string | Writable, extra: Partial<ExportRawOptions>): Promise<unknown> {
  const own = await cluster.pool('rbd');
  const image = await own.openImage(name, { readOnly: true });
  try {
    return await exportRaw(image, { snapshot: 's', to, ...extra });
  } finally {
    await image.close();
    await own.close();
  }
}

test('exports the snapshot\'s bytes into a new file, and over an existing one with overwrite', async () => {
  const file = join(dir, 'ok.raw');
  await exportOnOwnPool(file, {});
  const expected = await rbdExportSha256('a', `rbd/${name}@s`);
  assert.equal(sha256(file), expected);
  writeFileSync(file, 'old content');
  await exportOnOwnPool(file, { overwrite: true });
  assert.equal(sha256(file), expected);
});

test('file-system failures are typed CephErrors naming the path, and leak no image view', async () => {
  const existing = join(dir, 'existing.raw');
  writeFileSync(existing, 'keep me');
  await assertCephError(exportOnOwnPool(existing, {}), AlreadyExistsError,
    { code: 'EEXIST', operation: 'exportRaw', resource: existing, message: /cannot create the file: it already exists and is not overwritten; remove it or give another path/ });
  assert.equal(readFileSync(existing, 'utf8'), 'keep me', 'a refused export leaves the existing file alone');

  const missingDir = join(dir, 'no-such-dir', 'x.raw');
  await assertCephError(exportOnOwnPool(missingDir, {}), NotFoundError,
    { code: 'ENOENT', operation: 'exportRaw', resource: missingDir, message: /does not exist/ });

  // Root may write anywhere but sysfs: creating a file there is EACCES even for root.
  await assertCephError(exportOnOwnPool('/sys/rbd-backup-test.raw', {}), PermissionError,
    { code: 'EACCES', operation: 'exportRaw', resource: '/sys/rbd-backup-test.raw', message: /permission denied/ });

  const underFile = join(existing, 'x.raw');
  const error = await assertCephError(exportOnOwnPool(underFile, {}), CephError,
    { code: 'ENOTDIR', operation: 'exportRaw', resource: underFile, message: /cannot create the file/ });
  assert.equal(error.errno, 20);
});

test('a cancelled export removes the file it created, and a retry then succeeds', async () => {
  const file = join(dir, 'cancelled.raw');
  const controller = new AbortController();
  await assertCephError(exportOnOwnPool(file, {
    signal: controller.signal, concurrency: 1, memoryBytes: 4 * MiB, onProgress: () => controller.abort(),
  }), CancelledError, { code: 'ECANCELED', message: /cancel/ });
  assert.equal(existsSync(file), false, 'the partial file is gone');
  await exportOnOwnPool(file, {});
  assert.equal(sha256(file), await rbdExportSha256('a', `rbd/${name}@s`));
});

test('a stream that fails, is closed early or never drains: a typed CephError, never a hang', { timeout: 120_000 }, async () => {
  const taking = (): Writable => new Writable({ write: (_chunk, _encoding, done) => done() });
  const destroyed = taking();
  destroyed.destroy();
  await assertCephError(exportOnOwnPool(destroyed, {}), CephError, { code: 'EPIPE', message: /the stream is already ended or destroyed/ });
  const ended = taking();
  ended.end();
  await assertCephError(exportOnOwnPool(ended, {}), CephError, { code: 'EPIPE', message: /the stream is already ended or destroyed/ });

  const failing = new Writable({ write: (_chunk, _encoding, done) => done(new Error('disk full')) });
  const error = await assertCephError(exportOnOwnPool(failing, {}), CephError,
    { code: 'EIO', operation: 'exportRaw', message: /writing to the stream: Error: disk full/ });
  assert.equal((error.cause as Error).message, 'disk full', 'the stream\'s own error is the cause');

  let taken = 0;
  const closedPartWay = new Writable({
    highWaterMark: MiB,
    write(chunk: Buffer, _encoding, done) {
      taken += chunk.length;
      if (taken > 8 * MiB) this.destroy();
      else done();
    },
  });
  await assertCephError(exportOnOwnPool(closedPartWay, {}), CephError, { code: 'EPIPE', message: /closed before it took all the data/ });

  // Takes one write and never finishes it: the export waits for a drain until it is aborted.
  const stuck = new Writable({ highWaterMark: 1, write: () => undefined });
  const controller = new AbortController();
  const waiting = exportOnOwnPool(stuck, { signal: controller.signal });
  setTimeout(() => controller.abort(), 500);
  await assertCephError(waiting, CancelledError, { code: 'ECANCELED', message: /cancel/ });
});
