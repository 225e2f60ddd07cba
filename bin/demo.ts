#!/usr/bin/env node
/**
 * The main job (README's first command): a round trip through the binding
 * against a real cluster. Uses the cluster named by RBD_BACKUP_CONF (and
 * RBD_BACKUP_KEYRING, RBD_BACKUP_USER) when set; otherwise starts a
 * throwaway one and stops it afterwards.
 */
import { createHash, randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Cluster, type Image } from '../lib/index.js';
import { ThrowawayCluster } from '../lib/dev/throwaway-cluster.js';

const MiB = 1 << 20;
const IMAGE_SIZE = 256 * MiB;
const CHUNK = 4 * MiB;

function say(message: string): void {
  process.stdout.write(`${message}\n`);
}

function rate(bytes: number, ms: number): string {
  return `${(bytes / MiB / (ms / 1000)).toFixed(1)} MiB/s`;
}

async function imageSha256(image: Image, size: number): Promise<string> {
  const hash = createHash('sha256');
  for (let offset = 0; offset < size; offset += CHUNK) {
    hash.update(await image.read(offset, Math.min(CHUNK, size - offset)));
  }
  return hash.digest('hex');
}

async function main(): Promise<void> {
  const configured = process.env.RBD_BACKUP_CONF;
  let throwaway: ThrowawayCluster | undefined;
  let t0 = performance.now();
  if (configured) {
    say(`cluster      : ${configured} (configured)`);
  } else {
    throwaway = await ThrowawayCluster.start({ memstoreBytes: 2 * 2 ** 30 });
    say(`cluster      : started a throwaway cluster in ${throwaway.info.dir} (${(performance.now() - t0).toFixed(0)} ms)`);
  }
  try {
    const cluster = await Cluster.connect(configured
      ? { conf: configured, keyring: process.env.RBD_BACKUP_KEYRING, user: process.env.RBD_BACKUP_USER }
      : { conf: throwaway!.info.conf, keyring: throwaway!.info.keyring, timeoutMs: 20_000, opTimeoutMs: 60_000 });
    try {
      say(`connected    : fsid ${await cluster.fsid()}, pools ${(await cluster.listPools()).join(', ')}`);
      await roundTrip(cluster, process.env.RBD_BACKUP_POOL ?? 'rbd');
    } finally {
      await cluster.close();
    }
  } finally {
    if (throwaway) {
      t0 = performance.now();
      await throwaway.stop();
      say(`cluster      : stopped (${(performance.now() - t0).toFixed(0)} ms)`);
    }
  }
}

async function roundTrip(cluster: Cluster, poolName: string): Promise<void> {
  const pool = await cluster.pool(poolName);
  const name = `demo-${Date.now()}`;
  await pool.createImage(name, IMAGE_SIZE, {
    features: ['layering', 'exclusive-lock', 'object-map', 'fast-diff', 'deep-flatten'],
  });
  say(`image        : created ${pool.spec}/${name}, ${IMAGE_SIZE / MiB} MiB`);
  try {
    const model = Buffer.alloc(IMAGE_SIZE);
    const image = await pool.openImage(name);
    try {
      // Every other 4 MiB chunk, so the image is half data, half holes.
      let t0 = performance.now();
      let written = 0;
      for (let offset = 0; offset < IMAGE_SIZE; offset += 2 * CHUNK) {
        const data = randomBytes(CHUNK);
        data.copy(model, offset);
        await image.write(data, offset);
        written += CHUNK;
      }
      await image.flush();
      say(`write        : ${written / MiB} MiB in ${CHUNK / MiB} MiB pieces, ${rate(written, performance.now() - t0)}`);
      await image.createSnapshot('demo-snap');
      say('snapshot     : demo-snap');

      const snap = await pool.openImage(name, { snapshot: 'demo-snap', readOnly: true });
      try {
        t0 = performance.now();
        const readSha = await imageSha256(snap, IMAGE_SIZE);
        const readMs = performance.now() - t0;
        const expected = createHash('sha256').update(model).digest('hex');
        say(`read back    : ${IMAGE_SIZE / MiB} MiB at ${rate(IMAGE_SIZE, readMs)}, sha256 ${readSha.slice(0, 16)}…`);
        if (readSha !== expected) throw new Error(`read-back checksum ${readSha} differs from written ${expected}`);
        say('verify       : snapshot content equals what was written');
        let extents = 0;
        let bytes = 0n;
        for await (const batch of snap.diff({ wholeObject: true })) {
          extents += batch.length;
          for (const extent of batch) bytes += extent.length;
        }
        say(`diff         : ${extents} allocated extents, ${Number(bytes) / MiB} MiB of data (holes skipped)`);
      } finally {
        await snap.close();
      }
      await image.removeSnapshot('demo-snap');
    } finally {
      await image.close();
    }
  } finally {
    await pool.removeImage(name);
    await pool.close();
    say(`cleanup      : removed ${pool.spec}/${name}`);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`demo failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
