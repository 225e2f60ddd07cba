/**
 * Connecting the CLI's clusters, and turning a failed connect into a
 * message that names the file or address at fault and what to do: librados
 * says only ENOENT, EIO or ETIMEDOUT.
 */
import { access, readFile } from 'node:fs/promises';
import { Cluster } from '../ceph/cluster.js';
import { CephError, NotFoundError, PermissionError, TimeoutError, cephError } from '../ceph/errors.js';
import { defaultKeyringSearch, splitPathList } from '../ceph/ceph-args.js';
import { lookupClientSetting, parseConf, readConf, type ConfSections } from '../ceph/ceph-conf.js';
import type { ResolvedCluster } from './settings.js';

const FLAGS = {
  source: { conf: '-c/--conf (or CEPH_CONF)', keyring: '-k/--keyring', mon: '-m/--mon-host' },
  backup: { conf: '--backup-conf', keyring: '--backup-keyring', mon: '--backup-mon-host' },
} as const;

async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false);
}

/** The first configuration file of the list that exists, parsed (undefined if none or unreadable). */
async function readFirstConf(conf: string | undefined): Promise<{ path: string; sections: ConfSections } | undefined> {
  for (const path of conf === undefined ? [] : splitPathList(conf)) {
    if (!await exists(path)) continue;
    const sections = await readConf(path).catch(() => undefined);
    return sections === undefined ? undefined : { path, sections };
  }
  return undefined;
}

/** Ceph's metavariables in a configured path. */
function expand(value: string, cluster: string, user: string): string {
  return value.replace(/\$cluster/g, cluster).replace(/\$name/g, `client.${user}`).replace(/\$id/g, user);
}

/** The keyring files librados looks at for this connection, in order, and what decided them. */
function keyringCandidates(target: ResolvedCluster, conf: ConfSections | undefined): { paths: string[]; from: string } {
  const { keyring, cluster, user } = target.options;
  if (keyring !== undefined) return { paths: splitPathList(keyring), from: target.keyringFrom ?? 'the options' };
  const configured = conf === undefined ? undefined : lookupClientSetting(conf, user, 'keyring');
  if (configured !== undefined) return { paths: splitPathList(expand(configured, cluster, user)), from: `keyring in ${target.options.conf}` };
  return { paths: defaultKeyringSearch(cluster, user), from: "librados' default search list" };
}

/** The first keyring file with a [client.USER] section (its key is never read out). */
async function keyringHolding(paths: string[], user: string): Promise<string | undefined> {
  for (const path of paths) {
    const text = await readFile(path, 'utf8').catch(() => undefined);
    if (text === undefined) continue;
    try {
      if (parseConf(text, path).has(`client.${user}`)) return path;
    } catch {
      // Not a keyring librados would accept either: not the one holding the key.
    }
  }
  return undefined;
}

/**
 * Why the connect failed, in words: the missing configuration or keyring
 * file, the keyring that does not parse, the monitors that did not answer.
 * Anything else is returned as it came.
 */
async function explain(error: CephError, target: ResolvedCluster): Promise<CephError> {
  const flags = FLAGS[target.role];
  const { options } = target;
  const who = `the ${target.role} cluster as client.${options.user}`;
  const conf = await readFirstConf(options.conf);
  const confPaths = options.conf === undefined ? [] : splitPathList(options.conf);
  const anyConf = (await Promise.all(confPaths.map(exists))).some(Boolean);
  if (error.code === 'ENOENT' && options.conf !== undefined && !anyConf) {
    return new NotFoundError({
      code: 'ENOENT', operation: 'connect', resource: options.conf, cause: error,
      detail: `cannot connect to ${who}: the configuration file ${options.conf} (from ${target.confFrom}) does not exist; give the cluster's ceph.conf with ${flags.conf}`,
    });
  }
  const keyrings = keyringCandidates(target, conf?.sections);
  if (error.code === 'ENOENT' || error.code === 'EIO' || error.code === 'EINVAL') {
    const found: string[] = [];
    for (const path of keyrings.paths) if (await exists(path)) found.push(path);
    if (found.length === 0) {
      return new NotFoundError({
        code: 'ENOENT', operation: 'connect', resource: keyrings.paths.join(','), cause: error,
        detail: `cannot connect to ${who}: no keyring file: ${keyrings.paths.join(', ')} ${keyrings.paths.length === 1 ? 'does' : 'do'} not exist (from ${keyrings.from}); give the keyring holding client.${options.user}'s key with ${flags.keyring}`,
      });
    }
    if (error.code === 'EIO') {
      return cephError({
        code: error.code, operation: 'connect', resource: found[0], cause: error,
        detail: `cannot connect to ${who}: the keyring ${found[0]} could not be parsed (from ${keyrings.from}); it must hold a [client.${options.user}] section with key = <base64 secret>, as 'ceph auth get client.${options.user}' prints it; fix it or give another with ${flags.keyring}`,
      });
    }
  }
  if (error instanceof PermissionError) {
    const holder = await keyringHolding(keyrings.paths, options.user);
    return new PermissionError({
      code: error.code, operation: 'connect', resource: holder ?? keyrings.paths.join(','), cause: error,
      detail: holder === undefined
        ? `cannot connect to ${who}: no keyring of ${keyrings.paths.join(', ')} (from ${keyrings.from}) holds a key for client.${options.user}; give its keyring with ${flags.keyring} ('ceph auth get client.${options.user} -o FILE' writes one)`
        : `cannot connect to ${who}: the monitors refused the key for client.${options.user} in ${holder}; check it against 'ceph auth get client.${options.user}', or give the right keyring with ${flags.keyring}`,
    });
  }
  if (error instanceof TimeoutError) {
    const monitors = options.monHost ?? (conf === undefined ? undefined : lookupClientSetting(conf.sections, options.user, 'mon_host'));
    return new TimeoutError({
      code: 'ETIMEDOUT', operation: 'connect', resource: monitors ?? options.conf ?? 'the monitors', cause: error,
      detail: `cannot connect to ${who}: no monitor at ${monitors ?? '(no mon_host configured)'} answered within ${options.timeoutMs ?? 30_000} ms; check mon_host in ${conf?.path ?? options.conf ?? 'the configuration'} (or ${flags.mon}) and that the monitors are up (ceph -s)`,
    });
  }
  return error;
}

/** Cluster.connect with the failure explained. */
export async function connectCluster(target: ResolvedCluster): Promise<Cluster> {
  try {
    return await Cluster.connect(target.options);
  } catch (error) {
    throw error instanceof CephError ? await explain(error, target) : error;
  }
}
