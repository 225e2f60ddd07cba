/**
 * The rbd-backup command line, run as a user would (a child process, no
 * TTY): each command against a real cluster, its JSON and text output, its
 * progress lines and its documented exit codes.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Cluster, Pool } from '../../lib/index.js';
import { connect, rbdExportSha256, testCluster, uniqueName } from '../support/clusters.js';
import { removeImageFully } from '../support/scratch.js';

const CLI = fileURLToPath(new URL('../../bin/rbd-backup.js', import.meta.url));
const MiB = 1 << 20;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { maxBuffer: 64 << 20, timeout: 120_000 },
      (error, stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr });
      });
  });
}

describe('rbd-backup CLI', () => {
  let cluster: Cluster;
  let pool: Pool;
  let clusterArgs: string[];
  let dir: string;
  const volumeId = uniqueName('cli');
  const restoredId = uniqueName('clir');
  const backupId = uniqueName('bk');

  before(async () => {
    const { info } = await testCluster('a');
    clusterArgs = ['--conf', info.conf, '--keyring', info.keyring];
    cluster = await connect('a');
    pool = await cluster.pool('rbd');
    dir = await mkdtemp(join(tmpdir(), 'rbd-backup-cli-'));
    await pool.createImage(`volume-${volumeId}`, 16 * MiB, { features: ['layering', 'exclusive-lock', 'object-map', 'fast-diff'] });
    const image = await pool.openImage(`volume-${volumeId}`);
    try {
      await image.write(randomBytes(3 * MiB), MiB);
    } finally {
      await image.close();
    }
  });

  after(async () => {
    await removeImageFully(pool, `volume-${volumeId}`);
    await removeImageFully(pool, `volume-${restoredId}`);
    const backups = await cluster.pool('backups');
    await removeImageFully(backups, `volume-${volumeId}.backup.base`);
    await backups.removeObject(`volume-${volumeId}.backup.lock`).catch(() => undefined);
    await backups.close();
    await pool?.close();
    await cluster?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('--help lists the commands and the exit codes; bad usage exits 2', async () => {
    const help = await run(['--help']);
    assert.equal(help.code, 0);
    for (const command of ['backup', 'restore', 'delete', 'ls', 'export-record', 'import-record']) {
      assert.match(help.stdout, new RegExp(`^  ${command} `, 'm'));
    }
    assert.match(help.stdout, /130 +cancelled/);
    const commandHelp = await run(['restore', '--help']);
    assert.equal(commandHelp.code, 0);
    assert.match(commandHelp.stdout, /--target-pool POOL/);
    const unknown = await run(['frobnicate']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "frobnicate"/);
    const badOption = await run(['backup', '--bogus']);
    assert.equal(badOption.code, 2);
    assert.match(badOption.stderr, /Unknown option '--bogus'/);
    const missing = await run(['backup', ...clusterArgs, '--volume', volumeId]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--pool is required/);
  });

  test('backup, ls, restore to a volume and to a file, records, delete', { timeout: 300_000 }, async () => {
    const backup = await run(['backup', ...clusterArgs, '--pool', 'rbd', '--volume', volumeId, '--backup-id', backupId]);
    assert.equal(backup.code, 0, backup.stderr);
    assert.match(backup.stdout, new RegExp(`^backup ${backupId} of volume ${volumeId}: full$`, 'm'));
    // Not a terminal: progress comes as plain lines on stderr, ending at 100%.
    assert.match(backup.stderr, /^backup: 100% /m);
    const snapshot = /^snapshot (\S+) on /m.exec(backup.stdout)![1];

    const listed = await run(['ls', ...clusterArgs, '--volume', volumeId, '--json']);
    assert.equal(listed.code, 0, listed.stderr);
    const entries = JSON.parse(listed.stdout) as Array<{ record: { id: string }; snapshot: string }>;
    assert.deepEqual(entries.map((e) => [e.record.id, e.snapshot]), [[backupId, snapshot]]);

    const restored = await run(['restore', ...clusterArgs, '--volume', volumeId, '--backup-id', backupId,
      '--target-pool', 'rbd', '--target-volume', restoredId, '--json']);
    assert.equal(restored.code, 0, restored.stderr);
    assert.equal((JSON.parse(restored.stdout) as { path: string }).path, 'diff');
    const expected = await rbdExportSha256('a', `rbd/volume-${volumeId}@${snapshot}`);
    assert.equal(await rbdExportSha256('a', `rbd/volume-${restoredId}`), expected);

    const exported = await run(['export-record', ...clusterArgs, '--volume', volumeId, '--backup-id', backupId]);
    assert.equal(exported.code, 0, exported.stderr);
    const record = exported.stdout.trim();
    const imported = await run(['import-record', ...clusterArgs, record]);
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stdout, new RegExp(`backup ${backupId} of volume ${volumeId} in pool backups`));

    const file = join(dir, 'restored.raw');
    const toFile = await run(['restore', ...clusterArgs, '--record', record, '--target-file', file]);
    assert.equal(toFile.code, 0, toFile.stderr);
    assert.match(toFile.stdout, /full copy because condition 3 failed: the target is not an RBD image/);
    assert.equal(createHash('sha256').update(await readFile(file)).digest('hex'), expected);
    const again = await run(['restore', ...clusterArgs, '--record', record, '--target-file', file]);
    assert.notEqual(again.code, 0, 'an existing file is refused');
    assert.equal(createHash('sha256').update(await readFile(file)).digest('hex'), expected, 'and left as it was');

    const deleted = await run(['delete', ...clusterArgs, '--record', record]);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.match(deleted.stdout, new RegExp(`removed image volume-${volumeId}\\.backup\\.base`));
    const deletedAgain = await run(['delete', ...clusterArgs, '--record', record]);
    assert.equal(deletedAgain.code, 3, deletedAgain.stderr);
  });

  test('documented exit codes for a missing backup, a bad id and a bad record', async () => {
    const missing = await run(['restore', ...clusterArgs, '--volume', volumeId, '--backup-id', 'nope',
      '--target-pool', 'rbd']);
    assert.equal(missing.code, 3);
    assert.match(missing.stderr, /no backup nope of volume/);
    const badId = await run(['backup', ...clusterArgs, '--pool', 'rbd', '--volume', '../etc']);
    assert.equal(badId.code, 7);
    assert.match(badId.stderr, /volume id must be/);
    const badRecord = await run(['import-record', ...clusterArgs, 'not base64!', '--json']);
    assert.equal(badRecord.code, 7);
    const error = JSON.parse(badRecord.stderr) as { exitCode: number; error: { code: string; message: string } };
    assert.equal(error.exitCode, 7);
    assert.equal(error.error.code, 'EINVAL');
    assert.match(error.error.message, /not base64/);
  });
});
