/**
 * rbd-backup's own configuration file (/etc/ceph/rbd-backup.conf, or
 * --config PATH): both clusters, the backup pool and engine options, in
 * Ceph's INI dialect or in JSON. Keys may be written snake_case
 * (max_source_snapshots), dashed, or camelCase (maxSourceSnapshots).
 */
import { readFile } from 'node:fs/promises';
import { fromSystem, invalidArgument } from '../ceph/errors.js';
import { parseConf } from '../ceph/ceph-conf.js';

export const DEFAULT_CONFIG_PATH = '/etc/ceph/rbd-backup.conf';

/** How to reach one cluster. */
export interface ClusterConfig {
  conf?: string;
  user?: string;
  keyring?: string;
  cluster?: string;
  monHost?: string;
  timeoutMs?: number;
  opTimeoutMs?: number;
}

/** BackupEngine options the file may set (see BackupEngineConfig). */
export interface EngineConfig {
  chunkSize?: number;
  maxSourceSnapshots?: number;
  stripeUnit?: number;
  stripeCount?: number;
  restoreDiscardExcessBytes?: boolean;
  ioConcurrency?: number;
  memoryBytes?: number;
  lockWaitMs?: number;
  lockTtlMs?: number;
  checkpointMs?: number;
  digests?: boolean;
  backupPath?: string;
  backupTo?: 'pool' | 'files';
  compression?: string;
  backupFileSize?: number;
  shaBlockSize?: number;
}

export interface ConfigFile {
  path: string;
  source: ClusterConfig;
  backup: ClusterConfig & { pool?: string };
  engine: EngineConfig;
}

type Kind = 'string' | 'integer' | 'bytes' | 'boolean';

const CLUSTER_KEYS: Record<string, Kind> = {
  conf: 'string', user: 'string', keyring: 'string', cluster: 'string', monHost: 'string',
  timeoutMs: 'integer', opTimeoutMs: 'integer',
};

const SECTIONS: Record<keyof Omit<ConfigFile, 'path'>, Record<string, Kind>> = {
  source: CLUSTER_KEYS,
  backup: { ...CLUSTER_KEYS, pool: 'string' },
  engine: {
    chunkSize: 'bytes', maxSourceSnapshots: 'integer', stripeUnit: 'bytes', stripeCount: 'integer',
    restoreDiscardExcessBytes: 'boolean', ioConcurrency: 'integer', memoryBytes: 'bytes',
    lockWaitMs: 'integer', lockTtlMs: 'integer', checkpointMs: 'integer', digests: 'boolean',
    backupPath: 'string', backupTo: 'string', compression: 'string', backupFileSize: 'bytes', shaBlockSize: 'bytes',
  },
};

/** One spelling for max_source_snapshots, max-source-snapshots and maxSourceSnapshots. */
function keyOf(key: string): string {
  return key.toLowerCase().replace(/[\s_-]/g, '');
}

const UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

function convert(kind: Kind, raw: unknown, where: string, path: string): string | number | boolean {
  if (kind === 'string') {
    if (typeof raw === 'string' && raw !== '') return raw;
  } else if (kind === 'boolean') {
    if (typeof raw === 'boolean') return raw;
    if (raw === 'true' || raw === 'false') return raw === 'true';
  } else if (typeof raw === 'number') {
    if (Number.isSafeInteger(raw) && raw >= 0) return raw;
  } else if (typeof raw === 'string') {
    // Sizes may carry a binary unit (128M, 4 MiB), as Ceph's size options do.
    const match = kind === 'bytes' ? /^(\d+)\s*([kmgt]?)(?:i?b)?$/i.exec(raw.trim()) : /^(\d+)()$/.exec(raw.trim());
    if (match) {
      const value = Number(match[1]) * UNITS[match[2].toLowerCase()];
      if (Number.isSafeInteger(value)) return value;
    }
  }
  const expected = { string: 'a non-empty string', integer: 'a whole number', bytes: 'a byte count (e.g. 134217728 or 128M)', boolean: 'true or false' }[kind];
  throw invalidArgument('read config', path, `${where} must be ${expected}, got ${JSON.stringify(raw)}`);
}

/** Builds the typed configuration from section -> key -> raw value, refusing unknown names (typos). */
function fromSections(sections: Map<string, Map<string, unknown>>, path: string): ConfigFile {
  const result: ConfigFile = { path, source: {}, backup: {}, engine: {} };
  for (const [sectionName, entries] of sections) {
    const section = (Object.keys(SECTIONS) as Array<keyof typeof SECTIONS>).find((s) => s === sectionName.toLowerCase());
    if (section === undefined) {
      throw invalidArgument('read config', path, `unknown section ${JSON.stringify(sectionName)}; the sections are source, backup and engine`);
    }
    const known = SECTIONS[section];
    const target = result[section] as Record<string, unknown>;
    for (const [key, raw] of entries) {
      const name = Object.keys(known).find((k) => keyOf(k) === keyOf(key));
      if (name === undefined) {
        throw invalidArgument('read config', path,
          `unknown key ${JSON.stringify(key)} in [${sectionName}]; known: ${Object.keys(known).join(', ')}`);
      }
      target[name] = convert(known[name], raw, `[${sectionName}] ${key}`, path);
    }
  }
  return result;
}

/** Parses the file's text: JSON when it starts with '{', Ceph-style INI otherwise. */
export function parseConfigFile(text: string, path: string): ConfigFile {
  if (!text.trimStart().startsWith('{')) return fromSections(parseConf(text, path), path);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw invalidArgument('read config', path, `not valid JSON: ${(error as Error).message}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw invalidArgument('read config', path, 'must be a JSON object with source, backup and engine objects');
  }
  const sections = new Map<string, Map<string, unknown>>();
  for (const [name, body] of Object.entries(parsed as Record<string, unknown>)) {
    if (!body || typeof body !== 'object' || Array.isArray(body)) {
      throw invalidArgument('read config', path, `${JSON.stringify(name)} must be an object of settings`);
    }
    sections.set(name, new Map(Object.entries(body)));
  }
  return fromSections(sections, path);
}

/**
 * The configuration file to use: `explicit` (which must exist), else
 * /etc/ceph/rbd-backup.conf when it exists, else none.
 */
export async function loadConfigFile(explicit: string | undefined): Promise<ConfigFile | undefined> {
  const path = explicit ?? DEFAULT_CONFIG_PATH;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if (explicit === undefined && (error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromSystem(error, 'read config', path, `cannot read the configuration file ${path} (--config)`);
  }
  return parseConfigFile(text, path);
}
