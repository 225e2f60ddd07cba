/**
 * BackupEngine: Cinder-compatible backup, restore, delete and listing of RBD
 * volumes, plus many volumes at once with per-cluster concurrency limits.
 * Every backup, restore, delete, prune and gc has one time budget (its
 * timeoutMs; by default three op timeouts of the connections, grown by the
 * work it finds: budget.ts) that its steps and its clean-up share: it
 * settles within it, completed or with a typed error (a TimeoutError when
 * the budget ran out) listing in leftBehind what the next run or gc removes.
 */
import PQueue from 'p-queue';
import type { Cluster } from '../ceph/cluster.js';
import { invalidArgument } from '../ceph/errors.js';
import { describeValue, optionalOptions } from '../ceph/validate.js';
import { checkOnBusy, runBackup, type BackupRequest, type BackupResult } from './backup.js';
import { runFilesBackup } from './files-backup.js';
import { checkClusters, resolveConfig, type BackupEngineConfig, type ResolvedConfig } from './config.js';
import { runDelete, type DeleteOptions, type DeleteResult } from './delete.js';
import { runGc, type GcOptions, type GcResult } from './gc.js';
import { runList, type ListedBackup } from './list.js';
import type { SubjectInput } from './naming.js';
import { runPrune, type PruneOptions, type PruneResult } from './prune.js';
import { exportRecord, importRecord, isFileLayoutRecord, type BackupRecord } from './record.js';
import { backupRoot, listFileBackups, runFilesDelete, runFilesPrune } from './files-inventory.js';
import { runRestore, type RestoreRequest, type RestoreResult } from './restore.js';
import { runVerify, type VerifyOptions, type VerifyResult } from './verify.js';

/** One request's outcome; a named image's has volumeId '' (as its records do) and the image's name. */
export type BackupOutcome = { volumeId: string; image?: string } & (
  | { ok: true; result: BackupResult }
  | { ok: false; error: Error });

export class BackupEngine {
  readonly config: Readonly<ResolvedConfig>;
  /** One queue per source cluster: its volumes are backed up a few at a time. */
  readonly #queues = new Map<Cluster, PQueue>();

  constructor(config: BackupEngineConfig) {
    this.config = resolveConfig(config);
  }

  /**
   * A full or incremental backup of pool/volume-<volumeId>, or of a named
   * image (`image`), into the backup pool, or into files (backupPath);
   * returns its record.
   */
  async backup(request: BackupRequest): Promise<BackupResult> {
    checkClusters(this.config, 'backup');
    return this.#inFiles(request?.backupPath) ? runFilesBackup(this.config, request) : runBackup(this.config, request);
  }

  /** Restores a backup by the diff path when the five conditions hold, by a chunked full copy otherwise. */
  async restore(request: RestoreRequest): Promise<RestoreResult> {
    checkClusters(this.config, 'restore');
    return runRestore(this.config, request);
  }

  /**
   * Checks a backup against the block digests its transfer stored: 'quick'
   * (default) the digests alone, 'deep' the backup's data read again, 'source'
   * the source volume's snapshot; samplePercent reads a share. A mismatch
   * comes back as ok false with its byte ranges.
   */
  async verify(backup: BackupRecord, options?: VerifyOptions): Promise<VerifyResult> {
    checkClusters(this.config, 'verify');
    return runVerify(this.config, backup, options);
  }

  /** Removes a backup from its chain image (the image goes with its last backup) or a legacy copy. */
  async delete(backup: BackupRecord, options?: DeleteOptions): Promise<DeleteResult> {
    checkClusters(this.config, 'delete');
    return isFileLayoutRecord(backup) ? runFilesDelete(this.config, backup, options) : runDelete(this.config, backup, options);
  }

  /**
   * Removes the backups of a volume (or named image) that a retention policy such as
   * 'latest3,days7,weeks4,months6' does not keep; never the newest.
   */
  async prune(of: SubjectInput, policy: string, options?: PruneOptions): Promise<PruneResult> {
    checkClusters(this.config, 'prune');
    const checked = optionalOptions(options, 'prune');
    return this.#inFiles(checked.backupPath)
      ? runFilesPrune(this.config, of, policy, checked) : runPrune(this.config, of, policy, checked);
  }

  /**
   * Finds and removes what killed runs left across the backup pool (and the
   * source pool, when named): unfinished chain images, orphan source
   * snapshots, dead holders' locks, half-restored volumes.
   */
  async gc(options?: GcOptions): Promise<GcResult> {
    checkClusters(this.config, 'gc');
    return runGc(this.config, options);
  }

  /**
   * The backups of a volume (by id) or a named image ({ pool, namespace?,
   * image }) in every chain image and legacy copy, oldest first, read from
   * the backup pool.
   */
  async listBackups(of: SubjectInput, options?: { backupPath?: string }): Promise<ListedBackup[]> {
    checkClusters(this.config, 'listBackups');
    const { backupPath } = optionalOptions(options, 'listBackups');
    return this.#inFiles(backupPath)
      ? listFileBackups(backupRoot(this.config, backupPath, 'listBackups', 'backupPath'), of) : runList(this.config, of);
  }

  /** Cinder's export format: base64 of the record's JSON. */
  exportRecord(backup: BackupRecord): string {
    return exportRecord(backup);
  }

  /** Reads a record exported by this engine or by Cinder; refuses one lacking required fields. */
  importRecord(text: string): BackupRecord {
    return importRecord(text);
  }

  /**
   * Backs up many volumes, at most volumeConcurrency at a time per source
   * cluster; one outcome per request, in request order, failures included.
   * With onBusy 'skip' (how a fleet of hosts shares one volume list), a
   * volume another live run holds is skipped at once: its outcome's error is
   * a BusyError naming the holder.
   */
  async backupMany(requests: readonly BackupRequest[], options?: { onBusy?: 'wait' | 'skip' }): Promise<BackupOutcome[]> {
    if (!Array.isArray(requests)) {
      throw invalidArgument('backupMany', 'requests', `requests must be an array of backup requests, got ${describeValue(requests)}`);
    }
    const { onBusy } = optionalOptions(options, 'backupMany');
    checkOnBusy(onBusy, 'backupMany', 'options');
    const sourceQueue = this.#queue(this.config.source);
    const backupQueue = this.#queue(this.config.backupCluster);
    const run = async (request: BackupRequest): Promise<BackupOutcome> => {
      // As the request names it, whatever it holds: its backup() says what is wrong with it.
      const { volumeId, image } = (request !== null && typeof request === 'object' ? request : {}) as { volumeId?: unknown; image?: unknown };
      const named = image === undefined ? { volumeId: typeof volumeId === 'string' ? volumeId : String(volumeId) }
        : { volumeId: '', image: typeof image === 'string' ? image : String(image) };
      try {
        const result = await this.backup(onBusy && request !== null && typeof request === 'object' ? { onBusy, ...request } : request);
        return { ...named, ok: true, result };
      } catch (error) {
        return { ...named, ok: false, error: error instanceof Error ? error : new Error(String(error)) };
      }
    };
    // A backup takes a place on both clusters' queues, always in this order
    // (source, then backup), so two engines sharing clusters cannot deadlock.
    const inBoth = (request: BackupRequest): Promise<BackupOutcome> => sourceQueue.add(
      () => (backupQueue === sourceQueue ? run(request) : backupQueue.add(() => run(request))) as Promise<BackupOutcome>,
    ) as Promise<BackupOutcome>;
    return Promise.all(requests.map(inBoth));
  }

  /** Whether a call works on a backup root: one it names, or the engine's when it backs up into files. */
  #inFiles(backupPath: string | undefined): boolean {
    return backupPath !== undefined || this.config.backupTo === 'files';
  }

  #queue(cluster: Cluster): PQueue {
    let queue = this.#queues.get(cluster);
    if (!queue) {
      queue = new PQueue({ concurrency: this.config.volumeConcurrency });
      this.#queues.set(cluster, queue);
    }
    return queue;
  }
}
