/**
 * The CLI's usage checks and error messages, run as a user would against a
 * real cluster: each case asserts the message (the resource, what failed,
 * what to do) and the exit code. Also the configuration conventions of the
 * Ceph tools (CEPH_CONF, CEPH_ARGS, the config file, --backup-keyring) and
 * import-record's forms.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, NotFoundError, type Pool } from '../../lib/index.js';
import type { ThrowawayCluster } from '../../lib/dev/throwaway-cluster.js';
import { connect, testCluster, uniqueName } from '../support/clusters.js';
import { removeVolumeAndBackups } from '../support/backup-fixtures.js';
import { run } from '../support/cli-run.js';

const MiB = 1 << 20;
const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

describe('rbd-backup CLI: usage, configuration and errors', () => {
  let own: ThrowawayCluster;
  let cluster: Cluster;
  let pool: Pool;
  let args: string[];
  let dir: string;
  const volumeId = uniqueName('clie');
  const backupId = uniqueName('bke');

  before(async () => {
    own = await testCluster('a');
    args = ['--conf', own.info.conf, '--keyring', own.info.keyring];
    cluster = await connect('a');
    pool = await cluster.pool('rbd');
    dir = await mkdtemp(join(tmpdir(), 'cli-errors-'));
    await pool.createImage(`volume-${volumeId}`, 8 * MiB, { features: ['layering', 'exclusive-lock', 'object-map', 'fast-diff'] });
    const image = await pool.openImage(`volume-${volumeId}`);
    try {
      await image.write(randomBytes(MiB), 0);
    } finally {
      await image.close();
    }
    const first = await run(['backup', ...args, '-p', 'rbd', '--volume', volumeId, '--backup-id', backupId, '--quiet']);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stderr, '', '--quiet: nothing on stderr');
  });

  after(async () => {
    const backups = await cluster.pool('backups');
    await removeVolumeAndBackups(pool, backups, volumeId);
    await backups.close();
    await pool?.close();
    await cluster?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('usage is checked before connecting: missing flags exit 2 naming the flags', async () => {
    // A configuration that does not exist: reaching it would be exit 3, not 2.
    const nowhere = ['-c', join(dir, 'no-such.conf')];
    const ls = await run(['ls', ...nowhere]);
    assert.equal(ls.code, 2, ls.stderr);
    assert.match(ls.stderr, /give --volume ID or --all/);
    const restore = await run(['restore', ...nowhere, '--volume', volumeId, '--backup-id', backupId]);
    assert.equal(restore.code, 2, restore.stderr);
    assert.match(restore.stderr, /give exactly one of --target-pool, --target-file, --stdout/);
    assert.doesNotMatch(restore.stderr, /targetPool/);
    const noBackup = await run(['restore', ...nowhere, '--target-pool', 'rbd']);
    assert.equal(noBackup.code, 2, noBackup.stderr);
    assert.match(noBackup.stderr, /--record TEXT, --record-file PATH, or --volume ID with --backup-id ID/);
    const halfRef = await run(['delete', ...nowhere, '--volume', volumeId]);
    assert.equal(halfRef.code, 2, halfRef.stderr);
    assert.match(halfRef.stderr, /--backup-id is required/);
    const backup = await run(['backup', ...nowhere, '--volume', volumeId]);
    assert.equal(backup.code, 2, backup.stderr);
    assert.match(backup.stderr, /-p\/--pool is required/);
    const prune = await run(['prune', ...nowhere, '--volume', volumeId, '--keep', 'lastest1']);
    assert.equal(prune.code, 7, 'a policy that does not parse is refused before connecting');
  });

  test('--version prints the package version; --no-progress drops the progress lines', async () => {
    const { version } = JSON.parse(await readFile(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
    for (const argv of [['--version'], ['ls', '--version']]) {
      const printed = await run(argv);
      assert.equal(printed.code, 0);
      assert.equal(printed.stdout, `rbd-backup ${version}\n`);
    }
    const quiet = await run(['backup', ...args, '-p', 'rbd', '--volume', volumeId, '--no-progress']);
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.doesNotMatch(quiet.stderr, /backup: \d+%/);
  });

  test('a missing keyring file: the path, and the flag to give (exit 3)', async () => {
    const missing = join(dir, 'no.keyring');
    const result = await run(['ls', '-c', own.info.conf, '-k', missing, '--volume', volumeId]);
    assert.equal(result.code, 3, result.stderr);
    assert.match(result.stderr, new RegExp(`no keyring file: ${escape(missing)} does not exist \\(from --keyring\\); give the keyring holding client\\.admin's key with -k/--keyring`));
  });

  test('a keyring that does not parse: its path, and what it must hold', async () => {
    const garbage = join(dir, 'garbage.keyring');
    await writeFile(garbage, 'this is not a keyring\n\u0000\u0001[[[\n');
    const result = await run(['ls', '-c', own.info.conf, '-k', garbage, '--volume', volumeId]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, new RegExp(`the keyring ${escape(garbage)} could not be parsed \\(from --keyring\\); it must hold a \\[client\\.admin\\] section with key = `));
    assert.doesNotMatch(result.stderr, /^[^:]*Input\/output error\s*$/m);
  });

  test("a keyring without the user's key, and a refused key: which, and what to do (exit 5)", async () => {
    await own.createUser('clinokey', 'backups');
    const other = join(own.info.dir, 'client.clinokey.keyring');
    const noKey = await run(['ls', '-c', own.info.conf, '-k', other, '--volume', volumeId]);
    assert.equal(noKey.code, 5, noKey.stderr);
    assert.match(noKey.stderr, new RegExp(`no keyring of ${escape(other)} \\(from --keyring\\) holds a key for client\\.admin; give its keyring with -k/--keyring`));
    // The same keyring with client.admin's secret changed (bytes 16-20 of its base64 are the secret's).
    const wrong = join(dir, 'wrong.keyring');
    const text = await readFile(own.info.keyring, 'utf8');
    const changed = text.replace(/(\[client\.admin\][^[]*?key = )(\S{20})(\S{4})/, (_m, head: string, keep: string, part: string) =>
      `${head}${keep}${part === 'AAAA' ? 'BBBB' : 'AAAA'}`);
    assert.notEqual(changed, text);
    await writeFile(wrong, changed);
    const refused = await run(['ls', '-c', own.info.conf, '-k', wrong, '--volume', volumeId]);
    assert.equal(refused.code, 5, refused.stderr);
    assert.match(refused.stderr, new RegExp(`the monitors refused the key for client\\.admin in ${escape(wrong)}; check it against 'ceph auth get client\\.admin'`));
    const secret = /\[client\.admin\][^[]*?key = (\S+)/.exec(changed)?.[1] ?? '';
    assert.ok(secret.length > 20 && !refused.stderr.includes(secret), 'no key in the message');
  });

  test('a dead monitor: its address and where to check, within the connect timeout', async () => {
    const conf = join(dir, 'dead.conf');
    await writeFile(conf, `[global]\nmon host = v2:127.0.0.1:1\nauth supported = cephx\n`);
    const config = join(dir, 'dead.json');
    await writeFile(config, JSON.stringify({ source: { timeoutMs: 3000 } }));
    const result = await run(['ls', '--config', config, '-c', conf, '-k', own.info.keyring, '--volume', volumeId]);
    assert.equal(result.code, 6, result.stderr);
    assert.match(result.stderr, new RegExp(`no monitor at v2:127\\.0\\.0\\.1:1 answered within 3000 ms; check mon_host in ${escape(conf)} \\(or -m/--mon-host\\) and that the monitors are up`));
    assert.ok(result.ms < 15_000, `took ${result.ms} ms`);
  });

  test('a configuration file that does not exist: its path and where it came from', async () => {
    const missing = join(dir, 'none.conf');
    const result = await run(['ls', '--volume', volumeId], { CEPH_CONF: missing });
    assert.equal(result.code, 3, result.stderr);
    assert.match(result.stderr, new RegExp(`the configuration file ${escape(missing)} \\(from CEPH_CONF\\) does not exist`));
  });

  test('bad --metadata JSON names the file, before connecting (exit 7)', async () => {
    const metadata = join(dir, 'meta.json');
    await writeFile(metadata, '{"volume-metadata": ');
    const result = await run(['backup', '-c', join(dir, 'no-such.conf'), '-p', 'rbd', '--volume', volumeId, '--metadata', metadata]);
    assert.equal(result.code, 7, result.stderr);
    assert.match(result.stderr, new RegExp(`--metadata ${escape(metadata)} is not valid JSON \\(.+\\); give a file holding a JSON object`));
    const absent = await run(['backup', '-c', join(dir, 'no-such.conf'), '-p', 'rbd', '--volume', volumeId, '--metadata', join(dir, 'absent.json')]);
    assert.equal(absent.code, 3, absent.stderr);
    assert.match(absent.stderr, /cannot read --metadata .*absent\.json/);
  });

  test('a --parent that is no backup of the volume is refused, not turned into a full backup', async () => {
    const before = JSON.parse((await run(['ls', ...args, '--volume', volumeId, '--json'])).stdout) as unknown[];
    const result = await run(['backup', ...args, '-p', 'rbd', '--volume', volumeId, '--parent', 'no-such-backup']);
    assert.equal(result.code, 3, result.stderr);
    assert.match(result.stderr, /no-such-backup/);
    assert.doesNotMatch(result.stdout, /: full/);
    const afterwards = JSON.parse((await run(['ls', ...args, '--volume', volumeId, '--json'])).stdout) as unknown[];
    assert.equal(afterwards.length, before.length, 'no backup was made');
  });

  test('an existing --target-file and a missing directory are refused with the real error', async () => {
    const existing = join(dir, 'exists.raw');
    await writeFile(existing, 'keep me');
    const result = await run(['restore', ...args, '--volume', volumeId, '--backup-id', backupId, '--target-file', existing]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, new RegExp(`${escape(existing)}: cannot create the file: it already exists and is not overwritten; remove it or give another path \\[EEXIST\\]`));
    assert.doesNotMatch(result.stderr, /still open|EBUSY/);
    assert.equal(await readFile(existing, 'utf8'), 'keep me');
    const nowhere = join(dir, 'missing-dir', 'x.raw');
    const noDir = await run(['restore', ...args, '--volume', volumeId, '--backup-id', backupId, '--target-file', nowhere]);
    assert.equal(noDir.code, 3, noDir.stderr);
    assert.match(noDir.stderr, new RegExp(`${escape(nowhere)}: cannot create the file: the directory ${escape(join(dir, 'missing-dir'))} does not exist; create it or give another path`));
  });

  test('CEPH_CONF and CEPH_ARGS are read; flags win over CEPH_ARGS', async () => {
    const viaConf = await run(['ls', '--volume', volumeId], { CEPH_CONF: own.info.conf });
    assert.equal(viaConf.code, 0, viaConf.stderr);
    assert.match(viaConf.stdout, new RegExp(`^${backupId} +full `, 'm'));
    const viaArgs = await run(['ls', '--volume', volumeId], { CEPH_ARGS: `--conf=${own.info.conf} --id admin -k ${own.info.keyring}` });
    assert.equal(viaArgs.code, 0, viaArgs.stderr);
    const bogus = join(dir, 'bogus.keyring');
    const argsKeyring = await run(['ls', '--volume', volumeId], { CEPH_CONF: own.info.conf, CEPH_ARGS: `--keyring ${bogus}` });
    assert.equal(argsKeyring.code, 3, 'the keyring CEPH_ARGS names is used');
    assert.match(argsKeyring.stderr, new RegExp(`${escape(bogus)} does not exist \\(from CEPH_ARGS\\)`));
    const flagWins = await run(['ls', '-k', own.info.keyring, '--volume', volumeId], { CEPH_CONF: own.info.conf, CEPH_ARGS: `--keyring ${bogus}` });
    assert.equal(flagWins.code, 0, flagWins.stderr);
  });

  test('the config file names both clusters and the backup pool', async () => {
    const ini = join(dir, 'rbd-backup.conf');
    await writeFile(ini, `[source]\nconf = ${own.info.conf}\nkeyring = ${own.info.keyring}\n\n[backup]\npool = backups\n\n[engine]\nmax_source_snapshots = 0\n`);
    const result = await run(['ls', '--config', ini, '--volume', volumeId]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`^${backupId} +full `, 'm'));
    const wrongPool = await run(['ls', '--config', ini, '--backup-pool', 'rbd', '--volume', volumeId]);
    assert.equal(wrongPool.code, 0, wrongPool.stderr);
    assert.match(wrongPool.stdout, /no backups of volume .* in pool rbd/, 'the flag wins over the file');
    const typo = join(dir, 'typo.conf');
    await writeFile(typo, '[source]\nkeyrnig = /x\n');
    const refused = await run(['ls', '--config', typo, '--volume', volumeId]);
    assert.equal(refused.code, 7, refused.stderr);
    assert.match(refused.stderr, new RegExp(`${escape(typo)}: unknown key "keyrnig" in \\[source\\]`));
    const absent = await run(['ls', '--config', join(dir, 'absent.conf'), '--volume', volumeId]);
    assert.equal(absent.code, 3, absent.stderr);
    assert.match(absent.stderr, /cannot read the configuration file .*absent\.conf \(--config\)/);
  });

  test("the backup cluster's keyring comes from its own conf, not from the source's --keyring", async () => {
    // client.backup's keyring is DIR/client.backup.keyring, which the conf's keyring list finds;
    // the admin keyring given with -k holds no key for it.
    await own.createUser('clibackup', 'backups');
    const result = await run(['ls', ...args, '--backup-conf', own.info.conf, '--backup-user', 'clibackup', '--volume', volumeId]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`^${backupId} +full `, 'm'));
  });

  test("import-record: offline, Cinder's two-argument form, --check against the pool", async () => {
    const exported = await run(['export-record', ...args, '--volume', volumeId, '--backup-id', backupId]);
    assert.equal(exported.code, 0, exported.stderr);
    const record = exported.stdout.trim();
    const nowhere = ['-c', join(dir, 'no-such.conf')];
    const offline = await run(['import-record', ...nowhere, record]);
    assert.equal(offline.code, 0, offline.stderr);
    assert.match(offline.stdout, new RegExp(`^backup ${backupId} of volume ${volumeId} in pool backups`));
    const cinder = await run(['import-record', ...nowhere, 'cinder.backup.drivers.ceph.CephBackupDriver', record]);
    assert.equal(cinder.code, 0, cinder.stderr);
    assert.equal(cinder.stdout, offline.stdout);
    const otherDriver = await run(['import-record', 'cinder.backup.drivers.swift.SwiftBackupDriver', record]);
    assert.equal(otherDriver.code, 2, otherDriver.stderr);
    assert.match(otherDriver.stderr, /the backup service must be cinder\.backup\.drivers\.ceph\.CephBackupDriver/);
    const checked = await run(['import-record', ...args, '--check', record]);
    assert.equal(checked.code, 0, checked.stderr);
    assert.match(checked.stdout, new RegExp(`^found: backups/volume-${volumeId}\\.backup\\.${backupId}@backup\\.${backupId}\\.snap\\.`, 'm'));
    const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(record, 'base64').toString()), id: 'gone-backup' })).toString('base64');
    const missing = await run(['import-record', ...args, '--check', forged]);
    assert.equal(missing.code, 3, missing.stderr);
    assert.match(missing.stderr, new RegExp(`the record names backup gone-backup of volume ${volumeId}, which is not in pool backups`));
  });
});

describe('Cluster.connect reads CEPH_CONF and CEPH_ARGS for what it is not given', () => {
  const saved = { conf: process.env.CEPH_CONF, args: process.env.CEPH_ARGS };
  const restore = (name: 'CEPH_CONF' | 'CEPH_ARGS', value: string | undefined): void => {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  };
  after(() => {
    restore('CEPH_CONF', saved.conf);
    restore('CEPH_ARGS', saved.args);
  });

  test('CEPH_CONF, CEPH_ARGS, explicit options over both, and environment: false', async () => {
    const { info } = await testCluster('a');
    process.env.CEPH_CONF = info.conf;
    delete process.env.CEPH_ARGS;
    const viaConf = await Cluster.connect({ timeoutMs: 20_000 });
    assert.match(viaConf.name, new RegExp(`conf ${escape(info.conf)}`));
    await viaConf.close();

    process.env.CEPH_CONF = '/nonexistent/ceph.conf';
    process.env.CEPH_ARGS = `--conf ${info.conf} --id admin --keyring=${info.keyring}`;
    const viaArgs = await Cluster.connect({ timeoutMs: 20_000 });
    assert.match(viaArgs.name, new RegExp(`conf ${escape(info.conf)}`), 'CEPH_ARGS over CEPH_CONF');
    await viaArgs.close();

    await assert.rejects(Cluster.connect({ conf: '/nonexistent/explicit.conf', timeoutMs: 20_000 }),
      (error: unknown) => error instanceof NotFoundError, 'an explicit conf wins over the environment');
    process.env.CEPH_ARGS = '--keyring /nonexistent/keyring';
    process.env.CEPH_CONF = info.conf;
    await assert.rejects(Cluster.connect({ timeoutMs: 20_000 }), 'the keyring CEPH_ARGS names is used');
    const explicitKeyring = await Cluster.connect({ keyring: info.keyring, timeoutMs: 20_000 });
    await explicitKeyring.close();
    // environment: false: CEPH_CONF (a working conf here) is not read, the default is.
    await assert.rejects(Cluster.connect({ environment: false, cluster: 'cli-no-such-cluster', timeoutMs: 20_000 }),
      (error: unknown) => error instanceof NotFoundError && error.message.includes('/etc/ceph/cli-no-such-cluster.conf'));
  });
});
