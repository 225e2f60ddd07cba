/**
 * What bench/run.ts tells a bench/scenario.ts child to do, and the one JSON
 * line the child prints back. Types only: importing this runs nothing.
 */
import type { BackupRecord } from '../lib/index.js';

export interface ClusterRef {
  conf: string;
  keyring: string;
}

export interface ImageRef {
  cluster: ClusterRef;
  pool: string;
  image: string;
}

export interface EngineSettings {
  concurrency?: number;
  memoryBytes?: number;
  wholeObject?: boolean;
}

/** A bare engine call on images the child opens. */
export interface EngineOperation {
  /**
   * transfer: transferDiff; copy: copyImage; export: exportDiff into a
   * sink; hash: hashImage of the snapshot (no target), in the block size a
   * chain of its size gets (digestBlockFor).
   */
  op: 'transfer' | 'copy' | 'export' | 'hash';
  source: ImageRef;
  snapshot: string;
  fromSnapshot?: string;
  /** Existing image, open at its head (transfer, copy). */
  target?: ImageRef;
  /** export only: 'null' discards (timed); 'stdout' writes the stream out (for verification). */
  sink?: 'null' | 'stdout';
  /** transfer only: hash the end snapshot's blocks as the data passes (transferDiff's digests). */
  digests?: DigestsStart;
}

/**
 * The table a transfer with digests starts from, of the end snapshot's
 * size: read from a file of entries (the from-snapshot's table, which the
 * benchmark computed with hashImage before the child started, so that
 * neither its time nor its operations count), or without one the zeros of
 * a whole history (DigestTable.zeros).
 */
export interface DigestsStart {
  size: number;
  blockSize: number;
  /** The table's entries (DigestTable.entries), 8 bytes per block. */
  entriesFile?: string;
}

/** How a restore operation restores. */
export type RestoreHow =
  /**
   * restore({ instant: true, flatten }) into a new image, then a 4 KiB read
   * of it; with 'background', also until the flatten's done settles.
   */
  | { kind: 'instant'; flatten: 'never' | 'background' }
  /** restore({ force: true, inPlace }) into the backup's own volume. */
  | { kind: 'into-source'; inPlace: boolean }
  /** restore({ backupPath }) of a backup in files (Cinder's chunked layout) into a new image. */
  | { kind: 'files'; backupPath: string };

/** BackupEngine.restore of a backup whose volumes and backups are in one cluster. */
export interface RestoreOperation {
  op: 'restore';
  cluster: ClusterRef;
  /** The engine's backupPool: where the backup's chain image is. */
  backupPool: string;
  /** The record BackupEngine.backup returned (plain JSON). */
  backup: BackupRecord;
  /** A named image in the cluster. */
  target: { pool: string; name: string };
  how: RestoreHow;
}

/** BackupEngine.verify(backup, { mode: 'deep' }) of a backup in the child's one cluster. */
export interface VerifyOperation {
  op: 'verify';
  cluster: ClusterRef;
  backupPool: string;
  backup: BackupRecord;
}

/** BackupEngine.backup of a Cinder volume into a backup root (Cinder's chunked file layout). */
export interface FilesBackupOperation {
  op: 'files-backup';
  cluster: ClusterRef;
  pool: string;
  volumeId: string;
  backupId: string;
  backupPath: string;
  full: boolean;
  compression: string;
}

/** importDiff of a diff stream read from a file into an existing image (open at its head). */
export interface ImportOperation {
  op: 'import';
  target: ImageRef;
  streamFile: string;
}

export type Operation = EngineOperation | RestoreOperation | VerifyOperation | FilesBackupOperation | ImportOperation;

/** How the child runs any operation. */
export interface RunSettings {
  engine: EngineSettings;
  /** Processes (the clusters' OSDs and monitors) whose CPU time is sampled around the operation. */
  samplePids: number[];
  /** Extra librados/librbd options for our connections (rados_conf_set), for experiments. */
  clientOptions?: Record<string, string>;
  connectTimeoutMs: number;
  opTimeoutMs: number;
}

export type ScenarioArgs = Operation & RunSettings;

export interface EventLoopDelay {
  /** The histogram's timer period; every sample includes it, so an idle loop reads about this much. */
  resolutionMs: number;
  minMs: number;
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  samples: number;
}

export interface CpuDelta {
  wallMs: number;
  /** CPU time (user + system) per sampled pid during the interval. */
  pids: Record<string, number>;
  /** CPU time the whole machine spent busy (all cores). */
  machineBusyMs: number;
  /** Wall time × cores. */
  machineCapacityMs: number;
}

export interface ScenarioResult {
  op: ScenarioArgs['op'];
  /**
   * The library call alone (for export: until the sink has taken the last
   * byte; for an instant restore: until the first read returned, or with a
   * background flatten until it settled).
   */
  elapsedMs: number;
  /** From process start to just before the operation (module load, connect, open). */
  setupMs: number;
  /**
   * The engine's own statistics (for a restore: its RestoreResult; for a
   * verify: its VerifyResult), numbers and strings only; a restore's also
   * its milestones, in ms after the call started: returnedMs, and for an
   * instant restore firstReadMs (and flattenedMs with a background
   * flatten); a transfer with digests and a hash also pointDigest (of the
   * table computed) and digestBlockSize.
   */
  stats: Record<string, number | string | null>;
  /** export: bytes of the diff stream. */
  streamBytes?: number;
  progressCalls: number;
  rss: {
    /** Peak RSS just before the operation (after connect and open). */
    beforeMiB: number;
    /** Peak RSS of the whole process (VmHWM of /proc/self/status: its own, not its parent's). */
    peakMiB: number;
  };
  eventLoop: EventLoopDelay;
  /** This process's CPU time during the operation (all its threads, librados' included). */
  cpu: { userMs: number; systemMs: number };
  /**
   * That CPU time by thread name (threads of one name summed; what threads
   * that exited meanwhile used is one entry of its own).
   */
  threadsCpuMs: Record<string, number>;
  /** CPU of the sampled processes and of the machine during the operation. */
  sampled: CpuDelta;
}
