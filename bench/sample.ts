/**
 * CPU and memory of processes and of the machine, read from /proc (Linux),
 * so the benchmark can say where an operation's time went: our process, the
 * OSD, or somebody else's work on the same cores.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { IntervalHistogram } from 'node:perf_hooks';
import type { CpuDelta, EventLoopDelay } from './protocol.js';

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** User + system CPU milliseconds of a live process; undefined once it is gone. */
export function processCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces; fields after it start at state (field 3).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return ((utime + stime) * 1000) / clockTicks();
  } catch {
    return undefined;
  }
}

/**
 * CPU milliseconds per thread of this process, keyed "tid name" (from
 * /proc/self/task): which threads — librados' messengers, librbd's, our
 * transfer worker, the JavaScript thread — did the work.
 */
export function threadCpuMs(): Map<string, number> {
  const threads = new Map<string, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      threads.set(`${tid} ${name}`, ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks());
    } catch {
      // the thread ended meanwhile
    }
  }
  return threads;
}

/** CPU per thread name during an interval (threads of the same name summed; the JavaScript thread is "main"). */
export function threadCpuDelta(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const byName: Record<string, number> = {};
  const mainTid = String(process.pid);
  for (const [key, end] of after) {
    const [tid, ...rest] = key.split(' ');
    const name = tid === mainTid ? 'main (JavaScript)' : rest.join(' ').replace(/[-_:]?\d+$/, '');
    const used = end - (before.get(key) ?? 0);
    if (used > 0) byName[name] = (byName[name] ?? 0) + used;
  }
  return byName;
}

/** A memory line of /proc/PID/status in MiB: VmRSS (now) or VmHWM (peak); undefined once it is gone. */
export function processMemoryMiB(pid: number, field: 'VmRSS' | 'VmHWM'): number | undefined {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Busy CPU milliseconds of the whole machine, summed over cores, since boot. */
export function machineBusyMs(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
  return ((user! + nice! + system! + irq! + softirq! + (steal ?? 0)) * 1000) / clockTicks();
}

export interface CpuSample {
  at: number;
  pids: Map<number, number | undefined>;
  machineBusyMs: number;
}

export function sampleCpu(pids: readonly number[]): CpuSample {
  return {
    at: performance.now(),
    pids: new Map(pids.map((pid) => [pid, processCpuMs(pid)])),
    machineBusyMs: machineBusyMs(),
  };
}

export function cpuDelta(before: CpuSample, after: CpuSample): CpuDelta {
  const pids: Record<string, number> = {};
  for (const [pid, start] of before.pids) {
    const end = after.pids.get(pid);
    if (start !== undefined && end !== undefined) pids[String(pid)] = end - start;
  }
  const wallMs = after.at - before.at;
  return {
    wallMs,
    pids,
    machineBusyMs: after.machineBusyMs - before.machineBusyMs,
    machineCapacityMs: wallMs * availableParallelism(),
  };
}

/** An event-loop delay histogram (nanoseconds) in milliseconds. */
export function histogramSummary(histogram: IntervalHistogram, resolutionMs: number): EventLoopDelay {
  const ms = (ns: number): number => ns / 1e6;
  return {
    resolutionMs,
    minMs: ms(histogram.min),
    meanMs: ms(histogram.mean),
    p50Ms: ms(histogram.percentile(50)),
    p99Ms: ms(histogram.percentile(99)),
    maxMs: ms(histogram.max),
    samples: histogram.count,
  };
}
