/**
 * How deep a clone chain is, and Cinder's rule for it: a new clone deeper
 * than `rbd_max_clone_depth` (Cinder's default 5) is flattened, since every
 * level adds a parent lookup to the reads the clone does not hold itself.
 */
import { checkImage } from './image-argument.js';
import { invalidArgument } from './errors.js';
import type { FlattenOptions, Image } from './image.js';
import { toIntInRange } from './validate.js';

/** Longer chains than this are not followed: a bound on the walk, far beyond any depth Cinder lets grow. */
const MAX_FOLLOWED = 64;

/**
 * The number of parents above the image: 0 for an image that is not a
 * clone. A parent in the trash ends the walk (it counts, its own parents
 * are not looked up).
 */
export async function cloneDepth(image: Image): Promise<number> {
  checkImage('image', image, 'cloneDepth');
  let depth = 0;
  let parent = await image.parent();
  while (parent !== null) {
    depth += 1;
    if (parent.trash || depth >= MAX_FOLLOWED) break;
    await using pool = await image.pool.cluster.pool(parent.pool, parent.namespace);
    await using above = await pool.openImage(parent.image, { snapshot: parent.snapshot });
    parent = await above.parent();
  }
  return depth;
}

/**
 * Flattens the image when its clone chain is deeper than maxDepth (as
 * Cinder does with rbd_max_clone_depth); returns whether it did.
 */
export async function flattenIfDeeperThan(image: Image, maxDepth: number, options: FlattenOptions = {}): Promise<boolean> {
  checkImage('image', image, 'flattenIfDeeperThan');
  const limit = toIntInRange('maxDepth', maxDepth, 0, MAX_FOLLOWED, 'flattenIfDeeperThan', image.spec);
  if (image.snapshot !== undefined) throw invalidArgument('flattenIfDeeperThan', image.spec, 'a snapshot cannot be flattened; open the image at its head');
  if (await cloneDepth(image) <= limit) return false;
  await image.flatten(options);
  return true;
}
