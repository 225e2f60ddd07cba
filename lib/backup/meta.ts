/** The `backup.<id>.meta` object: the volume metadata stored with a backup. */
import { CephError } from '../ceph/errors.js';
import type { Pool } from '../ceph/pool.js';
import { metaObjectName } from './naming.js';

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
