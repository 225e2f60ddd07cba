/** CEPH_ARGS parsing and ceph.conf's INI dialect (lib/ceph/ceph-args.ts, ceph-conf.ts). No cluster needed. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cephEnvironment, defaultKeyringSearch, parseCephArgs, splitPathList } from '../../lib/ceph/ceph-args.js';
import { lookupClientSetting, parseConf } from '../../lib/ceph/ceph-conf.js';
import { InvalidArgumentError } from '../../lib/ceph/errors.js';

describe('CEPH_ARGS', () => {
  test('the connection options, short and long, with a space or =', () => {
    assert.deepEqual(parseCephArgs('-c /a.conf --id cinder -k /k --cluster prod -m v2:1.2.3.4:3300'),
      { conf: '/a.conf', user: 'cinder', keyring: '/k', cluster: 'prod', monHost: 'v2:1.2.3.4:3300' });
    assert.deepEqual(parseCephArgs('--conf=/b.conf --user=backup --keyring=/k2 --mon-host=1.2.3.4'),
      { conf: '/b.conf', user: 'backup', keyring: '/k2', monHost: '1.2.3.4' });
  });

  test('-n/--name takes client.ID; other entity types are refused', () => {
    assert.deepEqual(parseCephArgs('-n client.cinder'), { user: 'cinder' });
    assert.deepEqual(parseCephArgs('--name=client.a.b'), { user: 'a.b' });
    assert.throws(() => parseCephArgs('--name osd.0'), (error: unknown) =>
      error instanceof InvalidArgumentError && /CEPH_ARGS/.test(error.message) && /client\.ID/.test(error.message));
  });

  test('the last occurrence wins; --id and --name set the same thing', () => {
    assert.deepEqual(parseCephArgs('--id a --name client.b'), { user: 'b' });
    assert.deepEqual(parseCephArgs('-c /1 --conf /2'), { conf: '/2' });
  });

  test("dashes and underscores are alike; other options are skipped; nothing after '--'", () => {
    assert.deepEqual(parseCephArgs('--mon_host 10.0.0.1 --debug-ms 1 --log-to-stderr -- --id x'), { monHost: '10.0.0.1' });
  });

  test('whitespace of any kind separates; an option without its value is refused', () => {
    assert.deepEqual(parseCephArgs('  --id\tcinder \n -k  /k  '), { user: 'cinder', keyring: '/k' });
    assert.throws(() => parseCephArgs('--id'), InvalidArgumentError);
    assert.throws(() => parseCephArgs('--keyring='), InvalidArgumentError);
  });

  test('cephEnvironment reads CEPH_ARGS and CEPH_CONF (empty means unset)', () => {
    assert.deepEqual(cephEnvironment({ CEPH_ARGS: '--id x', CEPH_CONF: '/e.conf' }), { args: { user: 'x' }, confEnv: '/e.conf' });
    assert.deepEqual(cephEnvironment({ CEPH_CONF: '' }), { args: {}, confEnv: undefined });
  });

  test("librados' keyring search list, with the cluster and user filled in", () => {
    assert.deepEqual(defaultKeyringSearch('prod', 'cinder'), [
      '/etc/ceph/prod.client.cinder.keyring', '/etc/ceph/prod.keyring', '/etc/ceph/keyring', '/etc/ceph/keyring.bin',
    ]);
    assert.deepEqual(splitPathList('/a, /b;/c'), ['/a', '/b', '/c']);
  });
});

describe('ceph.conf', () => {
  const text = `
; a comment
[global]
mon host = v2:127.0.0.1:3300   # inline comment
keyring = "/etc/ceph/$cluster.keyring"
[client]
rbd-cache = false
[client.cinder]
keyring = /etc/ceph/cinder.keyring
long_value = a\\
b
`;

  test('sections, normalized keys, quotes, comments, continuations', () => {
    const conf = parseConf(text, 'test.conf');
    assert.equal(conf.get('global')?.get('mon_host'), 'v2:127.0.0.1:3300');
    assert.equal(conf.get('global')?.get('keyring'), '/etc/ceph/$cluster.keyring');
    assert.equal(conf.get('client')?.get('rbd_cache'), 'false');
    assert.equal(conf.get('client.cinder')?.get('long_value'), 'ab');
  });

  test('a client setting: [client.ID], then [client], then [global]', () => {
    const conf = parseConf(text, 'test.conf');
    assert.equal(lookupClientSetting(conf, 'cinder', 'keyring'), '/etc/ceph/cinder.keyring');
    assert.equal(lookupClientSetting(conf, 'admin', 'keyring'), '/etc/ceph/$cluster.keyring');
    assert.equal(lookupClientSetting(conf, 'admin', 'rbd cache'), 'false');
    assert.equal(lookupClientSetting(conf, 'admin', 'mon-host'), 'v2:127.0.0.1:3300');
    assert.equal(lookupClientSetting(conf, 'admin', 'nothing'), undefined);
  });

  test('errors name the file and the line', () => {
    assert.throws(() => parseConf('[global]\njust words\n', '/x.conf'),
      (error: unknown) => error instanceof InvalidArgumentError && /\/x\.conf/.test(error.message) && /line 2/.test(error.message));
    assert.throws(() => parseConf('key = value\n', '/y.conf'), /line 1: key comes before any \[section\]/);
  });
});
