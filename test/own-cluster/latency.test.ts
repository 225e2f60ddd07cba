/**
 * The throwaway cluster's per-operation latency (`injectDelayMaxS`, the
 * script's --inject-delay-max): it applies to a client's operations, and
 * `ceph-cluster.sh latency` reports it. Only lower bounds are asserted: a
 * busy machine can make operations slower, never faster, so these cannot
 * fail from noise, only when the delay does not apply.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Cluster } from '../../lib/index.js';
import { CLUSTER_SCRIPT, ThrowawayCluster } from '../../lib/dev/throwaway-cluster.js';
import { parseLatency } from '../../bench/latency.js';

const run = promisify(execFile);
/** Up to 1 ms on each message to a client: about 4 ms per operation here. */
const INJECT_DELAY_MAX_S = 0.001;
/** Half of what the injection delivers: far above loopback memstore (~0.5 ms), far below ~4 ms. */
const DELAYED_MS = 2;

let cluster: ThrowawayCluster;

before(async () => {
  cluster = await ThrowawayCluster.start({ pools: ['rbd'], memstoreBytes: 1 << 30, injectDelayMaxS: INJECT_DELAY_MAX_S });
});

after(async () => {
  await cluster?.stop();
});

test('--inject-delay-max delays every client operation, and `latency` reports it', { timeout: 180_000 }, async (t) => {
  const { stdout } = await run('bash', [CLUSTER_SCRIPT, 'latency', '--dir', cluster.info.dir, '--pool', 'rbd', '--seconds', '2']);
  t.diagnostic(stdout.trim());
  const printed = parseLatency(stdout);
  for (const [what, ms] of Object.entries({ 'write qd1': printed.writeQd1Ms, 'read qd1': printed.readQd1Ms })) {
    assert.ok(ms >= DELAYED_MS, `${what}: the script reports ${ms} ms, expected the injected delay (>= ${DELAYED_MS} ms)`);
  }
  // A client of this library sees it too: one object read at a time.
  const { conf, keyring } = cluster.info;
  const client = await Cluster.connect({ conf, keyring, timeoutMs: 20_000, opTimeoutMs: 20_000 });
  try {
    const pool = await client.pool('rbd');
    try {
      await pool.writeObject('latency-probe', 'x');
      const reads = 20;
      const started = performance.now();
      for (let i = 0; i < reads; i++) await pool.readObject('latency-probe');
      const meanMs = (performance.now() - started) / reads;
      t.diagnostic(`library qd1 object read: ${meanMs.toFixed(2)} ms`);
      assert.ok(meanMs >= DELAYED_MS, `a qd1 read through the library took ${meanMs.toFixed(2)} ms, expected >= ${DELAYED_MS} ms`);
      await pool.removeObject('latency-probe');
    } finally {
      await pool.close();
    }
  } finally {
    await client.close();
  }
});
