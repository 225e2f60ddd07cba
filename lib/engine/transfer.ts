/**
 * transferDiff: what `rbd export-diff | rbd import-diff` does, inside this
 * process and natively (native/transfer.cc): the changes between two
 * snapshots of a source image land in a target image, which then gets the
 * end snapshot. Source and target may be in different pools or clusters.
 */
import { AlreadyExistsError, CephError, invalidArgument, NotFoundError } from '../ceph/errors.js';
import { runTransferJob, type ReadPlan, type TransferJobStats, type TransferPlan } from '../ceph/transfer-job.js';
import { checkFlag, checkName } from '../ceph/validate.js';
import { checkSourceAndTarget } from '../ceph/image-argument.js';
import { cancelledError } from '../ceph/cancel.js';
import type { Image } from '../ceph/image.js';
import { checkDigestStart, DigestTable } from './digest-table.js';
import { Checkpointer, clearResume, findResume, type Resuming } from './resume.js';
import { logEngine } from './log.js';
import { checkEngineOptions, ioSizeFor, type EngineLimits, type EngineOptions } from './options.js';

/**
 * Digests to compute as the data passes: the table to start from (the
 * parent's for an incremental, DigestTable.zeros for a whole history), of
 * the end snapshot's size, and blocks to read again besides the changed
 * ones (DigestTable.resizedTo names them).
 */
export interface DigestStart {
  table: DigestTable;
  extraBlocks?: bigint[];
}

/** What a job did; with digests, the end snapshot's table. */
export type EngineJobStats = Omit<TransferJobStats, 'digests'> & {
  digests?: DigestTable;
  /** Where it picked up the work of an earlier run that did not finish (bytes below were not moved again). */
  resumedFrom?: bigint;
  /** Why a progress record on the target was not taken: the transfer started clean. */
  resumeRefused?: string;
  /** Progress records written (or tried) on the target: every checkpointMs, none for a shorter transfer. */
  checkpoints?: number;
};

export interface TransferDiffOptions extends EngineOptions {
  /** The source image (any open handle of it). */
  source: Image;
  /** The source snapshot to transfer up to; created on the target at the end. */
  snapshot: string;
  /** Transfer only changes since this snapshot; it must exist on source and target. */
  fromSnapshot?: string;
  /** The target image, open at its head and writable. */
  target: Image;
  /**
   * Object-granular extents: fewer, larger reads, answered from the object
   * map. Default: on for a full transfer from an image with fast-diff (zero
   * runs inside objects are still found and skipped), off for incrementals,
   * where exact extents keep the cost proportional to the change.
   */
  wholeObject?: boolean;
  /** Hash the snapshot's blocks as they pass; the stats then hold its digest table. */
  digests?: DigestStart;
}

export type TransferStats = EngineJobStats & {
  /** Size of the source snapshot, which the target now has. */
  size: bigint;
};

/** Objects covered by one diff call of the engine. */
const OBJECTS_PER_STEP = 256n;
/**
 * Objects covered by its first diff call: listing exact extents costs a
 * round trip per changed object, and no data moves until the first range
 * is listed (~7 ms for a 1% change over 256 objects, against ~0.7 ms here).
 */
const OBJECTS_FIRST_STEP = 16n;
/**
 * Changed extents of one object this close are read and written as one,
 * the unchanged bytes between them included. The bench's OSD spends about
 * 100 µs of CPU per operation and ~1.7 µs per KiB read and written again
 * (the client ~1 µs more): merging pays up to gaps of ~40-60 KiB. Below
 * that, on the side of fewer bytes: the network to a backup cluster is
 * often what binds.
 */
const MERGE_GAP = 32n << 10n;

/**
 * A reading job's plan (readInOrder) over an image of this size and object
 * size within limits: exact extents, the transfer's stepping.
 */
export function readPlanFor(size: bigint, objectSize: bigint, limits: EngineLimits): ReadPlan {
  const { step, firstStep, ioSize } = steppingFor(objectSize);
  const memory = BigInt(limits.memoryBytes);
  return {
    length: size, step, firstStep, ioSize, window: limits.concurrency, memory: memory > ioSize ? memory : ioSize, wholeObject: false,
  };
}

/** How the engine steps through an image of this object size: diff spans, I/O size, merge gap. */
export function steppingFor(objectSize: bigint): Pick<TransferPlan, 'step' | 'firstStep' | 'ioSize' | 'mergeGap'> {
  return {
    step: objectSize * OBJECTS_PER_STEP,
    firstStep: objectSize * OBJECTS_FIRST_STEP,
    ioSize: ioSizeFor(objectSize),
    mergeGap: MERGE_GAP,
  };
}

export async function transferDiff(options: TransferDiffOptions): Promise<TransferStats> {
  const { source, target } = checkSourceAndTarget(options, 'transferDiff');
  const { snapshot, fromSnapshot } = options;
  const resource = `${source.pool.spec}/${source.name}@${String(snapshot)} -> ${target.spec}`;
  checkName('snapshot', snapshot, 'transferDiff', resource);
  if (fromSnapshot !== undefined) checkName('snapshot', fromSnapshot, 'transferDiff', resource);
  const limits = checkEngineOptions(options, 'transferDiff', resource);
  checkFlag('wholeObject', options.wholeObject, 'transferDiff', resource);
  checkDigestStart(options.digests, 'transferDiff');
  if (target.snapshot !== undefined) {
    throw invalidArgument('transferDiff', resource, 'the target must be open at its head, not at a snapshot');
  }
  if (options.signal?.aborted) throw cancelledError('transferDiff', resource, options.signal);
  // Opening the source at the snapshot takes a dozen round trips: it starts
  // first, and the checks run meanwhile. A handle opened now lists every
  // snapshot without the refresh the caller's handle may need after
  // creating one.
  const opening = source.pool.openImage(source.name, { snapshot, readOnly: true });
  opening.catch(() => undefined); // awaited below, or closed if a check fails first
  let snap: Image;
  try {
    await checkTransferSnapshots(opening, target, snapshot, fromSnapshot, resource);
    snap = await opening;
  } catch (error) {
    await opening.then((opened) => opened.close(), () => undefined);
    throw error;
  }
  try {
    const { size, objectSize, features } = await snap.stat();
    const { size: targetSize } = await target.stat();
    let resuming = await findResume(snap, target, { kind: 'diff', snapshot, fromSnapshot, length: size, digestBlock: options.digests?.table.blockSize });
    // Only into a target already of the snapshot's size: a first run sized it so.
    if (resuming?.point !== undefined && targetSize !== size) {
      await clearResume(target);
      resuming = { ...resuming, point: undefined, refused: `the target is ${targetSize} bytes, not the snapshot's ${size}` };
    }
    // A full transfer into an image that holds nothing can skip holes and
    // zeros; into one that holds data it must overwrite the holes as well
    // (as the first run judged the target, when this one picks up its work).
    const targetIsZero = resuming?.point?.targetIsZero ?? (fromSnapshot === undefined && !(await target.hasExtents()));
    if (targetSize !== size) await target.resize(size);
    const plan: TransferPlan = {
      fromSnapshot,
      snapshot,
      length: size,
      ...steppingFor(objectSize),
      window: limits.concurrency,
      memory: BigInt(limits.memoryBytes),
      wholeObject: options.wholeObject ?? (fromSnapshot === undefined && features.includes('fast-diff')),
      targetIsZero,
      zeroGaps: resuming?.point?.zeroGaps ?? (fromSnapshot === undefined && !targetIsZero),
    };
    logEngine('transferDiff %s from %s: %d bytes, window %d', resource, fromSnapshot ?? '(start)', size, limits.concurrency);
    const stats = await runTransfer(snap, target, plan, { ...options, ...(resuming === undefined ? {} : { resuming }) }, 'transferDiff', resource);
    if (stats.directReadRefused !== undefined) logEngine('transferDiff %s read through librbd: %s', resource, stats.directReadRefused);
    await target.createSnapshot(snapshot);
    // Pacific's librbd has reported a snapshot created whose header write
    // had timed out (its skip-quiesce path: a full fault run's incremental
    // completed without its chain snapshot). Its word is not taken: the
    // header is read.
    if (!(await target.headerHasSnapshot(snapshot))) {
      throw new CephError({
        code: 'EIO', operation: 'transferDiff', resource,
        detail: `librbd reported the end snapshot ${snapshot} created, but the header of ${target.spec} does not list it`,
      });
    }
    if (hasRecord(stats)) await clearResume(target);
    logEngine('transferDiff %s done: %o', resource, stats);
    return { ...stats, size };
  } finally {
    await snap.close();
  }
}

/** import-diff's rules, checked before anything is written. */
async function checkTransferSnapshots(opening: Promise<Image>, target: Image, snapshot: string,
  fromSnapshot: string | undefined, resource: string): Promise<void> {
  const missing = (side: string, image: Image): NotFoundError => new NotFoundError({
    code: 'ENOENT', operation: 'transferDiff', resource,
    detail: `from-snapshot ${String(fromSnapshot)} does not exist on the ${side} ${image.pool.spec}/${image.name}`,
  });
  const [targetHasFrom, targetHasEnd] = await Promise.all([
    fromSnapshot === undefined || target.snapshotExists(fromSnapshot),
    target.snapshotExists(snapshot),
  ]);
  if (!targetHasFrom) throw missing('target', target);
  if (targetHasEnd) {
    throw new AlreadyExistsError({
      code: 'EEXIST', operation: 'transferDiff', resource,
      detail: `the target already has the end snapshot ${snapshot}`,
    });
  }
  const snap = await opening;
  if (fromSnapshot !== undefined && !(await snap.snapshotExists(fromSnapshot))) throw missing('source', snap);
}

/** Whether a transfer left (or found) a progress record on its target, to remove once it is complete. */
export function hasRecord(stats: EngineJobStats): boolean {
  return (stats.checkpoints ?? 0) > 0 || stats.resumedFrom !== undefined;
}

/**
 * Runs one native transfer job with the engine's cancel and progress
 * options, and digests when asked (a null target only hashes).
 */
export async function runTransfer(source: Image, target: Image | null, plan: TransferPlan,
  options: EngineOptions & { digests?: DigestStart; resuming?: Resuming }, operation: string, resource: string): Promise<EngineJobStats> {
  const onProgress = options.onProgress;
  const start = options.digests;
  if (start !== undefined && (start.table.size !== plan.length || plan.ioSize % start.table.blockSize !== 0n)) {
    throw invalidArgument(operation, resource,
      `a digest table of ${start.table.size} bytes in ${start.table.blockSize}-byte blocks does not fit ${plan.length} bytes read in ${plan.ioSize}-byte pieces`);
  }
  const resuming = target === null ? undefined : options.resuming;
  const point = resuming?.point;
  // The blocks below where it picks up were hashed by the run that moved them.
  if (point?.digests !== undefined && start !== undefined) point.digests.copy(start.table.entries);
  const checkpoints = resuming === undefined ? undefined
    : new Checkpointer(target!, resuming.identity, { targetIsZero: plan.targetIsZero, zeroGaps: plan.zeroGaps }, point, options.checkpointMs);
  const report = (done: bigint, total: bigint, bytesRead: bigint, digestsFrom: number, entries: Buffer | undefined): void => {
    checkpoints?.report(done, digestsFrom, entries);
    onProgress?.({ done, total, bytesRead });
  };
  let job;
  try {
    job = await runTransferJob(source, target, {
      ...plan,
      ...(point === undefined ? {} : { start: point.start }),
      ...(start === undefined ? {} : { digestBlock: start.table.blockSize, digests: start.table.entries, extraBlocks: start.extraBlocks ?? [] }),
    }, { ...(options.signal ? { signal: options.signal } : {}), onProgress: report }, operation, resource);
  } finally {
    await checkpoints?.settled();
  }
  const { digests, ...stats } = job;
  return {
    ...stats,
    ...(digests === undefined || start === undefined ? {} : { digests: new DigestTable(plan.length, start.table.blockSize, digests) }),
    ...(point === undefined ? {} : { resumedFrom: point.start }),
    ...(resuming?.refused === undefined ? {} : { resumeRefused: resuming.refused }),
    ...(checkpoints === undefined ? {} : { checkpoints: checkpoints.records }),
  };
}
