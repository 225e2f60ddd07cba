/**
 * Restore of one backup, choosing between the diff path (allowed only when
 * the five conditions of conditions.ts hold) and the chunked full copy.
 * Nothing is changed before every check has passed.
 */
import { randomUUID } from 'node:crypto';
import type { Writable } from 'node:stream';
import { InvalidArgumentError, invalidArgument, NotFoundError } from '../ceph/errors.js';
import type { Image } from '../ceph/image.js';
import type { Pool } from '../ceph/pool.js';
import { checkName } from '../ceph/validate.js';
import { copyImage } from '../engine/copy.js';
import { exportRaw } from '../engine/raw-export.js';
import type { Progress } from '../engine/options.js';
import { transferDiff } from '../engine/transfer.js';
import { restorePoints } from './chain.js';
import { removeImageWithSnapshots, undo } from './cleanup.js';
import type { ResolvedConfig } from './config.js';
import { decideRestore, type RestoreDecision } from './conditions.js';
import { logBackup } from './log.js';
import { baseImageName, checkId, legacyImageName, volumeImageName } from './naming.js';
import { recordBaseImage, type BackupRecord } from './record.js';

export interface RestoreRequest {
  backup: BackupRecord;
  /** Restore into volume-<targetVolumeId> (created when missing) in targetPool... */
  targetPool?: string;
  /** ...default a new volume id. */
  targetVolumeId?: string;
  /** ...or into a local file (raw image; an existing file is refused)... */
  targetFile?: string;
  /** ...or into a Writable (raw image, ended at the end). */
  targetStream?: Writable;
  signal?: AbortSignal;
  onProgress?: (progress: Progress) => void;
}

export interface RestoreResult {
  path: 'diff' | 'full';
  /** For a full copy: the first of the five conditions that failed, and why. */
  failedCondition: { number: 1 | 2 | 3 | 4 | 5; reason: string } | undefined;
  /** Where the data came from: base image @ restore point, or a legacy image. */
  source: string;
  /** The target: pool/volume-<id>, a file path, or 'stream'. */
  target: string;
  targetVolumeId: string | undefined;
  size: bigint;
  bytesRead: number;
  elapsedMs: number;
}

interface Source {
  image: Image;
  /** undefined for a legacy image, copied at its head. */
  snapshot: string | undefined;
  spec: string;
  size: bigint;
}

export async function runRestore(config: ResolvedConfig, request: RestoreRequest): Promise<RestoreResult> {
  const operation = 'restore';
  const { backup } = request;
  if (!backup || typeof backup !== 'object') throw invalidArgument(operation, 'backup', 'a backup record is required');
  const backupId = checkId('backup', backup.id, operation);
  const volumeId = backup.volume_id ? checkId('volume', backup.volume_id, operation) : undefined;
  const targets = [request.targetPool !== undefined, request.targetFile !== undefined, request.targetStream !== undefined]
    .filter(Boolean).length;
  if (targets !== 1) {
    throw invalidArgument(operation, `backup ${backupId}`, 'give exactly one of targetPool, targetFile, targetStream');
  }
  if (request.targetPool !== undefined) checkName('pool', request.targetPool, operation, request.targetPool);
  const targetVolumeId = request.targetPool !== undefined
    ? checkId('volume', request.targetVolumeId ?? randomUUID(), operation)
    : undefined;
  if (request.targetVolumeId !== undefined && request.targetPool === undefined) {
    throw invalidArgument(operation, `backup ${backupId}`, 'targetVolumeId needs targetPool');
  }
  const baseName = recordBaseImage(backup) ?? (volumeId ? baseImageName(volumeId) : undefined);
  if (baseName === undefined) {
    throw invalidArgument(operation, `backup ${backupId}`, 'the record names neither a base image nor a volume id');
  }
  checkName('image', baseName, operation, baseName);
  const backupPoolName = typeof backup.container === 'string' && backup.container ? backup.container : config.backupPool;

  const opened: Array<Image | Pool> = [];
  const started = performance.now();
  try {
    const backupPool = await config.backupCluster.pool(backupPoolName);
    opened.push(backupPool);
    const images = await backupPool.listImages();
    const baseExists = images.includes(baseName);
    let points: string[] = [];
    let source: Source | undefined;
    if (baseExists) {
      const base = await backupPool.openImage(baseName, { readOnly: true });
      opened.push(base);
      const snapshots = await base.listSnapshots();
      points = restorePoints(snapshots.map((s) => s.name), backupId);
      if (points.length > 1) {
        throw new InvalidArgumentError({
          code: 'EINVAL', operation, resource: `${backupPool.spec}/${baseName}`,
          detail: `backup ${backupId} has ${points.length} restore points (${points.join(', ')}); expected one`,
        });
      }
      if (points.length === 1) {
        const point = snapshots.find((s) => s.name === points[0])!;
        source = { image: base, snapshot: point.name, spec: `${backupPool.spec}/${baseName}@${point.name}`, size: point.size };
      }
    }
    if (!source) {
      // No restore point on a diff-format base: a legacy full backup image.
      const legacyName = volumeId ? legacyImageName(volumeId, backupId) : undefined;
      if (!legacyName || !images.includes(legacyName)) {
        throw new NotFoundError({
          code: 'ENOENT', operation, resource: `${backupPool.spec}/${baseName}`,
          detail: baseExists
            ? `backup ${backupId} has no snapshot on the base image and no legacy image ${legacyName ?? ''}`.trim()
            : `backup ${backupId}'s base image ${baseName} does not exist${legacyName ? ` and neither does ${legacyName}` : ''}`,
        });
      }
      const legacy = await backupPool.openImage(legacyName, { readOnly: true });
      opened.push(legacy);
      source = { image: legacy, snapshot: undefined, spec: `${backupPool.spec}/${legacyName}`, size: (await legacy.stat()).size };
    }

    if (request.targetPool === undefined) {
      const decision = decideRestore({
        baseExists, restorePoints: points, targetIsRbd: false, targetIsSource: false, targetHasExtents: undefined,
      });
      const stats = await exportRaw(source.image, {
        ...(source.snapshot === undefined ? {} : { snapshot: source.snapshot }),
        to: request.targetFile ?? request.targetStream!,
        signal: request.signal, onProgress: request.onProgress,
        concurrency: config.ioConcurrency, memoryBytes: config.memoryBytes,
      });
      return result(decision, source, request.targetFile ?? 'stream', undefined, stats.size, stats.bytesRead, started);
    }

    const targetPool = await config.source.pool(request.targetPool);
    opened.push(targetPool);
    const targetName = volumeImageName(targetVolumeId!);
    const targetSpec = `${targetPool.spec}/${targetName}`;
    let created = false;
    if (!(await targetPool.imageExists(targetName))) {
      await targetPool.createImage(targetName, source.size);
      created = true;
    }
    let target: Image | undefined;
    try {
      target = await targetPool.openImage(targetName);
      const { size: targetSize } = await target.stat();
      if (targetSize < source.size) {
        throw invalidArgument(operation, targetSpec,
          `the target volume is ${targetSize} bytes, smaller than the backup's ${source.size}`);
      }
      const decision = decideRestore({
        baseExists, restorePoints: points, targetIsRbd: true,
        targetIsSource: targetVolumeId === volumeId,
        targetHasExtents: created ? false : await target.hasExtents(),
      });
      logBackup('restore %s -> %s: %s', source.spec, targetSpec,
        decision.path === 'diff' ? 'diff' : `full copy (condition ${decision.condition}: ${decision.reason})`);
      let bytesRead: number;
      if (decision.path === 'diff') {
        const restoring = target;
        // The transfer sizes the volume to the backup; it gets its own size
        // back whether the restore works or not (without hiding why not).
        const ownSize = (): Promise<void> => restoring.resize(targetSize);
        try {
          const stats = await transferDiff({
            source: source.image, snapshot: decision.restorePoint, target: restoring,
            signal: request.signal, onProgress: request.onProgress,
            concurrency: config.ioConcurrency, memoryBytes: config.memoryBytes,
          });
          bytesRead = stats.bytesRead;
          // The transfer leaves the restore point's snapshot on the target;
          // the volume does not want it.
          await restoring.removeSnapshot(decision.restorePoint);
        } catch (error) {
          if (targetSize !== source.size) await undo('give the target volume its own size back', ownSize);
          throw error;
        }
        if (targetSize !== source.size) await ownSize();
      } else {
        const stats = await copyImage({
          source: source.image, ...(source.snapshot === undefined ? {} : { snapshot: source.snapshot }), target,
          chunkSize: config.chunkSize, discardExcess: config.restoreDiscardExcessBytes,
          signal: request.signal, onProgress: request.onProgress,
          concurrency: config.ioConcurrency, memoryBytes: config.memoryBytes,
        });
        bytesRead = stats.bytesRead;
      }
      return result(decision, source, targetSpec, targetVolumeId, source.size, bytesRead, started);
    } catch (error) {
      await target?.close().catch(() => undefined);
      target = undefined;
      // A volume this restore created and could not fill is worth nothing.
      if (created) await undo('remove the volume this restore created', () => removeImageWithSnapshots(targetPool, targetName));
      throw error;
    } finally {
      await target?.close();
    }
  } finally {
    for (const handle of opened.reverse()) await handle.close().catch(() => undefined);
  }
}

function result(decision: RestoreDecision, source: Source, target: string, targetVolumeId: string | undefined,
  size: bigint, bytesRead: number, started: number): RestoreResult {
  return {
    path: decision.path,
    failedCondition: decision.path === 'full' ? { number: decision.condition, reason: decision.reason } : undefined,
    source: source.spec,
    target,
    targetVolumeId,
    size,
    bytesRead,
    elapsedMs: performance.now() - started,
  };
}
