/**
 * What a lock holder's liveness check is built from: watching an object and
 * acking notifies (Pool.watchObject), notifying its watchers
 * (Pool.notifyObject), listing and breaking object locks, the connection's
 * instance id and fencing it (Cluster.blocklistAdd). Watchers that die are
 * child processes killed with SIGKILL. Runs against cluster 'a'.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BlocklistedError, BusyError, CephError, ClosedError, Cluster, InvalidArgumentError, NotFoundError,
  type NotifyResult, type Pool,
} from '../../lib/index.js';
import type { ClusterInfo } from '../../lib/dev/throwaway-cluster.js';
import { connect, testCluster, uniqueName } from '../support/clusters.js';
import { runFixture, startFixture, type ChildResult } from '../support/fixture-process.js';

const CHILD = fileURLToPath(new URL('../fixtures/watch-child.js', import.meta.url));
const CHILD_TIMEOUT_MS = 90_000;
/** librados pings watches once a second, so watch timeouts of a few seconds hold. */
const FAST_PINGS = { options: { objecter_tick_interval: '1' } } as const;
const LOCK = 'rbd-backup';

let info: ClusterInfo;
let watcher: Cluster;
let notifier: Cluster;
let watcherPool: Pool;
let notifierPool: Pool;
const objects: string[] = [];

/** A fresh (empty) object in 'backups', removed after the tests. */
async function newObject(): Promise<string> {
  const name = uniqueName('watch');
  await watcherPool.writeObject(name, '', { exclusive: true });
  objects.push(name);
  return name;
}

function childEnv(object: string, watchTimeoutSeconds: number): Record<string, string> {
  return {
    FIXTURE_CONF: info.conf, FIXTURE_KEYRING: info.keyring, FIXTURE_POOL: 'backups', FIXTURE_OBJECT: object,
    FIXTURE_WATCH_TIMEOUT: String(watchTimeoutSeconds),
  };
}

/** gid and watch id from a child's WATCH-READY line. */
function parseReady(line: string): { gid: bigint; cookie: bigint } {
  const match = /^WATCH-READY (\d+) (\d+)$/.exec(line);
  assert.ok(match, `not a ready line: ${line}`);
  return { gid: BigInt(match[1]), cookie: BigInt(match[2]) };
}

function checkCleanExit(result: ChildResult, mode: string): void {
  const details = inspect(result);
  assert.equal(result.signal, null, `killed by a signal: ${details}`);
  assert.equal(result.code, 0, `exit code: ${details}`);
  assert.equal(result.stderr, '', `stderr: ${details}`);
  assert.match(result.stdout, new RegExp(`^WATCH-DONE ${mode}$`, 'm'), details);
}

const nobody: NotifyResult = { acks: [], timeouts: [] };

before(async () => {
  info = (await testCluster('a')).info;
  watcher = await connect('a', FAST_PINGS);
  notifier = await connect('a', FAST_PINGS);
  watcherPool = await watcher.pool('backups');
  notifierPool = await notifier.pool('backups');
});

after(async () => {
  for (const name of objects) await watcherPool.removeObject(name).catch(() => undefined);
  await watcherPool.close();
  await notifierPool.close();
  await watcher.close();
  await notifier.close();
});

describe('instance id', () => {
  test('is a bigint, the same on every call, and different for another connection', async () => {
    const id = watcher.instanceId();
    assert.equal(typeof id, 'bigint');
    assert.ok(id > 0n);
    assert.equal(watcher.instanceId(), id);
    assert.notEqual(notifier.instanceId(), id);
    const closed = await connect('a');
    const closedId = closed.instanceId();
    await closed.close();
    assert.throws(() => closed.instanceId(), (e) => e instanceof ClosedError && e.operation === 'instanceId' &&
      /cluster handle is closed \[EBADF\]$/.test(e.message));
    assert.notEqual(closedId, id);
  });
});

describe('watch and notify', () => {
  test('a watch acks a notify from another connection, naming its connection and watch', async () => {
    const object = await newObject();
    await using watch = await watcherPool.watchObject(object, { timeoutSeconds: 10 });
    assert.equal(typeof watch.id, 'bigint');
    assert.equal(watch.object, object);
    assert.equal(watch.spec, `backups/${object}`);
    const result = await notifierPool.notifyObject(object, { timeoutMs: 5000, payload: 'are you there?' });
    assert.deepEqual(result, {
      acks: [{ gid: watcher.instanceId(), cookie: watch.id, reply: Buffer.alloc(0) }],
      timeouts: [],
    });
    const sinceConfirmed = await watch.check();
    assert.ok(Number.isInteger(sinceConfirmed) && sinceConfirmed >= 0, `check() gave ${sinceConfirmed}`);
  });

  test('after watch.close() a notify finds no watcher, and the closed watch refuses check()', async () => {
    const object = await newObject();
    const watch = await watcherPool.watchObject(object, { timeoutSeconds: 10 });
    assert.equal((await notifierPool.notifyObject(object, { timeoutMs: 2000 })).acks.length, 1);
    await watch.close();
    const started = Date.now();
    assert.deepEqual(await notifierPool.notifyObject(object, { timeoutMs: 2000 }), nobody);
    // Nobody to wait for: the notify does not sit out its timeout.
    assert.ok(Date.now() - started < 1500, `notify took ${Date.now() - started} ms`);
    await assert.rejects(watch.check(), (e) => e instanceof ClosedError && e.operation === 'checkWatch' &&
      e.resource === `backups/${object}` && /watch handle is closed \[EBADF\]$/.test(e.message));
    assert.equal(await watch.close(), undefined);
    assert.equal(await watch[Symbol.asyncDispose](), undefined);
  });

  test('every watch on the object acks, the notifier\'s own included', async () => {
    const object = await newObject();
    await using first = await watcherPool.watchObject(object, { timeoutSeconds: 10 });
    await using second = await notifierPool.watchObject(object, { timeoutSeconds: 10 });
    const { acks, timeouts } = await notifierPool.notifyObject(object, { timeoutMs: 5000 });
    assert.deepEqual(timeouts, []);
    const seen = acks.map((a) => `${a.gid}/${a.cookie}`).sort();
    assert.deepEqual(seen, [`${watcher.instanceId()}/${first.id}`, `${notifier.instanceId()}/${second.id}`].sort());
  });

  test('a missing object can be neither watched nor notified (NotFoundError)', async () => {
    const missing = uniqueName('missing');
    await assert.rejects(watcherPool.watchObject(missing, { timeoutSeconds: 10 }), (e) =>
      e instanceof NotFoundError && e.errno === 2 && e.operation === 'watchObject' &&
      e.resource === `backups/${missing}`);
    await assert.rejects(notifierPool.notifyObject(missing, { timeoutMs: 1000 }), (e) =>
      e instanceof NotFoundError && e.operation === 'notifyObject');
    // The failed watch left nothing behind that would keep the pool open.
    const own = await watcher.pool('backups');
    await assert.rejects(own.watchObject(missing, { timeoutSeconds: 10 }), NotFoundError);
    await own.close();
  });

  test('arguments are checked before anything reaches Ceph', async () => {
    const object = await newObject();
    const refused: Array<[string, () => Promise<unknown>]> = [
      ['timeoutSeconds 0', () => watcherPool.watchObject(object, { timeoutSeconds: 0 })],
      ['timeoutSeconds 2.5', () => watcherPool.watchObject(object, { timeoutSeconds: 2.5 })],
      ['timeoutSeconds 3601', () => watcherPool.watchObject(object, { timeoutSeconds: 3601 })],
      ['timeoutSeconds missing', () => watcherPool.watchObject(object, {} as { timeoutSeconds: number })],
      ['object with /', () => watcherPool.watchObject('a/b', { timeoutSeconds: 10 })],
      ['timeoutMs 0', () => notifierPool.notifyObject(object, { timeoutMs: 0 })],
      ['timeoutMs 600001', () => notifierPool.notifyObject(object, { timeoutMs: 600_001 })],
      ['timeoutMs string', () => notifierPool.notifyObject(object, { timeoutMs: '1000' as unknown as number })],
      ['payload number', () => notifierPool.notifyObject(object, { timeoutMs: 1000, payload: 7 as unknown as string })],
      ['payload too large', () => notifierPool.notifyObject(object, { timeoutMs: 1000, payload: Buffer.alloc((1 << 20) + 1) })],
      ['empty object name', () => notifierPool.notifyObject('', { timeoutMs: 1000 })],
    ];
    for (const [what, call] of refused) {
      await assert.rejects(call(), (e) => e instanceof InvalidArgumentError && e.code === 'EINVAL', what);
    }
  });

  test('a watch timeout that would lapse between librados\' pings is refused', async () => {
    const object = await newObject();
    // Default objecter_tick_interval: a ping every 5 s.
    const slow = await connect('a');
    try {
      const pool = await slow.pool('backups');
      await assert.rejects(pool.watchObject(object, { timeoutSeconds: 3 }), (e) =>
        e instanceof InvalidArgumentError && e.operation === 'watchObject' &&
        /a watch timeout of 3 s would lapse between librados' pings every 5 s \(objecter_tick_interval\)/
          .test(e.message));
      const watch = await pool.watchObject(object, { timeoutSeconds: 10 });
      assert.equal((await notifierPool.notifyObject(object, { timeoutMs: 2000 })).acks.length, 1);
      await watch.close();
      await pool.close();
    } finally {
      await slow.close();
    }
  });

  test('a short watch of a live holder stays up across many pings', { timeout: 60_000 }, async () => {
    const object = await newObject();
    await using watch = await watcherPool.watchObject(object, { timeoutSeconds: 3 });
    for (let i = 0; i < 4; i++) {
      await sleep(2500);
      assert.ok(await watch.check() < 3000);
      const { acks, timeouts } = await notifierPool.notifyObject(object, { timeoutMs: 1000 });
      assert.deepEqual([acks.map((a) => a.cookie), timeouts], [[watch.id], []], `round ${i}`);
    }
  });
});

describe('closing with a watch open', () => {
  test('pool.close() and cluster.close() refuse while a watch is open, and work once it is closed', async () => {
    const object = await newObject();
    const cluster = await connect('a', FAST_PINGS);
    const pool = await cluster.pool('backups');
    const watch = await pool.watchObject(object, { timeoutSeconds: 10 });
    await assert.rejects(pool.close(), (e) => e instanceof BusyError && e.code === 'EBUSY' &&
      e.operation === 'close' && e.resource === 'backups' &&
      /1 watch\(es\) still open; close them first \[EBUSY\]$/.test(e.message));
    await assert.rejects(pool[Symbol.asyncDispose](), BusyError);
    await assert.rejects(cluster.close(), (e) => e instanceof BusyError &&
      /1 watch\(es\) still open; close them first \[EBUSY\]$/.test(e.message));
    // The refusals left the watch working.
    assert.equal((await notifierPool.notifyObject(object, { timeoutMs: 2000 })).acks.length, 1);
    await watch.close();
    await pool.close();
    await cluster.close();
    assert.deepEqual(await notifierPool.notifyObject(object, { timeoutMs: 2000 }), nobody);
  });
});

describe('a watcher that dies', () => {
  test('a SIGKILLed watcher is in timeouts, not acks, and gone once its 3 s watch timeout passed',
    { timeout: 120_000 }, async () => {
      const object = await newObject();
      const child = startFixture(CHILD, ['hold'], { env: childEnv(object, 3), timeoutMs: CHILD_TIMEOUT_MS });
      try {
        const { gid, cookie } = parseReady(await child.line('WATCH-READY '));
        assert.deepEqual(await notifierPool.notifyObject(object, { timeoutMs: 2000 }),
          { acks: [{ gid, cookie, reply: Buffer.alloc(0) }], timeouts: [] }, 'alive, it acks');
        child.child.kill('SIGKILL');
        const result = await child.exited;
        const killedAt = Date.now();
        assert.equal(result.signal, 'SIGKILL');
        const dying = await notifierPool.notifyObject(object, { timeoutMs: 1000 });
        assert.deepEqual(dying, { acks: [], timeouts: [{ gid, cookie }] }, 'dead, it is named as not answering');
        await sleep(Math.max(0, killedAt + 5000 - Date.now()));
        assert.deepEqual(await notifierPool.notifyObject(object, { timeoutMs: 1000 }), nobody,
          'its watch ended on the OSD');
      } finally {
        child.child.kill('SIGKILL');
        await child.exited.catch(() => undefined);
      }
    });

  for (const mode of ['return', 'exit']) {
    test(`a watch left open when the process ${mode === 'exit' ? 'calls process.exit(0)' : 'returns from main'} ` +
      'is unwatched at exit, without a crash', { timeout: 120_000 }, async () => {
      const object = await newObject();
      // A 30 s timeout: had the exit only dropped the connection, the OSD
      // would still list the watch (in timeouts) for half a minute.
      const result = await runFixture(CHILD, [mode], { env: childEnv(object, 30), timeoutMs: CHILD_TIMEOUT_MS });
      checkCleanExit(result, mode);
      assert.match(result.stdout, /^WATCH-READY \d+ \d+$/m);
      assert.deepEqual(await notifierPool.notifyObject(object, { timeoutMs: 1000 }), nobody);
    });
  }

  test('a watch dropped without close() is unwatched when it is collected', { timeout: 120_000 }, async () => {
    const object = await newObject();
    const result = await runFixture(CHILD, ['gc'], {
      nodeArgs: ['--expose-gc'], env: childEnv(object, 30), timeoutMs: CHILD_TIMEOUT_MS,
    });
    checkCleanExit(result, 'gc');
    assert.match(result.stdout, /^WATCH-GC-ACKS 0$/m, result.stdout);
    assert.deepEqual(await notifierPool.notifyObject(object, { timeoutMs: 1000 }), nobody);
  });
});

describe('object locks', () => {
  test('listLockers names the holder (client.<instance id>, cookie, address), and nobody after unlock', async () => {
    const object = await newObject();
    const cookie = uniqueName('cookie');
    await watcherPool.lockObject(object, { name: LOCK, cookie, description: 'test holder' });
    const listed = await notifierPool.listLockers(object, LOCK);
    assert.equal(listed.exclusive, true);
    assert.equal(listed.tag, '');
    assert.equal(listed.lockers.length, 1);
    const [holder] = listed.lockers;
    assert.equal(holder.client, `client.${watcher.instanceId()}`);
    assert.equal(holder.cookie, cookie);
    assert.match(holder.address, /^(v[12]:)?127\.0\.0\.1:\d+\/\d+$/);
    // Another lock name on the same object has no holder.
    assert.deepEqual((await notifierPool.listLockers(object, 'other-lock')).lockers, []);
    await watcherPool.unlockObject(object, { name: LOCK, cookie });
    assert.deepEqual((await notifierPool.listLockers(object, LOCK)).lockers, []);
  });

  test('an object that does not exist lists no lockers and is not created by asking', async () => {
    const missing = uniqueName('missing');
    assert.deepEqual(await notifierPool.listLockers(missing, LOCK), { exclusive: false, tag: '', lockers: [] });
    assert.equal(await notifierPool.objectExists(missing), false);
  });

  test('breakLock by a second connection lets that connection take the lock', async () => {
    const object = await newObject();
    const holderCookie = uniqueName('holder');
    const takerCookie = uniqueName('taker');
    await watcherPool.lockObject(object, { name: LOCK, cookie: holderCookie });
    await assert.rejects(notifierPool.lockObject(object, { name: LOCK, cookie: takerCookie }), BusyError);
    const [holder] = (await notifierPool.listLockers(object, LOCK)).lockers;
    await notifierPool.breakLock(object, LOCK, holder.client, holder.cookie);
    await notifierPool.lockObject(object, { name: LOCK, cookie: takerCookie });
    assert.deepEqual((await watcherPool.listLockers(object, LOCK)).lockers.map((l) => [l.client, l.cookie]),
      [[`client.${notifier.instanceId()}`, takerCookie]]);
    // The old holder learns it lost the lock when it tries to renew it.
    await assert.rejects(watcherPool.lockObject(object, { name: LOCK, cookie: holderCookie, renew: true }),
      NotFoundError);
    // Breaking what is already gone is a NotFoundError.
    await assert.rejects(notifierPool.breakLock(object, LOCK, holder.client, holder.cookie), (e) =>
      e instanceof NotFoundError && e.errno === 2 && e.operation === 'breakLock' &&
      e.resource === `backups/${object}` && e.message.includes(holder.client));
    await notifierPool.unlockObject(object, { name: LOCK, cookie: takerCookie });
  });

  test('lock arguments are checked before anything reaches Ceph', async () => {
    const object = await newObject();
    const refused: Array<[string, () => Promise<unknown>]> = [
      ['lock name empty', () => notifierPool.listLockers(object, '')],
      ['object with @', () => notifierPool.listLockers('a@b', LOCK)],
      ['holder not client.<id>', () => notifierPool.breakLock(object, LOCK, 'osd.0', 'c')],
      ['holder with junk', () => notifierPool.breakLock(object, LOCK, 'client.12 x', 'c')],
      ['cookie empty', () => notifierPool.breakLock(object, LOCK, 'client.12', '')],
    ];
    for (const [what, call] of refused) {
      await assert.rejects(call(), (e) => e instanceof InvalidArgumentError && e.code === 'EINVAL', what);
    }
  });
});

describe('fencing', () => {
  test('blocklistAdd of a connection\'s address fails its next write with BlocklistedError and ends its watch',
    { timeout: 120_000 }, async () => {
      const object = await newObject();
      const other = await newObject();
      const victim = await connect('a', FAST_PINGS);
      const victimPool = await victim.pool('backups');
      const watch = await victimPool.watchObject(object, { timeoutSeconds: 10 });
      try {
        await victimPool.lockObject(object, { name: LOCK, cookie: 'victim' });
        await victimPool.writeObject(other, 'before');
        const [holder] = (await notifierPool.listLockers(object, LOCK)).lockers;
        assert.equal(holder.client, `client.${victim.instanceId()}`);
        // A short expiry: the entry leaves the OSD map soon after the test.
        await notifier.blocklistAdd(holder.address, 60);
        // The OSD learns of the entry from the monitor on its own time; an
        // operation carrying the newer map epoch makes the OSD wait for that
        // map first (without this, a write 68 ms later once went through).
        await victim.refreshOsdMap();
        await assert.rejects(victimPool.writeObject(other, 'after'), (e) =>
          e instanceof BlocklistedError && e instanceof CephError && e.code === 'ESHUTDOWN' && e.errno === 108 &&
          e.operation === 'writeObject' && e.resource === `backups/${other}`);
        assert.equal((await notifierPool.readObject(other)).toString(), 'before');
        // The OSD drops a blocklisted client's watches at once.
        assert.deepEqual(await notifierPool.notifyObject(object, { timeoutMs: 1000 }), nobody);
        // And the victim hears of it at its next ping.
        const deadline = Date.now() + 20_000;
        let lost: unknown;
        while (lost === undefined && Date.now() < deadline) {
          await watch.check().then(() => sleep(250), (e: unknown) => { lost = e; });
        }
        assert.ok(lost instanceof CephError, `check() did not report the lost watch: ${inspect(lost)}`);
        assert.equal(lost.operation, 'checkWatch');
        // The fenced holder's lock stays until it is broken.
        await notifierPool.breakLock(object, LOCK, holder.client, holder.cookie);
        await notifierPool.lockObject(object, { name: LOCK, cookie: 'contender' });
        await notifierPool.unlockObject(object, { name: LOCK, cookie: 'contender' });
      } finally {
        // A blocklisted client cannot recover: it is only fit to be shut down.
        await watch.close();
        await victimPool.close();
        await victim.close();
      }
    });

  test('blocklistAdd checks the address and the expiry first', async () => {
    const refused: Array<[string, () => Promise<unknown>]> = [
      ['empty address', () => notifier.blocklistAdd('', 60)],
      ['address with a space', () => notifier.blocklistAdd('127.0.0.1:0/1 2', 60)],
      ['address with a newline', () => notifier.blocklistAdd('127.0.0.1:0/1\n', 60)],
      ['address too long', () => notifier.blocklistAdd(`127.0.0.1:0/${'9'.repeat(300)}`, 60)],
      ['expiry 0', () => notifier.blocklistAdd('127.0.0.1:0/1', 0)],
      ['expiry fraction', () => notifier.blocklistAdd('127.0.0.1:0/1', 1.5)],
      ['expiry over a year', () => notifier.blocklistAdd('127.0.0.1:0/1', 366 * 24 * 3600)],
    ];
    for (const [what, call] of refused) {
      await assert.rejects(call(), (e) => e instanceof InvalidArgumentError && e.operation === 'blocklistAdd', what);
    }
    // What only the monitor can tell is wrong comes back typed as well.
    await assert.rejects(notifier.blocklistAdd('not-an-address', 60), (e) =>
      e instanceof InvalidArgumentError && /rados_blocklist_add failed/.test(e.message));
  });
});
