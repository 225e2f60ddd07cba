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
