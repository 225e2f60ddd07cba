/**
 * Bridges an AbortSignal to the native cancel flag that long native loops
 * (flatten, transfers) poll.
 */
import { addon, type NativeCancelToken } from './native.js';
import { CancelledError, CephError, invalidArgument } from './errors.js';
import { checkCallback, describeValue } from './validate.js';

/** A call's optional signal (an AbortSignal) and onProgress callback. */
export function checkCancelOptions(options: { signal?: unknown; onProgress?: unknown }, operation: string, resource: string): void {
  const { signal, onProgress } = options;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw invalidArgument(operation, resource, `signal must be an AbortSignal, got ${describeValue(signal)}`);
  }
  checkCallback('onProgress', onProgress, operation, resource);
}

/** also: what else went wrong while the call was stopping, for the message. */
export function cancelledError(operation: string, resource: string, signal?: AbortSignal, also?: string): CancelledError {
  const reason = signal?.reason instanceof Error ? signal.reason.message : 'aborted';
  return new CancelledError({
    code: 'ECANCELED', operation, resource, detail: `cancelled (${reason})${also === undefined ? '' : `; ${also}`}`,
    cause: signal?.reason,
  });
}

/**
 * Runs call with a token that is raised when signal aborts or when the
 * progress callback throws.
 */
export async function withCancel<T, A extends unknown[] = []>(signal: AbortSignal | undefined, operation: string,
  resource: string, call: (token: NativeCancelToken, onProgress: ((...args: A) => void) | undefined) => Promise<T>,
  onProgress?: (...args: A) => void): Promise<T> {
  checkCancelOptions({ signal, onProgress }, operation, resource);
  if (signal?.aborted) throw cancelledError(operation, resource, signal);
  const token = new addon.CancelToken();
  const onAbort = (): void => token.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  let failure: { error: unknown } | undefined;
  const guarded = onProgress && ((...args: A): void => {
    if (failure) return;
    try {
      onProgress(...args);
    } catch (error) {
      failure = { error };
      token.cancel();
    }
  });
  try {
    return await call(token, guarded);
  } catch (error) {
    if (failure) throw failure.error;
    if (token.cancelled) {
      // What the native call ended with besides the cancel (its operations
      // in flight given up on, say) is not lost.
      const also = error instanceof CephError && error.code !== 'ECANCELED'
        ? error.message.replace(`${operation} ${resource}: `, '') : undefined;
      throw cancelledError(operation, resource, signal, also);
    }
    throw error;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
