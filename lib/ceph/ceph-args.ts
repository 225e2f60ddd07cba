/**
 * The connection settings the Ceph tools take from their environment:
 * CEPH_ARGS (the subset of ceph_argparse that names a connection) and
 * CEPH_CONF, and the default paths that depend on the cluster name.
 */
import { invalidArgument } from './errors.js';

/** What CEPH_ARGS (or a command line in its style) says about a connection. */
export interface CephArgs {
  /** -c/--conf: a configuration file, or a comma-separated list of them (the first that exists is read). */
  conf?: string;
  /** --cluster: the cluster name ($cluster in default paths). */
  cluster?: string;
  /** --id/--user ID, or -n/--name client.ID: the user without 'client.'. */
  user?: string;
  /** -k/--keyring: a keyring file, or a comma-separated search list. */
  keyring?: string;
  /** -m/--mon-host (or --mon_host): monitor addresses. */
  monHost?: string;
}

const WITH_VALUE: Record<string, keyof CephArgs | 'name'> = {
  '-c': 'conf', '--conf': 'conf',
  '--cluster': 'cluster',
  '--id': 'user', '--user': 'user',
  '-n': 'name', '--name': 'name',
  '-k': 'keyring', '--keyring': 'keyring',
  '-m': 'monHost', '--mon-host': 'monHost',
};

/**
 * Ceph treats '-' and '_' alike in long option names after the leading
 * dashes ('--mon_host' is '--mon-host').
 */
function normalizeOption(option: string): string {
  return option.startsWith('--') ? `--${option.slice(2).replace(/_/g, '-')}` : option;
}

/**
 * Parses arguments as the Ceph tools read CEPH_ARGS: split on whitespace,
 * `--opt value` or `--opt=value`, the last occurrence winning, nothing read
 * after a lone `--`. Other options (generic config options such as
 * `--rados-osd-op-timeout 5`) are ignored: without Ceph's option table a
 * flag cannot be told from an option with a value. `source` names where the
 * text came from in errors.
 */
export function parseCephArgs(text: string, source = 'CEPH_ARGS'): CephArgs {
  const words = text.split(/\s+/).filter((word) => word !== '');
  const parsed: CephArgs = {};
  for (let i = 0; i < words.length; i++) {
    if (words[i] === '--') break;
    const [option, inline] = splitInline(words[i]);
    const field = WITH_VALUE[normalizeOption(option)];
    if (field === undefined) continue;
    let value = inline;
    if (value === undefined) {
      value = words[i + 1];
      i++;
    }
    if (value === undefined || value === '') {
      throw invalidArgument('parse', source, `option ${option} needs a value`);
    }
    if (field === 'name') {
      parsed.user = userOfName(value, option, source);
    } else {
      parsed[field] = value;
    }
  }
  return parsed;
}

function splitInline(word: string): [string, string | undefined] {
  const equals = word.indexOf('=');
  return word.startsWith('--') && equals > 2 ? [word.slice(0, equals), word.slice(equals + 1)] : [word, undefined];
}

/** -n/--name takes TYPE.ID; this library connects as clients only. */
function userOfName(value: string, option: string, source: string): string {
  const match = /^client\.(.+)$/.exec(value);
  if (!match) {
    throw invalidArgument('parse', source,
      `${option} takes client.ID (a client entity name), got ${JSON.stringify(value)}; use --id ID for just the id`);
  }
  return match[1];
}

/** The process environment's say on connections: CEPH_ARGS parsed, and CEPH_CONF. */
export interface CephEnvironment {
  args: CephArgs;
  /** CEPH_CONF: the configuration file (or list) when no -c/--conf is given. */
  confEnv: string | undefined;
}

export function cephEnvironment(env: NodeJS.ProcessEnv = process.env): CephEnvironment {
  const confEnv = env.CEPH_CONF;
  return {
    args: parseCephArgs(env.CEPH_ARGS ?? ''),
    confEnv: confEnv === undefined || confEnv === '' ? undefined : confEnv,
  };
}

export const DEFAULT_CLUSTER = 'ceph';

/** The configuration file a cluster name implies: /etc/ceph/$cluster.conf. */
export function defaultConfPath(cluster: string = DEFAULT_CLUSTER): string {
  return `/etc/ceph/${cluster}.conf`;
}

/**
 * librados' default keyring search list with $cluster and $name filled in;
 * the first file that exists is used.
 */
export function defaultKeyringSearch(cluster: string, user: string): string[] {
  return [
    `/etc/ceph/${cluster}.client.${user}.keyring`,
    `/etc/ceph/${cluster}.keyring`,
    '/etc/ceph/keyring',
    '/etc/ceph/keyring.bin',
  ];
}

/** Splits a Ceph path list ('a,b' or 'a, b'; Ceph also allows spaces and semicolons). */
export function splitPathList(list: string): string[] {
  return list.split(/[,;\s]+/).filter((path) => path !== '');
}
