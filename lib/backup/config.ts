/** BackupEngine's configuration, its defaults, and their checks. */
import { invalidArgument } from '../ceph/errors.js';
import { checkFlag, checkName, describeValue, toIntInRange, toU64 } from '../ceph/validate.js';
import { Cluster } from '../ceph/cluster.js';
import type { FeatureName } from '../ceph/features.js';
import { DEFAULT_CHUNK_SIZE, MIN_CHUNK_SIZE } from '../engine/copy.js';
import { checkEngineOptions } from '../engine/options.js';
import { compressionOf, DEFAULT_BACKUP_FILE_SIZE, DEFAULT_SHA_BLOCK_SIZE, type Compression } from '../files/chunked-layout.js';

export interface BackupEngineConfig {
  /** Where the volumes are. */
  source: Cluster;
  /** Where the backups go; default the source cluster. */
  backupCluster?: Cluster;
  /** Default 'backups'. */
  backupPool?: string;
  /**
   * The backup root of backups in Cinder's chunked file layout (records of
   * its NFS and POSIX drivers): the share's mount point, or its
   * backup_posix_path. No default.
   */
  backupPath?: string;
  /**
   * Where backup() writes when a request names no backupPath: 'pool' (the
   * backup pool, as Cinder's Ceph driver) or 'files' (backupPath, in the
   * chunked layout of Cinder's POSIX and NFS drivers). Default 'pool'.
   */
  backupTo?: 'pool' | 'files';
  /** Backups into files: Cinder's backup_compression_algorithm, 'zlib' (or 'gzip'), 'zstd', 'bz2' (or 'bzip2') or 'none'. Default 'zlib'. */
  compression?: string;
  /** Backups into files: the most data one object holds (Cinder's backup_file_size). Default 1999994880. */
  backupFileSize?: number;
  /** Backups into files: the block each SHA-256 covers (backup_sha_block_size_bytes); divides backupFileSize. Default 32768. */
  shaBlockSize?: number;
  /** Full-copy restore chunk size. Default 128 MiB. */
  chunkSize?: number | bigint;
  /**
   * Backup snapshots kept on each source volume after a backup; 0 keeps all.
   * Default 2: the newest is where the next incremental starts, and one more
   * lets an incremental continue from the backup before it when the newest
   * is deleted.
   */
  maxSourceSnapshots?: number;
  /** Stripe unit of new base images; 0 = pool default. Default 0. */
  stripeUnit?: number | bigint;
  /** Stripe count of new base images; 0 = pool default. Default 0. */
  stripeCount?: number | bigint;
  /** Discard target bytes beyond the backup's length on a full-copy restore. Default true. */
  restoreDiscardExcessBytes?: boolean;
  /** Volumes backed up at once per source cluster by backupMany. Default 2. */
  volumeConcurrency?: number;
  /** I/O operations in flight per transfer. Default 64. */
  ioConcurrency?: number;
  /** Bytes of buffers in flight per transfer. Default 64 MiB. */
  memoryBytes?: number | bigint;
  /** How often a backup's or restore's transfer records its progress on the target, for a retry to pick up from. Default 1000 ms. */
  checkpointMs?: number;
  /** How long a backup waits for another one of the same volume. Default 60 s. */
  lockWaitMs?: number;
  /** Life of the volume lock without renewal. Default 60 s. */
  lockTtlMs?: number;
  /**
   * Hash each backup's data as it passes and store its block digests beside
   * it (backup.<id>.digests), for verify() and restores with verify.
   * Default true.
   */
  digests?: boolean;
}

export interface ResolvedConfig {
  source: Cluster;
  backupCluster: Cluster;
  backupPool: string;
  backupPath: string | undefined;
  backupTo: 'pool' | 'files';
  compression: Compression;
  backupFileSize: number;
  shaBlockSize: number;
  chunkSize: bigint;
  maxSourceSnapshots: number;
  stripeUnit: bigint;
  stripeCount: bigint;
  restoreDiscardExcessBytes: boolean;
  volumeConcurrency: number;
  ioConcurrency: number | undefined;
  memoryBytes: number | undefined;
  checkpointMs: number;
  lockWaitMs: number;
  lockTtlMs: number;
  digests: boolean;
}

/** Features of new base images, as Cinder creates them. */
export const BASE_IMAGE_FEATURES: FeatureName[] = ['layering', 'exclusive-lock', 'object-map', 'fast-diff'];

function engineLimits(config: BackupEngineConfig, op: string): Pick<ResolvedConfig, 'ioConcurrency' | 'memoryBytes'> {
  const limits = checkEngineOptions({ concurrency: config.ioConcurrency, memoryBytes: config.memoryBytes }, op, 'config');
  return {
    ioConcurrency: config.ioConcurrency === undefined ? undefined : limits.concurrency,
    memoryBytes: config.memoryBytes === undefined ? undefined : limits.memoryBytes,
  };
}

/** A backup root: a path, when given. */
export function checkBackupPath(path: unknown, operation: string, resource: string): string | undefined {
  if (path === undefined) return undefined;
  if (typeof path !== 'string' || path === '' || path.includes('\0')) {
    throw invalidArgument(operation, resource, `backupPath must be the backup root's path, got ${describeValue(path)}`);
  }
  return path;
}

function backupTo(config: BackupEngineConfig, op: string): 'pool' | 'files' {
  const to = config.backupTo ?? 'pool';
  if (to !== 'pool' && to !== 'files') throw invalidArgument(op, 'config', `backupTo must be 'pool' or 'files', got ${describeValue(to)}`);
  if (to === 'files' && config.backupPath === undefined) throw invalidArgument(op, 'config', 'backupTo \'files\' needs backupPath, the backup root');
  return to;
}

/** Cinder's names of the compressions a backup into files is written with. */
export function checkCompression(value: unknown, operation: string, resource: string): Compression {
  const compression = compressionOf(value);
  if (compression !== undefined) return compression;
  throw invalidArgument(operation, resource, `compression must be zlib (gzip), zstd, bz2 (bzip2) or none, as Cinder's backup_compression_algorithm, got ${describeValue(value)}`);
}

/** backup_file_size and backup_sha_block_size_bytes, as Cinder checks them: the first a multiple of the second. */
function fileSizes(config: BackupEngineConfig, op: string): Pick<ResolvedConfig, 'backupFileSize' | 'shaBlockSize'> {
  const shaBlockSize = toIntInRange('shaBlockSize', config.shaBlockSize ?? DEFAULT_SHA_BLOCK_SIZE, 512, 64 << 20, op, 'config');
  const backupFileSize = toIntInRange('backupFileSize', config.backupFileSize ?? DEFAULT_BACKUP_FILE_SIZE, shaBlockSize, 2 ** 40, op, 'config');
  if (backupFileSize % shaBlockSize !== 0) {
    throw invalidArgument(op, 'config', `backupFileSize (${backupFileSize}) must be a multiple of shaBlockSize (${shaBlockSize}), as Cinder requires`);
  }
  return { backupFileSize, shaBlockSize };
}

export function resolveConfig(config: BackupEngineConfig): ResolvedConfig {
  const op = 'BackupEngine';
  if (!config || typeof config !== 'object' || !config.source) {
    throw invalidArgument(op, 'config', 'a source cluster is required');
  }
  // Whether each is a Cluster is asked as a call that uses it begins
  // (checkClusters): an engine made only to read records needs none.
  for (const key of ['source', 'backupCluster'] as const) {
    const cluster: unknown = config[key];
    if (cluster !== undefined && (cluster === null || typeof cluster !== 'object')) {
      throw invalidArgument(op, 'config', `${key} must be a Cluster (from Cluster.connect), got ${describeValue(cluster)}`);
    }
  }
  const backupPool = checkName('pool', config.backupPool ?? 'backups', op, 'config');
  const chunkSize = toU64('chunkSize', config.chunkSize ?? DEFAULT_CHUNK_SIZE, op, 'config');
  // Refused when the engine is made, as copyImage would refuse it.
  if (chunkSize < MIN_CHUNK_SIZE) {
    throw invalidArgument(op, 'config', `chunkSize must be at least ${MIN_CHUNK_SIZE} bytes (default ${DEFAULT_CHUNK_SIZE}), got ${chunkSize}`);
  }
  return {
    source: config.source,
    backupCluster: config.backupCluster ?? config.source,
    backupPool,
    backupPath: checkBackupPath(config.backupPath, op, 'config'),
    backupTo: backupTo(config, op),
    compression: checkCompression(config.compression ?? 'zlib', op, 'config'),
    ...fileSizes(config, op),
    chunkSize,
    maxSourceSnapshots: toIntInRange('maxSourceSnapshots', config.maxSourceSnapshots ?? 2, 0, 1 << 20, op, 'config'),
    stripeUnit: toU64('stripeUnit', config.stripeUnit ?? 0, op, 'config'),
    stripeCount: toU64('stripeCount', config.stripeCount ?? 0, op, 'config'),
    restoreDiscardExcessBytes: checkFlag('restoreDiscardExcessBytes', config.restoreDiscardExcessBytes, op, 'config') ?? true,
    volumeConcurrency: toIntInRange('volumeConcurrency', config.volumeConcurrency ?? 2, 1, 256, op, 'config'),
    // Checked here, as the transfers will check them: a bad value is refused
    // when the engine is made, not after a backup has made its images.
    ...engineLimits(config, op),
    checkpointMs: toIntInRange('checkpointMs', config.checkpointMs ?? 1000, 10, 3600_000, op, 'config'),
    lockWaitMs: toIntInRange('lockWaitMs', config.lockWaitMs ?? 60_000, 0, 24 * 3600_000, op, 'config'),
    lockTtlMs: toIntInRange('lockTtlMs', config.lockTtlMs ?? 60_000, 3000, 24 * 3600_000, op, 'config'),
    digests: checkFlag('digests', config.digests, op, 'config') ?? true,
  };
}

/** The engine's clusters, before a call uses them: Clusters, not objects that only look like one. */
export function checkClusters(config: ResolvedConfig, operation: string): void {
  for (const [key, cluster] of [['source', config.source], ['backupCluster', config.backupCluster]] as const) {
    if (!((cluster as unknown) instanceof Cluster)) {
      throw invalidArgument(operation, 'config', `the engine's ${key} must be a Cluster (from Cluster.connect), got ${describeValue(cluster)}`);
    }
  }
}
