/** The `backup.<id>.meta` object: the volume metadata stored with a backup. */
import { CephError, invalidArgument } from '../ceph/errors.js';
import type { Pool } from '../ceph/pool.js';
import { metaObjectName } from './naming.js';

/**
 * A backup's .meta object, parsed (Cinder's version 2: `version` and the
 * `volume-*metadata` fields); undefined when it has none.
 */
export async function readMetaObject(pool: Pool, backupId: string): Promise<unknown> {
  let text: string;
  try {
    text = (await pool.readObject(metaObjectName(backupId))).toString('utf8');
  } catch (error) {
    if (error instanceof CephError && error.code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    return JSON.parse(text);
  } catch {
    throw invalidArgument('readMetaObject', `${pool.spec}/${metaObjectName(backupId)}`, 'the .meta object is not JSON');
  }
}

/** Removes a backup's .meta object; false when there was none. */
export async function removeMetaObject(pool: Pool, backupId: string): Promise<boolean> {
  try {
    await pool.removeObject(metaObjectName(backupId));
    return true;
  } catch (error) {
    if (error instanceof CephError && error.code === 'ENOENT') return false;
    throw error;
  }
}
