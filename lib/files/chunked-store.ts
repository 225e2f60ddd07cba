/**
 * The backups a backup root holds in Cinder's chunked layout: one read by
 * its container, and all of them found by walking the default containers
 * (`<id[0:2]>/<id[2:4]>/<id>`), which is where Cinder's POSIX and NFS
 * drivers and this engine put them. A container without metadata holds
 * no backup (an unfinished or failed one at most).
 */
import { open, readdir, readFile, rmdir, unlink } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { fromSystem, nativeCall, NotFoundError } from '../ceph/errors.js';
import { addon } from '../ceph/native.js';
import { isPartialName, onFile } from '../engine/target-file.js';
import { checkId } from '../ceph/validate.js';
import {
  checkPrefix, containerPath, defaultContainer, metadataName, parseChunkedMetadata, prefixOfMetadataName, sha256Name,
  type ChunkedMetadata,
} from './chunked-layout.js';
import { ChunkedBackupError } from './errors.js';

export interface StoredBackup {
  /** Its container's directory. */
  dir: string;
  prefix: string;
  metadata: ChunkedMetadata;
}

/** The prefix of the one backup whose metadata the container holds. */
export async function findPrefix(dir: string, operation: string): Promise<string> {
  const names = await onFile(operation, dir, 'listing the backup\'s container', () => readdir(dir));
  const prefixes = names.map(prefixOfMetadataName).filter((p): p is string => p !== undefined);
  if (prefixes.length !== 1) {
    throw new ChunkedBackupError({
      operation, resource: dir,
      detail: prefixes.length === 0
        ? 'the container holds no *_metadata file: no backup is there, or its metadata was never written (an unfinished backup)'
        : `the container holds ${prefixes.length} backups' metadata (${prefixes.join(', ')}): name the backup's prefix (its record's service_metadata)`,
    });
  }
  return prefixes[0]!;
}

/** A backup by its container (default: Cinder's for its id) and prefix (default: the container's one). */
export async function readStoredBackup(root: string, location: { backupId: string; container?: string; prefix?: string },
  operation: string): Promise<StoredBackup> {
  const dir = containerPath(root, location.container ?? defaultContainer(location.backupId), operation);
  const prefix = location.prefix === undefined ? await findPrefix(dir, operation) : checkPrefix(location.prefix, operation, dir);
  const file = join(dir, metadataName(prefix));
  const text = await onFile(operation, file, 'reading the backup\'s metadata', () => readFile(file, 'utf8'));
  const metadata = parseChunkedMetadata(text, prefix, file, operation);
  if (metadata.backupId !== location.backupId) {
    throw new ChunkedBackupError({ operation, resource: file, detail: `it is the metadata of backup ${metadata.backupId}, not of ${location.backupId}` });
  }
  return { dir, prefix, metadata };
}

export interface RootInventory {
  backups: StoredBackup[];
  /** Containers without metadata: unfinished backups. */
  unfinished: string[];
  /** Containers whose metadata could not be read, and why. */
  damaged: { dir: string; reason: string }[];
}

const TWO = /^[a-z0-9-]{2}$/;

async function entries(dir: string, operation: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw fromSystem(error, operation, dir, 'listing the backup root');
  }
}

/** Every backup in the root's default containers (of the volume, when given). */
export async function listStoredBackups(root: string, operation: string, volumeId?: string): Promise<RootInventory> {
  const inventory: RootInventory = { backups: [], unfinished: [], damaged: [] };
  const rootEntries = await onFile(operation, root, 'listing the backup root', () => readdir(root));
  for (const first of rootEntries.filter((n) => TWO.test(n))) {
    for (const second of (await entries(join(root, first), operation)).filter((n) => TWO.test(n))) {
      for (const id of await entries(join(root, first, second), operation)) {
        if (!id.startsWith(first + second)) continue;
        try {
          checkId('backup', id, operation);
        } catch {
          continue;
        }
        const dir = join(root, first, second, id);
        try {
          const backup = await readStoredBackup(root, { backupId: id }, operation);
          if (volumeId === undefined || backup.metadata.volumeId === volumeId) inventory.backups.push(backup);
        } catch (error) {
          if (error instanceof ChunkedBackupError && /no \*_metadata file/.test(error.message)) inventory.unfinished.push(dir);
          else if (!(error instanceof NotFoundError)) inventory.damaged.push({ dir, reason: (error as Error).message });
        }
      }
    }
  }
  return inventory;
}

/**
 * syncfs(2) of the file system holding path: every file written there
 * durable in one call, where a sync per file costs a disk round trip each.
 */
export async function syncFileSystem(path: string, operation: string): Promise<void> {
  await nativeCall(operation, path, () => addon.syncFileSystem(path));
}

/** Syncs a directory, so that the names made or removed in it last. */
export async function syncDir(dir: string, operation: string): Promise<void> {
  const handle = await onFile(operation, dir, 'opening the container to sync it', () => open(dir, 'r'));
  try {
    await onFile(operation, dir, 'syncing the container', () => handle.sync());
  } finally {
    await handle.close();
  }
}

/**
 * Removes a backup's files: its metadata first (and the directory synced),
 * so that from then on nothing takes it for a backup, then its objects,
 * its sha256file and partial files; then its container and the empty
 * directories above it, up to the root. Returns the files removed.
 */
export async function removeStoredBackup(root: string, backup: StoredBackup, operation: string): Promise<number> {
  const { dir, prefix } = backup;
  const remove = (name: string): Promise<void> => onFile(operation, join(dir, name), 'removing the backup\'s file', () => unlink(join(dir, name)));
  await remove(metadataName(prefix));
  await syncDir(dir, operation);
  const names = await onFile(operation, dir, 'listing the backup\'s container', () => readdir(dir));
  const ours = names.filter((n) => n.startsWith(`${prefix}-`) || n === sha256Name(prefix) || isPartialName(n));
  for (const name of ours) await remove(name);
  for (let at = dir; at !== resolve(root) && at.startsWith(resolve(root) + sep); at = dirname(at)) {
    try {
      await rmdir(at);
    } catch {
      break; // not empty: another backup's, or files not ours
    }
  }
  return ours.length + 1;
}
