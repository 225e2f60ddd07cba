/** Snapshot and parent descriptions returned by Image (native/snapshot.cc). */
import type { NativeParent, NativeSnapshot } from './native.js';

export type { ChildImage, TrashedSnapshot } from './native.js';

export interface SnapshotInfo {
  id: bigint;
  name: string;
  /** Image size when the snapshot was taken. */
  size: bigint;
  /** Creation time (rbd_snap_get_timestamp). */
  timestamp: Date;
  protected: boolean;
}

export interface ParentInfo {
  pool: string;
  namespace: string;
  image: string;
  imageId: string;
  snapshot: string;
  snapshotId: bigint;
  /** The parent image was moved to the trash. */
  trash: boolean;
}

export function toSnapshotInfo(native: NativeSnapshot): SnapshotInfo {
  return {
    id: native.id,
    name: native.name,
    size: native.size,
    timestamp: new Date(native.timestampMs),
    protected: native.protected,
  };
}

export function toParentInfo(native: NativeParent | null): ParentInfo | null {
  return native === null ? null : { ...native };
}
