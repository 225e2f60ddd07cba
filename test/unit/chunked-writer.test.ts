/**
 * What a backup into files writes, without a cluster: the objects cut as
 * Cinder's chunked driver cuts them (ObjectWriter), the addon's digests,
 * and the documents in Python's json.dumps(sort_keys=True, indent=2) form
 * (the sha256file's reading and writing: sha256-file.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import {
  backupPrefix, metadataDocument, metadataFrame, metadataList, pythonJson, pythonTime, type ChunkedBackupFacts, type ChunkedObject,
} from '../../lib/files/chunked-layout.js';
import { ObjectWriter } from '../../lib/files/object-writer.js';
import { ObjectMd5, sha256Blocks } from '../../lib/files/object-digests.js';
import { addon } from '../../lib/ceph/native.js';
import { codecStage } from '../../lib/files/codec.js';
import { CephError } from '../../lib/ceph/errors.js';
import { withTempDir } from '../support/temp-dir.js';

const execFileAsync = promisify(execFile);

const facts: ChunkedBackupFacts = {
  backupId: '51e2c303', volumeId: 'v1', displayName: 'nightly é', displayDescription: null, createdAt: new Date('2026-11-30T12:34:56.789Z'),
};

const withDir = (use: (dir: string) => Promise<void>): Promise<void> => withTempDir('rbd-backup-writer-', use);

test('objects: contiguous data continues one object to the end of its chunk; a gap or a chunk end starts the next', () => withDir(async (dir) => {
  const writer = new ObjectWriter(dir, 'p', { compression: 'zlib', chunkSize: 1000, operation: 'backup' });
  // Compressible: text with a random byte here and there.
  const data = Buffer.from('a volume\'s blocks, '.repeat(200).slice(0, 2600));
  for (let i = 0; i < data.length; i += 97) data[i] = randomBytes(1)[0]!;
  await writer.write(0, data.subarray(0, 300));
  await writer.write(300, data.subarray(300, 1500)); // crosses the chunk end at 1000
  await writer.write(1800, data.subarray(1800, 2600)); // after a gap, crossing 2000
  await writer.finish();
  assert.deepEqual(writer.objects.map((o) => [o.name, o.offset, o.length]),
    [['p-00001', 0, 1000], ['p-00002', 1000, 500], ['p-00003', 1800, 200], ['p-00004', 2000, 600]]);
  for (const object of writer.objects) {
    const stored = inflateSync(await readFile(join(dir, object.name)));
    const expected = data.subarray(object.offset, object.offset + object.length);
    assert.ok(stored.equals(expected), object.name);
    assert.equal(object.md5, createHash('md5').update(expected).digest('hex'));
    assert.equal(object.compression, 'zlib');
  }
  assert.deepEqual((await readdir(dir)).sort(), ['p-00001', 'p-00002', 'p-00003', 'p-00004']);
}));

test('objects: data zlib does not make smaller is stored uncompressed, as Cinder stores it; long objects are streamed', () => withDir(async (dir) => {
  const writer = new ObjectWriter(dir, 'p', { compression: 'zlib', chunkSize: 64 << 20, operation: 'backup' });
  const random = randomBytes(300_000);
  // Long (streamed, decided by their first 4 MiB): random, then random with zeros after.
  const longRandom = randomBytes(6 << 20);
  const mixed = Buffer.concat([randomBytes(2 << 20), Buffer.alloc(5 << 20)]);
  await writer.write(0, random);
  await writer.write(400_000, Buffer.alloc(100_000));
  await writer.write(1 << 20, longRandom);
  await writer.write(16 << 20, mixed);
  await writer.finish();
  assert.deepEqual(writer.objects.map((o) => o.compression), ['none', 'zlib', 'none', 'zlib']);
  assert.ok((await readFile(join(dir, 'p-00001'))).equals(random));
  assert.ok(inflateSync(await readFile(join(dir, 'p-00002'))).equals(Buffer.alloc(100_000)));
  assert.ok((await readFile(join(dir, 'p-00003'))).equals(longRandom));
  assert.ok(inflateSync(await readFile(join(dir, 'p-00004'))).equals(mixed));
  assert.equal(writer.objects[3]!.md5, createHash('md5').update(mixed).digest('hex'));
  assert.deepEqual((await readdir(dir)).sort(), ['p-00001', 'p-00002', 'p-00003', 'p-00004']);
}));

test('objects: uncompressed as stored; abandon removes every object and the partial one', () => withDir(async (dir) => {
  const writer = new ObjectWriter(dir, 'p', { compression: 'none', chunkSize: 4096, operation: 'backup' });
  const data = randomBytes(5000);
  await writer.write(0, data);
  assert.equal(writer.objects.length, 2, 'objects are listed as they start');
  const long = new ObjectWriter(dir, 'q', { compression: 'none', chunkSize: 64 << 20, operation: 'backup' });
  await long.write(0, randomBytes(6 << 20));
  assert.ok((await readdir(dir)).some((n) => n.startsWith('.q-00001.partial-')), 'a long object is streamed under a partial name');
  await writer.abandon();
  await long.abandon();
  assert.deepEqual(await readdir(dir), []);
  const again = new ObjectWriter(dir, 'p', { compression: 'none', chunkSize: 4096, operation: 'backup' });
  await again.write(0, data);
  await again.finish();
  assert.ok((await readFile(join(dir, 'p-00001'))).equals(data.subarray(0, 4096)));
  assert.ok((await readFile(join(dir, 'p-00002'))).equals(data.subarray(4096)));
  assert.equal(again.bytesStored, 5000);
}));

test('SHA-256 of each block, by the addon (more than 64 KiB) or at once (less), is node:crypto\'s, the last block short', async () => {
  for (const block of [4096, 32768]) {
    for (const data of [randomBytes(3 * block + 100), randomBytes(5 * block)]) {
      const count = Math.ceil(data.length / block);
      for (const digests of [await sha256Blocks(data, block, 'backup', 'test'), await addon.sha256Blocks(data, block)]) {
        assert.equal(digests.length, count * 32);
        for (let i = 0; i < count; i++) {
          assert.equal(digests.toString('hex', i * 32, i * 32 + 32), createHash('sha256').update(data.subarray(i * block, (i + 1) * block)).digest('hex'));
        }
      }
    }
  }
  assert.equal((await sha256Blocks(Buffer.alloc(0), 4096, 'backup', 'test')).length, 0);
  assert.equal((await addon.sha256Blocks(Buffer.alloc(0), 4096)).length, 0);
});

test('the addon\'s MD5 of pieces given in order is node:crypto\'s of the whole; it ends once', async () => {
  const data = randomBytes(5 << 20);
  const md5 = new ObjectMd5('backup', 'test');
  await md5.update(data.subarray(0, 1000));
  await md5.update(data.subarray(1000));
  assert.equal(md5.hex(), createHash('md5').update(data).digest('hex'));
  assert.throws(() => md5.hex(), /twice/);
});

test('the metadata written in pieces (its list of objects a few hundred entries at a time) is json.dumps\' document, byte for byte', () => {
  // Names, descriptions and volume_meta that hold the mark, quoted or equal to it, before and after the list.
  const marked: Array<[string, string]> = [
    ['"@OBJECTS@"', JSON.stringify({ version: 2, note: '"@OBJECTS@" é' })], ['@VALUE@', '@VALUE@'], ['@OBJECTS@', '"@VALUE@"'],
  ];
  for (const count of [0, 1, 600]) {
    const objects: ChunkedObject[] = Array.from({ length: count }, (_, i) => ({
      name: `p-${String(i + 1).padStart(5, '0')}`, offset: i * 65536, length: 32768, md5: createHash('md5').update(String(i)).digest('hex'),
      compression: i % 2 === 0 ? 'zlib' : 'none',
    }));
    for (const [description, volumeMeta] of marked) {
      const expected = pythonJson({
        version: '1.0.0', backup_id: facts.backupId, volume_id: facts.volumeId, backup_name: description,
        backup_description: description, created_at: pythonTime(facts.createdAt),
        objects: objects.map((o) => ({ [o.name]: { offset: o.offset, length: o.length, md5: o.md5, compression: o.compression } })),
        parent_id: 'parent-1', volume_meta: volumeMeta,
      });
      const withMark = { ...facts, displayName: description, displayDescription: description };
      const { head, tail } = metadataFrame(withMark, 'parent-1', volumeMeta);
      assert.equal(head + [...metadataList(objects, 256)].join('') + tail, expected, `${count} objects in pieces, ${description}`);
      assert.equal(metadataDocument(withMark, objects, 'parent-1', volumeMeta), expected, `${count} objects at once, ${description}`);
    }
  }
});

test('documents: Python\'s json.dumps(sort_keys=True, indent=2) with ensure_ascii; Cinder\'s prefix and times', () => {
  assert.equal(pythonJson({ b: [], a: { d: null, c: 'é€😀' }, e: [1] }),
    '{\n  "a": {\n    "c": "\\u00e9\\u20ac\\ud83d\\ude00",\n    "d": null\n  },\n  "b": [],\n  "e": [\n    1\n  ]\n}');
  assert.equal(backupPrefix('v1', '51e2c303', facts.createdAt), 'volume_v1_20261130123456_backup_51e2c303');
  assert.equal(pythonTime(facts.createdAt), '2026-11-30 12:34:56.789000+00:00');
  const text = metadataDocument(facts, [{ name: 'p-00001', offset: 0, length: 8, md5: 'a'.repeat(32), compression: 'zlib' }], null, null);
  const parsed = JSON.parse(text) as Record<string, unknown>;
  assert.deepEqual(Object.keys(parsed), ['backup_description', 'backup_id', 'backup_name', 'created_at', 'objects', 'parent_id', 'version', 'volume_id', 'volume_meta']);
  assert.deepEqual(parsed.objects, [{ 'p-00001': { compression: 'zlib', length: 8, md5: 'a'.repeat(32), offset: 0 } }]);
  assert.match(text, /"backup_name": "nightly \\u00e9"/);
});

test('objects: zstd and bz2 by the addon, read back by the addon (and bz2 by Python\'s bz2, as Cinder reads it)', () => withDir(async (dir) => {
  const data = Buffer.concat([Buffer.from('compressible text '.repeat(20_000)), Buffer.alloc(500_000)]);
  for (const compression of ['zstd', 'bz2'] as const) {
    const writer = new ObjectWriter(dir, compression, { compression, chunkSize: 1 << 30, operation: 'backup' });
    await writer.write(0, data);
    await writer.finish();
    assert.equal(writer.objects[0]!.compression, compression);
    const file = join(dir, `${compression}-00001`);
    const stored = await readFile(file);
    assert.ok(stored.length < data.length / 20, `${compression}: ${stored.length} bytes`);
    const back: Buffer[] = [];
    for await (const piece of codecStage(`${compression}-decompress`, 'test', file)((async function* () { yield stored; })())) back.push(piece);
    assert.ok(Buffer.concat(back).equals(data), compression);
    if (compression === 'bz2') {
      const { stdout } = await execFileAsync('/usr/bin/python3', ['-c',
        'import bz2, hashlib, sys; print(hashlib.md5(bz2.decompress(open(sys.argv[1], "rb").read())).hexdigest())', file]);
      assert.equal(stdout.trim(), writer.objects[0]!.md5);
    }
  }
}));

test('codecs: truncated or damaged zstd and bz2 data is an EBADMSG CephError naming the file', async () => {
  const run = async (kind: 'zstd-decompress' | 'bz2-decompress', bytes: Buffer): Promise<unknown> => {
    try {
      for await (const piece of codecStage(kind, 'restore', '/x/object')((async function* () { yield bytes; })())) void piece;
      return undefined;
    } catch (error) {
      return error;
    }
  };
  const packed: Buffer[] = [];
  for await (const piece of codecStage('zstd-compress', 'backup', 'x')((async function* () { yield randomBytes(100_000); })())) packed.push(piece);
  const zstd = Buffer.concat(packed);
  for (const [kind, bytes] of [['zstd-decompress', zstd.subarray(0, zstd.length - 5)], ['bz2-decompress', Buffer.from('not bz2')]] as const) {
    const error = await run(kind, bytes);
    assert.ok(error instanceof CephError && error.code === 'EBADMSG' && error.message.includes('/x/object'), `${kind}: ${String(error)}`);
  }
  // A flipped byte: the frame's checksum (written by this codec) fails it.
  const flipped = Buffer.from(zstd);
  flipped[flipped.length - 100] ^= 0xff;
  assert.ok(await run('zstd-decompress', flipped) instanceof CephError);
});
