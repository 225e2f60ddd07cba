/**
 * A backup's sha256file without a cluster: written as its digests come
 * (Sha256FileWriter) byte for byte as Cinder's json.dumps writes it, read
 * back front to back (Sha256FileReader) whatever its JSON layout, with
 * every damage a typed error naming the file, and an incremental's list
 * (Sha256Update): the parent's with the blocks read replaced.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pythonJson, pythonTime, sha256Name, type ChunkedBackupFacts } from '../../lib/files/chunked-layout.js';
import { Sha256FileReader } from '../../lib/files/sha256-file-reader.js';
import { Sha256FileWriter } from '../../lib/files/sha256-file-writer.js';
import { Sha256Update } from '../../lib/files/sha256-update.js';
import { CephError } from '../../lib/ceph/errors.js';
import { withTempDir } from '../support/temp-dir.js';
import { ChunkedBackupError } from '../../lib/files/errors.js';

const facts: ChunkedBackupFacts = {
  backupId: '51e2c303', volumeId: 'v1', displayName: 'nightly é "]}[{', displayDescription: null, createdAt: new Date('2026-11-30T12:34:56.789Z'),
};

const withDir = (use: (dir: string) => Promise<void>): Promise<void> => withTempDir('rbd-backup-sha256-', use);

const digestsOf = (count: number): Buffer => randomBytes(count * 32);
const hexList = (digests: Buffer): string[] => Array.from({ length: digests.length / 32 }, (_, i) => digests.toString('hex', i * 32, i * 32 + 32));

/** The document as Cinder's _write_sha256file makes it (sorted keys, indent 2). */
function cinderDocument(blockSize: number, sha256s: string[], of = facts): string {
  return pythonJson({
    version: '1.0.0', backup_id: of.backupId, volume_id: of.volumeId, backup_name: of.displayName,
    backup_description: of.displayDescription, created_at: pythonTime(of.createdAt), chunk_size: blockSize, sha256s,
  });
}

async function written(dir: string, digests: Buffer, pieces: number[], of = facts): Promise<string> {
  const writer = await Sha256FileWriter.open(dir, 'p', of, 32768, 'backup');
  let at = 0;
  for (const n of pieces) {
    await writer.append(digests.subarray(at * 32, (at + n) * 32));
    at += n;
  }
  assert.deepEqual(await readdir(dir).then((names) => names.filter((n) => n === sha256Name('p'))), [], 'not named before name()');
  await writer.end();
  await writer.name();
  return readFile(join(dir, sha256Name('p')), 'utf8');
}

async function readAll(path: string, step: number): Promise<{ blockSize: number; digests: Buffer }> {
  const reader = await Sha256FileReader.open(path, 'backup');
  try {
    const parts: Buffer[] = [];
    const out = Buffer.alloc(step * 32);
    for (let got; (got = await reader.read(step, out, 'backup')) > 0;) parts.push(Buffer.from(out.subarray(0, got * 32)));
    await reader.finish('backup');
    return { blockSize: reader.blockSize, digests: Buffer.concat(parts) };
  } finally {
    await reader.close();
  }
}

test('the writer writes Cinder\'s document byte for byte, digests given in any pieces, none at all included', () => withDir(async (dir) => {
  const digests = digestsOf(10_000);
  assert.equal(await written(dir, digests, [1, 4999, 0, 5000]), cinderDocument(32768, hexList(digests)));
  await rm(join(dir, sha256Name('p')));
  assert.equal(await written(dir, Buffer.alloc(0), []), cinderDocument(32768, []));
  // A name and a description equal to the mark the frame is cut at.
  const marked = { ...facts, displayName: '@VALUE@', displayDescription: '@SHA256S@' };
  await rm(join(dir, sha256Name('p')));
  assert.equal(await written(dir, digests.subarray(0, 64), [2], marked), cinderDocument(32768, hexList(digests.subarray(0, 64)), marked));
}));

test('the reader reads back what the writer wrote, across its reads of the file, in steps of any size', () => withDir(async (dir) => {
  const digests = digestsOf(10_000); // ~730 KB: several of the reader's reads
  await written(dir, digests, [10_000]);
  for (const step of [1, 7, 8192, 20_000]) {
    const back = await readAll(join(dir, sha256Name('p')), step);
    assert.equal(back.blockSize, 32768);
    assert.ok(back.digests.equals(digests), `step ${step}`);
  }
}));

test('the reader takes any JSON layout with chunk_size before the sha256s; strings with escapes and brackets are skipped whole', () => withDir(async (dir) => {
  const digests = digestsOf(3);
  const path = join(dir, 'compact');
  // Python's json.dumps without indent or sorting, as another writer might make it.
  await writeFile(path, `{"backup_name": "a \\"]\\" {x}", "meta": {"k": [1, {"n": null}]}, "chunk_size":4096,"sha256s":[${hexList(digests).map((h) => `"${h}"`).join(',')}]\r\n,"version":"1.0.0" }\n`);
  const back = await readAll(path, 2);
  assert.equal(back.blockSize, 4096);
  assert.ok(back.digests.equals(digests));
}));

test('a damaged sha256file is a typed error naming the file and saying what is wrong', () => withDir(async (dir) => {
  const digests = digestsOf(4);
  const good = cinderDocument(32768, hexList(digests));
  const path = join(dir, 'p_sha256file');
  const fails = async (text: string, pattern: RegExp): Promise<void> => {
    await writeFile(path, text);
    await assert.rejects(readAll(path, 3), (e: unknown) => e instanceof ChunkedBackupError && e.code === 'EBADMSG' && pattern.test(e.message)
      && e.message.includes(path), `${pattern}`);
  };
  await fails(good.slice(0, good.indexOf('"sha256s"') + 20), /the file ends inside the list of sha256s|expected/);
  await fails(good.slice(0, -60), /expected|truncated/);
  await fails(good.slice(0, 30), /truncated|expected/);
  await fails(good.replace(/"[0-9a-f]{64}"/, '"xyz"'), /sha256 0 is not 64 hex digits/);
  await fails(good.replace(/"([0-9a-f]{64})"/, (_, h: string) => `"${h.toUpperCase()}"`), /sha256 0 is not 64 hex digits/);
  await fails(good.replace('"1.0.0"', '"2.0.0"'), /version "2.0.0"; only 1.0.0 is known/);
  await fails(`${good}x`, /data after the document/);
  await fails('[]', /expected a JSON object/);
  await fails('{"sha256s": [], "chunk_size": 32768, "version": "1.0.0"}', /no positive integer chunk_size before the sha256s/);
  await fails('{"chunk_size": 32768, "version": "1.0.0"}', /no list of sha256s/);
  await fails('{"chunk_size": 32768, "sha256s": [1], "version": "1.0.0"}', /sha256 0 is not a string/);
  await rm(path);
  await assert.rejects(Sha256FileReader.open(path, 'backup'), (e: unknown) => e instanceof CephError && e.code === 'ENOENT' && e.message.includes(path));
}));

test('an incremental\'s list: the parent\'s, the blocks read replaced; each says whether it changed; a parent of another count fails typed', () => withDir(async (dir) => {
  const parentDigests = digestsOf(10);
  const parentPath = join(dir, 'parent');
  await writeFile(parentPath, cinderDocument(32768, hexList(parentDigests)));
  const run = async (count: number, takes: Array<[number, Buffer]>): Promise<{ flags: number[][]; text: string }> => {
    const out = join(dir, 'out');
    await rm(out, { recursive: true, force: true });
    await mkdir(out);
    const writer = await Sha256FileWriter.open(out, 'p', facts, 32768, 'backup');
    const update = new Sha256Update(writer, await Sha256FileReader.open(parentPath, 'backup'), count, 'backup');
    const flags: number[][] = [];
    try {
      for (const [first, digests] of takes) flags.push([...await update.take(first, digests)]);
      await update.end();
      await writer.name();
    } catch (error) {
      await writer.abandon();
      throw error;
    }
    return { flags, text: await readFile(join(out, sha256Name('p')), 'utf8') };
  };
  const changed2 = createHash('sha256').update('new').digest();
  const same3 = parentDigests.subarray(3 * 32, 4 * 32);
  const changed7 = createHash('sha256').update('other').digest();
  const { flags, text } = await run(10, [[2, Buffer.concat([changed2, same3])], [7, changed7]]);
  assert.deepEqual(flags, [[1, 0], [1]]);
  const expected = Buffer.from(parentDigests);
  changed2.copy(expected, 2 * 32);
  changed7.copy(expected, 7 * 32);
  assert.equal(text, cinderDocument(32768, hexList(expected)));
  await assert.rejects(run(11, [[2, changed2]]), (e: unknown) => e instanceof ChunkedBackupError && /lists 10 sha256s, the volume has 11 blocks/.test(e.message));
  await assert.rejects(run(9, [[2, changed2]]), (e: unknown) => e instanceof ChunkedBackupError && /lists more than 9 sha256s/.test(e.message));
  await assert.rejects(run(10, [[5, changed2], [4, changed7]]), RangeError);
  assert.deepEqual((await readdir(join(dir, 'out'))), [], 'a failed list leaves no file');
}));

test('memory stays bounded: a list of a million blocks (a 32 GiB volume, a 72 MB sha256file) is written and merged in a window', (t) => withDir(async (dir) => {
  const count = 1_000_000;
  global.gc?.();
  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 5);
  try {
    await mkdir(join(dir, 'full'));
    const fullWriter = await Sha256FileWriter.open(join(dir, 'full'), 'p', facts, 32768, 'backup');
    const full = new Sha256Update(fullWriter, undefined, count, 'backup');
    const piece = randomBytes(128 * 32);
    for (let first = 0; first < count; first += 128) await full.take(first, piece.subarray(0, Math.min(128, count - first) * 32));
    await full.end();
    await fullWriter.name();
    await mkdir(join(dir, 'incr'));
    const writer = await Sha256FileWriter.open(join(dir, 'incr'), 'p', facts, 32768, 'backup');
    const update = new Sha256Update(writer, await Sha256FileReader.open(join(dir, 'full', sha256Name('p')), 'backup'), count, 'backup');
    let changed = 0;
    for (let first = 0; first < count; first += 997) changed += (await update.take(first, randomBytes(32)))[0]!;
    await update.end();
    await writer.name();
    assert.equal(changed, Math.ceil(count / 997));
  } finally {
    clearInterval(sampler);
  }
  const growth = peak - baseline;
  t.diagnostic(`RSS grew by ${(growth / 2 ** 20).toFixed(1)} MiB`);
  // Holding the list would take 32 MiB of digests, and parsing the parent's JSON whole ~150 MB more; garbage not yet collected is most of the rest.
  assert.ok(growth < 64 * 2 ** 20, `RSS grew by ${(growth / 2 ** 20).toFixed(1)} MiB`);
  const text = await readFile(join(dir, 'incr', sha256Name('p')), 'utf8');
  assert.equal(text.length, (await readFile(join(dir, 'full', sha256Name('p')), 'utf8')).length, 'the same length: one entry per block');
}));
