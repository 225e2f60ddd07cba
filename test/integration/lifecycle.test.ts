/**
 * Handle lifetimes: a process that forgets to close its cluster, pool and
 * image still exits cleanly (returning from main, process.exit, garbage
 * collection), and close() refuses while work is in flight or children are
 * open, and is final. Runs against cluster 'a'.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { createHash, randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BusyError, ClosedError, Cluster, exportRaw, transferDiff, type Image, type Pool,
} from '../../lib/index.js';
import type { ClusterInfo } from '../../lib/dev/throwaway-cluster.js';
import { ceph, connect, rbd, rbdExportSha256, sha256, testCluster, uniqueName } from '../support/clusters.js';
import { removeImageFully } from '../support/scratch.js';
import { runFixture, type ChildResult } from '../support/fixture-process.js';

const MiB = 1 << 20;
const CHILD = fileURLToPath(new URL('../fixtures/lifecycle-child.js', import.meta.url));
const WRITE_WORKER = fileURLToPath(new URL('../fixtures/write-worker.js', import.meta.url));
const WORKER = fileURLToPath(new URL('../fixtures/transfer-worker.js', import.meta.url));
const EXPORT_WORKER = fileURLToPath(new URL('../fixtures/export-worker.js', import.meta.url));
const IMPORT_WORKER = fileURLToPath(new URL('../fixtures/import-worker.js', import.meta.url));
// Not compiled: from dist/test/integration back to the sources.
const LOCK_HOLDER = fileURLToPath(new URL('../../../test/fixtures/lock-holder.py', import.meta.url));
const CHILD_TIMEOUT_MS = 90_000;

let info: ClusterInfo;
let cluster: Cluster;
let pool: Pool;
const images: string[] = [];
/** Images a child process left open when it died: their watch outlives it. */
const deadOwners: string[] = [];

/** Runs the lifecycle fixture; kills it (and fails) if it does not exit in time. */
function runChild(mode: string, image: string, nodeArgs: string[] = []): Promise<ChildResult> {
  return runFixture(CHILD, [mode], {
    nodeArgs, timeoutMs: CHILD_TIMEOUT_MS,
    env: { FIXTURE_CONF: info.conf, FIXTURE_KEYRING: info.keyring, FIXTURE_POOL: 'rbd', FIXTURE_IMAGE: image },
  });
}

async function watchers(image: string): Promise<Array<{ address: string }>> {
  return (JSON.parse(await rbd('a', ['status', '--format', 'json', `rbd/${image}`])) as {
    watchers: Array<{ address: string }>;
  }).watchers;
}

/**
 * A process that died with an image open leaves its watch (and exclusive
 * lock) behind until the OSD's watch timeout, 30 s, and removing the image
 * blocks that long. Blocklisting the dead client ends the watch at once.
 * Only for images whose every watcher is a dead child of this file.
 */
async function dropDeadWatchers(image: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (let left = await watchers(image); left.length > 0 && Date.now() < deadline; left = await watchers(image)) {
    // A watcher already gone by now is fine: the loop looks again.
    for (const { address } of left) await ceph('a', ['osd', 'blocklist', 'add', address, '600']).catch(() => undefined);
    await sleep(200);
  }
}

/** Checks a child's exit and output; returns the sha256 it says it wrote. */
function checkExit(result: ChildResult, mode: string): string {
  const details = inspect(result);
  assert.equal(result.signal, null, `killed by a signal: ${details}`);
  assert.equal(result.code, 0, `exit code: ${details}`);
  assert.equal(result.stderr, '', `stderr: ${details}`);
  const lines = result.stdout.trim().split('\n');
  const wrote = lines.find((l) => l.startsWith('LIFECYCLE-WROTE '));
  assert.ok(wrote, `no write marker: ${details}`);
  assert.ok(lines.some((l) => l === `LIFECYCLE-DONE ${mode}` || l.startsWith(`LIFECYCLE-DONE ${mode} `)),
    `no done marker: ${details}`);
  const sha = wrote.slice('LIFECYCLE-WROTE '.length);
  assert.match(sha, /^[0-9a-f]{64}$/);
  return sha;
}

async function newImage(size: number): Promise<string> {
  const name = uniqueName('lc');
  await pool.createImage(name, size);
  images.push(name);
  return name;
}

/**
 * A child that ends by process.exit(0) in `mode` with its handles open:
 * it exits cleanly, its bytes are on the image, and the exit handler
 * closed the image (no watch or lock outlives the process).
 */
async function exitsCleanly(mode: string): Promise<void> {
  const image = await newImage(MiB);
  const result = await runChild(mode, image);
  deadOwners.push(image);
  const sha = checkExit(result, mode);
  assert.equal(await rbdExportSha256('a', `rbd/${image}`), sha);
  assert.deepEqual(await watchers(image), []);
}

/**
 * Starts a worker thread running script (workerData gets the cluster and
 * pool besides `data`), waits until it posts `expected` (what it is busy
 * with), terminates it there and waits for its exit.
 */
async function terminateWhile(script: string, data: Record<string, string>, expected: string): Promise<void> {
  const worker = new Worker(script, { workerData: { conf: info.conf, keyring: info.keyring, pool: 'rbd', ...data } });
  const exited = once(worker, 'exit');
  const [message] = await Promise.race([once(worker, 'message'), exited.then(() => ['exited'])]) as [string];
  assert.equal(message, expected, `the worker was not ${expected} when it was terminated`);
  await worker.terminate();
  await exited;
}

/**
 * Each MiB i of the image holds either zeros or one whole 1 MiB write of
 * the byte i % 255 + 1 (what the write and import workers write): no write
 * was torn or misplaced. Returns how many MiB were written.
 */
async function wholeWrites(name: string, size: number): Promise<number> {
  const image = await pool.openImage(name, { readOnly: true });
  try {
    let written = 0;
    for (let i = 0; i < size / MiB; i++) {
      const piece = await image.read(i * MiB, MiB);
      const fill = piece[0]!;
      assert.ok(fill === 0 || fill === (i % 255) + 1, `MiB ${i} starts with ${fill}`);
      assert.ok(piece.equals(Buffer.alloc(MiB, fill)), `MiB ${i} is not one write's bytes`);
      if (fill !== 0) written++;
    }
    return written;
  } finally {
    await image.close();
  }
}

before(async () => {
  info = (await testCluster('a')).info;
  cluster = await connect('a');
  pool = await cluster.pool('rbd');
});

after(async () => {
  for (const name of deadOwners) await dropDeadWatchers(name);
  for (const name of images) await removeImageFully(pool, name).catch(() => undefined);
  await pool.close();
  await cluster.close();
});

describe('a process that never closes its handles', () => {
  test('(a) returning from main with cluster, pool and image open exits cleanly', { timeout: 120_000 }, async () => {
    const image = await newImage(MiB);
    const result = await runChild('return', image);
    const sha = checkExit(result, 'return');
    assert.equal(await rbdExportSha256('a', `rbd/${image}`), sha);
    // The environment cleanup hook closed the image: no watch is left behind.
    assert.deepEqual(await watchers(image), []);
  });

  test('(b) process.exit(0) with cluster, pool and image open exits cleanly', { timeout: 120_000 }, async () => {
    await exitsCleanly('exit');
  });

  test('(c) dropping every reference and collecting garbage releases the handles', { timeout: 120_000 }, async () => {
    const image = await newImage(MiB);
    const result = await runChild('gc', image, ['--expose-gc']);
    const sha = checkExit(result, 'gc');
    // The finalizers released the image while the child was still running.
    assert.match(result.stdout, /^LIFECYCLE-WATCHERS 0$/m, result.stdout);
    assert.equal(await rbdExportSha256('a', `rbd/${image}`), sha);
    assert.deepEqual(await watchers(image), []);
  });

  test('(d) process.exit(0) while reads are in flight exits cleanly', { timeout: 120_000 }, async () => {
    await exitsCleanly('exit-inflight');
  });
});

describe('a process that exits while a diff stream is read', () => {
  test('(d3) process.exit(0) with the export\'s native reader running exits cleanly', { timeout: 120_000 }, async () => {
    const image = await newImage(64 * MiB);
    const result = await runChild('exit-export', image);
    deadOwners.push(image);
    const sha = checkExit(result, 'exit-export');
    // The bytes it wrote first are the snapshot's.
    const snap = await pool.openImage(image, { snapshot: 'exported', readOnly: true });
    const first = await snap.read(0n, BigInt(MiB));
    await snap.close();
    assert.equal(sha256(first), sha);
    assert.deepEqual(await watchers(image), []);
  });
});

describe('a process that exits with writes in flight', () => {
  test('(d2) process.exit(0) while aio writes are in flight exits cleanly; the bytes stay', { timeout: 120_000 }, async () => {
    await exitsCleanly('exit-writes');
  });

  test('(d4) process.exit(0) while importDiff\'s native writer has writes in flight exits cleanly; the bytes stay',
    { timeout: 120_000 }, async () => {
      await exitsCleanly('exit-import');
    });
});

describe('a process that exits during a flatten', () => {
  test('(e) process.exit(0) cancels the flatten: the clone keeps its parent and its bytes', { timeout: 180_000 },
    async () => {
      // 4096 objects of 16 KiB: a flatten long enough to be caught mid-way.
      const size = 64 * MiB;
      const data = randomBytes(size);
      const parent = uniqueName('lc-parent');
      await pool.createImage(parent, size, { order: 14 });
      const child = uniqueName('lc-clone');
      try {
        const image = await pool.openImage(parent);
        await image.write(data, 0);
        await image.createSnapshot('base');
        await image.protectSnapshot('base');
        await image.close();
        await pool.clone({ pool, image: parent, snapshot: 'base' }, child, { order: 14 });
        const result = await runChild('exit-flatten', child);
        const sha = checkExit(result, 'exit-flatten');
        // Without the cancel, exit would have waited for the whole flatten
        // and the clone would have no parent left.
        const clone = await pool.openImage(child, { readOnly: true });
        try {
          const parentInfo = await clone.parent();
          assert.equal(parentInfo?.image, parent, 'the clone still has its parent');
          assert.equal(parentInfo?.snapshot, 'base');
          assert.equal(sha256(await clone.read(0, MiB)), sha, 'the child\'s own write is there');
          assert.ok((await clone.read(MiB, size - MiB)).equals(data.subarray(MiB)), 'the rest reads as the parent');
        } finally {
          await clone.close();
        }
      } finally {
        await dropDeadWatchers(child);
        await removeImageFully(pool, child).catch(() => undefined);
        await removeImageFully(pool, parent).catch(() => undefined);
      }
    });
});

describe('a worker thread terminated with writes in flight', () => {
  test('the process lives on, the image is closed with the worker, and what the worker wrote is whole 1 MiB writes',
    { timeout: 180_000 }, async () => {
      const size = 64 * MiB;
      const name = await newImage(size);
      for (let round = 0; round < 3; round++) {
        // Termination while the completions are on their way to the worker's environment.
        await terminateWhile(WRITE_WORKER, { image: name }, 'writing');
        assert.deepEqual(await watchers(name), [], 'the terminated worker left no watch');
      }
      await wholeWrites(name, size);
    });
});

describe('a worker thread terminated while it imports a diff stream', () => {
  test('the process lives on, the image is closed with the worker, and what it wrote is whole 1 MiB records',
    { timeout: 180_000 }, async () => {
      const size = 64 * MiB;
      const name = await newImage(size);
      for (let round = 0; round < 3; round++) {
        // Writes in flight from the worker's Buffers, and their releases on the way to its environment.
        await terminateWhile(IMPORT_WORKER, { image: name }, 'importing');
        assert.deepEqual(await watchers(name), [], 'the terminated worker left no watch');
      }
      assert.ok(await wholeWrites(name, size) > 0, 'some records were written before the worker was terminated');
    });
});

describe('a worker thread terminated during a transfer', () => {
  test('the process lives on, the target has no end snapshot, and a retry transfers every byte', { timeout: 180_000 },
    async () => {
      // Big enough that one-at-a-time copying reports progress from the middle.
      const size = 256 * MiB;
      const data = randomBytes(size);
      const sourceName = await newImage(size);
      const targetName = await newImage(MiB);
      const source = await pool.openImage(sourceName);
      await source.write(data, 0);
      await source.createSnapshot('s1');
      try {
        await terminateWhile(WORKER, { source: sourceName, snapshot: 's1', target: targetName }, 'progress');
        // What the terminated worker left open goes with its environment.
        assert.deepEqual(await watchers(targetName), []);
        const target = await pool.openImage(targetName);
        try {
          assert.equal(await target.snapshotExists('s1'), false, 'no end snapshot after the cancelled transfer');
          await transferDiff({ source, snapshot: 's1', target });
          assert.equal(await rbdExportSha256('a', `rbd/${targetName}@s1`), sha256(data));
        } finally {
          await target.close();
        }
      } finally {
        await source.close();
      }
    });
});

describe('a worker thread terminated while it exports a diff stream', () => {
  test('the process lives on, the image is closed with the worker, and an export after it reads every byte',
    { timeout: 180_000 }, async () => {
      const size = 64 * MiB;
      const data = randomBytes(size);
      const name = await newImage(size);
      const image = await pool.openImage(name);
      try {
        await image.write(data, 0);
        await image.createSnapshot('s1');
        const watching = (await watchers(name)).length;
        // Pieces are on their way to the worker's environment and copies on the thread pool.
        await terminateWhile(EXPORT_WORKER, { image: name, snapshot: 's1' }, 'reading');
        assert.equal((await watchers(name)).length, watching, 'the worker left no watch behind');
        const hash = createHash('sha256');
        await exportRaw(image, { snapshot: 's1', to: new Writable({ write(chunk: Buffer, _e, done) { hash.update(chunk); done(); } }) });
        assert.equal(hash.digest('hex'), sha256(data));
      } finally {
        await image.close();
      }
    });
});

describe('a transfer whose writes librbd never sends', () => {
  test('cancelled, it settles once its writes are given up on, everything closes and the process exits; nothing lands',
    { timeout: 180_000 }, async () => {
      const size = 8 * MiB;
      const sourceName = await newImage(size);
      const targetName = await newImage(size);
      {
        const source = await pool.openImage(sourceName);
        await source.write(randomBytes(size), 0);
        await source.close();
      }
      // Another client keeps the target's exclusive lock: librbd queues our writes until it is given up, never.
      const holder = spawn('/usr/bin/python3', [LOCK_HOLDER, info.conf, info.keyring, 'rbd', targetName],
        { stdio: ['pipe', 'pipe', 'inherit'] });
      const holderExited = once(holder, 'exit');
      try {
        const [first] = await Promise.race([once(holder.stdout, 'data'), holderExited.then(() => ['exited'])]) as [unknown];
        assert.equal(String(first).trim(), 'HOLDING', 'the lock holder took the lock');
        const result = await runFixture(CHILD, ['stuck-write'], {
          timeoutMs: CHILD_TIMEOUT_MS,
          env: { FIXTURE_CONF: info.conf, FIXTURE_KEYRING: info.keyring, FIXTURE_POOL: 'rbd', FIXTURE_IMAGE: targetName,
            FIXTURE_SOURCE: sourceName },
        });
        deadOwners.push(targetName);
        const details = inspect(result);
        // Returned from main with a librbd image it could not close: the process still ended.
        assert.equal(result.signal, null, details);
        assert.equal(result.code, 0, details);
        assert.match(result.stdout, /^LIFECYCLE-DONE stuck-write$/m, details);
        const stuck = /^LIFECYCLE-STUCK (\d+) (.*)$/m.exec(result.stdout);
        assert.ok(stuck, details);
        assert.match(stuck[2]!, /^CancelledError: copyImage .*cancelled .*write\(s\) to the target did not complete within 8000 ms after the transfer stopped.*\[ECANCELED\]$/);
        // Those writes would land whenever it got the lock back: the connection fenced itself.
        assert.match(stuck[2]!, /this connection fenced itself \(blocklisted its address \S+ for an hour\)/);
        const address = /blocklisted its address (\S+) for an hour/.exec(stuck[2]!)![1]!;
        assert.ok((await ceph('a', ['osd', 'blocklist', 'ls'])).includes(address), `${address} is on the OSD map's blocklist`);
        // The cancel after 1 s, then the 8 s drain: settled within 1.5x that.
        assert.ok(Number(stuck[1]) <= 1.5 * 9000, `settled after ${stuck[1]} ms`);
        const closed = /^LIFECYCLE-CLOSED (\d+)$/m.exec(result.stdout);
        assert.ok(closed && Number(closed[1]) <= 1.5 * 3000, `closing took ${closed?.[1]} ms`);
      } finally {
        holder.stdin.end();
        await holderExited;
      }
      // The writes librbd held died with the child: the target holds none of the source's bytes.
      assert.equal(await rbdExportSha256('a', `rbd/${targetName}`), sha256(Buffer.alloc(size)));
    });
});

describe('closing an image', () => {
  let image: Image;
  let name: string;
  let data: Buffer;
  const size = 32 * MiB;

  before(async () => {
    name = await newImage(size);
    data = randomBytes(size);
    image = await pool.openImage(name);
    await image.write(data, 0);
  });

  after(async () => {
    await image.close();
  });

  test('close while a read is in flight is a BusyError; once the read settles close works', { timeout: 120_000 },
    async () => {
      const target = await pool.openImage(name);
      const reading = target.read(0, size);
      await assert.rejects(target.close(), (e) => e instanceof BusyError && e.code === 'EBUSY' && e.errno === 16 &&
        e.operation === 'close' && e.resource === `rbd/${name}` &&
        /1 image operation\(s\) in flight \[EBUSY\]$/.test(e.message));
      await assert.rejects(target[Symbol.asyncDispose](), BusyError);
      // The refused close did not disturb the read.
      const read = await reading;
      assert.equal(read.length, size);
      assert.equal(sha256(read), sha256(data));
      await target.close();
      await assert.rejects(target.read(0, 4096), ClosedError);
    });

  test('close while a write is in flight is a BusyError and the write lands', { timeout: 120_000 }, async () => {
    const target = await pool.openImage(name);
    const patch = randomBytes(4 * MiB);
    const writing = target.write(patch, 8 * MiB);
    await assert.rejects(target.close(), (e) => e instanceof BusyError && /image operation\(s\) in flight/.test(e.message));
    await writing;
    patch.copy(data, 8 * MiB);
    assert.equal(sha256(await target.read(0, size)), sha256(data));
    await target.close();
    await target.createSnapshot('s').then(() => assert.fail('snapshot on a closed image'), (e: unknown) => {
      assert.ok(e instanceof ClosedError);
    });
    await image.createSnapshot('s');
    try {
      assert.equal(await rbdExportSha256('a', `rbd/${name}@s`), sha256(data));
    } finally {
      await image.removeSnapshot('s');
    }
  });

  test('every call on a closed image rejects with ClosedError; close again is harmless', async () => {
    const target = await pool.openImage(name);
    await target.close();
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['stat', () => target.stat()],
      ['read', () => target.read(0, 512)],
      ['write', () => target.write(Buffer.alloc(512), 0)],
      ['resize', () => target.resize(size)],
      ['flush', () => target.flush()],
      ['listSnapshots', () => target.listSnapshots()],
      ['createSnapshot', () => target.createSnapshot('nope')],
      ['parent', () => target.parent()],
      ['hasExtents', () => target.hasExtents()],
      ['getMetadata', () => target.getMetadata('k')],
    ];
    for (const [operation, call] of calls) {
      await assert.rejects(call(), (e) => e instanceof ClosedError && e.code === 'EBADF' && e.errno === 9 &&
        e.operation === operation && /image handle is closed \[EBADF\]$/.test(e.message) &&
        e.resource.startsWith(`rbd/${name}`), operation);
    }
    assert.equal(await target.close(), undefined);
    assert.equal(await target.close(), undefined);
    // Nothing happened to the image.
    assert.equal((await image.listSnapshots()).length, 0);
    assert.equal(sha256(await image.read(0, size)), sha256(data));
  });
});

describe('closing a pool', () => {
  test('close with an open image is a BusyError, and works once the image is closed', async () => {
    const own = await cluster.pool('rbd');
    const name = await newImage(MiB);
    const image = await own.openImage(name);
    await assert.rejects(own.close(), (e) => e instanceof BusyError && e.code === 'EBUSY' && e.operation === 'close' &&
      e.resource === 'rbd' && /1 image\(s\) still open; close them first \[EBUSY\]$/.test(e.message));
    // Still fully usable after the refusal.
    const bytes = randomBytes(8192);
    await image.write(bytes, 4096);
    assert.deepEqual(await image.read(4096, bytes.length), bytes);
    assert.ok((await own.listImages()).includes(name));
    await image.close();
    await own.close();
    await assert.rejects(own.listImages(), ClosedError);
  });

  test('close while a pool call is in flight is a BusyError', async () => {
    const own = await cluster.pool('rbd');
    const object = uniqueName('obj');
    const payload = randomBytes(MiB);
    const writing = own.writeObject(object, payload);
    await assert.rejects(own.close(), (e) => e instanceof BusyError && /1 pool operation\(s\) in flight/.test(e.message));
    await writing;
    try {
      assert.deepEqual(await own.readObject(object), payload);
    } finally {
      await own.removeObject(object);
    }
    await own.close();
  });

  test('every call on a closed pool rejects with ClosedError; close again is harmless', async () => {
    const own = await cluster.pool('rbd');
    await own.close();
    const name = uniqueName('closed');
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['listImages', () => own.listImages()],
      ['createImage', () => own.createImage(name, MiB)],
      ['removeImage', () => own.removeImage(name)],
      ['openImage', () => own.openImage(name)],
      ['readObject', () => own.readObject(name)],
      ['writeObject', () => own.writeObject(name, 'x')],
      ['removeObject', () => own.removeObject(name)],
      ['objectExists', () => own.objectExists(name)],
      ['imageExists', () => own.imageExists(name)],
    ];
    for (const [operation, call] of calls) {
      await assert.rejects(call(), (e) => e instanceof ClosedError && e.code === 'EBADF' &&
        /pool handle is closed \[EBADF\]$/.test(e.message) &&
        (e.operation === operation || (operation === 'imageExists' && e.operation === 'listImages')), operation);
    }
    await assert.rejects(pool.clone({ pool: own, image: 'x', snapshot: 's' }, name), ClosedError);
    assert.equal(await own.close(), undefined);
    // Nothing was created through the closed pool.
    assert.equal(await pool.imageExists(name), false);
    assert.equal(await pool.objectExists(name), false);
    // The cluster and its other pools are unaffected.
    assert.ok((await cluster.listPools()).includes('rbd'));
    const other = await newImage(MiB);
    assert.ok((await pool.listImages()).includes(other));
  });
});
