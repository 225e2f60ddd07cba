/**
 * One time budget per BackupEngine call (lib/backup/cleanup.ts and
 * budget.ts): the work stopped with a TimeoutError, clean-up steps run
 * newest first and per pool at once, abandoned when they cannot finish in
 * time or their cluster just timed out, and listed in the error. Pools
 * and clusters are stand-ins: no Ceph needed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { OperationScope } from '../../lib/backup/cleanup.js';
import { callBudget, DEFAULT_TIMEOUT_OPS, transferAllowanceMs } from '../../lib/backup/budget.js';
import { BusyError, CephError, InvalidArgumentError, NotFoundError, TimeoutError, type Cluster, type Pool } from '../../lib/index.js';

/** A pool of a cluster, as far as a scope looks at it: a spec and its cluster. */
function fakePool(spec: string, cluster: object): Pool {
  return { spec, cluster } as unknown as Pool;
}

function fakeCluster(timeoutMs: number, opTimeoutMs: number | undefined): Cluster {
  return { timeoutMs, opTimeoutMs } as unknown as Cluster;
}

const options = (timeoutMs: number) => ({ operation: 'backup', resource: 'rbd/volume-v1', timeoutMs });

/** The rejection of a call, for its checks. */
async function rejection(call: Promise<unknown>): Promise<CephError> {
  let caught: unknown;
  await assert.rejects(call, (error: unknown) => {
    caught = error;
    return true;
  });
  assert.ok(caught instanceof CephError, String(caught));
  return caught;
}

describe('OperationScope', () => {
  test('once the call\'s lock is lost, undo steps change nothing (listed as not done), releases still run', async () => {
    const pool = fakePool('p', {});
    const ran: string[] = [];
    const lost = new AbortController();
    const error = await rejection(OperationScope.run(options(5000), async (scope) => {
      scope.defer('release the lock', pool, async () => { ran.push('release'); }, 'lock');
      scope.guardBy({ lost: lost.signal });
      scope.onFailure('remove the volume', pool, async () => {
        ran.push('remove: started');
        // Lost while this step was on its way: it checks before its change.
        lost.abort(new Error('renewal timed out'));
        scope.stillLocked('p/volume-t1');
        ran.push('remove: removed');
      });
      scope.onFailure('give the volume its size back', pool, async () => { ran.push('resize'); });
      throw new NotFoundError({ code: 'ENOENT', operation: 'x', resource: 'p/x', detail: 'gone' });
    }));
    assert.ok(error instanceof NotFoundError);
    assert.deepEqual(ran, ['resize', 'remove: started', 'release']);
    assert.deepEqual(error.leftBehind, [
      'remove the volume: failed (backup p/volume-t1: not done: the call lost its lock, so another run may own what it would change [EBUSY])',
    ]);

    ran.length = 0;
    const lostBefore = new AbortController();
    lostBefore.abort(new Error('renewal timed out'));
    const again = await rejection(OperationScope.run(options(5000), async (scope) => {
      scope.defer('release the lock', pool, async () => { ran.push('release'); }, 'lock');
      scope.guardBy({ lost: lostBefore.signal });
      scope.onFailure('remove the volume', pool, async () => { ran.push('remove'); });
      throw new NotFoundError({ code: 'ENOENT', operation: 'x', resource: 'p/x', detail: 'gone' });
    }));
    assert.deepEqual(ran, ['release'], 'the undo step did not run at all');
    assert.deepEqual(again.leftBehind, ['remove the volume: not done: the call lost its lock, so another run may own what it would change']);
  });

  test('steps run newest first; onFailure steps only without commit', async () => {
    const pool = fakePool('p', {});
    const ran: string[] = [];
    const step = (name: string) => async () => { ran.push(name); };
    const value = await OperationScope.run(options(5000), async (scope) => {
      scope.defer('first', pool, step('first'));
      scope.onFailure('undo', pool, step('undo'));
      scope.defer('last', pool, step('last'));
      scope.commit();
      return 42;
    });
    assert.equal(value, 42);
    assert.deepEqual(ran, ['last', 'first']);

    ran.length = 0;
    await assert.rejects(OperationScope.run(options(5000), async (scope) => {
      scope.defer('first', pool, step('first'));
      scope.onFailure('undo', pool, step('undo'));
      throw new NotFoundError({ code: 'ENOENT', operation: 'x', resource: 'p/x', detail: 'gone' });
    }), NotFoundError);
    assert.deepEqual(ran, ['undo', 'first']);
  });

  test('work past its time is stopped with a TimeoutError naming the call, and the clean-up still runs', async () => {
    const pool = fakePool('p', {});
    let undone = false;
    const started = performance.now();
    const error = await rejection(OperationScope.run(options(500), async (scope) => {
      scope.onFailure('undo', pool, async () => { undone = true; });
      scope.doing = 'waiting forever';
      await new Promise(() => undefined);
    }));
    const ms = performance.now() - started;
    assert.ok(error instanceof TimeoutError);
    assert.equal(error.code, 'ETIMEDOUT');
    assert.equal(error.operation, 'backup');
    assert.equal(error.resource, 'rbd/volume-v1');
    assert.match(error.message, /time budget of 500 ms \(it was waiting forever\)/);
    assert.ok(undone);
    // The work stops when the clean-up's fifth of the budget is left.
    assert.ok(ms >= 390 && ms < 500, `${ms} ms`);
  });

  test('a clean-up step that cannot finish in time is abandoned and listed; the call ends within its budget', async () => {
    const pool = fakePool('backups', {});
    const started = performance.now();
    const error = await rejection(OperationScope.run(options(1000), async (scope) => {
      scope.onFailure('remove the new chain image backups/c', pool, () => new Promise(() => undefined));
      throw new InvalidArgumentError({ code: 'EINVAL', operation: 'backup', resource: 'x', detail: 'refused' });
    }));
    const ms = performance.now() - started;
    assert.ok(error instanceof InvalidArgumentError, 'the call\'s own error stays');
    assert.deepEqual(error.leftBehind, ['remove the new chain image backups/c: did not finish in time']);
    assert.match(error.message, /refused.*left for the next run or gc: remove the new chain image backups\/c/);
    assert.ok(ms >= 950 && ms < 1200, `${ms} ms`);
  });

  test('steps on different pools run at once, steps on one pool in order', async () => {
    const cluster = {};
    const [a, b] = [fakePool('a', cluster), fakePool('b', cluster)];
    const ran: string[] = [];
    const started = performance.now();
    await OperationScope.run(options(5000), async (scope) => {
      for (const [pool, name] of [[a, 'a1'], [a, 'a2'], [b, 'b1']] as const) {
        scope.defer(name, pool, async () => {
          await sleep(200);
          ran.push(name);
        });
      }
    });
    const ms = performance.now() - started;
    assert.deepEqual(ran.filter((n) => n.startsWith('a')), ['a2', 'a1']);
    assert.ok(ms >= 390 && ms < 550, `two steps of 200 ms in a row, the third beside them: ${ms} ms`);
  });

  test('a cluster that just timed out is not asked again: its undo steps are listed, its releases go on in the background', async () => {
    const sick = {};
    const [p1, p2] = [fakePool('p1', sick), fakePool('p2', sick)];
    const healthy = fakePool('q', {});
    const ran: string[] = [];
    let released!: () => void;
    const releasedInBackground = new Promise<void>((resolve) => { released = resolve; });
    const error = await rejection(OperationScope.run(options(5000), async (scope) => {
      scope.defer('release the lock p1/l', p1, async () => { released(); }, 'lock');
      scope.onFailure('remove p1/image', p1, async () => { ran.push('p1 image'); });
      scope.onFailure('remove q/image', healthy, async () => { ran.push('q image'); });
      scope.onFailure('remove p2/snapshot', p2, async () => { ran.push('p2 snapshot'); });
      // The work's own failure: an operation on p2 timed out.
      throw new TimeoutError({ code: 'ETIMEDOUT', operation: 'write', resource: 'p2/image', detail: 'timed out' });
    }));
    assert.ok(error instanceof TimeoutError);
    assert.deepEqual(ran, ['q image'], 'only the other cluster was asked');
    assert.deepEqual(error.leftBehind.sort(), [
      'release the lock p1/l: not done (its cluster did not answer in time)',
      'remove p1/image: not done (its cluster did not answer in time)',
      'remove p2/snapshot: not done (its cluster did not answer in time)',
    ]);
    await releasedInBackground;
  });

  test('a handle still busy at its release: the undo steps after it in its lane still run, the releases wait for it', async () => {
    const ran: string[] = [];
    let closes = 0;
    const pool = Object.assign(fakePool('p', {}), {
      close: async () => {
        closes++;
        // A call the work abandoned is still on it the first time.
        if (closes === 1) throw new BusyError({ code: 'EBUSY', operation: 'close', resource: 'p', detail: 'a call is in flight' });
        ran.push('closed');
      },
    }) as Pool;
    let lockReleased!: () => void;
    const released = new Promise<void>((resolve) => { lockReleased = resolve; });
    const error = await rejection(OperationScope.run(options(5000), async (scope) => {
      scope.defer('release the lock p/l', pool, async () => { ran.push('lock released'); lockReleased(); }, 'lock');
      // Registered before the handle is adopted, so it comes after its release.
      scope.onFailure('remove the volume p/v', pool, async () => { ran.push('volume removed'); });
      await scope.adopt(Promise.resolve(pool));
      throw new NotFoundError({ code: 'ENOENT', operation: 'x', resource: 'p/x', detail: 'gone' });
    }));
    assert.ok(error instanceof NotFoundError);
    assert.deepEqual(error.leftBehind, []);
    assert.ok(ran.includes('volume removed'), `the undo step ran: ${ran.join(', ')}`);
    await released;
    assert.deepEqual(ran.slice().sort(), ['closed', 'lock released', 'volume removed']);
    assert.ok(ran.indexOf('lock released') > ran.indexOf('closed'), 'the lock goes after the handle it was taken with');
  });

  test('a clean-up step that times out takes its cluster out of the rest of the clean-up', async () => {
    const pool = fakePool('p', {});
    const ran: string[] = [];
    const error = await rejection(OperationScope.run(options(5000), async (scope) => {
      scope.onFailure('remove p/a', pool, async () => { ran.push('a'); });
      scope.onFailure('remove p/b', pool, async () => {
        throw new TimeoutError({ code: 'ETIMEDOUT', operation: 'removeImage', resource: 'p/b', detail: 'timed out' });
      });
      throw new InvalidArgumentError({ code: 'EINVAL', operation: 'backup', resource: 'x', detail: 'refused' });
    }));
    assert.deepEqual(ran, []);
    assert.deepEqual(error.leftBehind, [
      'remove p/b: failed (removeImage p/b: timed out [ETIMEDOUT])',
      'remove p/a: not done (its cluster did not answer in time)',
    ]);
  });

  test('work that goes on past its time registers nothing more; a lock it gets late is let go', async () => {
    const pool = fakePool('p', {});
    let lateRegistration: unknown;
    let released = false;
    let resume!: () => void;
    const late = new Promise<void>((resolve) => { resume = resolve; });
    await assert.rejects(OperationScope.run(options(300), async (scope) => {
      await late;
      try {
        scope.defer('release the lock p/l', pool, async () => { released = true; }, 'lock');
      } catch (error) {
        lateRegistration = error;
      }
    }), TimeoutError);
    resume();
    await sleep(10);
    assert.ok(lateRegistration instanceof TimeoutError);
    assert.ok(released);
  });

  test('extend() moves the deadline', async () => {
    const value = await OperationScope.run(options(300), async (scope) => {
      scope.extend(500);
      await sleep(400);
      return 'done';
    });
    assert.equal(value, 'done');
  });
});

describe('callBudget', () => {
  test('the default is a few op timeouts of the slowest connection, and grows', () => {
    const budget = callBudget(undefined, [fakeCluster(30_000, 20_000), fakeCluster(30_000, undefined)], 'backup', 'x');
    assert.deepEqual(budget, { timeoutMs: DEFAULT_TIMEOUT_OPS * 30_000, grows: true, opTimeoutMs: 30_000 });
  });

  test('a given budget is checked and fixed', () => {
    assert.deepEqual(callBudget(5000, [fakeCluster(30_000, 20_000)], 'backup', 'x'),
      { timeoutMs: 5000, grows: false, opTimeoutMs: 20_000 });
    for (const bad of [0, -1, 1.5, '10', Number.NaN]) {
      assert.throws(() => callBudget(bad, [fakeCluster(30_000, 20_000)], 'backup', 'x'), InvalidArgumentError);
    }
  });

  test('a second per 16 MiB moved', () => {
    assert.equal(transferAllowanceMs(0n), 0);
    assert.equal(transferAllowanceMs(16n << 20n), 1000);
    assert.equal(transferAllowanceMs(1n << 40n), 65_536_000);
  });
});
