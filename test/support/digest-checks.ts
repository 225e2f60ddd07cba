/** Digest checks against the rbd tool's view, and damage done under librbd's nose, for the verified-backup tests. */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { DigestTable } from '../../lib/index.js';
import { blockDigests } from '../../lib/ceph/transfer-job.js';
import { rbdArgs, testCluster, type Which } from './clusters.js';

const execFileAsync = promisify(execFile);

/** The digest table of the bytes `rbd export` gives for spec (pool/image@snapshot). */
export async function exportedTable(which: Which, spec: string, blockSize: bigint): Promise<DigestTable> {
  const { stdout } = await execFileAsync('rbd', await rbdArgs(which, ['export', '--no-progress', spec, '-']),
    { encoding: 'buffer', maxBuffer: 256 << 20 });
  const entries = blockDigests(stdout, Number(blockSize));
  return new DigestTable(BigInt(stdout.length), blockSize, Buffer.from(entries.buffer, entries.byteOffset, entries.byteLength));
}

/** Flips the byte at offset of pool/image straight in its RADOS object (test/fixtures/object-corrupt.py). */
export async function flipByte(which: Which, pool: string, image: string, offset: number): Promise<void> {
  const { info } = await testCluster(which);
  await execFileAsync('/usr/bin/python3', [fileURLToPath(new URL('../../../test/fixtures/object-corrupt.py', import.meta.url)),
    info.conf, info.keyring, pool, image, String(offset)]);
}
