/**
 * Whether a restore may write into an existing volume. Cinder restores only
 * into an available volume; here a volume that another client has open, one
 * that already holds data, and the backup's own source volume are refused
 * unless the caller asks for it (force), and one smaller than the backup
 * always is. The data a failed restore left in a volume is no reason to
 * refuse the retry. Pure: restore.ts gathers the facts.
 */
import { AlreadyExistsError, BusyError, invalidArgument, type CephError } from '../ceph/errors.js';
import type { ImageWatcher } from '../ceph/image.js';

export interface ExistingTarget {
  /** pool/volume-<id>, as errors name it. */
  spec: string;
  /** Clients other than this restore that watch the volume's header (have it open for writing). */
  otherWatchers: readonly ImageWatcher[];
  hasExtents: boolean;
  /**
   * The backup id of a restore into it that did not finish (the volume is
   * marked, or that restore died after its last write and left its lock):
   * what it holds is that restore's, not the owner's.
   */
  unfinishedRestore: string | undefined;
  /** It is the volume the backup was taken of (the same volume id). */
  isSource: boolean;
  size: bigint;
  backupSize: bigint;
}

const FORCE = 'pass force: true (--force) to overwrite it anyway';

/** The refusal for writing into this volume, or undefined when the restore may go on. */
export function refuseTarget(target: ExistingTarget, force: boolean, operation: string): CephError | undefined {
  const { spec } = target;
  if (target.size < target.backupSize) {
    return invalidArgument(operation, spec,
      `the target volume is ${target.size} bytes, smaller than the backup's ${target.backupSize}; ` +
      'restore into a new volume (leave out the volume id) or grow this one first');
  }
  if (force) return undefined;
  if (target.isSource) {
    return invalidArgument(operation, spec,
      `the target is the backup's own source volume: the restore would overwrite it with the backup's data; ${FORCE}`);
  }
  if (target.otherWatchers.length > 0) {
    const [first] = target.otherWatchers;
    const more = target.otherWatchers.length > 1 ? ` and ${target.otherWatchers.length - 1} more` : '';
    return new BusyError({
      code: 'EBUSY', operation, resource: spec,
      detail: `the target volume is in use by client.${first!.id} at ${first!.address}${more}; ` +
        `detach or unmap it first (rbd status ${spec} lists its clients), or ${FORCE}`,
    });
  }
  if (target.hasExtents && target.unfinishedRestore === undefined) {
    return new AlreadyExistsError({
      code: 'EEXIST', operation, resource: spec,
      detail: `the target volume already holds data; restore into a new or empty volume, or ${FORCE}`,
    });
  }
  return undefined;
}
