/**
 * A file written under a partial name beside it, which gets its own name
 * only when complete (linked, so that a file made there meanwhile is not
 * overwritten; renamed when overwriting is asked for): a failed, cancelled
 * or killed writer never leaves a file that looks whole. exportRaw's and
 * the file restores' target. File-system failures are CephErrors naming
 * the path.
 */
import { link, lstat, open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { cephError, fromSystem, type CephError } from '../ceph/errors.js';
import { logEngine } from './log.js';

export interface TargetFile {
  /** The call writing it, as its errors name it ('exportRaw', 'restore'). */
  operation: string;
  /** The file asked for: it appears only once the export is complete. */
  path: string;
  /** Where the bytes go until then, beside it (a rename cannot cross file systems). */
  partial: string;
  handle: FileHandle;
  overwrite: boolean;
}

/** Runs a file-system call; its failure is the typed CephError of its code, naming the path and what was being done. */
export async function onFile<T>(operation: string, path: string, doing: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (error) {
    throw fromSystem(error, operation, path, doing);
  }
}

/** A refusal as the file system would give it, saying what to do. */
function refusal(operation: string, path: string, code: 'EEXIST' | 'ENOENT' | 'ENOTDIR', detail: string): CephError {
  return cephError({ code, errno: { EEXIST: 17, ENOENT: 2, ENOTDIR: 20 }[code], operation, resource: path, detail });
}

function alreadyExists(operation: string, path: string): CephError {
  return refusal(operation, path, 'EEXIST', 'cannot create the file: it already exists and is not overwritten; remove it or give another path');
}

/**
 * Refuses a path the export could not give its name to, before anything
 * is read: an existing file (unless overwrite), a directory that is not
 * there. Also what a restore's dry run and the CLI check first.
 */
export async function checkExportPath(path: string, overwrite = false, operation = 'exportRaw'): Promise<void> {
  if (!overwrite && await onFile(operation, path, 'cannot create the file', () => exists(path))) throw alreadyExists(operation, path);
  const directory = dirname(resolve(path));
  const dir = await stat(directory).catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystem(error, operation, path, 'cannot create the file');
    throw refusal(operation, path, 'ENOENT', `cannot create the file: the directory ${directory} does not exist; create it or give another path`);
  });
  if (!dir.isDirectory()) throw refusal(operation, path, 'ENOTDIR', `cannot create the file: ${directory} is not a directory`);
}

/**
 * Where a file is written until it is complete: a dot file with a random
 * suffix beside it, never taken for the file itself, and two writers of
 * one path do not write into each other's.
 */
export function partialName(path: string): string {
  // Not a secret, only apart from another writer's: Math.random costs nothing beside a crypto call per file (thousands of objects).
  const suffix = Math.floor(Math.random() * 2 ** 32).toString(16).padStart(8, '0');
  return join(dirname(path), `.${basename(path)}.partial-${suffix}`);
}

/** Whether a file name is one partialName gives (a writer's, unfinished or left by a killed one). */
export function isPartialName(name: string): boolean {
  return /^\..+\.partial-[0-9a-f]{8}$/.test(name);
}

/** The file's partial twin, open for writing; closeTargetFile gives it the file's name, or removes it. */
export async function openTargetFile(path: string, overwrite: boolean, operation: string): Promise<TargetFile> {
  await checkExportPath(path, overwrite, operation);
  const partial = partialName(path);
  const handle = await onFile(operation, path, 'cannot create the file', () => open(partial, 'wx'));
  return { operation, path, partial, handle, overwrite };
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

/**
 * Gives a complete export its name: linked, so that a file made there
 * meanwhile is not overwritten (renamed where the file system has no hard
 * links, or when overwriting is asked for).
 */
async function publish(file: TargetFile): Promise<void> {
  const { operation } = file;
  if (file.overwrite) {
    await onFile(operation, file.path, 'cannot rename the finished file into place', () => rename(file.partial, file.path));
    return;
  }
  try {
    await link(file.partial, file.path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw alreadyExists(operation, file.path);
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') {
      throw fromSystem(error, operation, file.path, 'cannot move the finished file into place');
    }
    if (await exists(file.path)) throw alreadyExists(operation, file.path);
    await onFile(operation, file.path, 'cannot rename the finished file into place', () => rename(file.partial, file.path));
    return;
  }
  await unlink(file.partial).catch((error: unknown) => logEngine('%s: removing %s: %o', operation, file.partial, error));
}

/**
 * Closes the file and gives it its name; after a failed export (or when
 * that fails), the partial file goes, so nothing is left at either name.
 */
export async function closeTargetFile(file: TargetFile, failed: boolean): Promise<void> {
  if (!failed) {
    try {
      await onFile(file.operation, file.path, 'cannot close the file', () => file.handle.close());
      await publish(file);
      return;
    } catch (error) {
      await unlink(file.partial).catch(() => undefined);
      throw error;
    }
  }
  // The export's own error is the one to report; these are only logged.
  try {
    await file.handle.close();
    await unlink(file.partial);
  } catch (error) {
    logEngine('%s: cleaning up %s after a failure: %o', file.operation, file.partial, error);
  }
}
