/** What a run records (written to the results JSON): the machine, each latency pass, and the bars. */
import type { Latency } from './options.js';
import type { EventLoopDelay } from './protocol.js';

export interface Measure {
  tool: 'ours' | 'rbd';
  elapsedMs: number;
  /** Volume size / elapsed. */
  mibPerS: number;
  /** CPU of the client side: our child process, or the rbd processes. */
  clientCpuMs: number;
  osdCpuMs: number;
  monCpuMs: number;
  /** Machine CPU busy time not accounted for by the client, the OSDs and the mons: other people's work. */
  foreignCpuMs: number;
  machineCapacityMs: number;
  /** Time spent waiting for the OSDs to go quiet before starting. */
  settleMs: number;
  loadavg1: number;
  verified: string;
  rssPeakMiB?: number;
  rssBeforeMiB?: number;
  setupMs?: number;
  eventLoop?: EventLoopDelay;
  /**
   * The same histogram in the benchmark's own process, idle meanwhile: the
   * delay the machine's scheduler alone causes (a control for eventLoop).
   */
  controlEventLoop?: EventLoopDelay;
  progressCalls?: number;
  /** Our client CPU by thread name. */
  threadsCpuMs?: Record<string, number>;
  streamBytes?: number;
  stats?: Record<string, number | string | null>;
  command?: string;
  /** rbd: when each marked step of the command line returned, in ms after the script started. */
  stepsMs?: Record<string, number> | undefined;
  /** rbd: what the command line printed on stdout, when it was kept (the deep verify pipe's md5sum line). */
  printed?: string;
  /** The OSDs' client-op counters over the whole run (process start to exit), summed over the running clusters. */
  osdOps?: OsdOps;
}

/** Deltas of the OSD perf counters (`perf dump`, section osd) around one run. */
export interface OsdOps {
  opR: number;
  opW: number;
  opRw: number;
  inBytes: number;
  outBytes: number;
}

export interface ScenarioRecord {
  id: string;
  title: string;
  detail: string;
  volumeBytes: number;
  /** The median runs (by elapsed time) of oursRuns and rbdRuns. */
  ours: Measure;
  /** The rbd tool at its default rbd_concurrent_management_ops (10), as Cinder runs it. */
  rbd?: Measure;
  /** The rbd tool with --rbd-concurrent-management-ops 64. */
  rbd64?: Measure;
  oursRuns: Measure[];
  rbdRuns?: Measure[];
  rbd64Runs?: Measure[];
  /** ours MiB/s ÷ rbd MiB/s */
  ratio?: number;
  /** ours MiB/s ÷ rbd@64 MiB/s */
  ratio64?: number;
  /** elapsed ÷ the same tool's full transfer */
  fractionOfFull?: { ours: number; rbd: number; rbd64?: number };
  change?: ChangeInfo;
  /**
   * No bar of DESIGN section 7 is about it (the instant and in-place
   * restores): its figures and ratios are shown, and no bar judges them.
   */
  noBar?: boolean;
  /** An in-place restore: its time and bytes read ÷ those of our full-copy restore into the same volume. */
  ofFullCopy?: { time: number; bytesRead: number };
  /** A transfer with digests: what it cost against the same transfer without (the row `of`), with ÷ without. */
  digestCost?: DigestCost;
}

/**
 * A transfer with digests against the same transfer without them (ours,
 * median runs): each figure with ÷ without. bytesRead and libOps are the
 * library's stats, osdOps the OSD's client operations over the child's
 * whole run (its opening and closing included).
 */
export interface DigestCost {
  /** The scenario id of the transfer without digests. */
  of: string;
  time: number;
  bytesRead: number;
  libOps: number;
  osdOps: number;
}

export interface ChangeInfo {
  fraction: number;
  pattern: string;
  seed: number;
  writes: number;
  /** Bytes per write. */
  writeBytes: number;
  bytesWritten: number;
  /** Distinct bytes touched (overlapping writes counted once). */
  bytesChanged: number;
  objectsTouched: number;
  objects: number;
  writeMs: number;
}

export interface Ceiling {
  command: string;
  /** What rbd bench itself printed as bytes/sec. */
  reportedMiBPerS: number | undefined;
  /** Volume size / wall time of the whole command. */
  wallMiBPerS: number;
  elapsedMs: number;
  osdCpuMs: number;
  clientCpuMs: number;
  output: string;
}

export interface Bar {
  id: string;
  /** The pass the bar is judged in. */
  latency: Latency;
  text: string;
  value: number | undefined;
  threshold: number;
  /** 'min': value must be ≥ threshold; 'max': value must be ≤ threshold. */
  direction: 'min' | 'max';
  unit: string;
  pass: boolean | undefined;
  detail: string;
  /** For a failed bar: by how much, e.g. "needs ≥ 10x, got 4.2x". */
  shortfall?: string;
  informational?: boolean;
}

/** What `ceph-cluster.sh latency` measured at the start of a pass (rados bench, 4 KiB objects). */
export interface DeliveredLatency {
  writeQd1Ms: number;
  readQd1Ms: number;
  writeQd16Ms: number;
  readQd16Ms: number;
  writeQd1MBs: number;
  readQd1MBs: number;
  writeQd16MBs: number;
  readQd16MBs: number;
  command: string;
  output: string;
}

/** One latency pass: its own clusters, started fresh, and every scenario run in them. */
export interface Pass {
  latency: Latency;
  /** The OSD's ms_inject_delay_max (0: none). */
  injectDelayMaxS: number;
  delivered?: DeliveredLatency;
  clusters: Record<string, unknown>;
  cliStartupMs?: number;
  /** The fastest (by reported MiB/s) of ceilingRuns. */
  ceiling?: Ceiling;
  /** The fill of rbd/src, then rbd bench on fresh scratch images of the same size. */
  ceilingRuns?: Ceiling[];
  rssCheckCeiling?: Ceiling;
  /**
   * The fastest of readCeilingRuns: `rbd bench --io-type read` of the
   * source backup's chain image, the cluster's read speed that a deep
   * verify is judged against.
   */
  readCeiling?: Ceiling;
  readCeilingRuns?: Ceiling[];
  scenarios: ScenarioRecord[];
  osd: Record<string, unknown>;
  durationMs?: number;
}

/** Serial round trips of an unchanged incremental: (elapsed at ~4 ms − elapsed at ~0) ÷ the added qd1 latency. */
export interface RoundTrips {
  /** Mean of the qd1 read and write latencies at ~4 ms, minus the same at ~0: what each round trip gained. */
  addedQd1Ms: number;
  tools: Array<{ tool: string; elapsedMs0: number; elapsedMs4: number; trips: number }>;
}

export interface Results {
  ok: boolean;
  error?: string;
  date: string;
  finishedAt?: string;
  command: string[];
  machine: Record<string, unknown>;
  config: Record<string, unknown>;
  passes: Pass[];
  roundTrips?: RoundTrips;
  bars: Bar[];
  durationMs?: number;
}

