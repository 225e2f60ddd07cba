/** Errors of the backup semantics that no single Ceph call reports. */
import { CephError, type CephErrorDetails } from '../ceph/errors.js';

/**
 * The backup pool contradicts a record or itself (a backup's snapshot on
 * two chain images, a record naming a chain image that lacks its snapshot):
 * nothing is restored or removed until an operator has looked.
 */
export class InconsistentBackupError extends CephError {
  constructor(details: Omit<CephErrorDetails, 'code' | 'errno'>) {
    super({ ...details, code: 'EUCLEAN', errno: 117 });
  }
}

/**
 * A backup's digests object is missing, cut short, of an unknown version,
 * or does not match its backup: the data may be fine, but nothing can be
 * verified against it (a restore without verify still works).
 */
export class DigestsError extends CephError {
  constructor(details: Omit<CephErrorDetails, 'code' | 'errno'>) {
    super({ ...details, code: 'EBADMSG', errno: 74 });
  }
}

/** Restored or re-read bytes differ from what the backup recorded of them (defined below the backup layer, where files are checked too). */
export { VerificationError } from '../engine/verification-error.js';
