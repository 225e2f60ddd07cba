/** Writes into a Writable that wait for it to drain: a slow consumer holds the writer back, memory stays bounded. */
import { once } from 'node:events';
import type { Writable } from 'node:stream';

const ZEROES = Buffer.alloc(1 << 20);

export async function writeAll(stream: Writable, data: Buffer): Promise<void> {
  if (!stream.write(data)) await once(stream, 'drain');
}

/** length zero bytes, a MiB at a time. */
export async function writeZeroes(stream: Writable, length: bigint): Promise<void> {
  for (let left = length; left > 0n;) {
    const piece = left < BigInt(ZEROES.length) ? Number(left) : ZEROES.length;
    await writeAll(stream, ZEROES.subarray(0, piece));
    left -= BigInt(piece);
  }
}
