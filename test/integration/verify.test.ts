/**
 * Verified backups against a real cluster: every backup stores block
 * digests equal to those of `rbd export` of its source snapshot; verify
 * quick, deep, source and a sample pass on sound backups; a byte flipped
 * in a chain image's RADOS object is found by deep verify in exactly its
 * block and fails a restore with verify (whose new volume is removed); a
 * digests object that is missing, truncated or of an unknown version is a
 * DigestsError for verify and for a restore with verify, while a restore
 * without verify still works; an incremental after a parent without
 * digests reports its unknown blocks; restores with verify on the diff,
 * full-copy and in-place paths check their bytes; delete removes the
 * digests.
 *
 * Every data check compares sha256 of `rbd export` of the source snapshot
 * with `rbd export` of the restored volume.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import {
  CephError, DigestsError, InvalidArgumentError, VerificationError,
  type BackupEngine, type BackupResult, type Pool,
} from '../../lib/index.js';
import { digestsObjectName } from '../../lib/backup/naming.js';
import { readDigests } from '../../lib/backup/digests.js';
import { BACKUP_POOL, POOL, VolumeFixtures, snapshotSha, volumeSha, useBackupTestbed } from '../support/backup-fixtures.js';
import { rbdArgs, sha256 } from '../support/clusters.js';
import { exportedTable, flipByte } from '../support/digest-checks.js';
import { assertCephError } from '../support/checks.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 24 * MiB;

let volumes: Pool;
let backups: Pool;
let engine: BackupEngine;
let keepAll: BackupEngine;
let fx: VolumeFixtures;

useBackupTestbed((testbed) => ({ volumes, backups, engine, keepAll, fx } = testbed));

const execFileAsync = promisify(execFile);

/** A volume with data and three backups: full, then incrementals of 4 KiB writes, a discard and a larger write. */
async function threeBackups(t: TestContext, using: BackupEngine = keepAll): Promise<{ id: string; made: BackupResult[] }> {
  const id = await fx.newVolume(t, SIZE);
  await fx.writeRandom(id, [[0, 10 * MiB], [SIZE - 100 * KiB, 100 * KiB]]);
  const made = [await using.backup({ pool: POOL, volumeId: id })];
  await fx.writeRandom(id, [[5 * MiB + 4 * KiB, 4 * KiB], [13 * MiB, 4 * KiB], [20 * MiB + 123, 70 * KiB]]);
  made.push(await using.backup({ pool: POOL, volumeId: id }));
  await fx.withVolume(id, (image) => image.discard(2 * MiB + 5000, 300 * KiB));
  await fx.writeRandom(id, [[16 * MiB, 3 * MiB]]);
  made.push(await using.backup({ pool: POOL, volumeId: id }));
  return { id, made };
}

test('every backup stores the digests of its source snapshot\'s bytes; quick, deep, source and a sample pass', { timeout: 180_000 }, async (t) => {
  const { id, made } = await threeBackups(t);
  for (const backup of made) {
    assert.ok(backup.digests !== undefined, 'digests stored');
    assert.equal(backup.digests.unknownBlocks, 0);
    assert.equal(backup.digests.blocks, SIZE / Number(backup.digests.blockSize));
    const stored = await readDigests(backups, backup.record.id, backup.snapshot);
    const expected = await exportedTable('a', `${POOL}/volume-${id}@${backup.snapshot}`, backup.digests.blockSize);
    assert.ok(stored !== undefined && stored.table.entries.equals(expected.entries), `backup ${backup.mode}: digests of the exported bytes`);
    assert.equal(stored.header.pointDigest, backup.digests.pointDigest);

    const quick = await engine.verify(backup.record);
    assert.equal(quick.ok, true);
    assert.equal(quick.blocksChecked, 0);
    assert.equal(quick.bytesRead, 0n);
    const deep = await engine.verify(backup.record, { mode: 'deep' });
    assert.deepEqual({ ok: deep.ok, mismatches: deep.mismatches, checked: deep.blocksChecked }, { ok: true, mismatches: [], checked: deep.blocks });
    assert.ok(deep.bytesRead > 0n && deep.bytesRead <= BigInt(SIZE), `deep read ${deep.bytesRead} bytes`);
    const source = await engine.verify(backup.record, { mode: 'source', sourcePool: POOL });
    assert.equal(source.ok, true);
    assert.match(source.checked, new RegExp(`volume-${id}@`));
  }
  const sample = await engine.verify(made[2].record, { mode: 'deep', samplePercent: 10 });
  assert.equal(sample.ok, true);
  assert.equal(sample.blocksChecked, Math.ceil(sample.blocks / 10));
  await assertCephError(engine.verify(made[2].record, { mode: 'source' }), InvalidArgumentError, { code: 'EINVAL', message: /needs sourcePool/ });
  await assertCephError(engine.verify(made[2].record, { mode: 'quick', samplePercent: 5 }), InvalidArgumentError,
    { code: 'EINVAL', message: /samplePercent goes with mode deep or source/ });
});

test('a byte flipped in the chain image: deep verify finds exactly its block, a restore with verify fails and removes its volume', { timeout: 180_000 }, async (t) => {
  const { id, made } = await threeBackups(t);
  const newest = made[2];
  const blockSize = newest.digests!.blockSize;
  const at = 17 * MiB + 5 * KiB + 7;
  await flipByte('a', BACKUP_POOL, newest.baseImage, at);
  const deep = await engine.verify(newest.record, { mode: 'deep' });
  const start = (BigInt(at) / blockSize) * blockSize;
  assert.equal(deep.ok, false);
  assert.deepEqual(deep.mismatches, [{ offset: start, length: blockSize }]);
  const quick = await engine.verify(newest.record);
  assert.equal(quick.ok, true, 'quick reads no data');
  const whole = await engine.verify(newest.record, { mode: 'deep', samplePercent: 100 });
  assert.deepEqual(whole.mismatches, deep.mismatches);
  const source = await engine.verify(newest.record, { mode: 'source', sourcePool: POOL });
  assert.equal(source.ok, true, 'the source volume\'s snapshot is sound');

  const target = fx.targetId(t);
  const failed = await assertCephError(
    engine.restore({ backup: newest.record, target: { volume: { pool: POOL, id: target } }, verify: true }),
    VerificationError, { code: 'EIO', message: /differ from the backup's digests in 1 range/ });
  assert.deepEqual((failed as VerificationError).mismatches, deep.mismatches);
  assert.equal(await volumes.imageExists(`volume-${target}`), false, 'the volume the restore made is gone');
  const dir = await mkdtemp(join(tmpdir(), 'verify-flip-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await assertCephError(engine.restore({ backup: newest.record, target: { file: join(dir, 'flipped.raw') }, verify: true }),
    VerificationError, { code: 'EIO', message: /differ from the backup's digests in 1 range/ });
  assert.deepEqual(await readdir(dir), [], 'no file, not even a partial one');
  // Without verify the restore copies what the chain holds, flipped byte included.
  const plain = await engine.restore({ backup: newest.record, target: { volume: { pool: POOL, id: target } } });
  assert.equal(plain.verifiedBlocks, undefined);
  assert.notEqual(await volumeSha(target), await snapshotSha(id, newest.snapshot));
});

test('restores with verify on the diff, full-copy and in-place paths: every block compared, bytes exact', { timeout: 180_000 }, async (t) => {
  const { id, made } = await threeBackups(t);
  const blocks = made[1].digests!.blocks;
  const diffTarget = fx.targetId(t);
  const diff = await engine.restore({ backup: made[1].record, target: { volume: { pool: POOL, id: diffTarget } }, verify: true });
  assert.deepEqual({ path: diff.path, verified: diff.verifiedBlocks }, { path: 'diff', verified: blocks });
  assert.equal(await volumeSha(diffTarget), await snapshotSha(id, made[1].snapshot));

  // Into the volume restored above, which holds data: the full copy.
  const full = await engine.restore({ backup: made[2].record, target: { volume: { pool: POOL, id: diffTarget } }, force: true, verify: true });
  assert.deepEqual({ path: full.path, verified: full.verifiedBlocks }, { path: 'full', verified: blocks });
  assert.equal(await volumeSha(diffTarget), await snapshotSha(id, made[2].snapshot));

  await fx.writeRandom(id, [[MiB, MiB]]);
  const inPlace = await keepAll.restore({ backup: made[0].record, target: { volume: { pool: POOL, id } }, force: true, verify: true });
  assert.deepEqual({ path: inPlace.path, verified: inPlace.verifiedBlocks }, { path: 'in-place', verified: blocks });
  assert.equal(await volumeSha(id), await snapshotSha(id, made[0].snapshot));

  const dir = await mkdtemp(join(tmpdir(), 'verify-raw-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'restored.raw');
  const raw = await engine.restore({ backup: made[2].record, target: { file }, verify: true });
  assert.equal(raw.verifiedBlocks, blocks);
  assert.equal(sha256(await readFile(file)), await snapshotSha(id, made[2].snapshot));
  const chunks: Buffer[] = [];
  const streamed = await engine.restore({
    backup: made[1].record, verify: true,
    target: { stream: new Writable({ write(chunk: Buffer, _encoding, done) { chunks.push(chunk); done(); } }) },
  });
  assert.equal(streamed.verifiedBlocks, blocks);
  assert.equal(sha256(Buffer.concat(chunks)), await snapshotSha(id, made[1].snapshot));
  await assertCephError(engine.restore({ backup: made[0].record, target: { volume: { pool: POOL, id: fx.targetId(t) } }, instant: true, verify: true }),
    InvalidArgumentError, { code: 'EINVAL', message: /instant restore copies nothing/ });
});

test('a raw restore whose backup snapshot goes while it runs fails (EIO) and never ends its stream', { timeout: 180_000 }, async (t) => {
  const { made } = await threeBackups(t);
  const backup = made[1];
  let removed = false;
  let ended = false;
  const stream = new Writable({
    write(_chunk: Buffer, _encoding, done) {
      if (removed) return done();
      removed = true;
      // The backup's snapshot leaves its chain image while the restore reads it.
      rbdArgs('a', ['snap', 'rm', `${BACKUP_POOL}/${backup.baseImage}@${backup.snapshot}`])
        .then((args) => execFileAsync('rbd', args)).then(() => done(), done);
    },
    final(done) {
      ended = true;
      done();
    },
  });
  await assert.rejects(engine.restore({ backup: backup.record, target: { stream } }), (caught: unknown) => {
    assert.ok(caught instanceof CephError, String(caught));
    assert.ok(['EIO', 'ENOENT'].includes(caught.code), `${caught.code}: ${caught.message}`);
    t.diagnostic(`${caught.code}: ${caught.message}`);
    return true;
  });
  assert.equal(removed, true);
  assert.equal(ended, false, 'the stream was not ended as if complete');
});

test('digests missing, truncated or of an unknown version: DigestsError for verify and restore with verify; restore without verify works', { timeout: 180_000 }, async (t) => {
  const { id, made } = await threeBackups(t);
  const backup = made[1];
  const name = digestsObjectName(backup.record.id);
  const good = await backups.readObject(name);
  const newline = good.indexOf(0x0a);
  const header = JSON.parse(good.subarray(0, newline).toString()) as Record<string, unknown>;
  const variants: Array<[string, Buffer | undefined, RegExp]> = [
    ['missing', undefined, /no digests object/],
    ['truncated', good.subarray(0, good.length - 8), /truncated/],
    ['unknown version', Buffer.concat([Buffer.from(`${JSON.stringify({ ...header, version: 9 })}\n`), good.subarray(newline + 1)]), /version 9/],
    ['a damaged table', Buffer.concat([good.subarray(0, good.length - 1), Buffer.from([good.at(-1)! ^ 1])]), /point digest/],
    ['a fractional block size', Buffer.concat([Buffer.from(`${JSON.stringify({ ...header, blockSize: 65536.5 })}\n`), good.subarray(newline + 1)]),
      /lacks size, blockSize/],
    ['a block size not a power of two', Buffer.concat([Buffer.from(`${JSON.stringify({ ...header, blockSize: 3 })}\n`), good.subarray(newline + 1)]),
      /block size 3 is not a power of two/],
  ];
  for (const [what, data, detail] of variants) {
    if (data === undefined) await backups.removeObject(name);
    else await backups.writeObject(name, data);
    await assertCephError(engine.verify(backup.record, { mode: 'deep' }), DigestsError, { code: 'EBADMSG', message: detail });
    const target = fx.targetId(t);
    await assertCephError(engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } }, verify: true }),
      DigestsError, { code: 'EBADMSG', message: detail });
    assert.equal(await volumes.imageExists(`volume-${target}`), false, `${what}: nothing created`);
    await engine.restore({ backup: backup.record, target: { volume: { pool: POOL, id: target } } });
    assert.equal(await volumeSha(target), await snapshotSha(id, backup.snapshot), `${what}: restore without verify`);
  }
  await backups.writeObject(name, good);
  assert.equal((await engine.verify(backup.record, { mode: 'deep' })).ok, true, 'the original digests verify again');
});

test('an incremental after a parent without digests: its unchanged blocks are unknown, verify says how many; delete removes digests', { timeout: 180_000 }, async (t) => {
  const id = await fx.newVolume(t, SIZE);
  await fx.writeRandom(id, [[0, 8 * MiB]]);
  const full = await keepAll.backup({ pool: POOL, volumeId: id });
  await backups.removeObject(digestsObjectName(full.record.id));
  await fx.writeRandom(id, [[MiB + 100, 10 * KiB]]);
  const next = await keepAll.backup({ pool: POOL, volumeId: id });
  assert.equal(next.mode, 'incremental');
  assert.ok(next.digests !== undefined);
  const known = next.digests.blocks - next.digests.unknownBlocks;
  assert.ok(known >= 1 && known <= 2, `only the changed block(s) are known: ${known}`);
  const deep = await keepAll.verify(next.record, { mode: 'deep' });
  assert.deepEqual({ ok: deep.ok, unknown: deep.blocksUnknown, checked: deep.blocksChecked }, { ok: true, unknown: next.digests.unknownBlocks, checked: known });

  const deleted = await keepAll.delete(next.record);
  assert.equal(deleted.removedDigests, true);
  assert.equal(await backups.objectExists(digestsObjectName(next.record.id)), false);
  const none = await keepAll.backup({ pool: POOL, volumeId: id, full: true });
  const off = await new (keepAll.constructor as new (c: object) => BackupEngine)({ source: keepAll.config.source, digests: false })
    .backup({ pool: POOL, volumeId: id });
  assert.equal(off.digests, undefined);
  assert.equal(await backups.objectExists(digestsObjectName(off.record.id)), false);
  assert.ok(none.digests !== undefined && none.digests.unknownBlocks === 0);
});
