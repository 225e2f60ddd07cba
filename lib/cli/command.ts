/**
 * What a CLI command is: its options and help, a prepare step that checks
 * the usage and reads local files before any connection, and the run that
 * follows (on the clusters, or offline).
 */
import { readFile } from 'node:fs/promises';
import type { ParseArgsConfig } from 'node:util';
import type { BackupEngine } from '../backup/engine.js';
import { describeSubject, resolveSubject, type NamedImage, type SubjectInput } from '../backup/naming.js';
import { importRecord, type BackupRecord } from '../backup/record.js';
import { fromSystem, NotFoundError } from '../ceph/errors.js';
import { UsageError } from './exit-codes.js';
import type { ProgressReporter } from './progress.js';

export type Options = NonNullable<ParseArgsConfig['options']>;
export type Values = Record<string, string | boolean | undefined>;

/** What the command shows: `data` for --json, `text` for people (undefined: nothing, stdout carried a raw image). */
export interface Output {
  data: unknown;
  text: string | undefined;
  /** A result that is itself a failure (a verify that found mismatches); default 0. */
  exitCode?: number;
}

/** The terminal side of a run. */
export interface Ui {
  /** A progress reporter, or undefined when progress is off (--json, --quiet, --no-progress). */
  progress(label: string): ProgressReporter | undefined;
  /** A note on stderr (not with --quiet). */
  notice(text: string): void;
  signal: AbortSignal;
}

export type Prepared =
  | { offline: true; run(ui: Ui): Promise<Output> }
  | { offline: false; /** The backup pool, when the command names its own. */ backupPool?: string; run(engine: BackupEngine, ui: Ui): Promise<Output> };

export interface Command {
  summary: string;
  usage: string;
  options: Options;
  /** Positional arguments allowed (import-record's record). */
  positionals?: boolean;
  /** Checks the usage and reads local input; throws UsageError (or a typed error naming a file) before connecting. */
  prepare(values: Values, positionals: string[]): Promise<Prepared>;
}

/** A string option's value, undefined when not given. */
export function optional(values: Values, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

/** A required string option; `flag` is how the help spells it ('-p/--pool'). */
export function required(values: Values, name: string, flag = `--${name}`): string {
  const value = values[name];
  if (typeof value !== 'string' || value === '') throw new UsageError(`${flag} is required`);
  return value;
}

/** Reads a local file the user named with `flag`; failures name both. */
export async function readUserFile(path: string, flag: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw fromSystem(error, 'read', path, `cannot read ${flag} ${path}`);
  }
}

/** --volume ID, or --image NAME in -p POOL (and --namespace NS): what is backed up. */
export const SUBJECT_OPTIONS: Options = {
  'volume': { type: 'string' },
  'image': { type: 'string' },
  'pool': { type: 'string', short: 'p' },
  'namespace': { type: 'string' },
};

export const RECORD_OPTIONS: Options = {
  'record': { type: 'string' },
  'record-file': { type: 'string' },
  ...SUBJECT_OPTIONS,
  'backup-id': { type: 'string' },
};

export const SUBJECT_HELP = `  --volume ID           a Cinder volume (the image volume-<ID>), or
  --image NAME          any RBD image, in -p POOL (and --namespace NS)`;

export const RECORD_HELP = `  --record TEXT | --record-file PATH   the backup's exported record, or
  (--volume ID | --image NAME -p POOL [--namespace NS]) --backup-id ID
                                       find it in the backup pool`;

/**
 * --volume ID or --image NAME (whose pool -p names), not both; undefined
 * when neither is given. The image's names are checked here, before
 * anything connects.
 */
export function subjectOption(values: Values): string | NamedImage | undefined {
  const volumeId = optional(values, 'volume');
  const image = optional(values, 'image');
  const namespace = optional(values, 'namespace');
  if (volumeId !== undefined && image !== undefined) throw new UsageError('give --volume ID or --image NAME, not both');
  if (namespace !== undefined && image === undefined) throw new UsageError('--namespace goes with --image NAME');
  if (image === undefined) return volumeId;
  const pool = optional(values, 'pool');
  if (pool === undefined || pool === '') throw new UsageError('--image NAME needs -p/--pool POOL, the pool holding the image');
  const input = { pool, image, ...(namespace === undefined ? {} : { namespace }) };
  resolveSubject(input, 'usage');
  return input;
}

/** The flags that name a subject again, for messages that say what to run next. */
export function subjectFlags(input: SubjectInput): string {
  const subject = resolveSubject(input, 'usage');
  if (subject.kind === 'volume') return `--volume ${subject.volumeId}`;
  const quote = (text: string): string => (/^[A-Za-z0-9_.-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\\''")}'`);
  return `-p ${subject.pool}${subject.namespace ? ` --namespace ${subject.namespace}` : ''} --image ${quote(subject.image)}`;
}

/** How a command names its backup: a record in hand, or a subject and a backup id to look up in the backup pool. */
export type BackupRef = { record: BackupRecord } | { subject: SubjectInput; backupId: string };

/** Reads --record / --record-file, or checks that --volume (or --image) and --backup-id are both given. */
export async function backupRef(values: Values): Promise<BackupRef> {
  const record = optional(values, 'record');
  const file = optional(values, 'record-file');
  const subject = subjectOption(values);
  const backupId = optional(values, 'backup-id');
  const given = [record !== undefined, file !== undefined, subject !== undefined || backupId !== undefined].filter(Boolean).length;
  if (given !== 1) {
    throw new UsageError(`give the backup once: --record TEXT, --record-file PATH, or --volume ID with --backup-id ID (or --image NAME -p POOL with --backup-id ID)${given > 1 ? ' (got more than one)' : ''}`);
  }
  if (record !== undefined) return { record: importRecord(record) };
  if (file !== undefined) return { record: importRecord(await readUserFile(file, '--record-file')) };
  if (subject === undefined) throw new UsageError('--volume ID or --image NAME is required');
  return { subject, backupId: required(values, 'backup-id') };
}

/** The record a BackupRef names, looked up in the backup pool when it is ids. */
export async function resolveRecord(engine: BackupEngine, ref: BackupRef, backupPath?: string): Promise<BackupRecord> {
  if ('record' in ref) return ref.record;
  const options = backupPath === undefined ? {} : { backupPath };
  const listed = (await engine.listBackups(ref.subject, options)).find((entry) => entry.record.id === ref.backupId);
  if (!listed) {
    const subject = resolveSubject(ref.subject, 'find backup');
    const where = backupPath ?? (engine.config.backupTo === 'files' ? engine.config.backupPath! : `pool ${engine.config.backupPool}`);
    throw new NotFoundError({
      code: 'ENOENT', operation: 'find backup', resource: `${where}/${subject.key}`,
      detail: `no backup ${ref.backupId} of ${describeSubject(subject)} in ${where}; list them with: rbd-backup ls ${subjectFlags(ref.subject)}${backupPath === undefined ? '' : ` --backup-path ${backupPath}`}`,
    });
  }
  return listed.record;
}
