/**
 * The native copy engine (native/transfer.cc) as lib/ceph shows it to the
 * engine: one job moving extents between two open images (or only hashing
 * one, handing what it reads to JavaScript in order, or writing what
 * JavaScript gives it) with cancel and progress wired up, and the hashes of
 * the same code.
 */
import type { Image } from './image.js';
import {
  addon, type NativeDelivered, type NativeInlet, type NativeOutlet, type NativeTransferPlan, type NativeTransferProgress,
  type NativeTransferStats,
} from './native.js';
import { invalidArgument, nativeCall } from './errors.js';
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
function drainMsFor(...images: Array<Image | null>): number {
  const timeouts = images.filter((image) => image !== null).map((image) => image.pool.cluster.opTimeoutMs ?? DRAIN_WITHOUT_OP_TIMEOUT_MS);
  return Math.max(...timeouts) + DRAIN_GRACE_MS;
}

/** Where a delivering job's reads go (plan.deliver), or where a writing job's pieces come from. */
type Delivery = { outlet: NativeOutlet; onData: (read: NativeDelivered[]) => void }
  | { inlet: NativeInlet; onWritten: () => void };

/**
 * Runs one native transfer job from source (open at a snapshot) into target; a null target only hashes
 * (or delivers), a null source writes what an inlet is given.
 */
export function runTransferJob(source: Image | null, target: Image | null, plan: TransferPlan, control: TransferJobControl,
  operation: string, resource: string, delivery?: Delivery): Promise<TransferJobStats> {
  const { listed, ...rest } = plan;
  const bounded: NativeTransferPlan = {
    ...rest, drainMs: plan.drainMs ?? drainMsFor(source, target), ...(listed === undefined ? {} : { listed: listed.native }),
  };
  // The addon takes either side of a delivery in the same two arguments.
  const [channel, callback] = delivery === undefined ? [] : 'inlet' in delivery
    ? [delivery.inlet, delivery.onWritten] : [delivery.outlet, delivery.onData];
  return withCancel(control.signal, operation, resource,
    (token, progress) => nativeCall(operation, resource,
      () => addon.transfer(source === null ? null : source.native, target === null ? null : target.native, bounded, token, progress ?? (() => undefined),
        channel, callback)),
    control.onProgress)
    .catch((error: unknown) => {
      // A cancel hides the native failure; a stuck image is worth a line.
      logCeph('%s %s failed: %s', operation, resource, error instanceof Error ? error.message : String(error));
      // Either side may have timed out: both fetch the newest OSD map.
      source?.pool.cluster.afterFailure(error);
      target?.pool.cluster.afterFailure(error);
      throw error;
    });
}

/** What a reading job reads and how: the transfer plan's fields that apply to it. */
export type ReadPlan = Pick<NativeTransferPlan, 'snapshot' | 'fromSnapshot' | 'length' | 'step' | 'firstStep' | 'ioSize'
  | 'window' | 'memory' | 'wholeObject' | 'align' | 'zeroRuns' | 'minZeroRun'>;

/** A piece of an image read by readInOrder, in offset order. */
export interface OrderedPiece {
  offset: bigint;
  length: bigint;
  /** The bytes; undefined for a range that no longer exists (a hole). */
  data?: Buffer;
  /** With plan.zeroRuns: [start, end) pairs of the zero runs in data; absent when there are none. */
  zeroRuns?: number[];
}

/**
 * The extents of source's changes (plan.fromSnapshot to the snapshot it is
 * open at, or its whole history) read by a native job and yielded in
 * offset order: the paths whose data has to pass through JavaScript (a
 * diff stream, a raw export, a backup into files) read with the transfer's
 * window, direct object reads and diff prefetch. A piece stays in the
 * job's window until the consumer asks for the next one after it, so
 * reads run ahead of a slow consumer by the window at most. A consumer
 * that stops early stops the job.
 */
export async function* readInOrder(source: Image, plan: ReadPlan, signal: AbortSignal | undefined,
  operation: string, resource: string): AsyncGenerator<OrderedPiece> {
  const stop = new AbortController();
  const outlet = new addon.Outlet();
  const read: NativeDelivered[] = [];
  let wake: (() => void) | undefined;
  let outcome: { error?: unknown } | undefined;
  const job = runTransferJob(source, null, { ...plan, deliver: true, targetIsZero: false, zeroGaps: false },
    { signal: signal === undefined ? stop.signal : AbortSignal.any([signal, stop.signal]) }, operation, resource,
    { outlet, onData: (pieces) => { read.push(...pieces); wake?.(); } });
  job.then(() => { outcome = {}; }, (error: unknown) => { outcome = { error }; }).finally(() => wake?.());
  try {
    for (;;) {
      if (outcome?.error !== undefined) throw outcome.error;
      // At most a window of reads is waiting here.
      const op = read.shift();
      if (op === undefined) {
        if (outcome !== undefined) return;
        await new Promise<void>((resolve) => { wake = resolve; });
        wake = undefined;
        continue;
      }
      await op.copied;
      yield* piecesOf(op);
      outlet.taken(1, op.data?.length ?? 0);
    }
  } finally {
    if (outcome === undefined) stop.abort();
    await job.catch(() => undefined);
  }
}

function* piecesOf(op: NativeDelivered): Generator<OrderedPiece> {
  const { data, pieces, zeroRuns } = op;
  if (data === undefined || pieces === undefined) {
    yield { offset: op.offset, length: op.length };
    return;
  }
  let run = 0;
  for (let i = 0, at = 0; i < pieces.length; i += 2) {
    const length = Number(pieces[i + 1]);
    const piece: OrderedPiece = { offset: pieces[i]!, length: pieces[i + 1]!, data: data.subarray(at, at + length) };
    // Each run lies in one piece (they were found piece by piece).
    const runs: number[] = [];
    for (; zeroRuns !== undefined && run < zeroRuns.length && zeroRuns[run]! < at + length; run += 2) {
      runs.push(zeroRuns[run]! - at, zeroRuns[run + 1]! - at);
    }
    if (runs.length > 0) piece.zeroRuns = runs;
    yield piece;
    at += length;
  }
}

/** XXH3-128 of data (xxHash's canonical byte order): one digest of a whole digest table. */
export function digest128(data: Buffer): Buffer {
  return addon.digest128(data);
}

/** The digest table entries a transfer would compute for data's blocks (the last may be short). */
export function blockDigests(data: Buffer, blockSize: number): BigUint64Array {
  return addon.blockDigests(data, blockSize);
}

/** How a writing job writes (writeInOrder). */
export interface WritePlan {
  window: number;
  memory: bigint;
  /** Zeroes given are skipped: the target reads as zeros there already. */
  targetIsZero: boolean;
}

/**
 * What JavaScript writes through writeInOrder. A piece is written from its
 * own Buffer, which must stay unchanged until end() or stop() has settled.
 */
export interface OrderedWriter {
  /** Gives data for offset once the window has room; resolves once it was given, not written. */
  write(data: Buffer, offset: bigint): Promise<void>;
  /** The same for zeroes (skipped on a target known to read as zeros). */
  writeZeroes(offset: bigint, length: bigint): Promise<void>;
  /** Resolves once everything given so far is written; throws the job's failure. */
  drain(): Promise<void>;
  /** Nothing more: resolves with the job's stats once everything is written and the target flushed. */
  end(): Promise<TransferJobStats>;
  /** Stops the job (what is still queued is not written) and waits until it has ended; never throws. */
  stop(): Promise<void>;
}

/**
 * A native job writing into target what JavaScript gives it, in the order
 * given (a piece waits for the earlier ones it overlaps), with the
 * transfer's window: the paths whose data comes from JavaScript (a diff
 * stream, a restore from files) write as the transfer does.
 */
export function writeInOrder(target: Image, plan: WritePlan, signal: AbortSignal | undefined,
  operation: string, resource: string): OrderedWriter {
  const stop = new AbortController();
  const inlet = new addon.Inlet();
  let outcome: { error?: unknown } | undefined;
  // Every waiter (several objects of a restore write at once) wakes when pieces were written or the job ended.
  let wake = (): void => undefined;
  let changed = new Promise<void>((resolve) => { wake = resolve; });
  const notify = (): void => {
    wake();
    changed = new Promise<void>((resolve) => { wake = resolve; });
  };
  const job = runTransferJob(null, target, {
    ...plan,
    // Nothing is read: the plan's checks only want these in range.
    length: 0n, step: 1n, ioSize: 1n, wholeObject: false, zeroGaps: false, drainMs: drainMsFor(target),
  }, { signal: signal === undefined ? stop.signal : AbortSignal.any([signal, stop.signal]) }, operation, resource,
  { inlet, onWritten: notify });
  job.then(() => { outcome = {}; }, (error: unknown) => { outcome = { error }; }).finally(notify);
  const ended = (): never => {
    throw outcome?.error ?? invalidArgument(operation, resource, 'a piece was given after the writer ended');
  };
  const give = async (data: Buffer | null, offset: bigint, length: bigint): Promise<void> => {
    // Nothing to write (a diff stream may hold empty records).
    if (length === 0n) return;
    while (!inlet.room()) {
      if (outcome !== undefined) ended();
      await changed;
    }
    if (outcome !== undefined || !inlet.give(data, offset, length)) {
      await job.catch(() => undefined);
      ended();
    }
  };
  return {
    write: (data, offset) => give(data, offset, BigInt(data.length)),
    writeZeroes: (offset, length) => give(null, offset, length),
    async drain() {
      while (inlet.pending() > 0) {
        if (outcome !== undefined) break;
        await changed;
      }
      if (outcome?.error !== undefined) throw outcome.error;
    },
    end() {
      inlet.end();
      return job;
    },
    async stop() {
      stop.abort();
      await job.catch(() => undefined);
    },
  };
}
