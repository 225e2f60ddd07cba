/**
 * Clones of backup snapshots, which instant restores make: a backup whose
 * snapshot still has clones cannot be removed (the clones read from it),
 * and the protection an instant restore put on the snapshot is lifted once
 * no clone needs it.
 */
import { BusyError } from '../ceph/errors.js';
import type { Image } from '../ceph/image.js';
import type { Pool } from '../ceph/pool.js';
import type { ChildImage } from '../ceph/snapshot.js';

function describeClone(child: ChildImage): string {
  const spec = `${child.pool}/${child.namespace === '' ? '' : `${child.namespace}/`}${child.image}`;
  return child.trash ? `${spec} (in the trash)` : spec;
}

/** The clones of a chain image's snapshot, those in the trash too. */
export async function clonesOf(pool: Pool, image: string, snapshot: string): Promise<ChildImage[]> {
  await using at = await pool.openImage(image, { snapshot });
  return await at.listChildren();
}

/** Refuses, naming them, when the backup's snapshot has clones. */
export async function refuseIfCloned(pool: Pool, image: string, snapshot: string, backupId: string,
  operation: string): Promise<void> {
  const clones = await clonesOf(pool, image, snapshot);
  if (clones.length === 0) return;
  throw new BusyError({
    code: 'EBUSY', operation, resource: `${pool.spec}/${image}@${snapshot}`,
    detail: `backup ${backupId} has ${clones.length} clone(s) reading from it (instant restores): ` +
      `${clones.map(describeClone).join(', ')}; flatten them (Image.flatten, rbd flatten) or remove them first`,
  });
}

/**
 * Unprotects the backup's snapshot when no clone needs it any more (after
 * a flatten); a snapshot another clone still reads from stays protected.
 * Returns whether it was unprotected.
 */
export async function unprotectIfUnused(chain: Image, snapshot: string): Promise<boolean> {
  if (!(await chain.isSnapshotProtected(snapshot))) return false;
  if ((await clonesOf(chain.pool, chain.name, snapshot)).length > 0) return false;
  try {
    await chain.unprotectSnapshot(snapshot);
  } catch (error) {
    // Another instant restore cloned it in the meantime.
    if (error instanceof BusyError) return false;
    throw error;
  }
  return true;
}
