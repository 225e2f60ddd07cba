/**
 * Listing and deleting backups in a backup root (Cinder's chunked file
 * layout): what BackupEngine.listBackups and delete do for records of
 * Cinder's POSIX and NFS drivers and the engine's own backups into files.
 * An incremental in files is restored on top of its parent's objects, so
 * a backup with incrementals depending on it is deleted only with all of
 * them (withDependents), and says which.
 */
import { BusyError, invalidArgument, NotFoundError, NotSupportedError } from '../ceph/errors.js';
import { checkFlag, checkKnownKeys, checkName, optionalOptions } from '../ceph/validate.js';
import { listStoredBackups, readStoredBackup, removeStoredBackup, type StoredBackup } from '../files/chunked-store.js';
import { checkBackupPath, type ResolvedConfig } from './config.js';
import { DELETE_OPTIONS, type DeleteOptions, type DeleteResult } from './delete.js';
import type { ListedBackup } from './list.js';
import { logBackup } from './log.js';
import { checkPruneOptions, type PruneOptions, type PruneResult } from './prune.js';
import { decideRetention, parseRetentionPolicy } from './retention.js';
import { describeSubject, parseFileBackupSnapshotName, resolveSubject, volumeImageName, type SubjectInput } from './naming.js';
import { newRecord, recordLocation, type BackupRecord } from './record.js';

/** Where backups in files are: the call's backupPath, else the engine's; refused without either. */
export function backupRoot(config: ResolvedConfig, given: unknown, operation: string, resource: string): string {
  const root = checkBackupPath(given, operation, resource) ?? config.backupPath;
  if (root === undefined) {
    throw invalidArgument(operation, resource,
      'backups in files (Cinder\'s chunked layout of its NFS and POSIX drivers) are found under a backup root: give backupPath (the CLI\'s --backup-path)');
  }
  return root;
}

/** Python's str() of a datetime as Cinder writes created_at, read as a Date (UTC when it names no zone). */
export function parseCreatedAt(text: string | null): Date {
  if (text === null) return new Date(0);
  const iso = text.replace(' ', 'T');
  const date = new Date(/[zZ]|[+-]\d\d:\d\d$/.test(iso) ? iso : `${iso}Z`);
  return Number.isNaN(date.getTime()) ? new Date(0) : date;
}

/** Where a backup's objects end. */
function objectsEnd(backup: StoredBackup): number {
  return backup.metadata.objects.reduce((max, o) => Math.max(max, o.offset + o.length), 0);
}

/**
 * The volume's size at each backup: where its chain's full backup's
 * objects end (a full backup covers the volume; an incremental's own
 * objects cover only what changed). A chain whose full backup is not in
 * the root: where its own objects end.
 */
function volumeSizes(backups: readonly StoredBackup[]): Map<string, number> {
  const byId = new Map(backups.map((b) => [b.metadata.backupId, b]));
  const sizes = new Map<string, number>();
  const sizeOf = (backup: StoredBackup, depth: number): number => {
    const known = sizes.get(backup.metadata.backupId);
    if (known !== undefined) return known;
    const parent = backup.metadata.parentId === null ? undefined : byId.get(backup.metadata.parentId);
    const size = parent === undefined || depth > byId.size ? objectsEnd(backup) : sizeOf(parent, depth + 1);
    sizes.set(backup.metadata.backupId, size);
    return size;
  };
  for (const backup of backups) sizeOf(backup, 0);
  return sizes;
}

function toListed(backup: StoredBackup, size: number): ListedBackup {
  const { metadata } = backup;
  const subject = resolveSubject(metadata.volumeId, 'listBackups');
  const createdAt = parseCreatedAt(metadata.createdAt);
  const bytes = metadata.objects.reduce((sum, o) => sum + o.length, 0);
  const container = backup.dir.split('/').slice(-3).join('/');
  return {
    subject,
    record: newRecord({
      id: metadata.backupId, subject, container, baseImage: undefined, sizeBytes: BigInt(size), parentId: metadata.parentId, createdAt,
      displayName: metadata.name ?? undefined, displayDescription: metadata.description ?? undefined,
      files: { prefix: backup.prefix, objectCount: metadata.objects.length },
    }),
    image: backup.dir, snapshot: undefined, full: metadata.parentId === null,
    sizeBytes: BigInt(size), createdAt, bytesWritten: BigInt(bytes),
  };
}

/** Each backup listed, with its volume's size. */
function listed(backups: readonly StoredBackup[]): ListedBackup[] {
  const sizes = volumeSizes(backups);
  return backups.map((b) => toListed(b, sizes.get(b.metadata.backupId)!));
}

/** The volume's backups in the root, oldest first. */
export async function listFileBackups(root: string, of: SubjectInput): Promise<ListedBackup[]> {
  const subject = resolveSubject(of, 'listBackups');
  if (subject.kind !== 'volume') return [];
  const { backups, damaged } = await listStoredBackups(root, 'listBackups', subject.volumeId);
  for (const { dir, reason } of damaged) logBackup('listBackups: %s is not read as a backup: %s', dir, reason);
  return listed(backups).sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime());
}

/** Every backup in the root that restores on top of this one (its incrementals, theirs, ...), newest first. */
function dependentsOf(backupId: string, all: StoredBackup[]): StoredBackup[] {
  const found: StoredBackup[] = [];
  const parents = new Set([backupId]);
  for (let grew = true; grew;) {
    grew = false;
    for (const backup of all) {
      const parent = backup.metadata.parentId;
      if (parent !== null && parents.has(parent) && !parents.has(backup.metadata.backupId)) {
        parents.add(backup.metadata.backupId);
        found.unshift(backup);
        grew = true;
      }
    }
  }
  return found;
}

export async function runFilesDelete(config: ResolvedConfig, record: BackupRecord,
  given: DeleteOptions | undefined): Promise<DeleteResult> {
  const operation = 'delete';
  const options = optionalOptions(given, operation);
  checkKnownKeys(options, DELETE_OPTIONS, operation);
  const location = recordLocation(record, operation);
  const resource = `backup ${location.backupId}`;
  const root = backupRoot(config, options.backupPath, operation, resource);
  checkFlag('withDependents', options.withDependents, operation, resource);
  if (options.sourcePool !== undefined) checkName('pool', options.sourcePool, operation, resource);
  if (location.subject.kind !== 'volume') {
    throw new NotSupportedError({ code: 'EOPNOTSUPP', operation, resource, detail: 'backups in files are of Cinder volumes' });
  }
  const { volumeId } = location.subject;
  let backup: StoredBackup;
  try {
    backup = await readStoredBackup(root, {
      backupId: location.backupId, container: record.container, prefix: record.service_metadata ?? undefined,
    }, operation);
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
    throw new NotFoundError({ code: 'ENOENT', operation, resource, detail: `backup ${location.backupId} is not in ${root} (${error.message})` });
  }
  const { backups } = await listStoredBackups(root, operation, volumeId);
  const dependents = dependentsOf(location.backupId, backups);
  if (dependents.length > 0 && options.withDependents !== true) {
    throw new BusyError({
      code: 'EBUSY', operation, resource,
      detail: `${dependents.length} incremental backup(s) restore on top of it: ${dependents.map((d) => d.metadata.backupId).join(', ')}; ` +
        'delete them first, or delete it with its dependents (withDependents, the CLI\'s --with-dependents)',
    });
  }
  const removed: string[] = [];
  for (const each of [...dependents, backup]) {
    await removeStoredBackup(root, each, operation);
    removed.push(each.metadata.backupId);
  }
  let removedSourceSnapshot: string | undefined;
  if (options.sourcePool !== undefined) {
    await using pool = await config.source.pool(options.sourcePool);
    await using volume = await pool.openImage(volumeImageName(volumeId));
    for (const snapshot of await volume.listSnapshots()) {
      const parsed = parseFileBackupSnapshotName(snapshot.name);
      if (parsed !== undefined && removed.includes(parsed.backupId)) {
        await volume.removeSnapshot(snapshot.name);
        if (parsed.backupId === location.backupId) removedSourceSnapshot = snapshot.name;
      }
    }
  }
  logBackup('delete: removed %s from %s', removed.join(', '), root);
  return {
    removedSnapshots: [], removedImages: [], removedMetadata: false, removedDigests: false, removedSourceSnapshot,
    removedBackups: removed,
  };
}

/**
 * prune for a backup root: the retention policy decides as for the backup
 * pool, and a backup a kept incremental restores on top of is kept too
 * (and says so); the rest goes, newest first, so that no incremental is
 * ever left without its parent.
 */
export async function runFilesPrune(config: ResolvedConfig, of: SubjectInput, policyText: string,
  given: PruneOptions | undefined): Promise<PruneResult> {
  const operation = 'prune';
  const subject = resolveSubject(of, operation);
  const options = checkPruneOptions(given, operation, describeSubject(subject));
  const root = backupRoot(config, options.backupPath, operation, describeSubject(subject));
  const policy = parseRetentionPolicy(policyText, operation);
  const { dryRun } = options;
  const result: PruneResult = { kept: [], removed: [], removedImages: [], dryRun };
  if (subject.kind !== 'volume') return result;
  const { backups } = await listStoredBackups(root, operation, subject.volumeId);
  const points = listed(backups);
  const all = new Map(backups.map((b, i) => [b.metadata.backupId, { stored: b, point: points[i]! }]));
  const decision = decideRetention([...all.values()].map((b) => ({ backupId: b.point.record.id, createdAt: b.point.createdAt })),
    policy, options.now);
  const kept = new Map(decision.keep.map((k) => [k.backupId, [...k.reasons]]));
  for (const { backupId } of decision.keep) {
    for (let parent = all.get(backupId)?.stored.metadata.parentId ?? null; parent !== null && all.has(parent);
      parent = all.get(parent)!.stored.metadata.parentId) {
      const reasons = kept.get(parent) ?? [];
      if (reasons.length === 0) kept.set(parent, reasons);
      if (!reasons.some((r) => r.startsWith('a kept incremental'))) reasons.push(`a kept incremental (${backupId}) restores on top of it`);
    }
  }
  const describeOne = (id: string) => {
    const { point } = all.get(id)!;
    return { backupId: id, image: point.image, snapshot: undefined, createdAt: point.createdAt };
  };
  result.kept = [...kept].map(([id, reasons]) => ({ ...describeOne(id), reasons }))
    .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime());
  const remove = [...all.keys()].filter((id) => !kept.has(id))
    .sort((a, b) => all.get(b)!.point.createdAt.getTime() - all.get(a)!.point.createdAt.getTime());
  for (const id of remove) {
    result.removed.push(describeOne(id));
    if (!dryRun) await removeStoredBackup(root, all.get(id)!.stored, operation);
  }
  result.removed.reverse();
  logBackup('prune of %s in %s (%s)%s: kept %d, removed %d', describeSubject(subject), root, policyText, dryRun ? ' (dry run)' : '',
    result.kept.length, result.removed.length);
  return result;
}
