/**
 * A chain of backups in Cinder's chunked layout streamed in offset order
 * (lib/files/chunked-stream.ts), without a cluster: the layers merged
 * (newest wins), zeros where no layer has data, every object read checked
 * against its md5.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { VerificationError } from '../../lib/backup/errors.js';
import type { ChunkedMetadata, Compression } from '../../lib/files/chunked-layout.js';
import type { StoredBackup } from '../../lib/files/chunked-store.js';
import { layChain, streamChain } from '../../lib/files/chunked-stream.js';
import { ObjectWriter } from '../../lib/files/object-writer.js';

test('layChain: newer layers over older ones, cut where they overlap', () => {
  const o = (name: string, offset: number, length: number) => ({ name, offset, length, md5: '', compression: 'none' as const });
  const layer = (dir: string, objects: ReturnType<typeof o>[]): StoredBackup =>
    ({ dir, prefix: 'p', metadata: { objects } as unknown as ChunkedMetadata });
  const laid = layChain([
    layer('/f', [o('f1', 0, 100), o('f2', 100, 100)]),
    layer('/i', [o('i1', 50, 10), o('i2', 90, 20), o('i3', 150, 50)]),
    layer('/j', [o('j1', 0, 5), o('j2', 55, 100)]),
  ]);
  assert.deepEqual(laid.map((s) => `${s.start}-${s.end}:${s.object.name}`), ['0-5:j1', '5-50:f1', '50-55:i1', '55-155:j2', '155-200:i3']);
});

/** A layer written by ObjectWriter: runs of [offset, data]. */
async function layer(dir: string, runs: Array<[number, Buffer]>, compression: Compression): Promise<StoredBackup> {
  await mkdir(dir);
  const writer = new ObjectWriter(dir, 'p', { compression, chunkSize: 1 << 20, operation: 'backup' });
  for (const [offset, data] of runs) await writer.write(offset, data);
  await writer.finish();
  return { dir, prefix: 'p', metadata: { objects: writer.objects } as unknown as ChunkedMetadata };
}

async function collect(chain: StoredBackup[], size: number): Promise<Buffer> {
  const pieces: Buffer[] = [];
  const sink = new Writable({ highWaterMark: 4096, write(chunk: Buffer, _e, done) { pieces.push(chunk); setImmediate(done); } });
  await streamChain(chain, size, sink, { signal: undefined, resource: 'test', onBytes: () => undefined });
  return Buffer.concat(pieces);
}

test('streamChain: the merged bytes in order (zlib, zstd, none layers), and a damaged object refused', async () => {
  const root = await mkdtemp(join(tmpdir(), 'rbd-backup-stream-'));
  try {
    const size = 3 << 20;
    const expected = Buffer.alloc(size);
    const full = Buffer.concat([randomBytes(1 << 20), Buffer.alloc(1 << 20), Buffer.from('text '.repeat(209716)).subarray(0, 1 << 20)]);
    full.copy(expected, 0, 0, 2_500_000);
    const base = await layer(join(root, 'full'), [[0, full.subarray(0, 2_500_000)]], 'zlib');
    const runs: Array<[number, Buffer]> = [[4096, randomBytes(70_000)], [1_500_000, Buffer.alloc(300_000, 7)], [2_400_000, randomBytes(200_000)]];
    // Past the full layer's end (2_500_000), zeros where no layer has data.
    for (const [offset, data] of runs) data.copy(expected, offset);
    const incremental = await layer(join(root, 'incr'), runs, 'zstd');
    const over = randomBytes(50_000);
    over.copy(expected, 1_490_000);
    const last = await layer(join(root, 'last'), [[1_490_000, over]], 'none');
    assert.ok((await collect([base, incremental, last], size)).equals(expected));

    const object = join(root, 'incr', incremental.metadata.objects[1]!.name);
    const bytes = await readFile(object);
    await writeFile(object, bytes.subarray(0, bytes.length - 1));
    await assert.rejects(collect([base, incremental, last], size), (e: unknown) => e instanceof Error && e.message.includes(object));
    await writeFile(object, bytes);
    const plain = join(root, 'last', last.metadata.objects[0]!.name);
    const flipped = await readFile(plain);
    flipped[10] ^= 1;
    await writeFile(plain, flipped);
    await assert.rejects(collect([base, incremental, last], size), VerificationError);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
