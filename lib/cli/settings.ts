/**
 * Where each connection setting comes from, as the Ceph tools decide it: a
 * command-line flag, then CEPH_ARGS, then CEPH_CONF (the file only), then
 * rbd-backup's configuration file, then the default. The backup cluster
 * takes its own flags and [backup] section only: its keyring comes from its
 * own configuration, never from the source's.
 */
import type { ConnectOptions } from '../ceph/cluster.js';
import { DEFAULT_CLUSTER, defaultConfPath, type CephEnvironment } from '../ceph/ceph-args.js';
import type { ClusterConfig, ConfigFile, EngineConfig } from './config-file.js';

/** Connection settings given on the command line. */
export interface ClusterFlags {
  conf?: string;
  user?: string;
  keyring?: string;
  cluster?: string;
  monHost?: string;
}

export interface ResolvedCluster {
  role: 'source' | 'backup';
  /** Complete: the environment has been read already (environment: false). */
  options: ConnectOptions & { user: string; cluster: string; environment: false };
  /** Where the configuration file came from ('--conf', 'CEPH_CONF', ...), for messages. */
  confFrom: string;
  /** Where the keyring came from; undefined: librados finds it (the configuration, or its search list). */
  keyringFrom: string | undefined;
}

export interface Settings {
  source: ResolvedCluster;
  /** undefined: the backups are on the source connection. */
  backup: ResolvedCluster | undefined;
  backupPool: string;
  engine: EngineConfig;
}

export const DEFAULT_BACKUP_POOL = 'backups';

interface Candidate<T> {
  value: T | undefined;
  from: string;
}

/** The first candidate with a value, and where it came from. */
function first<T>(...candidates: Array<Candidate<T>>): { value: T | undefined; from: string | undefined } {
  const found = candidates.find((c) => c.value !== undefined);
  return { value: found?.value, from: found?.from };
}

function timeouts(config: ClusterConfig): Pick<ConnectOptions, 'timeoutMs' | 'opTimeoutMs'> {
  return {
    ...(config.timeoutMs === undefined ? {} : { timeoutMs: config.timeoutMs }),
    ...(config.opTimeoutMs === undefined ? {} : { opTimeoutMs: config.opTimeoutMs }),
  };
}

function resolveSource(flags: ClusterFlags, env: CephEnvironment, file: ConfigFile | undefined): ResolvedCluster {
  const config = file?.source ?? {};
  const inFile = `${file?.path ?? ''} [source]`;
  const cluster = flags.cluster ?? env.args.cluster ?? config.cluster ?? DEFAULT_CLUSTER;
  const monHost = flags.monHost ?? env.args.monHost ?? config.monHost;
  const conf = first(
    { value: flags.conf, from: '--conf' }, { value: env.args.conf, from: 'CEPH_ARGS' },
    { value: env.confEnv, from: 'CEPH_CONF' }, { value: config.conf, from: inFile },
    { value: monHost === undefined ? defaultConfPath(cluster) : undefined, from: 'the default' },
  );
  const keyring = first(
    { value: flags.keyring, from: '--keyring' }, { value: env.args.keyring, from: 'CEPH_ARGS' },
    { value: config.keyring, from: inFile },
  );
  return {
    role: 'source',
    options: {
      user: flags.user ?? env.args.user ?? config.user ?? 'admin',
      cluster, environment: false,
      ...(conf.value === undefined ? {} : { conf: conf.value }),
      ...(keyring.value === undefined ? {} : { keyring: keyring.value }),
      ...(monHost === undefined ? {} : { monHost }),
      ...timeouts(config),
    },
    confFrom: conf.from ?? 'none (monitors given)',
    keyringFrom: keyring.from,
  };
}

function resolveBackup(flags: ClusterFlags, file: ConfigFile | undefined, source: ResolvedCluster): ResolvedCluster | undefined {
  const config = file?.backup ?? {};
  const given = (['conf', 'user', 'keyring', 'cluster', 'monHost'] as const)
    .some((key) => flags[key] !== undefined || config[key] !== undefined);
  if (!given) return undefined;
  const inFile = `${file?.path ?? ''} [backup]`;
  const cluster = flags.cluster ?? config.cluster ?? source.options.cluster;
  const ownConf = first({ value: flags.conf, from: '--backup-conf' }, { value: config.conf, from: inFile });
  // Without a file of its own, a backup cluster of another name has its
  // default file; one of the same name is the source cluster as another user.
  const conf = ownConf.value !== undefined ? ownConf
    : cluster !== source.options.cluster ? { value: defaultConfPath(cluster), from: 'the default' }
      : { value: source.options.conf, from: `the source's (${source.confFrom})` };
  const monHost = flags.monHost ?? config.monHost ?? (ownConf.value === undefined && cluster === source.options.cluster ? source.options.monHost : undefined);
  const keyring = first({ value: flags.keyring, from: '--backup-keyring' }, { value: config.keyring, from: inFile });
  return {
    role: 'backup',
    options: {
      user: flags.user ?? config.user ?? source.options.user,
      cluster, environment: false,
      ...(conf.value === undefined ? {} : { conf: conf.value }),
      ...(keyring.value === undefined ? {} : { keyring: keyring.value }),
      ...(monHost === undefined ? {} : { monHost }),
      ...timeouts({ ...file?.source, ...config }),
    },
    confFrom: conf.from ?? 'none (monitors given)',
    keyringFrom: keyring.from,
  };
}

export function resolveSettings(flags: { source: ClusterFlags; backup: ClusterFlags; backupPool?: string },
  env: CephEnvironment, file: ConfigFile | undefined): Settings {
  const source = resolveSource(flags.source, env, file);
  return {
    source,
    backup: resolveBackup(flags.backup, file, source),
    backupPool: flags.backupPool ?? file?.backup.pool ?? DEFAULT_BACKUP_POOL,
    engine: file?.engine ?? {},
  };
}
