/**
 * A connection outlives an OSD crash: after an operation timed out while
 * the OSD was down and came back (SIGKILL, then a restart), Pacific's
 * librados kept sending to the dead instance and every later operation
 * timed out too, for good. The cluster fetches the newest OSD map after a
 * timeout, and the next operations are served. On a file-backed BlueStore
 * cluster of its own (memstore would come back empty).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, TimeoutError } from '../../lib/index.js';
import { ThrowawayCluster } from '../../lib/dev/throwaway-cluster.js';

let cluster: ThrowawayCluster;

before(async () => {
  cluster = await ThrowawayCluster.start({ objectstore: 'bluestore', pools: ['rbd'] });
});

after(async () => {
  await cluster?.stop();
});

test('after an operation timed out across an OSD crash and restart, the connection is served again', { timeout: 180_000 }, async () => {
  const { conf, keyring } = cluster.info;
  // An op timeout shorter than the OSD's restart, so that one runs out meanwhile.
  const client = await Cluster.connect({ conf, keyring, timeoutMs: 10_000, opTimeoutMs: 2000 });
  try {
    const pool = await client.pool('rbd');
    try {
      await pool.writeObject('probe', 'before');
      let restarted = false;
      const restarting = cluster.restartOsd('KILL').finally(() => { restarted = true; });
      // Writes go through until the OSD is gone; the first one after that times out.
      let timedOut = false;
      while (!restarted && !timedOut) {
        timedOut = await pool.writeObject('probe', 'during').then(() => false, (error: unknown) => error instanceof TimeoutError);
      }
      await restarting;
      assert.ok(timedOut, 'a write during the restart timed out');
      // Served within a few tries (without the map fetch, none ever was).
      let served = false;
      for (let attempt = 0; attempt < 5 && !served; attempt++) {
        served = await pool.writeObject('probe', 'after').then(() => true, () => false);
        if (!served) await sleep(1000);
      }
      assert.ok(served, 'a write after the restart was served');
      assert.equal((await pool.readObject('probe')).toString(), 'after');
    } finally {
      await pool.close();
    }
  } finally {
    await client.close();
  }
});
