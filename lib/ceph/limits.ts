/**
 * The largest images and the layouts librbd handles without failing an
 * assertion, and the checks that keep every size and layout within them
 * before a call reaches librbd (a failed ceph_assert aborts the whole process).
 */
import { invalidArgument } from './errors.js';

/**
 * At most this many objects per image: cls::rbd::MAX_OBJECT_MAP_OBJECT_COUNT
 * (src/cls/rbd/cls_rbd_types.h). librbd refuses more for an image with an
 * object map (ObjectMap<I>::is_compatible in src/librbd/ObjectMap.cc, called
 * by image/CreateRequest.cc validate_layout and Operations<I>::resize), so
 * `rbd create` with the default features cannot make a larger image.
 *
 * It holds for every image here, object map or not, because above it
 * librbd's arithmetic breaks: Striper::get_num_objects (src/osdc/Striper.cc)
 * computes (size + period - 1) / period in uint64_t, which wraps for sizes
 * above 2^64 - period. The count comes out 0, is_compatible passes, and the
 * first write fails ceph_assert(object_no < m_object_map.size()) in
 * ObjectMap<I>::operator[] (reproduced here: a resize to 2^64-1, then a
 * write, aborts the process). Without an object map such sizes are accepted
 * and a shrink or a removal then visits every object (a 2^63-byte image did
 * not shrink within 60 s here; with an object map, 2^48 bytes took 16 s).
 * With 4 MiB objects the cap is 976.6 TiB; with 32 MiB objects, 7.6 PiB.
 */
export const MAX_OBJECT_COUNT = 256_000_000n;

/** Object sizes librbd creates, as powers of two: image/CreateRequest.cc refuses others with EDOM. */
export const MIN_ORDER = 12;
export const MAX_ORDER = 25;
/** librbd's rbd_default_order, the object size of an image created without an order. */
export const DEFAULT_ORDER = 22;

/**
 * file_layout_t keeps the stripe unit and count as uint32_t
 * (src/include/fs_types.h) while the image header keeps 64 bits: a count of
 * 2^32 becomes 0 in the layout and Striper divides by it (SIGFPE, reproduced
 * here with rbd_create4), and 2^32+1 silently becomes 1.
 */
export const MAX_STRIPE = (1n << 32n) - 1n;

export interface ImageLayout {
  objectSize: bigint;
  stripeUnit: bigint;
  stripeCount: bigint;
}

/** Striper::get_num_objects in exact arithmetic: the objects an image of `size` bytes spans. */
export function objectCount(layout: ImageLayout, size: bigint): bigint {
  const { objectSize, stripeUnit, stripeCount } = layout;
  const period = objectSize * stripeCount;
  const periods = (size + period - 1n) / period;
  const remainder = size % period;
  const unused = remainder > 0n && remainder < stripeCount * stripeUnit
    ? stripeCount - (remainder + stripeUnit - 1n) / stripeUnit
    : 0n;
  return periods * stripeCount - unused;
}

/** The largest size whose objectCount is at most MAX_OBJECT_COUNT. */
export function maxImageSize(layout: ImageLayout): bigint {
  const { objectSize, stripeUnit, stripeCount } = layout;
  const wholePeriods = MAX_OBJECT_COUNT / stripeCount;
  // In a partial period every stripe unit starts another object, up to stripeCount of them.
  const partialObjects = MAX_OBJECT_COUNT - wholePeriods * stripeCount;
  return wholePeriods * objectSize * stripeCount + partialObjects * stripeUnit;
}

/** Refuses a size librbd cannot represent for this layout (see MAX_OBJECT_COUNT). */
export function checkImageSize(size: bigint, layout: ImageLayout, operation: string, resource: string): bigint {
  const max = maxImageSize(layout);
  if (size > max) {
    throw invalidArgument(operation, resource,
      `size ${size} is larger than ${max}, the most ${MAX_OBJECT_COUNT} objects of ${layout.objectSize} bytes hold`);
  }
  return size;
}
