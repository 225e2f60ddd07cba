/**
 * Typed errors for every Ceph failure. Each carries the positive errno, its
 * symbolic code, the operation that failed and the resource it failed on
 * (pool/namespace/image@snapshot), so callers can branch with `instanceof`
 * or on `code` and operators can read the message alone.
 */

const descriptions: Record<string, string> = {
  ENOENT: 'does not exist',
  EEXIST: 'already exists',
  EBUSY: 'is busy',
  ENOTEMPTY: 'has snapshots',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ETIMEDOUT: 'timed out',
  EINVAL: 'invalid argument',
  EBADF: 'handle is closed',
  EROFS: 'is read-only',
  ENOSPC: 'no space left',
  EDQUOT: 'quota exceeded',
  EOPNOTSUPP: 'not supported',
  ECANCELED: 'cancelled',
  EFBIG: 'too large',
  ERANGE: 'out of range',
  EIO: 'input/output error',
  ESHUTDOWN: 'client is blocklisted or shut down',
  ENOTCONN: 'not connected',
  EBADMSG: 'bad message',
};

const errnoOf: Record<string, number> = {
  EPERM: 1, ENOENT: 2, EIO: 5, EBADF: 9, ENOMEM: 12, EACCES: 13, EBUSY: 16, EEXIST: 17,
  EINVAL: 22, EFBIG: 27, ENOSPC: 28, EROFS: 30, ERANGE: 34, ENOTEMPTY: 39, EBADMSG: 74,
  EOPNOTSUPP: 95, ENOTCONN: 107, ESHUTDOWN: 108, ETIMEDOUT: 110, EDQUOT: 122, ECANCELED: 125,
};

export interface CephErrorDetails {
  code: string;
  errno?: number;
  operation: string;
  resource: string;
  /** What exactly went wrong, without the operation and resource. */
  detail: string;
  cause?: unknown;
}

export class CephError extends Error {
  /** Positive errno (2 for ENOENT). */
  readonly errno: number;
  /** Symbolic code: 'ENOENT', 'EEXIST', 'EBUSY', 'EACCES', 'ETIMEDOUT', ... */
  readonly code: string;
  /** The library call that failed, e.g. 'createImage'. */
  readonly operation: string;
  /** What it failed on: 'pool', 'pool/image', 'pool/image@snap', or a cluster. */
  readonly resource: string;
  /**
   * What a failed BackupEngine call could not undo in its time budget (each
   * a sentence naming the thing): the next run on the volume, or gc,
   * removes it. Empty for everything else.
   */
  readonly leftBehind: string[] = [];

  constructor(details: CephErrorDetails) {
    // The resource may be made of what a caller gave, unchecked (a Symbol
    // would make the template throw): String() takes anything.
    const resource = String(details.resource);
    super(`${details.operation} ${resource}: ${details.detail} [${details.code}]`,
      details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.code = details.code;
    this.errno = details.errno ?? errnoOf[details.code] ?? 0;
    this.operation = details.operation;
    this.resource = resource;
  }
}

export class NotFoundError extends CephError {}
export class AlreadyExistsError extends CephError {}
export class BusyError extends CephError {}
export class HasSnapshotsError extends CephError {}
export class PermissionError extends CephError {}
export class TimeoutError extends CephError {}
export class InvalidArgumentError extends CephError {}
export class ClosedError extends CephError {}
export class NotSupportedError extends CephError {}
export class CancelledError extends CephError {}
/** ESHUTDOWN: this connection was blocklisted (fenced); close it and connect again. */
export class BlocklistedError extends CephError {}

const classes: Record<string, new (details: CephErrorDetails) => CephError> = {
  ENOENT: NotFoundError,
  EEXIST: AlreadyExistsError,
  EBUSY: BusyError,
  ENOTEMPTY: HasSnapshotsError,
  EACCES: PermissionError,
  EPERM: PermissionError,
  ETIMEDOUT: TimeoutError,
  EINVAL: InvalidArgumentError,
  EBADF: ClosedError,
  EOPNOTSUPP: NotSupportedError,
  ECANCELED: CancelledError,
  ESHUTDOWN: BlocklistedError,
};

/** The error class for a code, plain CephError for codes without one. */
export function cephError(details: CephErrorDetails): CephError {
  const Class = classes[details.code] ?? CephError;
  return new Class(details);
}

interface NativeFailure {
  message: string;
  code?: unknown;
  errno?: unknown;
}

function isNativeFailure(error: unknown): error is NativeFailure {
  return error instanceof Error && typeof (error as NativeFailure).code === 'string' &&
    typeof (error as NativeFailure).errno === 'number';
}

/**
 * Turns what the addon threw or rejected with into a typed CephError naming
 * the operation and resource. Errors that are already CephErrors pass through.
 */
export function fromNative(error: unknown, operation: string, resource: string): Error {
  if (error instanceof CephError) return error;
  if (!isNativeFailure(error)) return error instanceof Error ? error : new Error(String(error));
  const code = error.code as string;
  // Messages naming only the C call say nothing about the cause; add it.
  const detail = /(failed|refused)$/.test(error.message)
    ? `${error.message}: ${descriptions[code] ?? `errno ${String(error.errno)}`}`
    : error.message;
  return cephError({ code, errno: error.errno as number, operation, resource, detail });
}

function isSystemFailure(error: unknown): error is NodeJS.ErrnoException & { code: string } {
  return error instanceof Error && typeof (error as NodeJS.ErrnoException).code === 'string';
}

/**
 * A Node file-system failure (its errno is negative, its code 'EEXIST',
 * 'ENOENT', ...) as the typed CephError of its code: the library's callers
 * handle one error family, whatever the resource.
 */
export function fromSystem(error: unknown, operation: string, resource: string, doing: string): CephError {
  if (error instanceof CephError) return error;
  if (!isSystemFailure(error)) {
    return new CephError({ code: 'EIO', operation, resource, detail: `${doing}: ${String(error)}`, cause: error });
  }
  const errno = typeof error.errno === 'number' ? Math.abs(error.errno) : undefined;
  return cephError({
    code: error.code, operation, resource, cause: error,
    detail: `${doing}: ${descriptions[error.code] ?? error.message}`,
    ...(errno === undefined ? {} : { errno }),
  });
}

/** An InvalidArgumentError for input refused before reaching Ceph. */
export function invalidArgument(operation: string, resource: string, detail: string): CephError {
  return new InvalidArgumentError({ code: 'EINVAL', operation, resource, detail });
}

/** Runs one native call, turning its failure into a typed CephError. */
export async function nativeCall<T>(operation: string, resource: string,
  call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw fromNative(error, operation, resource);
  }
}
