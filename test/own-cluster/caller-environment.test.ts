/**
 * A shell pointed at another cluster (CEPH_CONF, CEPH_KEYRING, CEPH_ARGS
 * exported, as an operator's often is) must not leak into a throwaway
 * cluster the project starts: Ceph's daemons and tools take those over
 * their own conf, and the cluster failed to start (its OSD authenticated
 * with the other cluster's key).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster } from '../../lib/index.js';
import { ThrowawayCluster } from '../../lib/dev/throwaway-cluster.js';

const started: ThrowawayCluster[] = [];

after(async () => {
  for (const cluster of started) await cluster.stop();
});

test('a cluster starts, and is its own, with another cluster\'s CEPH_CONF, CEPH_KEYRING and CEPH_ARGS exported',
  { timeout: 240_000 }, async () => {
    const other = await ThrowawayCluster.start({ pools: ['rbd'], memstoreBytes: 256 << 20 });
    started.push(other);
    const saved = { CEPH_CONF: process.env.CEPH_CONF, CEPH_KEYRING: process.env.CEPH_KEYRING, CEPH_ARGS: process.env.CEPH_ARGS };
    let own: ThrowawayCluster;
    try {
      process.env.CEPH_CONF = other.info.conf;
      process.env.CEPH_KEYRING = other.info.keyring;
      process.env.CEPH_ARGS = `--mon-host ${other.info.monHost}`;
      own = await ThrowawayCluster.start({ pools: ['own'], memstoreBytes: 256 << 20 });
      started.push(own);
    } finally {
      for (const [key, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    }
    assert.notEqual(own.info.conf, other.info.conf);
    const client = await Cluster.connect({ conf: own.info.conf, keyring: own.info.keyring, timeoutMs: 20_000 });
    try {
      // Only the new cluster has the pool 'own' (and the other has no such pool).
      assert.deepEqual((await client.listPools()).filter((p) => p === 'own' || p === 'rbd'), ['own']);
      assert.notEqual(await client.fsid(), await fsidOf(other));
    } finally {
      await client.close();
    }
  });

async function fsidOf(cluster: ThrowawayCluster): Promise<string> {
  const client = await Cluster.connect({ conf: cluster.info.conf, keyring: cluster.info.keyring, timeoutMs: 20_000 });
  try {
    return await client.fsid();
  } finally {
    await client.close();
  }
}
