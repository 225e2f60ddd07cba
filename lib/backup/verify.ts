/**
 * Verification of one backup against the block digests its transfer
 * stored (digests.ts): 'quick' checks the digests object is whole and
 * matches the backup's snapshot; 'deep' reads the backup's snapshot on its
 * chain image again and compares every block (or a sample); 'source' reads
 * the source volume's snapshot of the backup, while it still has it. A
 * mismatch is a result (ok false, the byte ranges), never only a log line.
 */
import { randomInt } from 'node:crypto';
import { CephError, invalidArgument, NotFoundError, NotSupportedError } from '../ceph/errors.js';
import type { Image } from '../ceph/image.js';
import type { Progress } from '../engine/options.js';
import { hashImage } from '../engine/hash-image.js';
import { checkCancelOptions } from '../ceph/cancel.js';
import { describeValue, optionalOptions } from '../ceph/validate.js';
import type { Mismatch } from '../engine/digest-table.js';
import { callBudget, transferAllowanceMs } from './budget.js';
import { OperationScope } from './cleanup.js';
import type { ResolvedConfig } from './config.js';
import { checkSourcePool } from './delete.js';
import { requireDigests } from './digests.js';
import { readBackupImages } from './inventory.js';
import { locateBackup } from './layout.js';
import { logBackup } from './log.js';
import { sourceImageName } from './naming.js';
import { isFileLayoutRecord, recordLocation, type BackupRecord, type RecordLocation } from './record.js';

export type VerifyMode = 'quick' | 'deep' | 'source';

export interface VerifyOptions {
  /** Default 'quick'. */
  mode?: VerifyMode;
  /** With deep or source: read only this share of the blocks (0 < percent <= 100), chosen at random. */
  samplePercent?: number;
  /** With source: the pool of the backup's source volume (a named image's is its own). */
  sourcePool?: string;
  /** The call's time budget. Default: three op timeouts of the connections plus a second per 16 MiB read. */
  timeoutMs?: number;
  signal?: AbortSignal;
  onProgress?: (progress: Progress) => void;
}

export interface VerifyResult {
  backupId: string;
  mode: VerifyMode;
  /** What was read: the chain image's or the volume's snapshot; for quick, the digests object. */
  checked: string;
  samplePercent: number | undefined;
  blockSize: bigint;
  /** Blocks of the backup. */
  blocks: number;
  /** Blocks compared with their digests (none for quick); a block without data compares as zeros unread. */
  blocksChecked: number;
  /** Blocks without a stored digest (an incremental whose chain's earlier backups were not hashed): not compared. */
  blocksUnknown: number;
  /** Byte ranges whose data does not match its digest. */
  mismatches: Mismatch[];
  ok: boolean;
  bytesRead: bigint;
  elapsedMs: number;
  /** Bytes read per second. */
  readRate: number;
  /** XXH3-128 of the digest table: the point in time's digest. */
  pointDigest: string;
}

function checkVerifyOptions(options: VerifyOptions, operation: string, resource: string): { mode: VerifyMode; samplePercent: number | undefined } {
  const mode = options.mode ?? 'quick';
  if (!['quick', 'deep', 'source'].includes(mode)) throw invalidArgument(operation, resource, `mode must be quick, deep or source, got ${describeValue(mode)}`);
  const sample = options.samplePercent;
  if (sample !== undefined) {
    if (typeof sample !== 'number' || !(sample > 0 && sample <= 100)) {
      throw invalidArgument(operation, resource, `samplePercent must be a number above 0 and at most 100, got ${describeValue(sample)}`);
    }
    if (mode === 'quick') throw invalidArgument(operation, resource, 'samplePercent goes with mode deep or source: quick reads no data');
  }
  if (options.sourcePool !== undefined && mode !== 'source') throw invalidArgument(operation, resource, 'sourcePool goes with mode source');
  checkCancelOptions(options, operation, resource);
  return { mode, samplePercent: sample };
}

/** count distinct block indexes out of blocks, in order. */
function sampleBlocks(blocks: number, percent: number): bigint[] {
  const count = Math.min(blocks, Math.ceil((blocks * percent) / 100));
  const chosen = new Set<number>();
  // Few of many: draw; most of them: every block but a drawn few.
  if (count <= blocks / 2) {
    while (chosen.size < count) chosen.add(randomInt(blocks));
    return [...chosen].sort((a, b) => a - b).map(BigInt);
  }
  while (chosen.size < blocks - count) chosen.add(randomInt(blocks));
  const picked: bigint[] = [];
  for (let i = 0; i < blocks; i++) if (!chosen.has(i)) picked.push(BigInt(i));
  return picked;
}

async function openVolumeSnapshot(config: ResolvedConfig, scope: OperationScope, location: RecordLocation, sourcePool: string | undefined,
  snapshot: string, operation: string): Promise<Image> {
  const subject = location.subject;
  const poolName = checkSourcePool(subject, sourcePool, operation) ?? (subject.kind === 'image' ? subject.pool : undefined);
  if (poolName === undefined) {
    throw invalidArgument(operation, scope.resource, 'mode source needs sourcePool: the pool of the backup\'s volume (Cinder\'s records do not name it)');
  }
  const pool = await scope.adopt(config.source.pool(poolName, subject.kind === 'image' ? subject.namespace : ''));
  const name = sourceImageName(subject);
  try {
    return await scope.adopt(pool.openImage(name, { snapshot, readOnly: true }));
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
    throw new NotFoundError({
      code: 'ENOENT', operation, resource: `${pool.spec}/${name}@${snapshot}`,
      detail: 'the source volume (or its snapshot of this backup) no longer exists: verify with mode deep instead',
    });
  }
}

export async function runVerify(config: ResolvedConfig, backup: BackupRecord, given?: VerifyOptions): Promise<VerifyResult> {
  const operation = 'verify';
  const options = optionalOptions(given, operation);
  const location = recordLocation(backup, operation);
  const resource = `backup ${location.backupId}`;
  if (isFileLayoutRecord(backup)) {
    throw new NotSupportedError({
      code: 'EOPNOTSUPP', operation, resource,
      detail: 'a backup in files (Cinder\'s NFS/POSIX layout) has md5s, not digests: verify does not check it in this version; a restore checks every object\'s md5 as it goes (into a file, say: restore --target-file)',
    });
  }
  const { mode, samplePercent } = checkVerifyOptions(options, operation, resource);
  // Before anything is read: a source pool that cannot be (or is not the backup's image's) is refused now.
  checkSourcePool(location.subject, options.sourcePool, operation);
  const budget = callBudget(options.timeoutMs, [config.source, config.backupCluster], operation, resource);
  return OperationScope.run({ operation, resource, timeoutMs: budget.timeoutMs }, async (scope) => {
    const started = performance.now();
    scope.doing = 'reading the backup\'s digests';
    const pool = await scope.adopt(config.backupCluster.pool(location.container ?? config.backupPool));
    const found = locateBackup(await readBackupImages(pool, location.subject), location, operation);
    const snapshot = found.snapshot?.name;
    const size = found.snapshot?.size ?? found.image.size;
    const stored = await requireDigests(pool, location.backupId, { snapshot, size }, operation, resource);
    const result = {
      backupId: location.backupId, mode, samplePercent, blockSize: stored.blockSize, blocks: stored.count,
      blocksUnknown: stored.unknownBlocks(), pointDigest: stored.pointDigest(),
    };
    if (mode === 'quick') {
      const elapsedMs = performance.now() - started;
      return {
        ...result, checked: `${pool.spec}/backup.${location.backupId}.digests`, blocksChecked: 0, mismatches: [], ok: true,
        bytesRead: 0n, elapsedMs, readRate: 0,
      };
    }
    if (budget.grows) scope.extend(transferAllowanceMs((size * BigInt(Math.ceil(samplePercent ?? 100))) / 100n));
    scope.doing = mode === 'deep' ? 'reading the backup\'s snapshot' : 'reading the source volume\'s snapshot';
    const image = mode === 'deep'
      ? await scope.adopt(pool.openImage(found.image.name, { readOnly: true }))
      : await openVolumeSnapshot(config, scope, location, options.sourcePool, snapshot!, operation);
    const checked = `${image.pool.spec}/${image.name}@${snapshot!}`;
    const blocks = samplePercent === undefined ? undefined : sampleBlocks(stored.count, samplePercent);
    const hashed = await hashImage({
      image, snapshot: snapshot!, blockSize: stored.blockSize, ...(blocks === undefined ? {} : { blocks }),
      signal: options.signal ? AbortSignal.any([options.signal, scope.signal]) : scope.signal, onProgress: options.onProgress,
      concurrency: config.ioConcurrency, memoryBytes: config.memoryBytes,
    });
    // A snapshot removed meanwhile (a delete or prune) reads as zeros once trimmed: its verdict would be false.
    if (!(await image.headerHasSnapshot(snapshot!))) {
      throw new CephError({
        code: 'EIO', operation, resource: checked,
        detail: 'the snapshot was removed while it was being verified (a delete or prune?): no verdict',
      });
    }
    const mismatches = stored.compare(hashed.table);
    const blocksChecked = blocks === undefined
      ? stored.count - result.blocksUnknown
      : blocks.filter((index) => stored.entry(Number(index)) !== 0n).length;
    const elapsedMs = performance.now() - started;
    if (mismatches.length > 0) logBackup('verify %s: %d byte range(s) of %s do not match their digests', location.backupId, mismatches.length, checked);
    return {
      ...result, checked, blocksChecked, mismatches, ok: mismatches.length === 0,
      bytesRead: hashed.bytesRead, elapsedMs, readRate: Number(hashed.bytesRead) / (elapsedMs / 1000),
    };
  });
}
