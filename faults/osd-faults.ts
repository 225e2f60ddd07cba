/**
 * The faults a worker strikes the OSD with, each timed from the run's
 * seed: a pause (SIGSTOP .. SIGCONT), being marked down, a restart
 * (file-backed BlueStore: it keeps its data), socket failures injected on
 * the OSD's side, and a full OSD. Each heals by waiting until the pool
 * serves I/O again.
 */
import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { fill } from '../test/support/cluster-scratch.js';
import { removeImageFully } from '../test/support/scratch.js';
import { osdAdmin, osdUsage, type ClusterInfo, type ThrowawayCluster } from '../lib/dev/throwaway-cluster.js';
import type { Context } from './kit.js';
import type { Fault } from './faulted.js';

const run = promisify(execFile);
/** An object the healing probe writes beside the backups. */
const PROBE = 'faults.probe';

/** A ceph CLI call against a cluster, bounded so a sick cluster cannot hold the caller. */
export async function ceph(info: ClusterInfo, args: string[]): Promise<string> {
  const { stdout } = await run('ceph', ['-c', info.conf, '--keyring', info.keyring, '--connect-timeout', '30', ...args],
    { timeout: 60_000 });
  return stdout;
}

/** The OSDs as the monitor's current map has them. */
async function osdMap(info: ClusterInfo): Promise<Array<{ up: number; state: string[] }>> {
  return (JSON.parse(await ceph(info, ['osd', 'dump', '--format', 'json'])) as { osds: Array<{ up: number; state: string[] }> }).osds;
}

/**
 * The monitor's full ratio and the OSD's own failsafe one (which a write
 * past the monitor's ratio may have crossed), raised to ratio; undefined
 * puts back Ceph's defaults (0.95 and 0.97).
 */
async function setFullRatios(info: ClusterInfo, ratio: number | undefined): Promise<void> {
  await osdAdmin(info, ['config', 'set', 'osd_failsafe_full_ratio', String(ratio ?? 0.97)]);
  await ceph(info, ['osd', 'set-full-ratio', String(ratio ?? 0.95)]);
}


/**
 * Undoes every fault a worker may have left in place when it was killed
 * or died: the OSD resumed and peered again, no socket failures, the usual
 * full ratios.
 */
export async function undoFaults(cluster: ThrowawayCluster): Promise<void> {
  await cluster.signalOsd('CONT');
  await repeer(cluster.info);
  await osdAdmin(cluster.info, ['config', 'set', 'ms_inject_socket_failures', '0']);
  await setFullRatios(cluster.info, undefined);
}

/**
 * Waits until a write, a read and a listing of each pool succeed again (up
 * to three minutes): their PGs are active and readable.
 */
export async function untilServing(ctx: Context): Promise<void> {
  const started = Date.now();
  for (const pool of [ctx.volumes, ctx.backups]) {
    for (;;) {
      try {
        // Reads too: after a stop, a PG can take writes while its reads
        // still wait out the read lease; and the image directory the next
        // calls list lives in another PG than the probe.
        await pool.writeObject(PROBE, String(Date.now()));
        await pool.readObject(PROBE);
        await pool.listImages();
        break;
      } catch (error) {
        if (Date.now() - started > 180_000) throw error;
        await sleep(500);
      }
    }
  }
}

/**
 * Makes every PG of the lone OSD peer again, as an operator would after a
 * stall: the monitor marks it down, it says it was wrongly marked and comes
 * back. Needed after a pause: a PG whose read lease ran out while the OSD
 * was stopped turns laggy, and with no peer to renew the lease (size 1)
 * Pacific leaves it laggy, its reads "waiting for readable", until it peers
 * again (seen here: RenewLease events every 0.5 s for minutes, still laggy).
 * A probe of one object per pool does not see it; the next run's calls on
 * other PGs time out.
 */
async function repeer(info: ClusterInfo): Promise<void> {
  await ceph(info, ['osd', 'down', '0']);
  const deadline = Date.now() + 60_000;
  for (;;) {
    if ((await osdMap(info)).every((osd) => osd.up === 1)) return;
    if (Date.now() > deadline) throw new Error('the OSD did not come back up within 60 s of being marked down');
    await sleep(250);
  }
}

/** SIGSTOP for 1 s up to 1.3 budgets (so some calls must give up), then SIGCONT. */
export function pause(ctx: Context): Fault {
  const at = ctx.rng();
  const forMs = Math.round(1000 + ctx.rng() * 1.3 * ctx.settings.budgetMs);
  return {
    at,
    strike: async () => {
      await ctx.cluster.signalOsd('STOP');
      await sleep(forMs);
      await ctx.cluster.signalOsd('CONT');
    },
    heal: async () => {
      await ctx.cluster.signalOsd('CONT');
      await repeer(ctx.cluster.info);
      await untilServing(ctx);
    },
    describe: (atMs) => `OSD paused at ${atMs} ms for ${forMs} ms`,
  };
}

/** `ceph osd down 0`: the monitor marks the live OSD down; it says it was wrongly marked and comes back. */
export function markDown(ctx: Context): Fault {
  return {
    at: ctx.rng(),
    strike: async () => { await ceph(ctx.cluster.info, ['osd', 'down', '0']); },
    heal: () => untilServing(ctx),
    describe: (atMs) => `OSD marked down at ${atMs} ms`,
  };
}

/** The OSD ended (SIGTERM or SIGKILL) and started again; BlueStore keeps its data. */
export function restart(ctx: Context): Fault {
  const at = ctx.rng();
  const signal = ctx.rng() < 0.5 ? 'TERM' : 'KILL';
  return {
    at,
    strike: () => ctx.cluster.restartOsd(signal),
    heal: () => untilServing(ctx),
    describe: (atMs) => `OSD restarted (SIG${signal}) at ${atMs} ms`,
  };
}

/** The OSD fails every 200th socket operation (ms_inject_socket_failures) until healed. */
export function osdSocketFailures(ctx: Context): Fault {
  return {
    at: 0,
    strike: async () => { await osdAdmin(ctx.cluster.info, ['config', 'set', 'ms_inject_socket_failures', '200']); },
    heal: async () => {
      await osdAdmin(ctx.cluster.info, ['config', 'set', 'ms_inject_socket_failures', '0']);
      await untilServing(ctx);
    },
    describe: () => 'OSD-side ms_inject_socket_failures 200',
  };
}

/** Bytes the OSD holds (memstore counts what it stores, in RAM), as its admin socket last counted them. */
async function osdBytesUsed(ctx: Context): Promise<{ used: number; total: number }> {
  return osdUsage(ctx.cluster.info);
}

/**
 * The OSD's usage once its count has caught up with the writes just made:
 * it recounts every few seconds (seen here: up to ~6 s), so the first
 * change, or no change for 8 s, is current.
 */
async function settledBytesUsed(ctx: Context): Promise<{ used: number; total: number }> {
  const first = await osdBytesUsed(ctx);
  for (let waited = 0; waited < 8000; waited += 500) {
    await sleep(500);
    const now = await osdBytesUsed(ctx);
    if (now.used !== first.used) return now;
  }
  return first;
}

/** Whether the monitor has marked the OSD full (it reports itself a few seconds after crossing the ratio). */
async function osdFull(ctx: Context): Promise<boolean> {
  return (await osdMap(ctx.cluster.info)).some((osd) => osd.state.includes('full'));
}

/**
 * A full OSD: ballast fills it past the full ratio (0.95) and the monitor
 * marks it full before the call, whose writes then cannot proceed. Healed
 * as an operator would: the ratio raised for a moment (librbd refuses even
 * removals on a full pool), the ballast removed, the ratio put back.
 */
export function full(ctx: Context): Fault {
  const ballast = 'faults-ballast';
  let ballastBytes = 0;
  return {
    prepare: async () => {
      const { used, total } = await settledBytesUsed(ctx);
      // Past 0.95, below the OSD's own failsafe ratio (0.97), where it would refuse its operator too.
      ballastBytes = Math.floor((0.958 * total - used) / (4 << 20)) * (4 << 20);
      await ctx.volumes.createImage(ballast, ballastBytes);
      {
        await using image = await ctx.volumes.openImage(ballast);
        await fill(image, 0, ballastBytes);
      }
      const deadline = Date.now() + 60_000;
      while (!(await osdFull(ctx))) {
        if (Date.now() > deadline) throw new Error(`the OSD is not marked full after ${ballastBytes >> 20} MiB of ballast`);
        await sleep(500);
      }
    },
    at: 0,
    strike: async () => undefined,
    heal: async () => {
      await setFullRatios(ctx.cluster.info, 0.99);
      await untilServing(ctx);
      await removeImageFully(ctx.volumes, ballast, { busyRetries: 10 });
      await setFullRatios(ctx.cluster.info, undefined);
      await untilServing(ctx);
    },
    describe: () => `OSD full (${ballastBytes >> 20} MiB of ballast)`,
  };
}
