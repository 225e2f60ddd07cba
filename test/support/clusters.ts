/**
 * The clusters tests run against. scripts/test.sh starts two (a and b) and
 * passes them in RBD_TEST_<A|B>_* variables; a test file run on its own
 * starts its own instead and stops it when the process exits.
 */
import { execFile, spawn, spawnSync } from 'node:child_process';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { rmSync } from 'node:fs';
import { promisify } from 'node:util';
import { createHash, randomBytes } from 'node:crypto';
import { Cluster, type ConnectOptions, type Pool } from '../../lib/index.js';
import { ThrowawayCluster, type ClusterInfo } from '../../lib/dev/throwaway-cluster.js';

export type Which = 'a' | 'b';

const started = new Map<Which, Promise<ThrowawayCluster>>();

function fromEnv(which: Which): ClusterInfo | undefined {
  const prefix = `RBD_TEST_${which.toUpperCase()}_`;
  const dir = process.env[`${prefix}DIR`];
  const conf = process.env[`${prefix}CONF`];
  const keyring = process.env[`${prefix}KEYRING`];
  const monHost = process.env[`${prefix}MON_HOST`];
  if (!dir || !conf || !keyring || !monHost) return undefined;
  return { dir, conf, keyring, monHost };
}

export function testCluster(which: Which = 'a'): Promise<ThrowawayCluster> {
  let cluster = started.get(which);
  if (!cluster) {
    const info = fromEnv(which);
    cluster = info
      ? Promise.resolve(ThrowawayCluster.attach(info))
      : ThrowawayCluster.start({ memstoreBytes: 3 * 2 ** 30 }).then((own) => {
        // 'exit' handlers must be synchronous.
        process.once('exit', () => {
          const { script, dir, madeDir } = own.stopArgs;
          spawnSync('bash', [script, 'stop', '--dir', dir], { stdio: 'ignore' });
          if (madeDir) rmSync(madeDir, { recursive: true, force: true });
        });
        return own;
      });
    started.set(which, cluster);
  }
  return cluster;
}

/** Timeouts short enough that a sick cluster fails a test instead of hanging it. */
export const TEST_TIMEOUTS = { timeoutMs: 20_000, opTimeoutMs: 60_000 } as const;

export async function connect(which: Which = 'a', options: ConnectOptions = {}): Promise<Cluster> {
  const { info } = await testCluster(which);
  return Cluster.connect({ conf: info.conf, keyring: info.keyring, ...TEST_TIMEOUTS, ...options });
}

// Each test file runs in a process of its own: these last as long as its tests.
const connections = new Map<Which, Cluster>();
const pools = new Map<string, Pool>();

/** Pool `name` of cluster `which`, connected and opened on first use and kept until closeTestPools(). */
export async function testPool(which: Which, name: string): Promise<Pool> {
  const key = `${which}/${name}`;
  let found = pools.get(key);
  if (!found) {
    let cluster = connections.get(which);
    if (!cluster) {
      cluster = await connect(which);
      connections.set(which, cluster);
    }
    found = await cluster.pool(name);
    pools.set(key, found);
  }
  return found;
}

/** Closes every pool and connection testPool() opened. */
export async function closeTestPools(): Promise<void> {
  for (const p of pools.values()) await p.close();
  for (const c of connections.values()) await c.close();
  pools.clear();
  connections.clear();
}

/** A name no other test (or earlier run) uses. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * sha256 of `rbd export <spec> -`: the rbd tool's own view of an image or
 * snapshot, to check our bytes against.
 */
export async function rbdExportSha256(which: Which, spec: string): Promise<string> {
  const { info } = await testCluster(which);
  return new Promise((resolve, reject) => {
    const child = spawn('rbd', ['-c', info.conf, '--keyring', info.keyring, 'export', '--no-progress', spec, '-'],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    const hash = createHash('sha256');
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => hash.update(chunk));
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    child.once('error', reject);
    child.once('close', (code) => {
      if (code === 0) resolve(hash.digest('hex'));
      else reject(new Error(`rbd export ${spec} exited ${code}: ${stderr.trim()}`));
    });
  });
}

/** Runs the rbd tool against a test cluster (for set-up and checks only). */
export async function rbd(which: Which, args: string[]): Promise<string> {
  const { info } = await testCluster(which);
  const { stdout } = await promisify(execFile)('rbd', ['-c', info.conf, '--keyring', info.keyring, ...args],
    { maxBuffer: 64 << 20 });
  return stdout;
}

/** Runs the ceph tool against a test cluster as admin, bounded so a sick cluster fails instead of hanging. */
export async function ceph(which: Which, args: string[]): Promise<string> {
  const { info } = await testCluster(which);
  const { stdout } = await promisify(execFile)('ceph', ['-c', info.conf, '--keyring', info.keyring, '--connect-timeout', '30', ...args],
    { timeout: 60_000, maxBuffer: 64 << 20 });
  return stdout;
}

export async function rbdArgs(which: Which, args: string[]): Promise<string[]> {
  const { info } = await testCluster(which);
  return ['-c', info.conf, '--keyring', info.keyring, ...args];
}

export function waitExit(child: ReturnType<typeof spawn>, what: string): Promise<void> {
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`${what} exited ${code}: ${stderr.trim()}`));
    });
  });
}

/** Feeds stream into `rbd import-diff - spec`. */
export async function rbdImportDiff(which: Which, stream: Readable, spec: string): Promise<void> {
  const child = spawn('rbd', await rbdArgs(which, ['import-diff', '--no-progress', '-', spec]),
    { stdio: ['pipe', 'ignore', 'pipe'] });
  const exited = waitExit(child, `rbd import-diff - ${spec}`);
  await Promise.all([pipeline(stream, child.stdin!), exited]);
}
