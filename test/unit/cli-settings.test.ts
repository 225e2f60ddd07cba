/** The CLI's configuration: its file (INI and JSON) and the precedence of each setting. No cluster needed. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigFile, type ConfigFile } from '../../lib/cli/config-file.js';
import { resolveSettings } from '../../lib/cli/settings.js';
import { InvalidArgumentError } from '../../lib/ceph/errors.js';
import type { CephEnvironment } from '../../lib/ceph/ceph-args.js';

const INI = `
[source]
conf = /etc/ceph/prod.conf
user = cinder
keyring = /etc/ceph/prod.client.cinder.keyring
timeout_ms = 10000

[backup]
conf = /etc/ceph/dr.conf
user = cinder-backup
pool = backups-dr

[engine]
max_source_snapshots = 3
lock-wait-ms = 120000
chunkSize = 64M
restore_discard_excess_bytes = false
checkpoint_ms = 250
digests = false
`;

const JSON_TEXT = JSON.stringify({
  source: { conf: '/etc/ceph/prod.conf', user: 'cinder', keyring: '/etc/ceph/prod.client.cinder.keyring', timeoutMs: 10000 },
  backup: { conf: '/etc/ceph/dr.conf', user: 'cinder-backup', pool: 'backups-dr' },
  engine: { maxSourceSnapshots: 3, lockWaitMs: 120000, chunkSize: 67108864, restoreDiscardExcessBytes: false, checkpointMs: 250, digests: false },
});

const NO_ENV: CephEnvironment = { args: {}, confEnv: undefined };

describe('the configuration file', () => {
  test('INI and JSON say the same thing', () => {
    const expected = {
      source: { conf: '/etc/ceph/prod.conf', user: 'cinder', keyring: '/etc/ceph/prod.client.cinder.keyring', timeoutMs: 10000 },
      backup: { conf: '/etc/ceph/dr.conf', user: 'cinder-backup', pool: 'backups-dr' },
      engine: { maxSourceSnapshots: 3, lockWaitMs: 120000, chunkSize: 64 << 20, restoreDiscardExcessBytes: false, checkpointMs: 250, digests: false },
    };
    assert.deepEqual(parseConfigFile(INI, '/c.conf'), { path: '/c.conf', ...expected });
    assert.deepEqual(parseConfigFile(JSON_TEXT, '/c.json'), { path: '/c.json', ...expected });
  });

  test('unknown sections and keys, bad values and bad JSON are refused, naming the file', () => {
    const refused = (text: string, pattern: RegExp): void => {
      assert.throws(() => parseConfigFile(text, '/etc/ceph/rbd-backup.conf'), (error: unknown) =>
        error instanceof InvalidArgumentError && error.message.includes('/etc/ceph/rbd-backup.conf') && pattern.test(error.message));
    };
    refused('[sauce]\nconf = /x\n', /unknown section "sauce"/);
    refused('[source]\nkeyrnig = /x\n', /unknown key "keyrnig" in \[source\]/);
    refused('[engine]\nlock_wait_ms = soon\n', /lock_wait_ms must be a whole number/);
    refused('[engine]\nchunk_size = 12X\n', /byte count/);
    refused('[engine]\nrestore_discard_excess_bytes = yes\n', /true or false/);
    refused('{"source": ', /not valid JSON/);
    refused('{"source": []}', /must be an object/);
  });
});

describe('precedence: flag > CEPH_ARGS > CEPH_CONF > config file > default', () => {
  const file: ConfigFile = parseConfigFile(INI, '/c.conf');

  test('defaults alone', () => {
    const s = resolveSettings({ source: {}, backup: {} }, NO_ENV, undefined);
    assert.equal(s.source.options.conf, '/etc/ceph/ceph.conf');
    assert.equal(s.source.options.user, 'admin');
    assert.equal(s.source.options.keyring, undefined, 'librados finds the keyring');
    assert.equal(s.source.options.environment, false);
    assert.equal(s.backup, undefined, 'the backups share the source connection');
    assert.equal(s.backupPool, 'backups');
  });

  test('--cluster names the default conf', () => {
    const s = resolveSettings({ source: { cluster: 'prod' }, backup: {} }, NO_ENV, undefined);
    assert.equal(s.source.options.conf, '/etc/ceph/prod.conf');
    assert.equal(s.source.options.cluster, 'prod');
  });

  test('the config file over the defaults; CEPH_CONF over the file; CEPH_ARGS over both; flags over all', () => {
    const fromFile = resolveSettings({ source: {}, backup: {} }, NO_ENV, file);
    assert.equal(fromFile.source.options.conf, '/etc/ceph/prod.conf');
    assert.equal(fromFile.source.options.timeoutMs, 10000);
    assert.equal(fromFile.source.confFrom, '/c.conf [source]');
    const confEnv = resolveSettings({ source: {}, backup: {} }, { args: {}, confEnv: '/env.conf' }, file);
    assert.equal(confEnv.source.options.conf, '/env.conf');
    assert.equal(confEnv.source.confFrom, 'CEPH_CONF');
    const args = resolveSettings({ source: {}, backup: {} },
      { args: { conf: '/args.conf', user: 'argsuser', keyring: '/args.keyring' }, confEnv: '/env.conf' }, file);
    assert.deepEqual([args.source.options.conf, args.source.options.user, args.source.options.keyring],
      ['/args.conf', 'argsuser', '/args.keyring']);
    assert.equal(args.source.keyringFrom, 'CEPH_ARGS');
    const flags = resolveSettings({ source: { conf: '/flag.conf', user: 'flaguser', keyring: '/flag.keyring' }, backup: {} },
      { args: { conf: '/args.conf', user: 'argsuser', keyring: '/args.keyring' }, confEnv: '/env.conf' }, file);
    assert.deepEqual([flags.source.options.conf, flags.source.options.user, flags.source.options.keyring],
      ['/flag.conf', 'flaguser', '/flag.keyring']);
    assert.equal(flags.source.confFrom, '--conf');
  });

  test('-m without a conf reads no file', () => {
    const s = resolveSettings({ source: { monHost: 'v2:10.0.0.1:3300' }, backup: {} }, NO_ENV, undefined);
    assert.equal(s.source.options.conf, undefined);
    assert.equal(s.source.options.monHost, 'v2:10.0.0.1:3300');
  });

  test("the backup cluster never takes the source's keyring", () => {
    const conf = resolveSettings({ source: { keyring: '/src.keyring' }, backup: { conf: '/dr.conf' } }, NO_ENV, undefined);
    assert.equal(conf.backup?.options.conf, '/dr.conf');
    assert.equal(conf.backup?.options.keyring, undefined, "from the backup's own conf");
    assert.equal(conf.backup?.options.user, 'admin');
    const user = resolveSettings({ source: { conf: '/src.conf', keyring: '/src.keyring' }, backup: { user: 'bk' } },
      { args: { keyring: '/args.keyring' }, confEnv: undefined }, undefined);
    assert.equal(user.backup?.options.conf, '/src.conf', 'another user of the same cluster');
    assert.equal(user.backup?.options.keyring, undefined);
    const keyring = resolveSettings({ source: {}, backup: { conf: '/dr.conf', keyring: '/dr.keyring' } }, NO_ENV, undefined);
    assert.equal(keyring.backup?.options.keyring, '/dr.keyring');
    assert.equal(keyring.backup?.keyringFrom, '--backup-keyring');
  });

  test("the backup cluster from the file's [backup] section, flags over it; its pool", () => {
    const s = resolveSettings({ source: {}, backup: { user: 'flagged' } }, NO_ENV, file);
    assert.equal(s.backup?.options.conf, '/etc/ceph/dr.conf');
    assert.equal(s.backup?.options.user, 'flagged');
    assert.equal(s.backup?.options.keyring, undefined);
    assert.equal(s.backupPool, 'backups-dr');
    assert.equal(resolveSettings({ source: {}, backup: {}, backupPool: 'flagpool' }, NO_ENV, file).backupPool, 'flagpool');
    assert.equal(s.engine.maxSourceSnapshots, 3);
  });

  test('a backup cluster of another name has its own default conf', () => {
    const s = resolveSettings({ source: {}, backup: { cluster: 'dr' } }, NO_ENV, undefined);
    assert.equal(s.backup?.options.conf, '/etc/ceph/dr.conf');
    assert.equal(s.backup?.options.cluster, 'dr');
  });
});
