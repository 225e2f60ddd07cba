/**
 * convergeToSnapshot: makes a target image hold source@snapshot when both
 * still have a snapshot of the same bytes (the common snapshot: a backup
 * snapshot on the volume and on its chain image), moving only what can
 * differ. Outside (a) the extents the target changed since the common
 * snapshot and (b) the extents the source changed between the common
 * snapshot and the restore point (either way in time), the target already
 * holds the restore point's bytes: target head = target@common =
 * source@common = source@snapshot there. So (a) and (b) are read from
 * source@snapshot and written, and nothing else; reading the restore
 * point's bytes anywhere is correct, so extents may be merged with the
 * gaps between them as in any transfer.
 */
import { invalidArgument, NotFoundError } from '../ceph/errors.js';
import type { Image } from '../ceph/image.js';
import type { TransferPlan } from '../ceph/transfer-job.js';
import { checkName } from '../ceph/validate.js';
import { checkSourceAndTarget } from '../ceph/image-argument.js';
import { logEngine } from './log.js';
import { checkEngineOptions, type EngineOptions, type Progress } from './options.js';
import { runTransfer, steppingFor, type EngineJobStats } from './transfer.js';

export interface ConvergeOptions extends EngineOptions {
  /** Any handle of the source image (the chain image). */
  source: Image;
  /** The source snapshot the target is to hold. */
  snapshot: string;
  /** A snapshot of the target and of the source holding the same bytes. */
  common: string;
  /** The target, open at its head and writable; its size at least the snapshot's. */
  target: Image;
}

export interface ConvergeStats {
  /** Moved for the target's own changes since the common snapshot. */
  targetChanges: EngineJobStats;
  /** Moved for the source's changes between the common snapshot and the restore point (undefined when they are one). */
  sourceChanges: EngineJobStats | undefined;
  /** The restore point's size: [0, size) of the target now holds it. */
  size: bigint;
  bytesRead: bigint;
  bytesWritten: bigint;
}

export async function convergeToSnapshot(options: ConvergeOptions): Promise<ConvergeStats> {
  const operation = 'convergeToSnapshot';
  const { source, target } = checkSourceAndTarget(options, operation);
  const { snapshot, common } = options;
  const resource = `${source.pool.spec}/${source.name}@${String(snapshot)} -> ${target.spec} (from ${String(common)})`;
  checkName('snapshot', snapshot, operation, resource);
  checkName('snapshot', common, operation, resource);
  const limits = checkEngineOptions(options, operation, resource);
  if (target.snapshot !== undefined) throw invalidArgument(operation, resource, 'the target must be open at its head');
  const sourceSnapshots = await source.listSnapshots();
  const point = sourceSnapshots.find((s) => s.name === snapshot);
  const shared = sourceSnapshots.find((s) => s.name === common);
  const missing = (what: string) => new NotFoundError({ code: 'ENOENT', operation, resource, detail: `${what} does not exist` });
  if (point === undefined) throw missing(`the source snapshot ${snapshot}`);
  if (shared === undefined) throw missing(`the common snapshot ${common} on the source`);
  const onTarget = (await target.listSnapshots()).find((s) => s.name === common);
  if (onTarget === undefined) throw missing(`the common snapshot ${common} on the target`);
  if (onTarget.size !== shared.size) {
    throw invalidArgument(operation, resource,
      `the common snapshot is ${onTarget.size} bytes on the target and ${shared.size} on the source: they do not hold the same bytes`);
  }
  if (point.id < shared.id && point.size > shared.size) {
    // Its listing would reach past the common snapshot's end.
    throw invalidArgument(operation, resource, 'the restore point is older and larger than the common snapshot');
  }
  const { size: targetSize } = await target.stat();
  if (targetSize < point.size) {
    throw invalidArgument(operation, resource, `the target (${targetSize} bytes) is smaller than the snapshot (${point.size} bytes)`);
  }

  await using atPoint = await source.pool.openImage(source.name, { snapshot });
  // Handles of their own: the job lists on one image while it writes another.
  await using targetListed = await target.pool.openImage(target.name, { readOnly: true });
  const { objectSize } = await atPoint.stat();
  const plan: TransferPlan = {
    snapshot, length: point.size, ...steppingFor(objectSize),
    window: limits.concurrency, memory: BigInt(limits.memoryBytes),
    wholeObject: false, targetIsZero: false, zeroGaps: false,
  };
  const phases = point.id === shared.id ? 1 : 2;
  // Progress over both phases, bytes read counted from the start.
  const phase = (n: number, readBefore: bigint): EngineOptions => ({
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onProgress ? {
      onProgress: (p: Progress) => options.onProgress!({
        done: (BigInt(n) * p.total + p.done) / BigInt(phases), total: p.total, bytesRead: readBefore + p.bytesRead,
      }),
    } : {}),
  });
  logEngine('%s: the target\'s changes since %s', resource, common);
  const targetChanges = await runTransfer(atPoint, target, { ...plan, fromSnapshot: common, listed: targetListed },
    phase(0, 0n), operation, resource);
  let sourceChanges: EngineJobStats | undefined;
  if (point.id > shared.id) {
    // Newer: the source's diff from the common snapshot, as any incremental.
    sourceChanges = await runTransfer(atPoint, target, { ...plan, fromSnapshot: common }, phase(1, targetChanges.bytesRead),
      operation, resource);
  } else if (point.id < shared.id) {
    // Older: what changed between the two, listed at the common snapshot, read from the restore point.
    await using atCommon = await source.pool.openImage(source.name, { snapshot: common });
    sourceChanges = await runTransfer(atPoint, target, { ...plan, fromSnapshot: snapshot, listed: atCommon },
      phase(1, targetChanges.bytesRead), operation, resource);
  }
  const stats = {
    targetChanges, sourceChanges, size: point.size,
    bytesRead: targetChanges.bytesRead + (sourceChanges?.bytesRead ?? 0n),
    bytesWritten: targetChanges.bytesWritten + (sourceChanges?.bytesWritten ?? 0n),
  };
  logEngine('%s done: %o', resource, stats);
  return stats;
}
