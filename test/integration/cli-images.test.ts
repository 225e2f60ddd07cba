/**
 * The rbd-backup command line with --image NAME (any RBD image, its pool
 * from -p) wherever --volume ID is taken, run as a user would: usage
 * refused before connecting (exit 2; a Cinder volume's image name, exit 7),
 * then backup, ls (and ls --all), show, export-record and import-record,
 * restore into a volume and into a named image (byte-equal), prune and
 * delete against a real cluster.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Cluster, Pool } from '../../lib/index.js';
import { imageSubject, lockObjectName } from '../../lib/backup/naming.js';
import { connect, rbdExportSha256, testCluster, uniqueName } from '../support/clusters.js';
import { removeImageFully } from '../support/scratch.js';
import { run } from '../support/cli-run.js';

const MiB = 1 << 20;

describe('rbd-backup --image', () => {
  let cluster: Cluster;
  let pool: Pool;
  let backups: Pool;
  let clusterArgs: string[];
  const image = uniqueName('vm-100-disk-0');
  const subject = imageSubject({ pool: 'rbd', image }, 'test');
  const { key } = subject;
  const targets: string[] = [];

  before(async () => {
    const { info } = await testCluster('a');
    clusterArgs = ['--conf', info.conf, '--keyring', info.keyring];
    cluster = await connect('a');
    pool = await cluster.pool('rbd');
    backups = await cluster.pool('backups');
    await pool.createImage(image, 16 * MiB, { features: ['layering', 'exclusive-lock', 'object-map', 'fast-diff'] });
    const opened = await pool.openImage(image);
    try {
      await opened.write(randomBytes(3 * MiB), MiB);
    } finally {
      await opened.close();
    }
  });

  after(async () => {
    for (const name of [image, ...targets]) await removeImageFully(pool, name, { busyRetries: 10 });
    for (const name of (await backups.listImages()).filter((n) => n.startsWith(`${key}.backup.`))) {
      await removeImageFully(backups, name, { busyRetries: 10 });
    }
    await backups.removeObject(lockObjectName(subject)).catch(() => undefined);
    await backups?.close();
    await pool?.close();
    await cluster?.close();
  });

  test('usage: --volume and --image exclude each other, --image needs -p, --namespace needs --image (exit 2, before connecting)', async () => {
    // A configuration that does not exist: a command that connected would exit 3, not 2.
    const nowhere = ['--conf', '/tmp/images-no-such.conf'];
    const cases: Array<[string[], RegExp]> = [
      [['backup', '-p', 'rbd', '--volume', 'v1', '--image', 'vm-1'], /give --volume ID or --image NAME, not both/],
      [['backup', '-p', 'rbd'], /--volume ID or --image NAME is required/],
      [['ls', '--image', 'vm-1'], /--image NAME needs -p\/--pool POOL/],
      [['ls', '--volume', 'v1', '--namespace', 'ns'], /--namespace goes with --image NAME/],
      [['ls', '--image', 'vm-1', '-p', 'rbd', '--all'], /give --volume ID or --all \(one of them; --image NAME -p POOL in place of --volume ID/],
      [['ls', '--all', '-p', 'rbd'], /-p\/--pool goes with --image NAME/],
      [['show', '--image', 'vm-1', '--volume', 'v1', '--backup-id', 'b1', '-p', 'rbd'], /not both/],
      [['restore', '--image', 'vm-1', '--backup-id', 'b1', '--target-pool', 'rbd'], /--image NAME needs -p\/--pool POOL/],
      [['restore', '--volume', 'v1', '--backup-id', 'b1', '-p', 'rbd', '--target-pool', 'rbd'], /-p\/--pool goes with --image NAME/],
      [['restore', '--volume', 'v1', '--backup-id', 'b1', '--target-pool', 'rbd', '--target-volume', 'v2', '--target-image', 'x'],
        /give --target-volume ID or --target-image NAME, not both/],
      [['restore', '--volume', 'v1', '--backup-id', 'b1', '--target-image', 'x', '--stdout'], /--target-image needs --target-pool/],
      [['restore', '--volume', 'v1', '--backup-id', 'b1', '--target-file', '/tmp/images-x', '--target-image', 'x'], /--target-image needs --target-pool/],
      [['delete', '--image', 'vm-1', '--backup-id', 'b1'], /--image NAME needs -p\/--pool POOL/],
      [['prune', '--image', 'vm-1', '--volume', 'v1', '--keep', 'latest1'], /not both/],
      [['export-record', '--image', 'vm-1', '--backup-id', 'b1'], /--image NAME needs -p\/--pool POOL/],
      [['export-record', '--volume', 'v1', '-p', 'rbd', '--backup-id', 'b1'], /-p\/--pool goes with --image NAME/],
    ];
    for (const [args, message] of cases) {
      const r = await run([...args, ...nowhere]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message, args.join(' '));
    }
    // A Cinder volume's image name, and a name too long for its backup images: invalid arguments, still before connecting.
    for (const [name, message] of [['volume-6f1c0d2e', /back it up by its volume id \(volumeId '6f1c0d2e', --volume 6f1c0d2e\)/],
      ['x'.repeat(200), /longer than RBD's 255 bytes/]] as const) {
      const r = await run(['backup', '-p', 'rbd', '--image', name, ...nowhere]);
      assert.equal(r.code, 7, r.stderr);
      assert.match(r.stderr, message);
    }
  });

  test('backup, ls, show, export/import-record, restore into a volume and an image, prune, delete', { timeout: 300_000 }, async () => {
    const full = await run(['backup', '-p', 'rbd', '--image', image, '--name', 'first', '--json', ...clusterArgs]);
    assert.equal(full.code, 0, full.stderr);
    const first = JSON.parse(full.stdout) as { record: { id: string; volume_id: string; source_image: unknown }; baseImage: string; snapshot: string };
    assert.equal(first.baseImage, `${key}.backup.${first.record.id}`);
    assert.equal(first.record.volume_id, '');
    assert.deepEqual(first.record.source_image, { pool: 'rbd', namespace: '', name: image });

    const second = await run(['backup', '-p', 'rbd', '--image', image, ...clusterArgs]);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, new RegExp(`^backup \\S+ of image rbd/${image}: incremental from `, 'm'));

    const ls = await run(['ls', '-p', 'rbd', '--image', image, '--json', ...clusterArgs]);
    assert.equal(ls.code, 0, ls.stderr);
    const entries = JSON.parse(ls.stdout) as Array<{ backupId: string; type: string; volumeId: unknown; sourceImage: unknown; name: unknown }>;
    assert.deepEqual(entries.map((e) => [e.type, e.volumeId, e.name]), [['full', null, 'first'], ['incremental', null, null]]);
    assert.deepEqual(entries[0].sourceImage, { pool: 'rbd', namespace: '', name: image });
    const secondId = entries[1].backupId;

    const all = await run(['ls', '--all', ...clusterArgs]);
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, new RegExp(`^rbd/${image} +${first.record.id} +full `, 'm'));

    const show = await run(['show', '-p', 'rbd', '--image', image, '--backup-id', secondId, ...clusterArgs]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, new RegExp(`^source image  rbd/${image}$`, 'm'));
    assert.match(show.stdout, new RegExp(`^on source     present \\(rbd/${image}\\)$`, 'm'));
    const missing = await run(['show', '-p', 'rbd', '--image', image, '--backup-id', 'nope', ...clusterArgs]);
    assert.equal(missing.code, 3);
    assert.match(missing.stderr, new RegExp(`no backup nope of image rbd/${image} in pool backups; list them with: rbd-backup ls -p rbd --image ${image}`));

    const exported = await run(['export-record', '-p', 'rbd', '--image', image, '--backup-id', secondId, ...clusterArgs]);
    assert.equal(exported.code, 0, exported.stderr);
    const record = exported.stdout.trim();
    const imported = await run(['import-record', record]);
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stdout, new RegExp(`^backup ${secondId} of image rbd/${image} in pool backups`));
    const checked = await run(['import-record', record, '--check', ...clusterArgs]);
    assert.equal(checked.code, 0, checked.stderr);
    assert.match(checked.stdout, new RegExp(`found: backups/${key.replace(/[.%]/g, '\\$&')}\\.backup\\.`));

    const secondSnapshot = (JSON.parse((await run(['ls', '-p', 'rbd', '--image', image, '--json', ...clusterArgs])).stdout) as
      Array<{ snapshot: string }>)[1].snapshot;
    const expected = await rbdExportSha256('a', `rbd/${image}@${secondSnapshot}`);
    const volumeId = uniqueName('clii');
    targets.push(`volume-${volumeId}`);
    const intoVolume = await run(['restore', '--record', record, '--target-pool', 'rbd', '--target-volume', volumeId, ...clusterArgs]);
    assert.equal(intoVolume.code, 0, intoVolume.stderr);
    assert.equal(await rbdExportSha256('a', `rbd/volume-${volumeId}`), expected);
    const targetImage = uniqueName('vm-200-disk-0');
    targets.push(targetImage);
    const intoImage = await run(['restore', '-p', 'rbd', '--image', image, '--backup-id', secondId, '--target-pool', 'rbd',
      '--target-image', targetImage, ...clusterArgs]);
    assert.equal(intoImage.code, 0, intoImage.stderr);
    assert.match(intoImage.stdout, new RegExp(`-> rbd/${targetImage} by the diff path`));
    assert.equal(await rbdExportSha256('a', `rbd/${targetImage}`), expected);
    const ontoSource = await run(['restore', '-p', 'rbd', '--image', image, '--backup-id', secondId, '--target-pool', 'rbd',
      '--target-image', image, ...clusterArgs]);
    assert.equal(ontoSource.code, 7, ontoSource.stderr);
    assert.match(ontoSource.stderr, /own source volume/);

    const prune = await run(['prune', '-p', 'rbd', '--image', image, '--keep', 'latest1', '--json', ...clusterArgs]);
    assert.equal(prune.code, 0, prune.stderr);
    assert.deepEqual((JSON.parse(prune.stdout) as { removed: Array<{ backupId: string }> }).removed.map((r) => r.backupId), [first.record.id]);
    const snapshots = async (): Promise<string[]> => {
      const opened = await pool.openImage(image, { readOnly: true });
      try {
        return (await opened.listSnapshots()).map((s) => s.name).filter((s) => s.startsWith('backup.'));
      } finally {
        await opened.close();
      }
    };
    assert.deepEqual(await snapshots(), [secondSnapshot], 'with --image, -p is the image\'s pool: its snapshot went too');

    const deleted = await run(['delete', '-p', 'rbd', '--image', image, '--backup-id', secondId, ...clusterArgs]);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.match(deleted.stdout, new RegExp(`removed image ${key.replace(/[.%]/g, '\\$&')}\\.backup\\.${first.record.id}`));
    assert.deepEqual(await snapshots(), []);
    const none = await run(['ls', '-p', 'rbd', '--image', image, ...clusterArgs]);
    assert.equal(none.code, 0);
    assert.equal(none.stdout.trim(), `no backups of image rbd/${image} in pool backups`);
  });
});
