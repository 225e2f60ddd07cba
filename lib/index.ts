export { Cluster, type ConnectOptions } from './ceph/cluster.js';
export {
  Pool, type CreateImageOptions, type CloneOptions, type OpenImageOptions, type CloneParent, type WriteObjectOptions, type ObjectLock,
  type ObjectLocker, type ObjectLockers, type WatchObjectOptions, type NotifyObjectOptions, type NotifyAck,
  type NotifyTimeout, type NotifyResult,
} from './ceph/pool.js';
export { ObjectWatch } from './ceph/watch.js';
export { Image, MAX_READ_BYTES, MAX_READ_MANY, type ImageStat, type FlattenOptions } from './ceph/image.js';
export { cloneDepth, flattenIfDeeperThan } from './ceph/clone-depth.js';
export type { ImageWatcher } from './ceph/image.js';
export type { SnapshotInfo, ParentInfo, ChildImage, TrashedSnapshot } from './ceph/snapshot.js';
export type { DiffExtent, DiffOptions } from './ceph/diff.js';
export type { FeatureName } from './ceph/features.js';
export {
  CephError, NotFoundError, AlreadyExistsError, BusyError, HasSnapshotsError, PermissionError,
  TimeoutError, InvalidArgumentError, ClosedError, NotSupportedError, CancelledError, BlocklistedError,
} from './ceph/errors.js';
export { transferDiff, type DigestStart, type TransferDiffOptions, type TransferStats } from './engine/transfer.js';
export { DigestTable, digestBlockFor, type Mismatch } from './engine/digest-table.js';
export { hashImage, type HashImageOptions, type HashStats } from './engine/hash-image.js';
export { copyImage, DEFAULT_CHUNK_SIZE, type CopyImageOptions, type CopyStats } from './engine/copy.js';
export { convergeToSnapshot, type ConvergeOptions, type ConvergeStats } from './engine/converge.js';
export type { Progress, EngineOptions } from './engine/options.js';
export { exportDiff, type ExportDiffOptions } from './engine/export-diff.js';
export { importDiff, type ImportDiffStats } from './engine/import-diff.js';
export { DiffStreamError } from './engine/diff-format.js';
export { exportRaw, type ExportRawOptions, type ExportRawStats } from './engine/raw-export.js';
export { BackupEngine, type BackupOutcome } from './backup/engine.js';
export type { BackupEngineConfig } from './backup/config.js';
export type { BackupOptions, BackupRequest, BackupResult, VolumeMetadata } from './backup/backup.js';
export type { RestoreRequest, RestoreResult, RestoreTarget } from './backup/restore.js';
export type { DeleteOptions, DeleteResult } from './backup/delete.js';
export type { VerifyMode, VerifyOptions, VerifyResult } from './backup/verify.js';
export { DIGESTS_FORMAT, DIGESTS_VERSION, type DigestsHeader } from './backup/digests.js';
export type { PruneOptions, PruneResult, PrunedBackup } from './backup/prune.js';
export type { GcOptions, GcResult } from './backup/gc.js';
export { parseRetentionPolicy, decideRetention, type RetentionPolicy, type RetentionDecision } from './backup/retention.js';
export { DigestsError, InconsistentBackupError, VerificationError } from './backup/errors.js';
export { ChunkedBackupError } from './files/errors.js';
export {
  checkChunkedBackup, restoreChunked, type CheckedChunkedBackup, type ChunkedRestoreOptions, type ChunkedRestoreStats,
} from './files/chunked-restore.js';
export type { LockHolder } from './backup/lock.js';
export type { ListedBackup } from './backup/list.js';
export { exportRecord, importRecord, type BackupRecord, type SourceImageField } from './backup/record.js';
export {
  baseImageName, backupImageName, volumeImageName, backupSnapshotName, metaObjectName, parseBackupSnapshotName,
  type ImageSubject, type NamedImage, type Subject, type SubjectInput, type VolumeSubject,
} from './backup/naming.js';
