/** Undoing what a failed operation made, without hiding why it failed. */
import type { Pool } from '../ceph/pool.js';
import { logBackup } from './log.js';

/** Runs one clean-up step; a failure is logged, never thrown over the original one. */
export async function undo(step: string, action: () => Promise<void>): Promise<void> {
  try {
    await action();
  } catch (error) {
    logBackup('cleanup step "%s" failed: %s', step, (error as Error).message);
  }
}

/** Removes an image this run made, snapshots first (rbd_remove refuses them). */
export async function removeImageWithSnapshots(pool: Pool, name: string): Promise<void> {
  const image = await pool.openImage(name);
  try {
    for (const snapshot of await image.listSnapshots()) await image.removeSnapshot(snapshot.name);
  } finally {
    await image.close();
  }
  await pool.removeImage(name);
}
