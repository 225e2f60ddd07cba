/**
 * Cluster: connecting (conf + keyring, monitor address + key), cluster-wide
 * calls, typed failures of connecting (wrong key, unreachable monitor,
 * missing conf), secrets kept out of errors and logs, and closing.
 * Runs against the real throwaway cluster 'a' (cephx on).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { inspect } from 'node:util';
import { randomBytes } from 'node:crypto';
import {
  AlreadyExistsError, BusyError, CephError, ClosedError, Cluster, InvalidArgumentError, NotFoundError,
  PermissionError, TimeoutError,
} from '../../lib/index.js';
import { freePort, type ClusterInfo } from '../../lib/dev/throwaway-cluster.js';
import { TEST_TIMEOUTS, ceph, connect, sha256, testCluster, uniqueName } from '../support/clusters.js';

const run = promisify(execFile);
const CHILD = fileURLToPath(new URL('../fixtures/connect-child.js', import.meta.url));

let info: ClusterInfo;
let adminKey: string;

/** A valid cephx key that belongs to nobody. */
async function strangerKey(): Promise<string> {
  const { stdout } = await run('ceph-authtool', ['--gen-print-key']);
  const key = stdout.trim();
  assert.match(key, /^[A-Za-z0-9+/]{38}==$/);
  return key;
}

function keyOf(keyring: string, entity: string): string {
  const section = keyring.split(/^\[/m).find((s) => s.startsWith(`${entity}]`));
  const key = section?.match(/^\s*key\s*=\s*(\S+)\s*$/m)?.[1];
  assert.ok(key, `no key for ${entity} in the keyring`);
  return key;
}

function elapsedSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** Runs the connect fixture in a child process with DEBUG on; returns its output. */
async function connectInChild(options: object): Promise<{ stdout: string; stderr: string }> {
  const { stdout, stderr } = await run(process.execPath, [CHILD], {
    timeout: 60_000,
    env: { ...process.env, DEBUG: 'rbd-backup:*', DEBUG_COLORS: '0', FIXTURE_CONNECT: JSON.stringify(options) },
  });
  return { stdout, stderr };
}

before(async () => {
  info = (await testCluster('a')).info;
  adminKey = keyOf(await readFile(info.keyring, 'utf8'), 'client.admin');
});

describe('connect', () => {
  test('with conf and keyring: fsid is the one `ceph fsid` reports', async () => {
    const cluster = await connect('a');
    try {
      const expected = (await ceph('a', ['fsid'])).trim();
      assert.match(expected, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      assert.equal(await cluster.fsid(), expected);
      assert.equal(cluster.name, `cluster(client.admin conf ${info.conf})`);
    } finally {
      await cluster.close();
    }
  });

  test('with a monitor address and a key, without any conf file', async () => {
    const cluster = await Cluster.connect({ monHost: info.monHost, key: adminKey, ...TEST_TIMEOUTS });
    try {
      assert.equal(await cluster.fsid(), (await ceph('a', ['fsid'])).trim());
      const pools = await cluster.listPools();
      assert.ok(pools.includes('rbd') && pools.includes('backups'), `pools: ${pools.join(',')}`);
      assert.equal(cluster.name, `cluster(client.admin mon ${info.monHost})`);
      assert.ok(!cluster.name.includes(adminKey));
    } finally {
      await cluster.close();
    }
  });

  test('another cluster name is what $cluster expands to in its conf (its keyring found by it)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'named-cluster-'));
    try {
      // The conf names its keyring only through $cluster: found only when the connection is made as 'site2'.
      const conf = (await readFile(info.conf, 'utf8')).replace(/^keyring = .*$/m, `keyring = ${dir}/$cluster.keyring`);
      await writeFile(join(dir, 'site2.conf'), conf);
      await writeFile(join(dir, 'site2.keyring'), await readFile(info.keyring));
      const named = await Cluster.connect({ cluster: 'site2', conf: join(dir, 'site2.conf'), environment: false, ...TEST_TIMEOUTS });
      try {
        assert.equal(await named.fsid(), (await ceph('a', ['fsid'])).trim());
      } finally {
        await named.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a user given with the 'client.' prefix is the same user", async () => {
    const cluster = await connect('a', { user: 'client.admin' });
    try {
      assert.equal(cluster.name, `cluster(client.admin conf ${info.conf})`);
      assert.equal(await cluster.fsid(), (await ceph('a', ['fsid'])).trim());
    } finally {
      await cluster.close();
    }
  });

  test('a wrong key fails fast with PermissionError', { timeout: 60_000 }, async () => {
    const key = await strangerKey();
    assert.notEqual(key, adminKey);
    for (const options of [
      { monHost: info.monHost, key },
      { conf: info.conf, key },
    ]) {
      const start = process.hrtime.bigint();
      await assert.rejects(Cluster.connect({ ...options, timeoutMs: 30_000 }), (e) => {
        assert.ok(e instanceof PermissionError, `got ${String(e)}`);
        assert.equal(e.code, 'EACCES');
        assert.equal(e.errno, 13);
        assert.equal(e.operation, 'connect');
        assert.match(e.resource, /^cluster\(client\.admin /);
        assert.match(e.message, /cannot connect to the cluster as client\.admin: Permission denied \[EACCES\]$/);
        return true;
      });
      // Fast: nowhere near the 30 s the connect was allowed.
      const elapsed = elapsedSince(start);
      assert.ok(elapsed < 10_000, `a wrong key took ${elapsed} ms to fail`);
    }
  });

  test('a user the cluster does not know fails with PermissionError', { timeout: 60_000 }, async () => {
    const user = uniqueName('nobody');
    await assert.rejects(Cluster.connect({ monHost: info.monHost, user, key: await strangerKey(), timeoutMs: 30_000 }),
      (e) => e instanceof PermissionError && e.code === 'EACCES' &&
        e.resource === `cluster(client.${user} mon ${info.monHost})` &&
        new RegExp(`cannot connect to the cluster as client\\.${user}`).test(e.message));
  });

  test('an unreachable monitor fails with TimeoutError within timeoutMs', { timeout: 60_000 }, async () => {
    const port = await freePort(); // nobody listens there
    const monHost = `v2:127.0.0.1:${port}`;
    const start = process.hrtime.bigint();
    await assert.rejects(Cluster.connect({ monHost, key: await strangerKey(), timeoutMs: 2000 }), (e) => {
      assert.ok(e instanceof TimeoutError, `got ${String(e)}`);
      assert.equal(e.code, 'ETIMEDOUT');
      assert.equal(e.errno, 110);
      assert.equal(e.operation, 'connect');
      assert.equal(e.resource, `cluster(client.admin mon ${monHost})`);
      // Our deadline or librados' own client_mount_timeout, whichever fires first.
      assert.match(e.message, /(no connection within 2000 ms|Connection timed out) \[ETIMEDOUT\]$/);
      return true;
    });
    const elapsed = elapsedSince(start);
    assert.ok(elapsed < 2000 + 8000, `connect to an unreachable monitor took ${elapsed} ms`);
  });

  test('a missing conf file fails with NotFoundError naming it', async () => {
    const conf = `/nonexistent-${randomBytes(4).toString('hex')}/ceph.conf`;
    await assert.rejects(Cluster.connect({ conf, keyring: info.keyring, ...TEST_TIMEOUTS }),
      (e) => e instanceof NotFoundError && e.code === 'ENOENT' && e.errno === 2 &&
        e.operation === 'connect' && e.resource === `cluster(client.admin conf ${conf})` &&
        e.message === `connect cluster(client.admin conf ${conf}): cannot read ceph configuration ${conf} [ENOENT]`);
  });

  test('invalid timeouts and user names are refused before connecting', async () => {
    for (const timeoutMs of [0, -1, 1.5, NaN]) {
      await assert.rejects(Cluster.connect({ conf: info.conf, keyring: info.keyring, timeoutMs }),
        (e) => e instanceof InvalidArgumentError && /timeoutMs must be an integer/.test(e.message),
        `timeoutMs ${timeoutMs} accepted`);
    }
    await assert.rejects(Cluster.connect({ conf: info.conf, keyring: info.keyring, opTimeoutMs: 0 }),
      (e) => e instanceof InvalidArgumentError && /opTimeoutMs must be an integer/.test(e.message));
    for (const user of ['', 'admin/x', 'a@b', 'a\0b']) {
      await assert.rejects(Cluster.connect({ conf: info.conf, keyring: info.keyring, user }),
        (e) => e instanceof InvalidArgumentError && e.operation === 'connect' && /user name/.test(e.message),
        `user ${JSON.stringify(user)} accepted`);
    }
  });
});

describe('keys stay secret', () => {
  test('a wrong key never appears in the error', { timeout: 60_000 }, async () => {
    const key = await strangerKey();
    const error = await Cluster.connect({ monHost: info.monHost, key, timeoutMs: 30_000 }).then(
      () => assert.fail('connected with a wrong key'), (e: unknown) => e);
    assert.ok(error instanceof PermissionError);
    for (const text of [error.message, error.stack ?? '', String(error), inspect(error, { depth: 5 }),
      JSON.stringify(error), error.resource]) {
      assert.ok(!text.includes(key), `key leaked: ${text}`);
    }
  });

  test('neither a wrong nor a right key appears in errors or DEBUG output', { timeout: 120_000 }, async () => {
    const wrong = await strangerKey();
    const failed = await connectInChild({ monHost: info.monHost, key: wrong, timeoutMs: 30_000 });
    const marker = failed.stdout.split('\n').find((l) => l.startsWith('CONNECT-FAILED '));
    assert.ok(marker, `child printed no outcome: ${failed.stdout} ${failed.stderr}`);
    const outcome = JSON.parse(marker.slice('CONNECT-FAILED '.length)) as { name: string; code: string };
    assert.equal(outcome.name, 'PermissionError');
    assert.equal(outcome.code, 'EACCES');
    // The debug output is there (so the check below is not vacuous) ...
    assert.match(failed.stderr, /rbd-backup:ceph connecting cluster\(client\.admin mon /);
    // ... and the error was printed in full, yet the key is nowhere.
    assert.match(failed.stderr, /PermissionError/);
    assert.ok(!failed.stdout.includes(wrong) && !failed.stderr.includes(wrong), 'wrong key leaked');

    const ok = await connectInChild({ monHost: info.monHost, key: adminKey, ...TEST_TIMEOUTS });
    assert.match(ok.stdout, /^CONNECT-OK /m, `child did not connect: ${ok.stdout} ${ok.stderr}`);
    assert.match(ok.stderr, /rbd-backup:ceph connected cluster\(client\.admin mon /);
    assert.ok(!ok.stdout.includes(adminKey) && !ok.stderr.includes(adminKey), 'admin key leaked');
  });
});

describe('pools', () => {
  let cluster: Cluster;
  const created: string[] = [];

  before(async () => {
    cluster = await connect('a');
  });

  after(async () => {
    for (const name of created) await cluster.deletePool(name).catch(() => undefined);
    await cluster.close();
  });

  test('listPools lists rbd and backups, once each', async () => {
    const pools = await cluster.listPools();
    assert.ok(Array.isArray(pools));
    assert.equal(pools.filter((p) => p === 'rbd').length, 1);
    assert.equal(pools.filter((p) => p === 'backups').length, 1);
    assert.ok(pools.every((p) => typeof p === 'string' && p.length > 0));
  });

  test('createPool makes an rbd pool, deletePool removes it; twice is a typed error', { timeout: 120_000 },
    async () => {
      const name = uniqueName('pool');
      created.push(name);
      await cluster.createPool(name);
      assert.ok((await cluster.listPools()).includes(name));
      // Initialised like `rbd pool init`: tagged for the rbd application.
      assert.deepEqual(JSON.parse(await ceph('a', ['osd', 'pool', 'application', 'get', name, '--format', 'json'])),
        { rbd: {} });

      // Usable for images at once, and the bytes come back.
      const pool = await cluster.pool(name);
      try {
        await pool.createImage('img', 1 << 20);
        const data = randomBytes(64 << 10);
        const image = await pool.openImage('img');
        try {
          await image.write(data, 4096);
          assert.equal(sha256(await image.read(4096, data.length)), sha256(data));
        } finally {
          await image.close();
        }
        await pool.removeImage('img');
      } finally {
        await pool.close();
      }

      await assert.rejects(cluster.createPool(name),
        (e) => e instanceof AlreadyExistsError && e.code === 'EEXIST' && e.errno === 17 &&
          e.operation === 'createPool' && e.resource === name &&
          e.message === `createPool ${name}: rados_pool_create failed: already exists [EEXIST]`);

      await cluster.deletePool(name);
      assert.ok(!(await cluster.listPools()).includes(name));
      await assert.rejects(cluster.deletePool(name),
        (e) => e instanceof NotFoundError && e.code === 'ENOENT' && e.operation === 'deletePool' &&
          e.resource === name && e.message === `deletePool ${name}: rados_pool_delete failed: does not exist [ENOENT]`);
    });

  test('opening a pool that does not exist is a NotFoundError', async () => {
    const name = uniqueName('nope');
    await assert.rejects(cluster.pool(name),
      (e) => e instanceof NotFoundError && e.code === 'ENOENT' && e.operation === 'openPool' &&
        e.resource === name && e.message === `openPool ${name}: pool does not exist [ENOENT]`);
    await assert.rejects(cluster.pool(name, 'ns1'),
      (e) => e instanceof NotFoundError && e.resource === `${name}/ns1`);
  });

  test('invalid pool and namespace names are refused before any call', async () => {
    // On a closed cluster every call that reached the addon would fail with
    // ClosedError; an InvalidArgumentError shows the name was refused first.
    const closed = await connect('a');
    await closed.close();
    const badNames: unknown[] = ['', 'a/b', 'a@b', '../rbd', 'rbd@snap', 'a\0b', 'x'.repeat(256), 'é'.repeat(128),
      42, undefined, null, { name: 'rbd' }];
    for (const name of badNames) {
      const shown = inspect(name);
      for (const [operation, call] of [
        ['createPool', () => closed.createPool(name as string)],
        ['deletePool', () => closed.deletePool(name as string)],
        ['openPool', () => closed.pool(name as string)],
      ] as Array<[string, () => Promise<unknown>]>) {
        await assert.rejects(async () => call(),
          (e) => e instanceof InvalidArgumentError && e.code === 'EINVAL' && e.operation === operation &&
            /pool name/.test(e.message),
          `${operation}(${shown}) was not refused as invalid`);
      }
    }
    for (const namespace of ['a/b', 'a@b', 'a\0b', 'n'.repeat(256), 7]) {
      await assert.rejects(async () => closed.pool('rbd', namespace as string),
        (e) => e instanceof InvalidArgumentError && e.operation === 'openPool' && /namespace name/.test(e.message),
        `namespace ${inspect(namespace)} was not refused`);
    }
    // The same names on a live cluster: refused, and nothing was created.
    const before = await cluster.listPools();
    await assert.rejects(async () => cluster.createPool('a@b'), InvalidArgumentError);
    await assert.rejects(async () => cluster.createPool(''), InvalidArgumentError);
    assert.deepEqual((await cluster.listPools()).sort(), before.sort());
  });

  test('invalid names are reported as a rejected promise, not a synchronous throw', async () => {
    for (const [operation, call] of [
      ['createPool', () => cluster.createPool('a/b')],
      ['deletePool', () => cluster.deletePool('a@b')],
      ['openPool', () => cluster.pool('rbd', 'x/y')],
    ] as Array<[string, () => Promise<unknown>]>) {
      let promise: Promise<unknown> | undefined;
      assert.doesNotThrow(() => { promise = call(); }, `${operation} threw synchronously`);
      await assert.rejects(promise!, (e) => e instanceof InvalidArgumentError && e.operation === operation, operation);
    }
  });
});

describe('closing', () => {
  test('close twice is harmless, also when the two overlap', async () => {
    const cluster = await connect('a');
    assert.equal(await cluster.close(), undefined);
    assert.equal(await cluster.close(), undefined);
    const other = await connect('a');
    await Promise.all([other.close(), other.close()]);
    await assert.rejects(other.fsid(), ClosedError);
  });

  test('every call after close rejects with ClosedError', async () => {
    const cluster = await connect('a');
    const pool = await cluster.pool('rbd');
    await cluster.close();
    const name = uniqueName('after-close');
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['fsid', () => cluster.fsid()],
      ['listPools', () => cluster.listPools()],
      ['createPool', () => cluster.createPool(name)],
      ['deletePool', () => cluster.deletePool(name)],
      ['openPool', () => cluster.pool('rbd')],
    ];
    for (const [operation, call] of calls) {
      await assert.rejects(call(), (e) => e instanceof ClosedError && e.code === 'EBADF' && e.errno === 9 &&
        e.operation === operation && /cluster handle is closed \[EBADF\]$/.test(e.message),
      `${operation} after close`);
    }
    // A pool without open images was closed along with its cluster.
    await assert.rejects(pool.listImages(), (e) => e instanceof ClosedError && e.operation === 'listImages' &&
      e.resource === 'rbd' && /pool handle is closed/.test(e.message));
    await assert.rejects(pool.readObject('x'), ClosedError);
    await pool.close(); // harmless
    // createPool after close reached nothing.
    const check = await connect('a');
    try {
      assert.ok(!(await check.listPools()).includes(name));
    } finally {
      await check.close();
    }
  });

  test('close is refused with BusyError while an image is open, and works once it is closed', async () => {
    const cluster = await connect('a');
    const pool = await cluster.pool('rbd');
    const name = uniqueName('busy');
    await pool.createImage(name, 1 << 20);
    const image = await pool.openImage(name);
    try {
      await assert.rejects(cluster.close(), (e) => e instanceof BusyError && e.code === 'EBUSY' &&
        e.operation === 'close' && e.resource === cluster.name &&
        /1 image\(s\) still open; close them first \[EBUSY\]$/.test(e.message));
      // Refusing did not close anything.
      assert.equal((await image.stat()).size, 1n << 20n);
      assert.ok((await cluster.listPools()).includes('rbd'));
      await image.close();
      await cluster.close();
      await assert.rejects(cluster.fsid(), ClosedError);
      await assert.rejects(image.stat(), ClosedError);
    } finally {
      await image.close();
      await cluster.close();
      const cleanup = await connect('a');
      const rbdPool = await cleanup.pool('rbd');
      await rbdPool.removeImage(name);
      assert.ok(!(await rbdPool.imageExists(name)));
      await rbdPool.close();
      await cleanup.close();
    }
  });

  test('close is refused with BusyError while a cluster call is in flight', async () => {
    const cluster = await connect('a');
    const listing = cluster.listPools();
    await assert.rejects(cluster.close(), (e) => e instanceof BusyError &&
      /1 cluster operation\(s\) in flight/.test(e.message));
    assert.ok((await listing).includes('rbd'));
    await cluster.close();
    await assert.rejects(cluster.listPools(), ClosedError);
  });

  test('await using closes the cluster, its pool and its image', async () => {
    const name = uniqueName('dispose');
    let outerCluster: Cluster | undefined;
    let outerPool: import('../../lib/index.js').Pool | undefined;
    let outerImage: import('../../lib/index.js').Image | undefined;
    {
      await using cluster = await connect('a');
      await using pool = await cluster.pool('rbd');
      await pool.createImage(name, 1 << 20);
      await using image = await pool.openImage(name);
      outerCluster = cluster;
      outerPool = pool;
      outerImage = image;
      const data = randomBytes(4096);
      await image.write(data, 0);
      assert.deepEqual(await image.read(0, 4096), data);
    }
    // Disposed in reverse order: image, pool, cluster, without BusyError.
    await assert.rejects(outerImage.stat(), ClosedError);
    await assert.rejects(outerPool.listImages(), ClosedError);
    await assert.rejects(outerCluster.fsid(), (e) => e instanceof ClosedError && e instanceof CephError);
    const cleanup = await connect('a');
    const pool = await cleanup.pool('rbd');
    await pool.removeImage(name);
    await pool.close();
    await cleanup.close();
  });

  test('Symbol.asyncDispose on a cluster with an open image rejects with BusyError', async () => {
    const cluster = await connect('a');
    const pool = await cluster.pool('rbd');
    const name = uniqueName('dispose-busy');
    await pool.createImage(name, 1 << 20);
    const image = await pool.openImage(name);
    let removed = false;
    try {
      await assert.rejects(cluster[Symbol.asyncDispose](), BusyError);
      await image[Symbol.asyncDispose]();
      await pool[Symbol.asyncDispose]();
      await assert.rejects(pool.listImages(), ClosedError);
      const again = await cluster.pool('rbd');
      await again.removeImage(name);
      removed = true;
      await again.close();
      await cluster[Symbol.asyncDispose]();
      await assert.rejects(cluster.fsid(), ClosedError);
    } finally {
      await image.close();
      if (!removed) {
        const cleanup = await cluster.pool('rbd');
        await cleanup.removeImage(name);
        await cleanup.close();
      }
      await cluster.close();
    }
  });
});
