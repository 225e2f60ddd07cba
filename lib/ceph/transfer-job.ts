/**
 * The native copy engine (native/transfer.cc) as lib/ceph shows it to the
 * engine: one job moving extents between two open images (or only hashing
 * one) with cancel and progress wired up, and the zero-run finder and
 * hashes of the same code.
 */
import type { Image } from './image.js';
import { addon, type NativeTransferPlan, type NativeTransferProgress, type NativeTransferStats } from './native.js';
import { nativeCall } from './errors.js';
import { withCancel } from './cancel.js';
import { logCeph } from './log.js';

/** What the job moves and how (native/transfer.h TransferPlan), the listed image as an Image. */
export type TransferPlan = Omit<NativeTransferPlan, 'listed'> & { listed?: Image };
/** What a job did (native/transfer.h TransferStats). */
export type TransferJobStats = NativeTransferStats;

export interface TransferJobControl {
  signal?: AbortSignal;
  /** At most every 100 ms: every source byte below done is handled (native.ts NativeTransferProgress). */
  onProgress?: NativeTransferProgress;
}

/** When a connection has no op timeout, what an operation in flight gets to complete after a transfer stopped. */
const DRAIN_WITHOUT_OP_TIMEOUT_MS = 30_000;
/** Beyond the op timeout: an operation may start just before the transfer stops. */
const DRAIN_GRACE_MS = 5_000;

/**
 * How long a stopped transfer waits for its operations in flight: those
 * librados sends end within the op timeout of their connection; one librbd
 * keeps queued past that never will.
 */
function drainMsFor(source: Image, target: Image | null): number {
  const timeouts = [source, target ?? source].map((image) => image.pool.cluster.opTimeoutMs ?? DRAIN_WITHOUT_OP_TIMEOUT_MS);
  return Math.max(...timeouts) + DRAIN_GRACE_MS;
}

/** Runs one native transfer job from source (open at a snapshot) into target; a null target only hashes. */
export function runTransferJob(source: Image, target: Image | null, plan: TransferPlan, control: TransferJobControl,
  operation: string, resource: string): Promise<TransferJobStats> {
  const { listed, ...rest } = plan;
  const bounded: NativeTransferPlan = {
    ...rest, drainMs: plan.drainMs ?? drainMsFor(source, target), ...(listed === undefined ? {} : { listed: listed.native }),
  };
  return withCancel(control.signal, operation, resource,
    (token, progress) => nativeCall(operation, resource,
      () => addon.transfer(source.native, target === null ? null : target.native, bounded, token, progress ?? (() => undefined))),
    control.onProgress)
    .catch((error: unknown) => {
      // A cancel hides the native failure; a stuck image is worth a line.
      logCeph('%s %s failed: %s', operation, resource, error instanceof Error ? error.message : String(error));
      // Either side may have timed out: both fetch the newest OSD map.
      source.pool.cluster.afterFailure(error);
      target?.pool.cluster.afterFailure(error);
      throw error;
    });
}

/**
 * The runs of zeros at least minRun bytes long in data, as [start, end)
 * pairs flattened into one array; found natively, at memory speed.
 */
export function findZeroRuns(data: Buffer, minRun: number): Float64Array {
  return addon.zeroRuns(data, minRun);
}

/** XXH3-128 of data (xxHash's canonical byte order): one digest of a whole digest table. */
export function digest128(data: Buffer): Buffer {
  return addon.digest128(data);
}

/** The digest table entries a transfer would compute for data's blocks (the last may be short). */
export function blockDigests(data: Buffer, blockSize: number): BigUint64Array {
  return addon.blockDigests(data, blockSize);
}
