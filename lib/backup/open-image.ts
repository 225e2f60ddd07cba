/** Opening an image that may be gone (removed elsewhere, or never made). */
import { NotFoundError } from '../ceph/errors.js';
import type { Image } from '../ceph/image.js';
import type { OpenImageOptions, Pool } from '../ceph/pool.js';

/** The image, open; undefined when it does not exist. Other failures are thrown. */
export async function openImageIfExists(pool: Pool, name: string, options?: OpenImageOptions): Promise<Image | undefined> {
  try {
    return await pool.openImage(name, options);
  } catch (error) {
    if (error instanceof NotFoundError) return undefined;
    throw error;
  }
}
