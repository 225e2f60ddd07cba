/**
 * The benchmark's two throwaway clusters: started with lib/dev's
 * ThrowawayCluster under one temp directory, and stopped — by the pid files
 * of their own directories, never by process name — however the run ends.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLUSTER_SCRIPT, ThrowawayCluster } from '../lib/dev/throwaway-cluster.js';
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

/** The temp directory the clusters live under; removed by stopClustersSync. */
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

export function stopClustersSync(): void {
  for (const dir of clusterDirs) {
    spawnSync('bash', [CLUSTER_SCRIPT, 'stop', '--dir', dir], { stdio: 'ignore', timeout: 60_000 });
    clusterDirs.delete(dir);
  }
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
  stopClustersSync(); // whatever is left (a start that failed half-way, a stop that failed)
}

function readPid(file: string): number {
  const pid = Number(readFileSync(file, 'utf8').trim());
  if (!Number.isSafeInteger(pid) || pid <= 0) throw new Error(`no pid in ${file}`);
  return pid;
}

export async function startCluster(name: 'A' | 'B', memstoreBytes: number, pools: string[]): Promise<BenchCluster> {
  const dir = join(workDir!, name.toLowerCase());
  clusterDirs.add(dir);
  const starting = ThrowawayCluster.start({ dir, memstoreBytes, pools });
  startsInFlight.add(starting);
  try {
    const cluster = await starting;
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
