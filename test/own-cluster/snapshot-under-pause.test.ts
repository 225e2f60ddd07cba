/**
 * A snapshot whose header write outlasts the connection's op timeout (the
 * OSD paused with `ceph osd pause` for longer): Pacific's librbd reported
 * such a snapshot created, when made without quiesce, although none
 * existed (the full fault run's lost backup). createSnapshot must either
 * fail typed or have made the snapshot, on the header as a fresh handle
 * sees it. Its own cluster: the pause stops every client.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { CephError, Cluster } from '../../lib/index.js';
import { ThrowawayCluster } from '../../lib/dev/throwaway-cluster.js';

const run = promisify(execFile);
const OP_TIMEOUT_MS = 3_000;
/** Twice the op timeout: the header write times out inside librbd. */
const PAUSE_MS = 6_000;

let cluster: ThrowawayCluster;

before(async () => {
  cluster = await ThrowawayCluster.start({ pools: ['rbd'], memstoreBytes: 1 << 30 });
});

after(async () => {
  await cluster?.stop();
});

async function osd(command: 'pause' | 'unpause'): Promise<void> {
  const { conf, keyring } = cluster.info;
  await run('ceph', ['-c', conf, '--keyring', keyring, 'osd', command], { timeout: 60_000 });
}

test('createSnapshot while the OSD is paused past the op timeout: a typed failure or a snapshot that is there, never a success without one',
  { timeout: 300_000 }, async (t) => {
    const { conf, keyring } = cluster.info;
    const client = await Cluster.connect({ conf, keyring, timeoutMs: 20_000, opTimeoutMs: OP_TIMEOUT_MS });
    const checker = await Cluster.connect({ conf, keyring, timeoutMs: 20_000, opTimeoutMs: 60_000 });
    try {
      await using pool = await client.pool('rbd');
      await using checkPool = await checker.pool('rbd');
      await pool.createImage('paused', 8 << 20, { features: ['layering', 'exclusive-lock', 'object-map', 'fast-diff'] });
      await using image = await pool.openImage('paused');
      await image.write(randomBytes(1 << 20), 0);
      await image.flush();
      for (let i = 0; i < 3; i++) {
        const name = `s${i}`;
        await osd('pause');
        const unpaused = sleep(PAUSE_MS).then(() => osd('unpause'));
        const outcome = await image.createSnapshot(name).then(() => 'created' as const, (error: unknown) => error);
        await unpaused;
        await using fresh = await checkPool.openImage('paused', { readOnly: true });
        const listed = (await fresh.listSnapshots()).some((s) => s.name === name);
        t.diagnostic(`${name}: ${outcome === 'created' ? 'created' : String(outcome)}; a fresh handle lists it: ${listed}`);
        if (outcome === 'created') {
          assert.ok(listed, `createSnapshot reported ${name} created, but the header does not have it`);
          assert.equal(await image.headerHasSnapshot(name), true);
        } else {
          assert.ok(outcome instanceof CephError, `an untyped failure: ${String(outcome)}`);
        }
      }
    } finally {
      await osd('unpause').catch(() => undefined);
      await checker.close();
      await client.close();
    }
  });
