/**
 * Hostile arguments to the engine's public functions (transferDiff,
 * copyImage, convergeToSnapshot, hashImage, exportDiff, importDiff,
 * exportRaw, restoreChunked, checkChunkedBackup, cloneDepth,
 * flattenIfDeeperThan, DigestTable, digestBlockFor) and to the options of
 * Cluster, Pool and Image: every field of their options, and each
 * positional argument, given every kind of wrong value (the binding's
 * sizes, offsets and names have their own seeded fuzz:
 * test/fixtures/argument-fuzz-child.ts).
 * Each call settles, with success or a CephError, never a TypeError or
 * RangeError from inside the operation; the wrong kinds of argument each
 * get an InvalidArgumentError saying what is accepted. Afterwards the
 * source snapshot's bytes are what was written (rbd export's sha256).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { randomUUID } from 'node:crypto';
import {
  BackupEngine, CephError, Cluster, checkChunkedBackup, cloneDepth, convergeToSnapshot, copyImage, DigestTable, digestBlockFor, exportDiff,
  exportRaw, flattenIfDeeperThan, hashImage, importDiff, InvalidArgumentError, restoreChunked, transferDiff,
  type Image, type Pool,
} from '../../lib/index.js';
import { connect, rbdExportSha256, sha256, testCluster, uniqueName } from '../support/clusters.js';
import { removeImageFully } from '../support/scratch.js';
import { assertCephError } from '../support/checks.js';

const MiB = 1 << 20;
const SIZE = 8n * BigInt(MiB);
const WRITTEN = Buffer.alloc(MiB, 7);
/** Every kind of wrong value: absent, null, numbers of every sort, wrong types. */
const BAD: unknown[] = [undefined, null, 0, -1, 1.5, Number.NaN, 1n << 64n, -1n, 'x', '', {}, [], () => 1, Symbol('s'), true];

let cluster: Cluster;
let pool: Pool;
let sourceName: string;
let targetName: string;
let source: Image;
let target: Image;
let root: string;

before(async () => {
  cluster = await connect('a');
  pool = await cluster.pool('rbd');
  sourceName = uniqueName('args-src');
  targetName = uniqueName('args-tgt');
  await pool.createImage(sourceName, SIZE);
  await pool.createImage(targetName, SIZE);
  source = await pool.openImage(sourceName);
  await source.write(WRITTEN, 0);
  await source.createSnapshot('p1');
  target = await pool.openImage(targetName);
  root = await mkdtemp(join(tmpdir(), 'engine-args-'));
});

after(async () => {
  await source?.close();
  await target?.close();
  for (const name of [sourceName, targetName]) await removeImageFully(pool, name).catch(() => undefined);
  await pool?.close();
  await cluster?.close();
  await rm(root, { recursive: true, force: true });
});

function shown(value: unknown): string {
  if (typeof value === 'symbol' || typeof value === 'function') return typeof value;
  if (typeof value === 'bigint') return `${value}n`;
  return value === undefined ? 'undefined' : JSON.stringify(value);
}

const sink = (): Writable => new Writable({ write: (_chunk, _encoding, done) => done() });

/** Runs call (a promise, a value, or a stream or generator to drain) and returns what it ended with when that is not a CephError. */
async function untyped(call: () => unknown): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const settled = (async () => {
      const result = await call();
      // A stream or a generator (Image.diff) fails as it is read.
      if (typeof (result as Partial<AsyncIterable<unknown>> | null)?.[Symbol.asyncIterator] === 'function') {
        for await (const item of result as AsyncIterable<unknown>) void item;
      }
    })();
    await Promise.race([settled, new Promise((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error('did not settle within 60 s')), 60_000);
    })]);
    return undefined;
  } catch (error) {
    return error instanceof CephError ? undefined : `${(error as Error)?.constructor?.name}: ${String((error as Error)?.message)}`;
  } finally {
    clearTimeout(timer);
  }
}

/** The calls of the matrix for one wrong value, by label. */
function calls(v: unknown): Array<[string, () => unknown]> {
  const transfer = (field: string, extra: Record<string, unknown>): [string, () => unknown] => [`transferDiff ${field}`, async () => {
    try {
      return await transferDiff({ source, target, snapshot: 'p1', ...extra } as never);
    } finally {
      if (await target.snapshotExists('p1')) await target.removeSnapshot('p1');
    }
  }];
  const table = DigestTable.zeros(SIZE, 64n << 10n);
  return [
    ['hashImage options', () => hashImage(v as never)],
    ...['image', 'snapshot', 'blockSize', 'length', 'blocks', 'concurrency', 'memoryBytes', 'signal', 'onProgress'].map((field) =>
      [`hashImage ${field}`, () => hashImage({ image: source, snapshot: 'p1', blockSize: 64n << 10n, [field]: v } as never)] as [string, () => unknown]),
    ['transferDiff options', () => transferDiff(v as never)],
    ...['source', 'target', 'snapshot', 'fromSnapshot', 'wholeObject', 'digests', 'memoryBytes', 'checkpointMs', 'signal', 'onProgress']
      .map((field) => transfer(field, { [field]: v })),
    transfer('digests.table', { digests: { table: v } }),
    transfer('digests.extraBlocks', { digests: { table, extraBlocks: v } }),
    ['copyImage options', () => copyImage(v as never)],
    ...['source', 'target', 'snapshot', 'chunkSize', 'skipZeroes', 'discardExcess', 'digests', 'signal'].map((field) =>
      [`copyImage ${field}`, () => copyImage({ source, target, snapshot: 'p1', [field]: v } as never)] as [string, () => unknown]),
    ['convergeToSnapshot options', () => convergeToSnapshot(v as never)],
    ...['source', 'target', 'snapshot', 'common'].map((field) =>
      [`convergeToSnapshot ${field}`, () => convergeToSnapshot({ source, target, snapshot: 'p1', common: 'p1', [field]: v } as never)] as
        [string, () => unknown]),
    ['exportDiff image', () => exportDiff(v as never, { snapshot: 'p1' })],
    ['exportDiff options', () => exportDiff(source, v as never)],
    ...['snapshot', 'fromSnapshot', 'wholeObject', 'concurrency', 'signal'].map((field) =>
      [`exportDiff ${field}`, () => exportDiff(source, { snapshot: 'p1', [field]: v } as never)] as [string, () => unknown]),
    ['importDiff stream', () => importDiff(v as never, target)],
    ['importDiff target', () => importDiff(Readable.from([Buffer.from('x')]), v as never)],
    ['importDiff options', () => importDiff(Readable.from([Buffer.from('rbd diff v1\n')]), target, v as never)],
    ['exportRaw image', () => exportRaw(v as never, { to: sink() })],
    ['exportRaw options', () => exportRaw(source, v as never)],
    // A file name lands in the scratch directory, not the working one.
    ['exportRaw to', () => exportRaw(source, { to: typeof v === 'string' && v !== '' ? join(root, v) : v } as never)],
    ['exportRaw snapshot', () => exportRaw(source, { to: sink(), snapshot: v } as never)],
    ['exportRaw overwrite', () => exportRaw(source, { to: join(root, 'raw'), overwrite: v } as never)],
    ['exportRaw digestBlock', () => exportRaw(source, { to: sink(), snapshot: 'p1', digestBlock: v } as never)],
    ['exportRaw beforeFinish', () => exportRaw(source, { to: sink(), beforeFinish: v } as never)],
    ['digestBlockFor size', () => digestBlockFor(v as never, 4n << 20n)],
    ['digestBlockFor ioSize', () => digestBlockFor(SIZE, v as never)],
    ['DigestTable.zeros size', () => DigestTable.zeros(v as never, 64n << 10n)],
    ['DigestTable.zeros blockSize', () => DigestTable.zeros(SIZE, v as never)],
    ['new DigestTable entries', () => new DigestTable(SIZE, 64n << 10n, v as never)],
    ['DigestTable.compare', () => table.compare(v as never)],
    ['cloneDepth image', () => cloneDepth(v as never)],
    ['flattenIfDeeperThan image', () => flattenIfDeeperThan(v as never, 3)],
    ['flattenIfDeeperThan maxDepth', () => flattenIfDeeperThan(source, v as never)],
    ['checkChunkedBackup location', () => checkChunkedBackup(v as never)],
    ['restoreChunked options', () => restoreChunked(v as never)],
    ...['root', 'backupId', 'container', 'prefix', 'target', 'targetIsZero', 'checked', 'signal'].map((field) =>
      [`restoreChunked ${field}`, () => restoreChunked({ root, backupId: 'b1', target, [field]: v } as never)] as [string, () => unknown]),
  ];
}

/** The option objects and loosely typed arguments of Cluster, Pool and Image, for one wrong value. */
async function bindingCalls(v: unknown, object: string): Promise<Array<[string, () => unknown]>> {
  const { conf, keyring } = (await testCluster('a')).info;
  const scratchImage = `${sourceName}-c`;
  const dropScratch = async (): Promise<void> => {
    if (await pool.imageExists(scratchImage)) await pool.removeImage(scratchImage);
  };
  return [
    ['Cluster.connect options', () => Cluster.connect(v as never)],
    ...['conf', 'keyring', 'user', 'monHost', 'cluster', 'key', 'timeoutMs', 'options'].map((field) =>
      [`Cluster.connect ${field}`, async () => (await Cluster.connect({ conf, keyring, timeoutMs: 5000, [field]: v })).close()] as
        [string, () => unknown]),
    ['Cluster.pool name', () => cluster.pool(v as never)],
    ['Cluster.pool namespace', async () => (await cluster.pool('rbd', v as never)).close()],
    ['Pool.createImage options', async () => {
      try {
        await pool.createImage(scratchImage, MiB, v as never);
      } finally {
        await dropScratch();
      }
    }],
    ['Pool.openImage options', async () => (await pool.openImage(sourceName, v as never)).close()],
    ['Pool.openImage readOnly', async () => (await pool.openImage(sourceName, { readOnly: v } as never)).close()],
    ['Pool.clone options', async () => {
      try {
        await pool.clone({ pool, image: sourceName, snapshot: 'p1' }, scratchImage, v as never);
      } finally {
        await dropScratch();
      }
    }],
    ['Pool.writeObject options', () => pool.writeObject(object, Buffer.from('a'), v as never)],
    ['Pool.writeObject exclusive', () => pool.writeObject(object, Buffer.from('a'), { exclusive: v } as never)],
    ['Pool.lockObject lock', () => pool.lockObject(object, v as never)],
    ['Pool.unlockObject lock', () => pool.unlockObject(object, v as never)],
    ['Image.diff options', () => source.diff(v as never)],
    ...['wholeObject', 'includeParent', 'offset', 'length', 'fromSnapshot'].map((field) =>
      [`Image.diff ${field}`, () => source.diff({ [field]: v } as never)] as [string, () => unknown]),
    ['Image.flatten options', () => source.flatten(v as never)],
    ['Image.listMetadata prefix', () => source.listMetadata(v as never)],
  ];
}

test('every wrong value in every argument: success or a CephError, never an error from inside', { timeout: 1_800_000 }, async (t) => {
  const failures: string[] = [];
  let count = 0;
  const object = uniqueName('args-obj');
  try {
    for (const value of BAD) {
      for (const [label, call] of [...calls(value), ...await bindingCalls(value, object)]) {
        count++;
        const outcome = await untyped(call);
        if (outcome !== undefined) failures.push(`${label} = ${shown(value)}: ${outcome}`);
      }
    }
  } finally {
    if (await pool.objectExists(object)) await pool.removeObject(object);
  }
  t.diagnostic(`${count} calls`);
  assert.deepEqual(failures, []);
  assert.equal(await rbdExportSha256('a', `rbd/${sourceName}@p1`),
    sha256(Buffer.concat([WRITTEN, Buffer.alloc(Number(SIZE) - MiB)])), 'the source snapshot holds what was written');
});

test('the wrong kinds of argument are InvalidArgumentErrors naming what is accepted', { timeout: 120_000 }, async () => {
  const refused = (promise: () => Promise<unknown>, message: RegExp) =>
    assertCephError(Promise.resolve().then(promise), InvalidArgumentError, { code: 'EINVAL', message });
  await refused(() => transferDiff(null as never), /transferDiff arguments: options must be an object, got null/);
  await refused(() => transferDiff({ source: {}, target, snapshot: 'p1' } as never),
    /options.source must be an Image \(from Pool.openImage\), got an object/);
  await refused(() => copyImage({ source, target: 'rbd/x', snapshot: 'p1' } as never), /options.target must be an Image.*got "rbd\/x"/);
  await refused(() => transferDiff({ source, target, snapshot: 'p1', signal: {} } as never), /signal must be an AbortSignal, got an object/);
  await refused(() => transferDiff({ source, target, snapshot: 'p1', onProgress: 5 } as never), /onProgress must be a function, got 5/);
  await refused(() => transferDiff({ source, target, snapshot: 'p1', digests: { table: [] } } as never),
    /options.digests.table must be a DigestTable, got an array/);
  await refused(() => hashImage({ image: source, snapshot: 'p1', blockSize: 1n }),
    /options.blockSize must be a bigint power of two from 4096 to 4194304 bytes, got 1n/);
  await refused(() => hashImage({ image: source, snapshot: 'p1', blockSize: 65536 as never }), /got 65536$|got 65536 /);
  await refused(() => hashImage({ image: source, snapshot: 'p1', blockSize: 64n << 10n, blocks: [1] as never }),
    /blocks must be an array of block indexes \(bigints\)/);
  await refused(() => importDiff(5 as never, target), /stream must be a Readable or an async iterable of Buffers, got 5/);
  await refused(() => exportRaw(source, { to: sink(), snapshot: 'p1', digestBlock: 3n }), /options.digestBlock must be a bigint power of two/);
  await refused(() => restoreChunked({ root, backupId: 'b1', target: true } as never),
    /target must be an Image, \{ file, size, overwrite\? \} or \{ stream, size \} \(size a bigint\), got true/);
  await refused(() => restoreChunked({ root, backupId: 'b1', target, checked: { backups: ['b1'] } } as never),
    /checked must be what checkChunkedBackup returned/);
  await refused(() => cloneDepth(undefined as never), /image must be an Image \(from Pool.openImage\), got undefined/);
  await refused(async () => source.flatten(null as never), /flatten arguments: options must be an object, got null/);
  await refused(() => copyImage({ source, target, snapshot: 'p1', skipZeroes: 'false' } as never),
    /skipZeroes must be true or false, got "false"/);
  await refused(() => restoreChunked({ root, backupId: 'b1', target, targetIsZero: 'no' } as never),
    /targetIsZero must be true or false, got "no"/);
  await refused(() => exportRaw(source, { to: join(root, 'raw'), overwrite: 1 } as never), /overwrite must be true or false, got 1/);
  const engine = new BackupEngine({ source: cluster, backupPool: 'backups' });
  await refused(() => engine.prune(randomUUID(), 'latest1', { dryrun: true } as never),
    /prune arguments: options has no option "dryrun" \(did you mean dryRun\?\); it takes dryRun, sourcePool, backupPath, now, timeoutMs/);
  await refused(() => engine.gc({ dryRun: true, pool: 'rbd' } as never), /gc arguments: options has no option "pool"; it takes dryRun, sourcePool, timeoutMs/);
  await refused(() => engine.delete({} as never, { withdependents: true } as never), /did you mean withDependents\?/);
  await refused(() => engine.restore({ backup: {}, target: {}, forse: true } as never), /the restore request has no option "forse"/);
  await refused(() => Cluster.connect({ user: 5 } as never), /connect arguments: user must be a string, got 5/);
  const secret = 12345678;
  const error = await refused(() => Cluster.connect({ key: secret } as never), /key must be a string, got a number/);
  assert.ok(!error.message.includes(String(secret)), 'a key of the wrong type is not shown');
  await refused(() => pool.lockObject('o', undefined as never), /lockObject arguments: lock must be an object, got undefined/);
  await refused(() => cluster.pool('rbd', Symbol('ns') as never), /namespace name must be a string, got symbol/);
  assert.throws(() => exportDiff({} as never, { snapshot: 'p1' }), InvalidArgumentError, 'refused at once, not as the stream\'s error');
});

test('a callback of the caller\'s that throws: the operation stops, leaves nothing, and rejects with that very error', { timeout: 300_000 }, async () => {
  class Mine extends Error {}
  let calls = 0;
  const thrower = (): never => {
    calls++;
    throw new Mine('stop here');
  };
  // Progress comes every 100 ms at most: 256 MiB moved 4 MiB at a time lasts longer than that.
  const volumeId = randomUUID();
  const size = 256 * MiB;
  const data = Buffer.concat(Array.from({ length: size / (4 * MiB) }, (_, i) => Buffer.alloc(4 * MiB, i + 1)));
  await pool.createImage(`volume-${volumeId}`, size);
  const slow = { concurrency: 1, memoryBytes: 4 * MiB };
  const engine = new BackupEngine({ source: cluster, backupPool: 'backups', ioConcurrency: 1, memoryBytes: 4 * MiB });
  const into = uniqueName('args-into');
  await pool.createImage(into, size);
  try {
    const volume = await pool.openImage(`volume-${volumeId}`);
    await volume.write(data, 0);
    await volume.createSnapshot('whole');
    const intoImage = await pool.openImage(into);
    try {
      await assert.rejects(transferDiff({ source: volume, target: intoImage, snapshot: 'whole', onProgress: thrower, ...slow }),
        (error: unknown) => error instanceof Mine);
      assert.equal(await intoImage.snapshotExists('whole'), false, 'the end snapshot is made only by a transfer that completed');
    } finally {
      await intoImage.close();
      await volume.removeSnapshot('whole');
      await volume.close();
    }
    assert.equal(calls, 1, 'the callback was called once, and the transfer stopped');
    await assert.rejects(engine.backup({ pool: 'rbd', volumeId, onProgress: thrower }), (error: unknown) => error instanceof Mine);
    assert.equal(calls, 2);
    assert.deepEqual(await engine.listBackups(volumeId), [], 'no backup stands');
    const dry = await engine.gc({ sourcePool: 'rbd', dryRun: true });
    const mentions = (names: string[]) => names.filter((n) => n.includes(volumeId));
    assert.deepEqual([mentions(dry.removedImages), mentions(dry.removedSnapshots)], [[], []], 'nothing of it is left for gc');
    // And the volume still backs up, its bytes those written.
    const made = await engine.backup({ pool: 'rbd', volumeId });
    const restoredId = randomUUID();
    await engine.restore({ backup: made.record, target: { volume: { pool: 'rbd', id: restoredId } } });
    assert.equal(await rbdExportSha256('a', `rbd/volume-${restoredId}`), sha256(data));
    await engine.delete(made.record, { sourcePool: 'rbd' });
    await removeImageFully(pool, `volume-${restoredId}`);
  } finally {
    await removeImageFully(pool, `volume-${volumeId}`).catch(() => undefined);
    await removeImageFully(pool, into).catch(() => undefined);
  }
});
