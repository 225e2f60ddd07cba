/**
 * The benchmark's throwaway clusters (A and B of each latency pass): started with lib/dev's
 * ThrowawayCluster under one temp directory, and stopped — by the pid files
 * of their own directories, never by process name — however the run ends.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLUSTER_SCRIPT, ThrowawayCluster, trimSnapshotsWithoutSleep } from '../lib/dev/throwaway-cluster.js';
import type { ClusterRef } from './protocol.js';

export interface BenchCluster {
  name: 'A' | 'B';
  dir: string;
  memstoreBytes: number;
  cluster: ThrowawayCluster;
  ref: ClusterRef;
  rbdArgs: string[];
  osdPid: number;
  monPid: number;
}

/** Every cluster directory this run asked for, started or still starting: all get stopped. */
const clusterDirs = new Set<string>();
export const startsInFlight = new Set<Promise<unknown>>();
let workDir: string | undefined;

/** The temp directory the clusters of every pass live under; removed by stopClustersSync. */
export function makeWorkDir(): string {
  workDir = mkdtempSync(join(tmpdir(), 'rbd-backup-bench-'));
  return workDir;
}

/** Forgets a cluster that was stopped on purpose before the end. */
export function forgetCluster(dir: string): void {
  clusterDirs.delete(dir);
}

/** Whether a cluster still needs stopping. */
export function isRunning(dir: string): boolean {
  return clusterDirs.has(dir);
}

function stopLeftovers(): void {
  for (const dir of clusterDirs) {
    spawnSync('bash', [CLUSTER_SCRIPT, 'stop', '--dir', dir], { stdio: 'ignore', timeout: 60_000 });
    clusterDirs.delete(dir);
  }
}

/** Stops every cluster still registered and removes the work directory (the end of the run). */
export function stopClustersSync(): void {
  stopLeftovers();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
  workDir = undefined;
}

export async function stopClusters(clusters: BenchCluster[]): Promise<void> {
  // A start still running would launch daemons after a stop; let it finish first.
  await Promise.allSettled([...startsInFlight]);
  await Promise.allSettled(clusters.filter((c) => isRunning(c.dir)).map(async (c) => {
    await c.cluster.stop();
    clusterDirs.delete(c.dir);
  }));
  stopLeftovers(); // whatever is left (a start that failed half-way, a stop that failed)
}

function readPid(file: string): number {
  const pid = Number(readFileSync(file, 'utf8').trim());
  if (!Number.isSafeInteger(pid) || pid <= 0) throw new Error(`no pid in ${file}`);
  return pid;
}

/** Starts cluster A or B of a pass; injectDelayMaxS > 0 makes its OSD answer clients like a real cluster. */
export async function startCluster(name: 'A' | 'B', pass: string, memstoreBytes: number, pools: string[],
  injectDelayMaxS: number): Promise<BenchCluster> {
  const dir = join(workDir!, `${name.toLowerCase()}-${pass}`);
  clusterDirs.add(dir);
  const starting = ThrowawayCluster.start({ dir, memstoreBytes, pools, injectDelayMaxS });
  startsInFlight.add(starting);
  try {
    const cluster = await starting;
    // The chains make and remove snapshots of 1 GiB volumes by the dozen;
    // trimmed at an HDD's pace, their copies fill the OSD within a pass.
    await trimSnapshotsWithoutSleep(cluster.info);
    const { conf, keyring } = cluster.info;
    return {
      name, dir, memstoreBytes, cluster, ref: { conf, keyring },
      rbdArgs: ['--conf', conf, '--keyring', keyring, '--id', 'admin'],
      osdPid: readPid(join(dir, 'run', 'osd.0.launch.pid')),
      monPid: readPid(join(dir, 'run', 'mon.a.launch.pid')),
    };
  } finally {
    startsInFlight.delete(starting);
  }
}
