/**
 * A backup of a Cinder volume into a backup root in the chunked layout of
 * Cinder's POSIX and NFS drivers (lib/files), full or incremental by RBD
 * diff. The volume gets a snapshot per backup (`backup-files.<id>.snap.*`,
 * apart from the backup pool's); an incremental starts from the newest
 * one whose backup is in the root, or from the parent asked for. Its
 * parent's snapshot gone, the volume resized, or the hash block changed:
 * a full backup instead, and the result says why. Another backup into
 * files of the same volume is kept out by a RADOS lock beside the volume
 * (it works on any shared file system, NFS included, and a dead holder's
 * lock is broken as the backup pool's are).
 */
import { randomUUID } from 'node:crypto';
import { readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { AlreadyExistsError, CephError, fromSystem, invalidArgument, NotFoundError, NotSupportedError } from '../ceph/errors.js';
import { cancelledError } from '../ceph/cancel.js';
import type { SnapshotInfo } from '../ceph/snapshot.js';
import { checkName } from '../ceph/validate.js';
import { isPartialName, onFile } from '../engine/target-file.js';
import { backupChunked } from '../files/chunked-backup.js';
import { backupPrefix, containerPath, defaultContainer, sha256Name, type ChunkedObject } from '../files/chunked-layout.js';
import { listStoredBackups, readStoredBackup, type StoredBackup } from '../files/chunked-store.js';
import { Sha256FileReader } from '../files/sha256-file-reader.js';
import {
  asksFor, checkBackupOptions, nothingMoved, openSource, requestSubject, trimSourceSnapshots, type BackupRequest, type BackupResult,
} from './backup.js';
import { callBudget, transferAllowanceMs } from './budget.js';
import { OperationScope } from './cleanup.js';
import { checkBackupPath, checkCompression, type ResolvedConfig } from './config.js';
import { parseCreatedAt } from './files-inventory.js';
import { VolumeLock } from './lock.js';
import { logBackup } from './log.js';
import {
  checkId, describeSubject, fileBackupLockObjectName, fileBackupSnapshotName, parseFileBackupSnapshotName, volumeImageName,
  type Subject,
} from './naming.js';
import { newRecord } from './record.js';

/** What a backup into files adds to its result. */
export interface FilesBackupSummary {
  root: string;
  /** Its container under root (the record's container). */
  container: string;
  /** Its objects' prefix (the record's service_metadata). */
  prefix: string;
  objects: ChunkedObject[];
  /** Bytes of its objects' files. */
  bytesStored: bigint;
}

/** A backup in the root and its snapshot on the volume. */
type SnappedBackup = { backup: StoredBackup; snapshot: SnapshotInfo };
type Decision = { mode: 'full'; convertedToFull: string | undefined } | { mode: 'incremental'; parent: SnappedBackup };

const operation = 'backup';

/** The volume's backup-into-files snapshots, oldest first. */
function fileSnapshots<T extends { name: string }>(snapshots: readonly T[]): { info: T; backupId: string; seconds: number }[] {
  return snapshots.flatMap((info) => {
    const parsed = parseFileBackupSnapshotName(info.name);
    return parsed === undefined ? [] : [{ info, backupId: parsed.backupId, seconds: parsed.seconds }];
  }).sort((a, b) => a.seconds - b.seconds);
}

/** A backup of the root, when it is there and of the volume; undefined when it is gone or cannot be read (a container a run did not finish holds no metadata). */
async function storedOf(root: string, backupId: string, volumeId: string): Promise<StoredBackup | undefined> {
  try {
    const stored = await readStoredBackup(root, { backupId }, operation);
    return stored.metadata.volumeId === volumeId ? stored : undefined;
  } catch (error) {
    if (error instanceof NotFoundError) return undefined;
    if (error instanceof CephError && error.code === 'EBADMSG') {
      logBackup('backup %s in %s cannot be read (%s): taken as none', backupId, root, error.message);
      return undefined;
    }
    throw error;
  }
}

async function decide(request: BackupRequest, root: string, volumeId: string, snapshots: SnapshotInfo[]): Promise<Decision> {
  if (request.full === true) return { mode: 'full', convertedToFull: undefined };
  const ours = fileSnapshots(snapshots);
  if (request.parentId !== undefined) {
    const backup = await storedOf(root, request.parentId, volumeId);
    if (backup === undefined) {
      throw new NotFoundError({
        code: 'ENOENT', operation, resource: root,
        detail: `backup ${request.parentId} is not a backup of volume ${volumeId} in ${root}: give one of its backups as the parent, or none`,
      });
    }
    const snapshot = ours.find((s) => s.backupId === request.parentId)?.info;
    if (snapshot === undefined) {
      return { mode: 'full', convertedToFull: `the snapshot of backup ${request.parentId} is gone from the volume (the chain is broken)` };
    }
    return { mode: 'incremental', parent: { backup, snapshot } };
  }
  for (const candidate of ours.reverse()) {
    const backup = await storedOf(root, candidate.backupId, volumeId);
    if (backup !== undefined) return { mode: 'incremental', parent: { backup, snapshot: candidate.info } };
  }
  // No snapshot leads to a backup: a first backup, or a broken chain (which the result says).
  const { backups } = await listStoredBackups(root, operation, volumeId);
  if (backups.length === 0) return { mode: 'full', convertedToFull: undefined };
  const latest = backups.map((b) => b.metadata.backupId).join(', ');
  return {
    mode: 'full',
    convertedToFull: `the volume's backups in ${root} (${latest}) have no snapshot left on the volume (the chain is broken)`,
  };
}

/**
 * The backup of this id that a killed run had completed (its metadata
 * written) before the process could say so, when this request is its
 * retry: a backup of this volume in the root, its snapshot still the
 * volume's newest backup-into-files snapshot (nothing was backed up into
 * files since), and the request asking for what it is (asksFor). The lock
 * object goes after each backup into files, so unlike the backup pool's
 * no last holder can be asked: the newest snapshot stands for it.
 */
async function completedBefore(root: string, request: BackupRequest, volumeId: string, backupId: string,
  snapshots: SnapshotInfo[]): Promise<SnappedBackup | undefined> {
  const newest = fileSnapshots(snapshots).at(-1);
  if (newest?.backupId !== backupId) return undefined;
  // No container, or one without metadata (a run that did not finish): no backup yet.
  const backup = await storedOf(root, backupId, volumeId);
  if (backup === undefined) return undefined;
  const { metadata } = backup;
  const volumeMeta = metadata.volumeMeta === null || typeof metadata.volumeMeta === 'string' ? metadata.volumeMeta : JSON.stringify(metadata.volumeMeta);
  const made = { parentId: metadata.parentId, displayName: metadata.name, displayDescription: metadata.description, volumeMeta };
  return asksFor(request, made) ? { backup, snapshot: newest.info } : undefined;
}

/**
 * The parent's sha256file open at its first digest, when an incremental
 * can use it: the volume's size unchanged since, the same hash block.
 * Otherwise why not. (Its count is checked as it is read: a file of
 * another count is damaged, and the backup fails saying so.)
 */
async function parentSha256s(parent: SnappedBackup, size: bigint, shaBlockSize: number): Promise<Sha256FileReader | string> {
  const id = parent.backup.metadata.backupId;
  if (parent.snapshot.size !== size) return `the volume's size changed since backup ${id} (${parent.snapshot.size} -> ${size} bytes)`;
  const reader = await Sha256FileReader.open(join(parent.backup.dir, sha256Name(parent.backup.prefix)), operation);
  if (reader.blockSize === shaBlockSize) return reader;
  await reader.close();
  return `backup ${id} hashed ${reader.blockSize}-byte blocks, this engine ${shaBlockSize}`;
}

/**
 * The container of a new backup: made, or emptied of what a killed run of
 * the same id left (its objects, its sha256file, partial files). One
 * holding a backup, or files of anything else, is refused.
 */
async function prepareContainer(root: string, backupId: string): Promise<{ container: string; dir: string }> {
  const container = defaultContainer(backupId);
  const dir = containerPath(root, container, operation);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { container, dir };
    throw fromSystem(error, operation, dir, 'listing the backup\'s container');
  }
  const id = backupId.replace(/[-]/g, '\\-');
  const ours = new RegExp(`^volume_[a-z0-9-]+_\\d{14}_backup_${id}(-\\d{5,}|_sha256file)$`);
  const leftover = (name: string): boolean => ours.test(name) || isPartialName(name);
  const metadata = names.find((n) => n.endsWith('_metadata'));
  if (metadata !== undefined) {
    throw new AlreadyExistsError({ code: 'EEXIST', operation, resource: dir, detail: `backup id ${backupId} is already used (${metadata}): give another id` });
  }
  const foreign = names.filter((n) => !leftover(n));
  if (foreign.length > 0) {
    throw new AlreadyExistsError({
      code: 'EEXIST', operation, resource: dir,
      detail: `the container of backup ${backupId} holds files that are not a killed run's of it (${foreign.slice(0, 3).join(', ')}): give another id, or move them away`,
    });
  }
  if (names.length > 0) logBackup('%s: removing %d files a killed run of backup %s left', dir, names.length, backupId);
  for (const name of names) await onFile(operation, join(dir, name), 'removing a killed run\'s file', () => unlink(join(dir, name)));
  return { container, dir };
}

export async function runFilesBackup(config: ResolvedConfig, request: BackupRequest): Promise<BackupResult> {
  const subject = requestSubject(request, operation);
  const root = checkBackupPath(request.backupPath, operation, 'backupPath') ?? config.backupPath;
  if (subject.kind !== 'volume') {
    throw new NotSupportedError({
      code: 'EOPNOTSUPP', operation, resource: describeSubject(subject),
      detail: 'backups into files are of Cinder volumes (volumeId), whose id their layout carries; back up a named image into the backup pool',
    });
  }
  if (root === undefined) throw invalidArgument(operation, describeSubject(subject), 'a backup into files needs backupPath, the backup root');
  const { volumeId } = subject;
  const compression = request.compression === undefined ? config.compression : checkCompression(request.compression, operation, describeSubject(subject));
  const backupId = checkId('backup', request.backupId ?? randomUUID(), operation);
  if (request.parentId !== undefined) checkId('backup', request.parentId, operation);
  const resource = `${String(request.pool)}/${volumeImageName(volumeId)}`;
  checkName('pool', request.pool, operation, resource);
  checkBackupOptions(request, operation, resource);
  const budget = callBudget(request.timeoutMs, [config.source], operation, resource);
  if (request.signal?.aborted) throw cancelledError(operation, describeSubject(subject), request.signal);
  await onFile(operation, root, 'opening the backup root', () => readdir(root));

  return OperationScope.run({ operation, resource, timeoutMs: budget.timeoutMs }, async (scope) => {
    scope.doing = 'opening the volume';
    const pool = await scope.adopt(config.source.pool(request.pool));
    const volume = await scope.adopt(openSource(pool, subject, operation));
    scope.doing = 'taking the volume\'s lock';
    const lock = await VolumeLock.acquire(pool, subject, operation, {
      object: fileBackupLockObjectName(subject), waitMs: config.lockWaitMs, ttlMs: config.lockTtlMs,
      onBusy: request.onBusy, onWait: request.onLockWait, signal: scope.signal,
    });
    scope.defer(`release the lock ${pool.spec}/${fileBackupLockObjectName(subject)}`, pool, () => lock.release(), 'lock');
    // Nothing needs the lock object between backups: it goes (unless another run waits on it).
    scope.defer(`remove the lock object ${pool.spec}/${fileBackupLockObjectName(subject)}`, pool, () => lock.retire());
    scope.guardBy(lock);
    const signal = AbortSignal.any([request.signal, lock.lost, scope.signal].filter((s): s is AbortSignal => s !== undefined));

    scope.doing = 'choosing the parent';
    const snapshots = await volume.listSnapshots();
    const completed = await completedBefore(root, request, volumeId, backupId, snapshots);
    if (completed !== undefined) {
      logBackup('%s: backup %s is already complete in %s (a run of it had finished it); nothing to do', describeSubject(subject), backupId, root);
      return alreadyComplete(root, subject, completed);
    }
    let decision = await decide(request, root, volumeId, snapshots);
    const { container, dir } = await prepareContainer(root, backupId);
    // A killed run of this id left its snapshot (never a parent: its container holds no metadata); its files
    // are gone with the container's leftovers.
    for (const killed of fileSnapshots(snapshots).filter((s) => s.backupId === backupId)) {
      logBackup('%s: removing the snapshot %s a killed run of backup %s left', volume.spec, killed.info.name, backupId);
      await volume.removeSnapshot(killed.info.name);
    }
    const snapshot = fileBackupSnapshotName(backupId);
    scope.onFailure(`remove the new source snapshot ${volume.spec}@${snapshot}`, pool, async () => {
      if (await volume.snapshotExists(snapshot)) await volume.removeSnapshot(snapshot);
    });
    scope.doing = 'snapshotting the volume';
    await volume.createSnapshot(snapshot);
    const size = (await volume.listSnapshots()).find((s) => s.name === snapshot)!.size;
    if (budget.grows) scope.extend(transferAllowanceMs(size));
    const source = await scope.adopt(pool.openImage(volume.name, { snapshot }));
    // Open from here until backupChunked, which closes it.
    let sha256s: Sha256FileReader | undefined;
    if (decision.mode === 'incremental') {
      const usable = await parentSha256s(decision.parent, size, config.shaBlockSize);
      if (typeof usable === 'string') decision = { mode: 'full', convertedToFull: usable };
      else sha256s = usable;
    }
    if (decision.mode === 'full' && decision.convertedToFull !== undefined) logBackup('%s: %s; taking a full backup instead', describeSubject(subject), decision.convertedToFull);
    const createdAt = new Date();
    const prefix = backupPrefix(volumeId, backupId, createdAt);
    const parent = decision.mode === 'incremental' ? decision.parent : undefined;
    logBackup('backup %s of %s into %s: %s from %s', backupId, describeSubject(subject), dir, decision.mode, parent?.snapshot.name ?? '(start)');
    scope.doing = 'writing the backup\'s files';
    const stats = await backupChunked({
      source, dir, prefix, compression, chunkSize: config.backupFileSize, shaBlockSize: config.shaBlockSize,
      parent: parent === undefined ? undefined : { snapshot: parent.snapshot.name, backupId: parent.backup.metadata.backupId, sha256s: sha256s! },
      facts: { backupId, volumeId, displayName: request.displayName ?? null, displayDescription: request.displayDescription ?? null, createdAt },
      volumeMeta: request.volumeMetadata === undefined ? null : JSON.stringify({ version: 2, ...request.volumeMetadata }),
      signal, onProgress: request.onProgress, concurrency: config.ioConcurrency,
      ...(config.memoryBytes === undefined ? {} : { memoryBytes: config.memoryBytes }),
    });
    scope.commit();
    const ours = (names: readonly string[]): string[] => fileSnapshots(names.map((name) => ({ name }))).map((s) => s.info.name);
    scope.defer(`trim the old backup-into-files snapshots of ${volume.spec}`, pool, () => trimSourceSnapshots(volume, config.maxSourceSnapshots, ours));
    return filesResult({
      backupId, subject, root, container, prefix, parentId: parent?.backup.metadata.backupId ?? null, createdAt, size, snapshot,
      displayName: request.displayName ?? null, displayDescription: request.displayDescription ?? null, objects: stats.objects,
      bytesStored: stats.bytesStored,
    }, {
      fromSnapshot: parent?.snapshot.name, mode: decision.mode, convertedToFull: decision.mode === 'full' ? decision.convertedToFull : undefined,
      stats: {
        bytesRead: stats.bytesRead, bytesWritten: stats.bytesWritten, bytesZeroed: 0n,
        bytesSkipped: BigInt(stats.blocksUnchanged) * BigInt(config.shaBlockSize),
        extents: stats.pieces, ops: stats.pieces, objectReads: 0, elapsedMs: stats.elapsedMs, size,
      },
    });
  });
}

/** What a backup into files is, as its result gives it. */
interface MadeBackup {
  backupId: string;
  subject: Subject;
  root: string;
  container: string;
  prefix: string;
  parentId: string | null;
  createdAt: Date;
  size: bigint;
  snapshot: string;
  displayName: string | null;
  displayDescription: string | null;
  objects: ChunkedObject[];
  bytesStored: bigint;
}

function filesResult(made: MadeBackup, run: Pick<BackupResult, 'fromSnapshot' | 'mode' | 'convertedToFull' | 'stats'>): BackupResult {
  const { root, container, prefix, objects, bytesStored } = made;
  return {
    record: newRecord({
      id: made.backupId, subject: made.subject, container, baseImage: undefined, sizeBytes: made.size,
      parentId: made.parentId, createdAt: made.createdAt, updatedAt: made.createdAt,
      displayName: made.displayName ?? undefined, displayDescription: made.displayDescription ?? undefined,
      files: { prefix, objectCount: objects.length },
    }),
    snapshot: made.snapshot, baseImage: containerPath(root, container, operation), ...run,
    digests: undefined, resumedFrom: undefined,
    files: { root, container, prefix, objects, bytesStored },
  };
}

/** The result of a backup a run of the same id had completed: nothing moved by this call. */
async function alreadyComplete(root: string, subject: Subject, found: SnappedBackup): Promise<BackupResult> {
  const { backup, snapshot } = found;
  const { metadata } = backup;
  let bytesStored = 0n;
  for (const object of metadata.objects) {
    const file = join(backup.dir, object.name);
    bytesStored += BigInt((await onFile(operation, file, 'reading the size of a backup object', () => stat(file))).size);
  }
  const made: MadeBackup = {
    backupId: metadata.backupId, subject, root, container: defaultContainer(metadata.backupId), prefix: backup.prefix,
    parentId: metadata.parentId, createdAt: parseCreatedAt(metadata.createdAt), size: snapshot.size, snapshot: snapshot.name,
    displayName: metadata.name, displayDescription: metadata.description, objects: metadata.objects, bytesStored,
  };
  const run = { fromSnapshot: undefined, mode: metadata.parentId === null ? 'full' as const : 'incremental' as const, convertedToFull: undefined };
  return { ...filesResult(made, { ...run, stats: nothingMoved(snapshot.size) }), alreadyComplete: true };
}
