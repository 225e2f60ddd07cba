/**
 * The rbd-backup commands: parsing their arguments, running them through a
 * BackupEngine, printing results as text or JSON.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { Cluster, type ConnectOptions } from '../ceph/cluster.js';
import { NotFoundError } from '../ceph/errors.js';
import { BackupEngine } from '../backup/engine.js';
import type { BackupRecord } from '../backup/record.js';
import type { RestoreTarget } from '../backup/restore.js';
import { EXIT_CODES_HELP, UsageError } from './exit-codes.js';
import { progressReporter } from './progress.js';

type Options = NonNullable<ParseArgsConfig['options']>;

const CLUSTER_OPTIONS: Options = {
  'conf': { type: 'string' },
  'user': { type: 'string' },
  'keyring': { type: 'string' },
  'backup-conf': { type: 'string' },
  'backup-user': { type: 'string' },
  'backup-keyring': { type: 'string' },
  'backup-pool': { type: 'string' },
  'json': { type: 'boolean' },
  'help': { type: 'boolean', short: 'h' },
};

const CLUSTER_HELP = `Cluster options:
  --conf PATH            source cluster's ceph.conf (default /etc/ceph/ceph.conf)
  --user NAME            source cluster user (default admin)
  --keyring PATH         source user's keyring (default: from the conf)
  --backup-conf PATH     backup cluster's ceph.conf (default: the source cluster)
  --backup-user NAME     backup cluster user (default: --user)
  --backup-keyring PATH  backup user's keyring
  --backup-pool POOL     backup pool (default backups)
  --json                 print the result as JSON
  -h, --help             this help`;

const RECORD_HELP = `  --record TEXT | --record-file PATH   the backup's exported record, or
  --volume ID --backup-id ID           find it in the backup pool`;

interface Command {
  summary: string;
  usage: string;
  options: Options;
  run(engine: BackupEngine, values: Values, signal: AbortSignal): Promise<unknown>;
  print(result: unknown): string;
}

type Values = Record<string, string | boolean | undefined>;

function need(values: Values, name: string): string {
  const value = values[name];
  if (typeof value !== 'string' || value === '') throw new UsageError(`--${name} is required`);
  return value;
}

async function findRecord(engine: BackupEngine, values: Values): Promise<BackupRecord> {
  if (typeof values.record === 'string') return engine.importRecord(values.record);
  if (typeof values['record-file'] === 'string') {
    return engine.importRecord(await readFile(values['record-file'], 'utf8'));
  }
  const volumeId = need(values, 'volume');
  const backupId = need(values, 'backup-id');
  const listed = (await engine.listBackups(volumeId)).find((entry) => entry.record.id === backupId);
  if (!listed) {
    throw new NotFoundError({
      code: 'ENOENT', operation: 'find backup', resource: `volume ${volumeId}`,
      detail: `no backup ${backupId} of volume ${volumeId} in pool ${engine.config.backupPool}`,
    });
  }
  return listed.record;
}

const RECORD_OPTIONS: Options = {
  'record': { type: 'string' },
  'record-file': { type: 'string' },
  'volume': { type: 'string' },
  'backup-id': { type: 'string' },
};

const MiB = 1 << 20;

function restoreTarget(values: Values): RestoreTarget {
  const given = ['target-pool', 'target-file', 'stdout'].filter((name) => values[name] !== undefined);
  if (given.length !== 1) {
    throw new UsageError(`give exactly one of --target-pool, --target-file, --stdout${given.length ? ` (got ${given.map((g) => `--${g}`).join(' and ')})` : ''}`);
  }
  if (values['target-volume'] !== undefined && values['target-pool'] === undefined) {
    throw new UsageError('--target-volume needs --target-pool');
  }
  if (typeof values['target-pool'] === 'string') {
    const id = values['target-volume'] as string | undefined;
    return { volume: { pool: values['target-pool'], ...(id === undefined ? {} : { id }) } };
  }
  if (typeof values['target-file'] === 'string') return { file: values['target-file'] };
  return { stream: process.stdout };
}

export const COMMANDS: Record<string, Command> = {
  backup: {
    summary: 'back up a volume (full the first time, incremental after)',
    usage: `rbd-backup backup --pool POOL --volume ID [--backup-id ID] [--parent ID] [--full]
                  [--metadata PATH] [--name TEXT] [--description TEXT]

  --pool POOL        the pool holding volume-<ID>
  --volume ID        the volume id
  --backup-id ID     default: a new UUID
  --parent ID        make an incremental from this backup
  --full             a full backup even when an incremental is possible
  --metadata PATH    JSON volume metadata to store as backup.<id>.meta`,
    options: {
      'pool': { type: 'string' }, 'volume': { type: 'string' }, 'backup-id': { type: 'string' },
      'parent': { type: 'string' }, 'full': { type: 'boolean' }, 'metadata': { type: 'string' },
      'name': { type: 'string' }, 'description': { type: 'string' },
    },
    async run(engine, values, signal) {
      const progress = values.json ? undefined : progressReporter('backup');
      try {
        const volumeMetadata = typeof values.metadata === 'string'
          ? JSON.parse(await readFile(values.metadata, 'utf8')) as Record<string, unknown>
          : undefined;
        const result = await engine.backup({
          pool: need(values, 'pool'), volumeId: need(values, 'volume'),
          backupId: values['backup-id'] as string | undefined, parentId: values.parent as string | undefined,
          full: values.full === true, volumeMetadata,
          displayName: values.name as string | undefined, displayDescription: values.description as string | undefined,
          onLockWait: (holder) => process.stderr.write(`waiting for the volume's lock, held by ${holder.description} (${holder.client} at ${holder.address})\n`),
          signal, onProgress: progress?.onProgress,
        });
        return { ...result, exportedRecord: engine.exportRecord(result.record) };
      } finally {
        progress?.finish();
      }
    },
    print(value) {
      const r = value as Awaited<ReturnType<BackupEngine['backup']>> & { exportedRecord: string };
      return [
        `backup ${r.record.id} of volume ${r.record.volume_id}: ${r.mode}${r.fromSnapshot ? ` from ${r.fromSnapshot}` : ''}`,
        ...(r.convertedToFull ? [`converted to a full backup: ${r.convertedToFull}`] : []),
        `snapshot ${r.snapshot} on ${r.baseImage}`,
        `${(r.stats.bytesWritten / MiB).toFixed(1)} MiB written, ${(r.stats.bytesRead / MiB).toFixed(1)} MiB read in ${(r.stats.elapsedMs / 1000).toFixed(2)} s`,
        `record: ${r.exportedRecord}`,
      ].join('\n');
    },
  },
  restore: {
    summary: 'restore a backup into a volume, a file or stdout',
    usage: `rbd-backup restore (--record TEXT | --record-file PATH | --volume ID --backup-id ID)
                   (--target-pool POOL [--target-volume ID] | --target-file PATH | --stdout)

${RECORD_HELP}
  --target-pool POOL    restore into volume-<target-volume> there (created when missing)
  --target-volume ID    default: a new volume id
  --target-file PATH    write a raw image file (an existing file is refused)
  --stdout              write the raw image to standard output`,
    options: {
      ...RECORD_OPTIONS,
      'target-pool': { type: 'string' }, 'target-volume': { type: 'string' }, 'target-file': { type: 'string' },
      'stdout': { type: 'boolean' },
    },
    async run(engine, values, signal) {
      const record = await findRecord(engine, values);
      const progress = values.json || values.stdout ? undefined : progressReporter('restore');
      try {
        return await engine.restore({ backup: record, target: restoreTarget(values), signal, onProgress: progress?.onProgress });
      } finally {
        progress?.finish();
      }
    },
    print(value) {
      const r = value as Awaited<ReturnType<BackupEngine['restore']>>;
      return [
        `restored ${r.source} -> ${r.target} by ${r.path === 'diff' ? 'the diff path' : 'a full copy'}`,
        ...(r.failedCondition ? [`full copy because condition ${r.failedCondition.number} failed: ${r.failedCondition.reason}`] : []),
        `${(Number(r.size) / MiB).toFixed(1)} MiB volume, ${(r.bytesRead / MiB).toFixed(1)} MiB read in ${(r.elapsedMs / 1000).toFixed(2)} s`,
      ].join('\n');
    },
  },
  delete: {
    summary: 'delete a backup (its chain image goes with its last backup)',
    usage: `rbd-backup delete (--record TEXT | --record-file PATH | --volume ID --backup-id ID) [--pool POOL]

${RECORD_HELP}
  --pool POOL           the source volume's pool: its snapshot of the backup goes too
                        (default: left for the volume's next backup to remove)`,
    options: { ...RECORD_OPTIONS, pool: { type: 'string' } },
    async run(engine, values) {
      const record = await findRecord(engine, values);
      return engine.delete(record, typeof values.pool === 'string' ? { sourcePool: values.pool } : {});
    },
    print(value) {
      const r = value as Awaited<ReturnType<BackupEngine['delete']>>;
      return [
        ...r.removedSnapshots.map((s) => `removed snapshot ${s}`),
        ...r.removedImages.map((i) => `removed image ${i}`),
        ...(r.removedMetadata ? ['removed its .meta object'] : []),
        ...(r.removedSourceSnapshot ? [`removed source snapshot ${r.removedSourceSnapshot}`] : []),
      ].join('\n');
    },
  },
  prune: {
    summary: "remove the backups a retention policy does not keep (never the newest)",
    usage: `rbd-backup prune --volume ID --keep POLICY [--dry-run] [--pool POOL]

  --volume ID       the volume id
  --keep POLICY     e.g. latest3,days7,weeks4,months6: the newest N backups, and the
                    newest of each of the last N hours/days/weeks/months/years (UTC)
  --dry-run         report what would be kept and removed, remove nothing
  --pool POOL       the source volume's pool: removed backups' snapshots leave it too`,
    options: { volume: { type: 'string' }, keep: { type: 'string' }, 'dry-run': { type: 'boolean' }, pool: { type: 'string' } },
    async run(engine, values) {
      return engine.prune(need(values, 'volume'), need(values, 'keep'), {
        dryRun: values['dry-run'] === true,
        ...(typeof values.pool === 'string' ? { sourcePool: values.pool } : {}),
      });
    },
    print(value) {
      const r = value as Awaited<ReturnType<BackupEngine['prune']>>;
      const verb = r.dryRun ? 'would remove' : 'removed';
      return [
        ...r.kept.map((k) => `keep    ${k.backupId}  ${k.createdAt.toISOString()}  ${k.image}  (${k.reasons.join('; ')})`),
        ...r.removed.map((k) => `${r.dryRun ? 'remove' : 'removed'} ${k.backupId}  ${k.createdAt.toISOString()}  ${k.image}`),
        ...r.removedImages.map((i) => `removed image ${i}`),
        `${r.kept.length} kept, ${r.removed.length} ${verb}`,
      ].join('\n');
    },
  },
  gc: {
    summary: 'remove what killed runs left (unfinished images, orphan snapshots, dead locks)',
    usage: `rbd-backup gc [--pool POOL] [--dry-run]

  --pool POOL       the source volumes' pool: orphan backup snapshots on the volumes
                    and half-restored volumes there are removed too
  --dry-run         report what would be removed, remove nothing`,
    options: { pool: { type: 'string' }, 'dry-run': { type: 'boolean' } },
    async run(engine, values) {
      return engine.gc({
        dryRun: values['dry-run'] === true,
        ...(typeof values.pool === 'string' ? { sourcePool: values.pool } : {}),
      });
    },
    print(value) {
      const r = value as Awaited<ReturnType<BackupEngine['gc']>>;
      const verb = r.dryRun ? 'would remove' : 'removed';
      return [
        ...r.removedImages.map((i) => `${verb} image ${i}`),
        ...r.removedSnapshots.map((s) => `${verb} snapshot ${s}`),
        ...r.brokenLocks.map((b) => `broke the lock ${b.object} of ${b.holder.description} (${b.holder.client}, fenced)`),
        ...r.skipped.map((s) => `skipped volume ${s.volumeId}: ${s.reason}`),
        `${r.removedImages.length} image(s) and ${r.removedSnapshots.length} snapshot(s) ${verb}`,
      ].join('\n');
    },
  },
  ls: {
    summary: "list a volume's backups (read from the backup pool)",
    usage: 'rbd-backup ls --volume ID',
    options: { volume: { type: 'string' } },
    async run(engine, values) {
      return engine.listBackups(need(values, 'volume'));
    },
    print(value) {
      const listed = value as Awaited<ReturnType<BackupEngine['listBackups']>>;
      if (listed.length === 0) return 'no backups';
      return listed.map((l) => `${l.record.id}  ${l.createdAt.toISOString()}  ${l.full ? 'full' : 'incr'}  ${(Number(l.sizeBytes) / MiB).toFixed(0)} MiB  ${l.snapshot ? `${l.image}@${l.snapshot}` : `${l.image} (legacy full copy)`}`).join('\n');
    },
  },
  'export-record': {
    summary: "print a backup's record (Cinder's base64 format)",
    usage: 'rbd-backup export-record --volume ID --backup-id ID',
    options: { 'volume': { type: 'string' }, 'backup-id': { type: 'string' } },
    async run(engine, values) {
      const record = await findRecord(engine, values);
      return { record, exportedRecord: engine.exportRecord(record) };
    },
    print(value) {
      return (value as { exportedRecord: string }).exportedRecord;
    },
  },
  'import-record': {
    summary: 'check a record (ours or Cinder\'s) and show what it names',
    usage: 'rbd-backup import-record (RECORD | --record-file PATH)',
    options: { 'record-file': { type: 'string' } },
    async run(engine, values) {
      const text = typeof values['record-file'] === 'string'
        ? await readFile(values['record-file'], 'utf8')
        : values.positional;
      if (typeof text !== 'string') throw new UsageError('give the record or --record-file');
      return engine.importRecord(text);
    },
    print(value) {
      const r = value as BackupRecord;
      return `backup ${r.id} of volume ${r.volume_id || '(unknown)'} in pool ${r.container}, ${r.size} GiB, base ${r.service_metadata ?? '(legacy)'}`;
    },
  },
};

export function mainHelp(): string {
  return `rbd-backup: Ceph RBD backups with Cinder's semantics, from one process.

Usage: rbd-backup COMMAND [options]   (rbd-backup COMMAND --help for its options)

Commands:
${Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(14)} ${c.summary}`).join('\n')}

${CLUSTER_HELP}

${EXIT_CODES_HELP}
`;
}

export function commandHelp(name: string): string {
  return `${COMMANDS[name].usage}\n\n${CLUSTER_HELP}\n\n${EXIT_CODES_HELP}\n`;
}

export function parseCommand(name: string, argv: string[]): Values {
  const command = COMMANDS[name];
  try {
    const { values, positionals } = parseArgs({
      args: argv, options: { ...CLUSTER_OPTIONS, ...command.options }, allowPositionals: name === 'import-record',
      strict: true,
    });
    return { ...(values as Values), positional: positionals[0] };
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

function connectOptions(conf: unknown, user: unknown, keyring: unknown): ConnectOptions {
  return {
    ...(typeof conf === 'string' ? { conf } : {}),
    ...(typeof user === 'string' ? { user } : {}),
    ...(typeof keyring === 'string' ? { keyring } : {}),
  };
}

/** Connects the clusters the options name, runs the command, closes them. */
export async function runCommand(name: string, values: Values, signal: AbortSignal): Promise<unknown> {
  const source = await Cluster.connect(connectOptions(values.conf, values.user, values.keyring));
  const separate = values['backup-conf'] !== undefined || values['backup-keyring'] !== undefined ||
    values['backup-user'] !== undefined;
  try {
    const backupCluster = separate
      ? await Cluster.connect(connectOptions(values['backup-conf'] ?? values.conf,
        values['backup-user'] ?? values.user, values['backup-keyring'] ?? values.keyring))
      : source;
    try {
      const engine = new BackupEngine({
        source, backupCluster,
        ...(typeof values['backup-pool'] === 'string' ? { backupPool: values['backup-pool'] } : {}),
      });
      return await COMMANDS[name].run(engine, values, signal);
    } finally {
      if (backupCluster !== source) await backupCluster.close();
    }
  } finally {
    await source.close();
  }
}
