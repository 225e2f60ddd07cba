/**
 * The rbd-backup command line, run as a user would (a child process, no
 * TTY): each command against a real cluster (a full backup into its own
 * chain image, an incremental continuing it, restore to exactly one target,
 * prune, delete with the source snapshot), its JSON and text output, its
 * progress lines and its documented exit codes.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Cluster, Pool } from '../../lib/index.js';
import { connect, rbdExportSha256, testCluster, uniqueName } from '../support/clusters.js';
import { removeImageFully } from '../support/scratch.js';
import { removeVolumeAndBackups } from '../support/backup-fixtures.js';
import { run, runRaw } from '../support/cli-run.js';
import { flipByte } from '../support/digest-checks.js';

const MiB = 1 << 20;

describe('rbd-backup CLI', () => {
  let cluster: Cluster;
  let pool: Pool;
  let clusterArgs: string[];
  let dir: string;
  const volumeId = uniqueName('cli');
  const restoredId = uniqueName('clir');
  const backupId = uniqueName('bk');
  const secondId = uniqueName('bk2');

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
    await removeImageFully(pool, `volume-${restoredId}`);
    const backups = await cluster.pool('backups');
    await removeVolumeAndBackups(pool, backups, volumeId);
    await backups.close();
    await pool?.close();
    await cluster?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('--help lists the commands and the exit codes; bad usage exits 2', async () => {
    const help = await run(['--help']);
    assert.equal(help.code, 0);
    for (const command of ['backup', 'restore', 'delete', 'prune', 'gc', 'ls', 'show', 'export-record', 'import-record']) {
      assert.match(help.stdout, new RegExp(`^  ${command} `, 'm'));
    }
    assert.match(help.stdout, /130 +cancelled/);
    const commandHelp = await run(['restore', '--help']);
    assert.equal(commandHelp.code, 0);
    assert.match(commandHelp.stdout, /--target-pool POOL/);
    const deleteHelp = await run(['delete', '--help']);
    assert.equal(deleteHelp.code, 0);
    assert.match(deleteHelp.stdout, /--pool POOL/);
    const pruneHelp = await run(['prune', '--help']);
    assert.equal(pruneHelp.code, 0);
    assert.match(pruneHelp.stdout, /--keep POLICY/);
    const unknown = await run(['frobnicate']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "frobnicate"/);
    const badOption = await run(['backup', '--bogus']);
    assert.equal(badOption.code, 2);
    assert.match(badOption.stderr, /Unknown option '--bogus'/);
    const missing = await run(['backup', ...clusterArgs, '--volume', volumeId]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /-p\/--pool is required/);
  });

  test('backup (full, then incremental), ls, restore to a volume and to a file, records, prune, delete',
    { timeout: 300_000 }, async () => {
      const chain = `volume-${volumeId}.backup.${backupId}`;
      const backup = await run(['backup', ...clusterArgs, '--pool', 'rbd', '--volume', volumeId, '--backup-id', backupId]);
      assert.equal(backup.code, 0, backup.stderr);
      assert.match(backup.stdout, new RegExp(`^backup ${backupId} of volume ${volumeId}: full$`, 'm'));
      // Not a terminal: progress comes as plain lines on stderr, one per tenth, ending at 100%.
      assert.deepEqual([...backup.stderr.matchAll(/^backup: (\d+)% \(/gm)].map((m) => Number(m[1])),
        [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
      const [, snapshot, image] = /^snapshot (\S+) on (\S+)$/m.exec(backup.stdout)!;
      assert.equal(image, chain, 'a full backup has its own chain image');
      const expected = await rbdExportSha256('a', `rbd/volume-${volumeId}@${snapshot}`);

      const source = await pool.openImage(`volume-${volumeId}`);
      try {
        await source.write(randomBytes(2 * MiB), 8 * MiB);
      } finally {
        await source.close();
      }
      const metadataFile = join(dir, 'meta.json');
      await writeFile(metadataFile, JSON.stringify({ 'volume-metadata': { tier: 'gold' } }));
      const second = await run(['backup', ...clusterArgs, '--pool', 'rbd', '--volume', volumeId, '--backup-id', secondId,
        '--name', 'nightly', '--description', 'before the upgrade', '--metadata', metadataFile]);
      assert.equal(second.code, 0, second.stderr);
      assert.match(second.stdout, new RegExp(`^backup ${secondId} of volume ${volumeId}: incremental from ${snapshot.replace(/\./g, '\\.')}$`, 'm'));
      const [, secondSnapshot, secondImage] = /^snapshot (\S+) on (\S+)$/m.exec(second.stdout)!;
      assert.equal(secondImage, chain, 'the incremental continues the chain image');
      const secondExpected = await rbdExportSha256('a', `rbd/volume-${volumeId}@${secondSnapshot}`);

      const listed = await run(['ls', ...clusterArgs, '--volume', volumeId, '--json']);
      assert.equal(listed.code, 0, listed.stderr);
      const entries = JSON.parse(listed.stdout) as Array<{
        volumeId: string; backupId: string; type: string; parentId: string | null; sizeBytes: unknown;
        createdAt: string; image: string; snapshot: string; record: { id: string; size: unknown };
      }>;
      assert.deepEqual(entries.map((e) => [e.volumeId, e.backupId, e.image, e.snapshot, e.type, e.parentId]),
        [[volumeId, backupId, chain, snapshot, 'full', null], [volumeId, secondId, chain, secondSnapshot, 'incremental', backupId]]);
      for (const e of entries) {
        assert.equal(e.sizeBytes, 16 * MiB, 'sizes are numbers in JSON');
        assert.equal(typeof e.record.size, 'number');
        assert.ok(!Number.isNaN(Date.parse(e.createdAt)));
      }
      const listedText = await run(['ls', ...clusterArgs, '--volume', volumeId]);
      assert.equal(listedText.code, 0, listedText.stderr);
      const lines = listedText.stdout.trim().split('\n');
      assert.equal(lines.length, 3);
      assert.match(lines[0], /^BACKUP +TYPE +CREATED +SIZE +NAME +IMAGE@SNAPSHOT$/);
      const at = (name: string): string => name.replace(/\./g, '\\.');
      assert.match(lines[1], new RegExp(`^${backupId} +full +\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d +16\\.0 MiB +- +${at(chain)}@${at(snapshot)}$`));
      assert.match(lines[2], new RegExp(`^${secondId} +incr +.+ +16\\.0 MiB +nightly +${at(chain)}@${at(secondSnapshot)}$`));

      const all = await run(['ls', ...clusterArgs, '--all', '--json']);
      assert.equal(all.code, 0, all.stderr);
      const ours = (JSON.parse(all.stdout) as Array<{ volumeId: string; backupId: string }>).filter((e) => e.volumeId === volumeId);
      assert.deepEqual(ours.map((e) => e.backupId), [backupId, secondId], 'ls --all lists every volume with backups');
      const allText = await run(['ls', ...clusterArgs, '--all']);
      assert.match(allText.stdout, /^VOLUME +BACKUP +TYPE/);
      assert.match(allText.stdout, new RegExp(`^${volumeId} +${secondId} +incr `, 'm'));

      const shown = await run(['show', ...clusterArgs, '--volume', volumeId, '--backup-id', secondId, '-p', 'rbd']);
      assert.equal(shown.code, 0, shown.stderr);
      assert.match(shown.stdout, new RegExp(`^type +incremental$`, 'm'));
      assert.match(shown.stdout, new RegExp(`^parent +${backupId}$`, 'm'));
      assert.match(shown.stdout, new RegExp(`^image +backups/${at(chain)}$`, 'm'));
      assert.match(shown.stdout, new RegExp(`^snapshot +${at(secondSnapshot)}$`, 'm'));
      assert.match(shown.stdout, /^size +16\.0 MiB$/m);
      assert.match(shown.stdout, new RegExp(`^on source +present \\(rbd/volume-${volumeId}\\)$`, 'm'));
      // Kept in the backup pool itself: no record was given.
      assert.match(shown.stdout, /^name +nightly$/m);
      assert.match(shown.stdout, /^description +before the upgrade$/m);
      assert.match(shown.stdout, /^written +\d+(\.\d)? [KM]iB$/m);
      assert.match(shown.stdout, new RegExp(`^metadata +backup\\.${secondId}\\.meta: volume-metadata$`, 'm'));
      const shownJson = JSON.parse((await run(['show', ...clusterArgs, '--volume', volumeId, '--backup-id', backupId, '--json'])).stdout) as
        { type: string; sizeBytes: unknown; sourceSnapshot: unknown; volumeMetadata: unknown };
      assert.deepEqual([shownJson.type, shownJson.sizeBytes, shownJson.sourceSnapshot, shownJson.volumeMetadata], ['full', 16 * MiB, null, null]);
      const shownMissing = await run(['show', ...clusterArgs, '--volume', volumeId, '--backup-id', 'nope']);
      assert.equal(shownMissing.code, 3);
      assert.match(shownMissing.stderr, new RegExp(`no backup nope of volume ${volumeId} in pool backups; list them with: rbd-backup ls --volume ${volumeId}`));

      const restored = await run(['restore', ...clusterArgs, '--volume', volumeId, '--backup-id', backupId,
        '--target-pool', 'rbd', '--target-volume', restoredId, '--json']);
      assert.equal(restored.code, 0, restored.stderr);
      const result = JSON.parse(restored.stdout) as { path: string; source: string; target: string };
      assert.equal(result.path, 'diff');
      assert.equal(result.source, `backups/${chain}@${snapshot}`);
      assert.equal(result.target, `rbd/volume-${restoredId}`);
      assert.equal(await rbdExportSha256('a', `rbd/volume-${restoredId}`), expected);

      // Exactly one target.
      const noTarget = await run(['restore', ...clusterArgs, '--volume', volumeId, '--backup-id', backupId]);
      assert.equal(noTarget.code, 2, noTarget.stderr);
      assert.match(noTarget.stderr, /give exactly one of --target-pool, --target-file, --stdout/);
      const twoTargets = await run(['restore', ...clusterArgs, '--volume', volumeId, '--backup-id', backupId,
        '--target-pool', 'rbd', '--target-file', join(dir, 'never.raw')]);
      assert.equal(twoTargets.code, 2, twoTargets.stderr);
      assert.match(twoTargets.stderr, /got --target-pool and --target-file/);
      const volumeWithoutPool = await run(['restore', ...clusterArgs, '--volume', volumeId, '--backup-id', backupId,
        '--target-file', join(dir, 'never.raw'), '--target-volume', 'x1']);
      assert.equal(volumeWithoutPool.code, 2, volumeWithoutPool.stderr);
      assert.match(volumeWithoutPool.stderr, /--target-volume needs --target-pool/);
      await assert.rejects(readFile(join(dir, 'never.raw')), { code: 'ENOENT' });

      // Safe restores: the restored volume now holds data, the source is the source.
      const ontoUsed = await run(['restore', ...clusterArgs, '--volume', volumeId, '--backup-id', backupId,
        '--target-pool', 'rbd', '--target-volume', restoredId]);
      assert.equal(ontoUsed.code, 1, ontoUsed.stderr);
      assert.match(ontoUsed.stderr, /the target volume already holds data; restore into a new or empty volume, or pass force: true \(--force\)/);
      const ontoSource = await run(['restore', ...clusterArgs, '--volume', volumeId, '--backup-id', backupId,
        '--target-pool', 'rbd', '--target-volume', volumeId]);
      assert.equal(ontoSource.code, 7, ontoSource.stderr);
      assert.match(ontoSource.stderr, /the target is the backup's own source volume/);
      const planned = await run(['restore', ...clusterArgs, '--volume', volumeId, '--backup-id', backupId,
        '--target-pool', 'rbd', '--target-volume', restoredId, '--force', '--dry-run']);
      assert.equal(planned.code, 0, planned.stderr);
      assert.match(planned.stdout, new RegExp(`^dry run: would restore backups/${chain.replace(/\./g, '\\.')}@.* -> rbd/volume-${restoredId} by a full copy; nothing was changed\nfull copy because condition 5 fails: the target volume already holds data$`, 'm'));
      const fresh = uniqueName('clid');
      const plannedNew = await run(['restore', ...clusterArgs, '--volume', volumeId, '--backup-id', backupId,
        '--target-pool', 'rbd', '--target-volume', fresh, '--dry-run', '--json']);
      assert.equal(plannedNew.code, 0, plannedNew.stderr);
      assert.deepEqual((({ dryRun, path, bytesRead }) => ({ dryRun, path, bytesRead }))(JSON.parse(plannedNew.stdout) as
        { dryRun: boolean; path: string; bytesRead: number }), { dryRun: true, path: 'diff', bytesRead: 0 });
      assert.equal(await pool.imageExists(`volume-${fresh}`), false, 'a dry run creates nothing');
      assert.equal(await rbdExportSha256('a', `rbd/volume-${restoredId}`), expected, 'refusals and dry runs changed nothing');

      const exported = await run(['export-record', ...clusterArgs, '--volume', volumeId, '--backup-id', backupId]);
      assert.equal(exported.code, 0, exported.stderr);
      const record = exported.stdout.trim();
      const imported = await run(['import-record', record]);
      assert.equal(imported.code, 0, imported.stderr);
      assert.match(imported.stdout, new RegExp(`backup ${backupId} of volume ${volumeId} in pool backups`));
      assert.ok(imported.stdout.includes(`"base":"${chain}"`), imported.stdout);

      const file = join(dir, 'restored.raw');
      const toFile = await run(['restore', ...clusterArgs, '--record', record, '--target-file', file]);
      assert.equal(toFile.code, 0, toFile.stderr);
      assert.match(toFile.stdout, /full copy because condition 3 failed: the target is not an RBD image/);
      assert.equal(createHash('sha256').update(await readFile(file)).digest('hex'), expected);
      const again = await run(['restore', ...clusterArgs, '--record', record, '--target-file', file]);
      assert.equal(again.code, 1, 'an existing file is refused');
      assert.match(again.stderr, new RegExp(`${file.replace(/\./g, '\\.')}: cannot create the file: it already exists and is not overwritten; remove it or give another path \\[EEXIST\\]`));
      assert.doesNotMatch(again.stderr, /still open/);
      assert.equal(createHash('sha256').update(await readFile(file)).digest('hex'), expected, 'and left as it was');
      const toStdout = await runRaw(['restore', ...clusterArgs, '--volume', volumeId, '--backup-id', secondId, '--stdout']);
      assert.equal(toStdout.code, 0, toStdout.stderr);
      assert.equal(toStdout.stdout.length, 16 * MiB);
      assert.equal(createHash('sha256').update(toStdout.stdout).digest('hex'), secondExpected);

      // A dry-run prune reports and removes nothing; a bad policy is an invalid argument.
      const dryRun = await run(['prune', ...clusterArgs, '--volume', volumeId, '--keep', 'latest1', '--dry-run']);
      assert.equal(dryRun.code, 0, dryRun.stderr);
      assert.match(dryRun.stdout, new RegExp(`^keep    ${secondId} `, 'm'));
      assert.match(dryRun.stdout, new RegExp(`^remove ${backupId} `, 'm'));
      assert.match(dryRun.stdout, /^1 kept, 1 would remove$/m);
      const badPolicy = await run(['prune', ...clusterArgs, '--volume', volumeId, '--keep', 'lastest1']);
      assert.equal(badPolicy.code, 7, badPolicy.stderr);
      const stillListed = JSON.parse((await run(['ls', ...clusterArgs, '--volume', volumeId, '--json'])).stdout) as unknown[];
      assert.equal(stillListed.length, 2);

      // The incremental goes first, with its source snapshot (--pool); the chain image goes with the last backup.
      const deletedSecond = await run(['delete', ...clusterArgs, '--volume', volumeId, '--backup-id', secondId, '--pool', 'rbd']);
      assert.equal(deletedSecond.code, 0, deletedSecond.stderr);
      assert.match(deletedSecond.stdout, new RegExp(`^removed snapshot ${secondSnapshot.replace(/\./g, '\\.')}$`, 'm'));
      assert.match(deletedSecond.stdout, new RegExp(`^removed source snapshot ${secondSnapshot.replace(/\./g, '\\.')}$`, 'm'));
      assert.doesNotMatch(deletedSecond.stdout, /removed image/);
      const deleted = await run(['delete', ...clusterArgs, '--record', record]);
      assert.equal(deleted.code, 0, deleted.stderr);
      assert.match(deleted.stdout, new RegExp(`removed image ${chain.replace(/\./g, '\\.')}`));
      assert.doesNotMatch(deleted.stdout, /removed source snapshot/, 'without --pool the source is left alone');
      const deletedAgain = await run(['delete', ...clusterArgs, '--record', record]);
      assert.equal(deletedAgain.code, 3, deletedAgain.stderr);
      const none = await run(['ls', ...clusterArgs, '--volume', volumeId]);
      assert.equal(none.stdout.trim(), `no backups of volume ${volumeId} in pool backups`);
    });

  test('restore --instant: the clone announced usable, then flattened (background); --flatten never keeps the backup from being deleted',
    { timeout: 300_000 }, async (t) => {
      const instantVolume = uniqueName('clii');
      const flatTarget = uniqueName('clif');
      const cloneTarget = uniqueName('clic');
      const backups = await cluster.pool('backups');
      t.after(async () => {
        await removeImageFully(pool, `volume-${flatTarget}`);
        await removeImageFully(pool, `volume-${cloneTarget}`);
        await removeVolumeAndBackups(pool, backups, instantVolume);
        await backups.close();
      });
      await pool.createImage(`volume-${instantVolume}`, 8 * MiB, { features: ['layering', 'exclusive-lock', 'object-map', 'fast-diff'] });
      {
        await using image = await pool.openImage(`volume-${instantVolume}`);
        await image.write(randomBytes(3 * MiB), 2 * MiB);
      }
      const backup = await run(['backup', ...clusterArgs, '--pool', 'rbd', '--volume', instantVolume, '--backup-id', 'ib1']);
      assert.equal(backup.code, 0, backup.stderr);
      const [, snapshot] = /^snapshot (\S+) on (\S+)$/m.exec(backup.stdout)!;
      const expected = await rbdExportSha256('a', `rbd/volume-${instantVolume}@${snapshot}`);
      const ref = ['--volume', instantVolume, '--backup-id', 'ib1'];

      const withoutInstant = await run(['restore', ...clusterArgs, ...ref, '--target-pool', 'rbd', '--flatten', 'now']);
      assert.equal(withoutInstant.code, 2);
      assert.match(withoutInstant.stderr, /--flatten goes with --instant/);
      const toFile = await run(['restore', ...clusterArgs, ...ref, '--target-file', join(dir, 'instant.raw'), '--instant']);
      assert.equal(toFile.code, 2);
      assert.match(toFile.stderr, /--instant makes a volume/);

      const flat = await run(['restore', ...clusterArgs, ...ref, '--target-pool', 'rbd', '--target-volume', flatTarget, '--instant']);
      assert.equal(flat.code, 0, flat.stderr);
      assert.match(flat.stderr, new RegExp(`-> rbd/volume-${flatTarget} by an instant clone: the volume is usable now`));
      assert.match(flat.stderr, /^flatten: 100% \(/m);
      assert.match(flat.stdout, new RegExp(`^rbd/volume-${flatTarget} flattened: it no longer depends on the backup$`, 'm'));
      assert.equal(await rbdExportSha256('a', `rbd/volume-${flatTarget}`), expected);

      const clone = await run(['restore', ...clusterArgs, ...ref, '--target-pool', 'rbd', '--target-volume', cloneTarget,
        '--instant', '--flatten', 'never', '--json']);
      assert.equal(clone.code, 0, clone.stderr);
      assert.equal((JSON.parse(clone.stdout) as { path: string }).path, 'instant');
      assert.equal(await rbdExportSha256('a', `rbd/volume-${cloneTarget}`), expected);
      const refused = await run(['delete', ...clusterArgs, ...ref]);
      assert.equal(refused.code, 4, refused.stderr);
      assert.match(refused.stderr, new RegExp(`rbd/volume-${cloneTarget}`));
      {
        await using image = await pool.openImage(`volume-${cloneTarget}`);
        await image.flatten();
      }
      const deleted = await run(['delete', ...clusterArgs, ...ref]);
      assert.equal(deleted.code, 0, deleted.stderr);
      assert.equal(await rbdExportSha256('a', `rbd/volume-${cloneTarget}`), expected);
    });

  test('verify: quick, deep and a sample exit 0; a flipped byte exits 8 naming its range; restore --verify exits 8 and leaves no volume',
    { timeout: 300_000 }, async (t) => {
      const verifyVolume = uniqueName('cliv');
      const target = uniqueName('clivt');
      const backups = await cluster.pool('backups');
      t.after(async () => {
        await removeImageFully(pool, `volume-${target}`);
        await removeVolumeAndBackups(pool, backups, verifyVolume);
        await backups.close();
      });
      await pool.createImage(`volume-${verifyVolume}`, 8 * MiB, { features: ['layering', 'exclusive-lock', 'object-map', 'fast-diff'] });
      {
        await using image = await pool.openImage(`volume-${verifyVolume}`);
        await image.write(randomBytes(3 * MiB), 2 * MiB);
      }
      const backup = await run(['backup', ...clusterArgs, '--pool', 'rbd', '--volume', verifyVolume, '--backup-id', 'vb1']);
      assert.equal(backup.code, 0, backup.stderr);
      assert.match(backup.stdout, /^digests: 128 blocks of 64.0 KiB, point digest [0-9a-f]{32}$/m);
      const [, , chain] = /^snapshot (\S+) on (\S+)$/m.exec(backup.stdout)!;
      const ref = ['--volume', verifyVolume, '--backup-id', 'vb1'];
      const quick = await run(['verify', ...clusterArgs, ...ref]);
      assert.equal(quick.code, 0, quick.stderr);
      assert.match(quick.stdout, /^backup vb1: OK \(quick\): 128 digests of 64.0 KiB blocks whole and consistent$/m);
      const deep = await run(['verify', ...clusterArgs, ...ref, '--mode', 'deep', '--json']);
      assert.equal(deep.code, 0, deep.stderr);
      const deepResult = JSON.parse(deep.stdout) as { ok: boolean; blocksChecked: number; mismatches: unknown[] };
      assert.deepEqual([deepResult.ok, deepResult.blocksChecked, deepResult.mismatches], [true, 128, []]);
      const sample = await run(['verify', ...clusterArgs, ...ref, '--mode', 'source', '-p', 'rbd', '--sample', '25']);
      assert.equal(sample.code, 0, sample.stderr);
      assert.match(sample.stdout, /OK \(source, 25% sample\): 32 of 128 blocks/);
      const badSample = await run(['verify', ...clusterArgs, ...ref, '--mode', 'deep', '--sample', '0']);
      assert.equal(badSample.code, 2);

      await flipByte('a', 'backups', chain!, 3 * MiB + 10);
      const mismatch = await run(['verify', ...clusterArgs, ...ref, '--mode', 'deep']);
      assert.equal(mismatch.code, 8, mismatch.stderr);
      assert.match(mismatch.stdout, /^backup vb1: MISMATCH in 1 range\(s\) \(deep\)/m);
      assert.match(mismatch.stdout, /^ {2}64.0 KiB at offset 3145728 do not match their digests$/m);
      const restored = await run(['restore', ...clusterArgs, ...ref, '--target-pool', 'rbd', '--target-volume', target, '--verify']);
      assert.equal(restored.code, 8, restored.stderr);
      assert.match(restored.stderr, /differ from the backup's digests/);
      assert.equal(await pool.imageExists(`volume-${target}`), false);
    });

  test('documented exit codes for a missing backup, a bad id and a bad record', async () => {
    const missing = await run(['restore', ...clusterArgs, '--volume', volumeId, '--backup-id', 'nope',
      '--target-pool', 'rbd']);
    assert.equal(missing.code, 3);
    assert.match(missing.stderr, /no backup nope of volume/);
    const badId = await run(['backup', ...clusterArgs, '--pool', 'rbd', '--volume', '../etc']);
    assert.equal(badId.code, 7);
    assert.match(badId.stderr, /volume id must be/);
    const badRecord = await run(['import-record', 'not base64!', '--json']);
    assert.equal(badRecord.code, 7);
    const error = JSON.parse(badRecord.stderr) as { exitCode: number; error: { code: string; message: string } };
    assert.equal(error.exitCode, 7);
    assert.equal(error.error.code, 'EINVAL');
    assert.match(error.error.message, /not base64/);
  });
});
