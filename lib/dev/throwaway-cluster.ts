/**
 * Starts and stops the single-node throwaway Ceph cluster of
 * scripts/ceph-cluster.sh from Node, for the tests, the benchmark and the
 * demo. Not part of the package's public API.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** <package>/scripts/ceph-cluster.sh, from dist/lib/dev/ */
export const CLUSTER_SCRIPT = fileURLToPath(new URL('../../../scripts/ceph-cluster.sh', import.meta.url));

export interface ClusterInfo {
  dir: string;
  conf: string;
  keyring: string;
  monHost: string;
}

export interface StartOptions {
  /** Directory for everything the cluster owns; default a new one under the temp dir. */
  dir?: string;
  /** Monitor port; default a free one outside the OSDs' 6800-7300 range. */
  port?: number;
  /** RAM the memstore OSD may fill. Default 2 GiB. */
  memstoreBytes?: number;
  /** Pools to create and `rbd pool init`. Default rbd and backups. */
  pools?: string[];
  /**
   * The OSD's store: 'memstore' (RAM, the default) or 'bluestore' on a
   * sparse file in the cluster's directory, which keeps its data when the
   * OSD restarts (restartOsd).
   */
  objectstore?: 'memstore' | 'bluestore';
  /** Size of the BlueStore file. Default 4 GiB. */
  bluestoreBytes?: number;
  /**
   * Real-cluster latency: the OSD delays each message to a client by a
   * random time up to this many seconds (0.001 gives ~4 ms per operation,
   * still pipelined). Default 0, loopback speed.
   */
  injectDelayMaxS?: number;
}

/** A free loopback port outside 6800-7300, where OSDs pick theirs. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
      });
    });
    if (port > 0 && (port < 6800 || port > 7300)) return port;
  }
}

function parseStartOutput(stdout: string, dir: string): ClusterInfo {
  const values = new Map(stdout.trim().split('\n').map((line) => {
    const at = line.indexOf('=');
    return [line.slice(0, at), line.slice(at + 1)] as [string, string];
  }));
  const conf = values.get('CEPH_CONF');
  const keyring = values.get('CEPH_KEYRING');
  const monHost = values.get('CEPH_MON_HOST');
  if (!conf || !keyring || !monHost) {
    throw new Error(`ceph-cluster.sh start printed no cluster details: ${stdout}`);
  }
  return { dir, conf, keyring, monHost };
}

/** A command to the OSD's admin socket, which answers without the monitor. */
export async function osdAdmin(info: ClusterInfo, args: string[]): Promise<string> {
  const { stdout } = await run('ceph', ['--admin-daemon', `${info.dir}/run/osd.0.asok`, ...args], { timeout: 30_000 });
  return stdout;
}

/** What the OSD holds and can hold, in bytes, as it last counted them (its perf counters; memstore counts what it keeps in RAM). */
export async function osdUsage(info: ClusterInfo): Promise<{ used: number; total: number }> {
  const perf = JSON.parse(await osdAdmin(info, ['perf', 'dump'])) as { osd: { stat_bytes: number; stat_bytes_used: number } };
  return { used: perf.osd.stat_bytes_used, total: perf.osd.stat_bytes };
}

/**
 * A memstore OSD reports itself rotational, and an HDD's snap trimming
 * sleeps 5 s between batches: the copies a write keeps for a snapshot,
 * freed only by the trimmer once the snapshot is removed, pile up faster
 * than that (backups make and remove snapshots all the time): a long fault
 * run's 6 GiB OSD and the benchmark's reached their full ratio and stopped
 * taking writes.
 *
 * Without the pause, memstore's trimmer crashes the OSD now and then (a
 * segfault in MemStore::OmapIteratorImpl::value under
 * SnapMapper::get_next_objects_to_trim): every PG's snapshot map lives in
 * one omap object, where the keys of one snapshot's clones in all PGs lie
 * side by side; a trimming PG's lookup may stop on the key of another PG
 * that is trimming the same snapshot, and memstore's omap iterator, which
 * holds its position across calls without a lock, reads that key after
 * the other PG erased it. oneTrimmingPg lets one PG trim at a time
 * (osd_max_trimming_pgs 1, default 2), which leaves no second trimmer to
 * erase keys under the first one's lookup: under a load that crashed the
 * OSD after 22 s and 82 s with two, 10 minutes without a crash, and the
 * clones freed as fast as they were made. The fault suite's long runs set
 * it; the benchmark keeps two.
 *
 * A BlueStore OSD on a file of this machine's disk is rotational too: its
 * clones piled up the same way under the fault suite's OSD restarts (0.9
 * GiB a run, 5.69 of 8 GiB after six). acrossRestarts sets the same in the
 * monitor's configuration, which the OSD reads again when it restarts.
 */
export async function trimSnapshotsWithoutSleep(info: ClusterInfo,
  options: { oneTrimmingPg?: boolean; acrossRestarts?: boolean } = {}): Promise<void> {
  const settings: Array<[string, string]> = [['osd_snap_trim_sleep_hdd', '0']];
  if (options.oneTrimmingPg) settings.push(['osd_max_trimming_pgs', '1']);
  for (const [name, value] of settings) {
    await osdAdmin(info, ['config', 'set', name, value]);
    // The monitor's configuration database, which a restarted OSD reads again (the admin socket's setting dies with the process).
    if (options.acrossRestarts) {
      await run('ceph', ['-c', info.conf, '--keyring', info.keyring, '--connect-timeout', '30', 'config', 'set', 'osd.0', name, value],
        { timeout: 60_000 });
    }
  }
}

/** The daemons scripts/ceph-cluster.sh starts, by the names of their pid and log files. */
export const DAEMONS = ['mon.a', 'osd.0'] as const;
export type DaemonName = typeof DAEMONS[number];

/** Whether pid is a live process of the cluster whose conf this is (its command line names the conf). */
async function isOurs(pid: number, conf: string): Promise<boolean> {
  // A zombie's cmdline reads empty: gone, as it should count.
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmdline.split('\0').includes(conf);
}

/** How a daemon's log says it ended, when it did: a caught signal or a failed assertion. */
export interface DaemonCrash {
  /** The log line's time, when it has one. */
  at: Date | undefined;
  /** e.g. 'Caught signal (Segmentation fault)' or the failed assertion's line. */
  what: string;
  /** The backtrace's Ceph functions, innermost first (libc, buffer and boost frames left out). */
  frames: string[];
}

/** A C++ name without its template arguments: MapCacher::MapCacher<std::string, ...>::get_next is MapCacher::MapCacher::get_next. */
function withoutTemplateArguments(name: string): string {
  let depth = 0;
  let out = '';
  for (const c of name) {
    if (c === '<') depth++;
    else if (c === '>') depth = Math.max(0, depth - 1);
    else if (depth === 0) out += c;
  }
  return out;
}

/** The last crash report in a daemon log's text (what Ceph prints on a fatal signal or a failed ceph_assert). */
export function lastCrash(log: string): DaemonCrash | undefined {
  const lines = log.split('\n');
  let at = -1;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (/\*\*\* Caught signal \(|FAILED ceph_assert/.test(lines[i]!)) { at = i; break; }
  }
  if (at < 0) return undefined;
  const line = lines[at]!;
  const time = /(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)\+0000/.exec(line);
  const signal = /\*\*\* (Caught signal \([^)]*\))/.exec(line);
  const frames: string[] = [];
  for (const next of lines.slice(at + 1, at + 40)) {
    const frame = /^\s*\d+: \(([^(]+)/.exec(next);
    if (frame === null) {
      if (frames.length > 0 && !/^\s*(\d+:|NOTE:|ceph version|in thread|$)/.test(next)) break;
      continue;
    }
    const name = withoutTemplateArguments(frame[1]!.trim());
    if (!/^(ceph::buffer::|boost::|std::)/.test(name) && name.includes('::')) frames.push(name);
  }
  return {
    at: time === null ? undefined : new Date(`${time[1]}Z`),
    what: signal === null ? line.replace(/^\S+ \S+ -?\d+ /, '').trim().slice(0, 300) : signal[1]!,
    frames,
  };
}

export class ThrowawayCluster {
  readonly info: ClusterInfo;
  /** The temp directory made to hold info.dir, removed by stop(). */
  readonly #madeDir: string | undefined;

  private constructor(info: ClusterInfo, madeDir?: string) {
    this.info = info;
    this.#madeDir = madeDir;
  }

  static async start(options: StartOptions = {}): Promise<ThrowawayCluster> {
    const madeDir = options.dir === undefined ? await mkdtemp(join(tmpdir(), 'rbd-backup-cluster-')) : undefined;
    const dir = options.dir ?? join(madeDir!, 'cluster');
    const port = options.port ?? await freePort();
    const args = ['start', '--dir', dir, '--port', String(port),
      '--memstore-bytes', String(options.memstoreBytes ?? 2 ** 31),
      '--pools', (options.pools ?? ['rbd', 'backups']).join(','),
      '--objectstore', options.objectstore ?? 'memstore',
      ...(options.bluestoreBytes === undefined ? [] : ['--bluestore-bytes', String(options.bluestoreBytes)]),
      ...(options.injectDelayMaxS ? ['--inject-delay-max', String(options.injectDelayMaxS)] : [])];
    try {
      const { stdout } = await run('bash', [CLUSTER_SCRIPT, ...args], { maxBuffer: 1 << 20 });
      return new ThrowawayCluster(parseStartOutput(stdout, dir), madeDir);
    } catch (error) {
      if (madeDir) await rm(madeDir, { recursive: true, force: true });
      throw error;
    }
  }

  /** A cluster started by someone else (for example scripts/test.sh). */
  static attach(info: ClusterInfo): ThrowawayCluster {
    return new ThrowawayCluster(info);
  }

  /** Creates client.NAME with `mon 'profile rbd' osd 'profile rbd pool=POOL'`; returns its keyring path. */
  async createUser(name: string, pool: string): Promise<string> {
    const { stdout } = await run('bash', [CLUSTER_SCRIPT, 'create-user', '--dir', this.info.dir,
      '--name', name, '--pool', pool]);
    return stdout.trim();
  }

  async createPool(pool: string): Promise<void> {
    await run('bash', [CLUSTER_SCRIPT, 'create-pool', '--dir', this.info.dir, '--pool', pool]);
  }

  /**
   * Ends the OSD (SIGTERM, a clean restart, or SIGKILL, a crash) and starts
   * it again; resolves once it serves I/O. A memstore OSD comes back empty.
   */
  async restartOsd(signal: 'TERM' | 'KILL' = 'TERM'): Promise<void> {
    await run('bash', [CLUSTER_SCRIPT, 'restart-osd', '--dir', this.info.dir, '--signal', signal]);
  }

  /** SIGSTOP (pause) or SIGCONT (resume) to the OSD, by its pid file. */
  async signalOsd(signal: 'STOP' | 'CONT'): Promise<void> {
    await run('bash', [CLUSTER_SCRIPT, 'signal-osd', '--dir', this.info.dir, '--signal', signal]);
  }

  /**
   * The daemons whose process is gone: neither of its pid files (the
   * daemon's own and the one written at its launch) names a live process
   * whose command line has this cluster's conf, as when the OSD crashed. An
   * OSD being restarted (restartOsd) is gone for a moment, between the old
   * process's exit and the new one's launch: a caller that must tell a
   * crash look again some seconds later.
   */
  async goneDaemons(): Promise<DaemonName[]> {
    const gone: DaemonName[] = [];
    for (const name of DAEMONS) {
      let alive = false;
      for (const file of [`${name}.pid`, `${name}.launch.pid`]) {
        const pid = Number((await readFile(join(this.info.dir, 'run', file), 'utf8').catch(() => '')).trim());
        if (Number.isInteger(pid) && pid > 0 && await isOurs(pid, this.info.conf)) { alive = true; break; }
      }
      if (!alive) gone.push(name);
    }
    return gone;
  }

  /** The last crash a daemon's log reports (undefined when none: it ended otherwise, e.g. killed from outside). */
  async crashOf(name: DaemonName): Promise<DaemonCrash | undefined> {
    const log = await readFile(join(this.info.dir, 'log', `${name}.log`), 'utf8').catch(() => '');
    return lastCrash(log);
  }

  /** Stops the daemons by their pid files and removes the directory. */
  async stop(): Promise<void> {
    await run('bash', [CLUSTER_SCRIPT, 'stop', '--dir', this.info.dir]);
    if (this.#madeDir) await rm(this.#madeDir, { recursive: true, force: true });
  }

  /** For exit handlers, which cannot wait: the command that stop() runs, plus the made directory. */
  get stopArgs(): { script: string; dir: string; madeDir: string | undefined } {
    return { script: CLUSTER_SCRIPT, dir: this.info.dir, madeDir: this.#madeDir };
  }
}
