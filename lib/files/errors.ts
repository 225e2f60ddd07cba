/** What a backup in Cinder's chunked file layout can be found to be wrong with. */
import { CephError, type CephErrorDetails } from '../ceph/errors.js';

/** A metadata document that does not parse, is of an unknown version, or does not fit its container (EBADMSG). */
export class ChunkedBackupError extends CephError {
  constructor(details: Omit<CephErrorDetails, 'code' | 'errno'>) {
    super({ ...details, code: 'EBADMSG', errno: 74 });
  }
}
