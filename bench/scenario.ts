/**
 * One of our operations, alone in a fresh process, so that its peak RSS
 * and its event-loop delay belong to that operation only:
 *
 *   node dist/bench/scenario.js '<ScenarioArgs as JSON>'
 *
 * Connects, opens the images (for a restore: its target pool; a transfer
 * with digests also reads its start table), then times just the library
 * call (bench/scenario-restore.ts says what a restore's time covers; a
 * deep verify's is the whole BackupEngine.verify call; a stream import's,
 * importDiff reading its file) with the
 * event-loop delay histogram enabled, and prints one JSON line
 * (ScenarioResult) on stdout — on stderr instead when the diff stream
 * itself goes to stdout. Any failure exits non-zero with the error on stderr.
 */
import { createReadStream, readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ioSizeFor } from '../lib/engine/options.js';
import {
  BackupEngine, Cluster, copyImage, DigestTable, digestBlockFor, exportDiff, hashImage, importDiff, transferDiff, type DigestStart,
  type Image, type Pool,
} from '../lib/index.js';
import type {
  ClusterRef, DigestsStart, EngineOperation, FilesBackupOperation, ImageRef, ImportOperation, RunSettings, ScenarioArgs, ScenarioResult,
  VerifyOperation,
} from './protocol.js';
import { cpuDelta, histogramSummary, processMemoryMiB, sampleCpu, threadCpuDelta, threadCpuMs } from './sample.js';
import { restoreRun } from './scenario-restore.js';

const ELD_RESOLUTION_MS = 10;

/**
 * This process's peak RSS: VmHWM, its own address space's high-water mark.
 * Not getrusage's maxrss (process.resourceUsage().maxRSS), which Linux
 * carries over from the parent at exec: a child of a benchmark process
 * holding 250 MiB would start with a "peak" of 250 MiB.
 */
function peakRssMiB(): number {
  return processMemoryMiB(process.pid, 'VmHWM') ?? process.resourceUsage().maxRSS / 1024;
}

/** Opened resources, closed in reverse order. */
class Handles {
  readonly #clusters = new Map<string, Cluster>();
  readonly #closers: Array<() => Promise<void>> = [];

  constructor(readonly args: ScenarioArgs) {}

  async cluster(ref: ClusterRef): Promise<Cluster> {
    const key = `${ref.conf}\0${ref.keyring}`;
    let cluster = this.#clusters.get(key);
    if (!cluster) {
      cluster = await Cluster.connect({
        conf: ref.conf, keyring: ref.keyring,
        timeoutMs: this.args.connectTimeoutMs, opTimeoutMs: this.args.opTimeoutMs,
        ...(this.args.clientOptions ? { options: this.args.clientOptions } : {}),
      });
      this.#clusters.set(key, cluster);
      const opened = cluster;
      this.#closers.push(() => opened.close());
    }
    return cluster;
  }

  async pool(ref: ClusterRef, name: string): Promise<Pool> {
    const pool = await (await this.cluster(ref)).pool(name);
    this.#closers.push(() => pool.close());
    return pool;
  }

  async open(ref: ImageRef, readOnly: boolean): Promise<Image> {
    const pool = await this.pool(ref.cluster, ref.pool);
    const image = await pool.openImage(ref.image, { readOnly });
    this.#closers.push(() => image.close());
    return image;
  }

  async close(): Promise<void> {
    while (this.#closers.length > 0) await this.#closers.pop()!();
  }
}

function numbers(stats: object): Record<string, number | string | null> {
  const out: Record<string, number | string | null> = {};
  for (const [key, value] of Object.entries(stats)) {
    if (typeof value === 'bigint') out[key] = Number(value);
    else if (typeof value === 'number' || typeof value === 'string') out[key] = value;
    else if (value === undefined || value === null) out[key] = null;
  }
  return out;
}

/** The start table of a transfer with digests (read before timing starts). */
function digestStart(start: DigestsStart): DigestStart {
  const size = BigInt(start.size);
  const blockSize = BigInt(start.blockSize);
  return {
    table: start.entriesFile === undefined
      ? DigestTable.zeros(size, blockSize)
      : new DigestTable(size, blockSize, readFileSync(start.entriesFile)),
  };
}

/**
 * A deep verify's timed part: the call, which reads the backup's digests,
 * finds its snapshot on the chain image and hashes all of it. A mismatch
 * fails the run.
 */
function verifyRun(cluster: Cluster, op: VerifyOperation, args: RunSettings, onProgress: () => void): () => Promise<object> {
  const engine = new BackupEngine({
    source: cluster, backupPool: op.backupPool, ioConcurrency: args.engine.concurrency, memoryBytes: args.engine.memoryBytes,
  });
  return async () => {
    const result = await engine.verify(op.backup, { mode: 'deep', onProgress });
    if (!result.ok) {
      throw new Error(`deep verify of backup ${result.backupId} found ${result.mismatches.length} byte range(s) that do not ` +
        `match their digests, the first at ${result.mismatches[0]?.offset}`);
    }
    return result;
  };
}

/** A backup into files: the call, snapshot, diff, hashing, compression and syncs included. */
function filesBackupRun(cluster: Cluster, op: FilesBackupOperation, args: RunSettings, onProgress: () => void): () => Promise<object> {
  const engine = new BackupEngine({ source: cluster, ioConcurrency: args.engine.concurrency, memoryBytes: args.engine.memoryBytes });
  return async () => {
    const result = await engine.backup({
      pool: op.pool, volumeId: op.volumeId, backupId: op.backupId, backupPath: op.backupPath, full: op.full, compression: op.compression,
      onProgress,
    });
    return {
      ...result.stats, mode: result.mode, snapshot: result.snapshot, objects: result.files!.objects.length,
      bytesStored: result.files!.bytesStored, record: JSON.stringify(result.record),
    };
  };
}

/** A stream import: the file read, parsed and applied, its end snapshot created. */
function importRun(target: Image, op: ImportOperation, args: RunSettings, onProgress: () => void): () => Promise<object> {
  return () => importDiff(createReadStream(op.streamFile, { highWaterMark: 1 << 20 }), target, {
    concurrency: args.engine.concurrency, memoryBytes: args.engine.memoryBytes, onProgress,
  });
}

/** A bare engine call's timed part, and the stream bytes an export counted. */
async function engineRun(handles: Handles, args: EngineOperation & RunSettings, onProgress: () => void):
  Promise<{ run: () => Promise<object>; streamBytes: () => number | undefined }> {
  const source = await handles.open(args.source, true);
  const target = args.target ? await handles.open(args.target, false) : undefined;
  const engine = { concurrency: args.engine.concurrency, memoryBytes: args.engine.memoryBytes, onProgress };
  let streamBytes: number | undefined;
  let run: () => Promise<object>;
  switch (args.op) {
    case 'transfer': {
      const digests = args.digests === undefined ? undefined : digestStart(args.digests);
      run = async () => {
        const stats = await transferDiff({
          ...engine, source, target: target!, snapshot: args.snapshot, fromSnapshot: args.fromSnapshot,
          wholeObject: args.engine.wholeObject, ...(digests === undefined ? {} : { digests }),
        });
        // XXH3-128 of the table (128 KiB at 1 GiB): microseconds; the benchmark checks it against hashImage.
        return stats.digests === undefined ? stats
          : { ...stats, pointDigest: stats.digests.pointDigest(), digestBlockSize: stats.digests.blockSize };
      };
      break;
    }
    case 'copy':
      run = () => copyImage({ ...engine, source, target: target!, snapshot: args.snapshot });
      break;
    case 'hash': {
      const { size, objectSize } = await source.stat();
      const blockSize = digestBlockFor(size, ioSizeFor(objectSize));
      run = async () => {
        const { table, ...stats } = await hashImage({ ...engine, image: source, snapshot: args.snapshot, blockSize });
        return { ...stats, pointDigest: table.pointDigest(), digestBlockSize: blockSize };
      };
      break;
    }
    case 'export':
      run = async () => {
        streamBytes = 0;
        const stream = exportDiff(source, {
          ...engine, snapshot: args.snapshot, fromSnapshot: args.fromSnapshot, wholeObject: args.engine.wholeObject,
        });
        const sink = args.sink === 'stdout' ? process.stdout : new Writable({
          write(chunk: Buffer, _encoding, callback) {
            streamBytes! += chunk.length;
            callback();
          },
        });
        if (args.sink === 'stdout') stream.on('data', (chunk: Buffer) => { streamBytes! += chunk.length; });
        await pipeline(stream, sink);
        return {};
      };
      break;
    default:
      throw new Error(`unknown op ${String(args.op)}`);
  }
  return { run, streamBytes: () => streamBytes };
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? '') as ScenarioArgs;
  const handles = new Handles(args);
  // The result line goes to stderr when the diff stream itself goes to stdout.
  const streamToStdout = args.op === 'export' && args.sink === 'stdout';
  try {
    let progressCalls = 0;
    const onProgress = (): void => { progressCalls += 1; };
    const { run, streamBytes } = args.op === 'restore'
      ? {
        run: restoreRun(await handles.cluster(args.cluster), await handles.pool(args.cluster, args.target.pool), args,
          args.engine, onProgress),
        streamBytes: () => undefined,
      }
      : args.op === 'verify'
        ? { run: verifyRun(await handles.cluster(args.cluster), args, args, onProgress), streamBytes: () => undefined }
        : args.op === 'files-backup'
          ? { run: filesBackupRun(await handles.cluster(args.cluster), args, args, onProgress), streamBytes: () => undefined }
          : args.op === 'import'
            ? { run: importRun(await handles.open(args.target, false), args, args, onProgress), streamBytes: () => undefined }
            : await engineRun(handles, args, onProgress);

    const rssBefore = peakRssMiB();
    const setupMs = performance.now();
    const histogram = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });
    const cpuBefore = process.cpuUsage();
    const sampledBefore = sampleCpu(args.samplePids);
    const threadsBefore = threadCpuMs();
    histogram.enable();
    const started = performance.now();
    const stats = await run();
    const elapsedMs = performance.now() - started;
    histogram.disable();
    const threadsCpu = threadCpuDelta(threadsBefore, threadCpuMs());
    const sampled = cpuDelta(sampledBefore, sampleCpu(args.samplePids));
    const cpu = process.cpuUsage(cpuBefore);
    // Threads that exited before the second sample (the native transfer's
    // own thread among them) are missing there; their share is the rest.
    const ended = (cpu.user + cpu.system) / 1000 - Object.values(threadsCpu).reduce((sum, ms) => sum + ms, 0);
    if (ended > 0) threadsCpu['threads that ended during the op'] = ended;

    const eventLoop = histogramSummary(histogram, ELD_RESOLUTION_MS);
    await handles.close();
    const result: ScenarioResult = {
      op: args.op,
      elapsedMs,
      setupMs,
      stats: numbers(stats),
      streamBytes: streamBytes(),
      progressCalls,
      rss: { beforeMiB: rssBefore, peakMiB: peakRssMiB() },
      eventLoop,
      cpu: { userMs: cpu.user / 1000, systemMs: cpu.system / 1000 },
      threadsCpuMs: threadsCpu,
      sampled,
    };
    const line = `${JSON.stringify(result)}\n`;
    if (streamToStdout) process.stderr.write(line);
    else process.stdout.write(line);
  } finally {
    await handles.close().catch(() => undefined);
  }
}

main().catch((error: unknown) => {
  const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  process.stderr.write(`scenario failed: ${detail}\n`);
  process.exitCode = 1;
});
