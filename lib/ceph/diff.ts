/**
 * Extent iteration (rbd_diff_iterate2) as an async iterable of batches. Each
 * native call covers one range of the image, so memory stays bounded by the
 * range whatever the image size, and the JavaScript thread only sees whole
 * batches.
 */
import type { NativeExtents, NativeImage } from './native.js';
import { nativeCall } from './errors.js';

export interface DiffExtent {
  offset: bigint;
  length: bigint;
  /** false: the range was discarded/zeroed since the from-snapshot. */
  exists: boolean;
}

export interface DiffOptions {
  /** Changes since this snapshot; absent = the image's whole history. */
  fromSnapshot?: string;
  /** Start of the range to look at. Default 0. */
  offset?: number | bigint;
  /** Length of the range. Default: to the end of the image. */
  length?: number | bigint;
  /** Report extents at object granularity (fast with fast-diff). Default false. */
  wholeObject?: boolean;
  /** Count data inherited from a clone's parent. Default true. */
  includeParent?: boolean;
}

/** Objects looked at per native call. */
export const OBJECTS_PER_CALL = 256n;

export interface DiffPlan {
  native: NativeImage;
  resource: string;
  fromSnapshot: string | null;
  start: bigint;
  end: bigint;
  step: bigint;
  includeParent: boolean;
  wholeObject: boolean;
}

export function toExtents(batch: NativeExtents): DiffExtent[] {
  const extents: DiffExtent[] = new Array(batch.exists.length);
  for (let i = 0; i < batch.exists.length; i++) {
    extents[i] = {
      offset: batch.ranges[2 * i],
      length: batch.ranges[2 * i + 1],
      exists: batch.exists[i] === 1,
    };
  }
  return extents;
}

export async function* iterateDiff(plan: DiffPlan): AsyncGenerator<DiffExtent[]> {
  // Pages start on multiples of the step, so that an unaligned start does
  // not cut every object of the range in two.
  for (let offset = plan.start; offset < plan.end;) {
    const pageEnd = (offset / plan.step + 1n) * plan.step;
    const end = pageEnd < plan.end ? pageEnd : plan.end;
    const length = end - offset;
    const batch = await nativeCall('diff', plan.resource, () => plan.native.diffRange(
      plan.fromSnapshot, offset, length, plan.includeParent, plan.wholeObject));
    if (batch.exists.length > 0) yield toExtents(batch);
    offset = end;
  }
}
