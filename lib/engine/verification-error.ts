/** Restored or re-read bytes that differ from what a backup recorded of them (its digests, an object's md5). */
import { CephError, type CephErrorDetails } from '../ceph/errors.js';
import type { Mismatch } from './digest-table.js';

/** The backup's data (or what it recorded of it) is damaged; mismatches says where. */
export class VerificationError extends CephError {
  readonly mismatches: Mismatch[];

  constructor(details: Omit<CephErrorDetails, 'code' | 'errno'>, mismatches: Mismatch[]) {
    super({ ...details, code: 'EIO', errno: 5 });
    this.mismatches = mismatches;
  }
}
