/** The CLI's exit codes, documented in the README and in --help. */
import {
  BusyError, CancelledError, CephError, InvalidArgumentError, NotFoundError, PermissionError, TimeoutError,
} from '../ceph/errors.js';
import { DigestsError, VerificationError } from '../backup/errors.js';

export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  notFound: 3,
  busy: 4,
  permission: 5,
  timeout: 6,
  invalid: 7,
  mismatch: 8,
  cancelled: 130,
} as const;

export function exitCodeFor(error: unknown): number {
  if (error instanceof UsageError) return EXIT.usage;
  if (error instanceof NotFoundError) return EXIT.notFound;
  if (error instanceof BusyError) return EXIT.busy;
  if (error instanceof PermissionError) return EXIT.permission;
  if (error instanceof TimeoutError) return EXIT.timeout;
  if (error instanceof InvalidArgumentError || error instanceof DigestsError) return EXIT.invalid;
  if (error instanceof VerificationError) return EXIT.mismatch;
  if (error instanceof CancelledError || (error instanceof CephError && error.code === 'ECANCELED')) return EXIT.cancelled;
  return EXIT.failure;
}

/** Bad command-line arguments. */
export class UsageError extends Error {}

export const EXIT_CODES_HELP = `Exit codes:
  0    success
  1    failure (any other error)
  2    usage error (bad arguments)
  3    not found (volume, backup, image, pool)
  4    busy (another backup of the volume runs; image in use)
  5    permission denied (cephx)
  6    timed out
  7    invalid argument, or a corrupt record, stream or configuration file, or a
       backup's digests missing or damaged (verify, restore --verify)
  8    verification failed: a backup's data does not match its digests
  130  cancelled (Ctrl-C)`;
