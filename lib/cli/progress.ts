/**
 * Progress for the CLI on stderr: a redrawn line with done/total, rate and
 * ETA on a terminal; otherwise a plain line at every 10% crossed, so logs
 * and pipes stay readable and show each step.
 */
import type { Progress } from '../engine/options.js';
import { formatBytes, formatDuration } from './format.js';

const BAR_WIDTH = 24;

/** Rate (bytes of the volume covered per second) and seconds left, once they can be told. */
function pace(progress: Progress, elapsedMs: number): { rate: number; eta: number } | undefined {
  const done = Number(progress.done);
  if (elapsedMs <= 0 || done <= 0) return undefined;
  const rate = done / (elapsedMs / 1000);
  return { rate, eta: Math.max(0, Number(progress.total) - done) / rate };
}

function fractionOf(progress: Progress): number {
  return progress.total > 0n ? Math.min(1, Number(progress.done) / Number(progress.total)) : 0;
}

/** The terminal line: `backup [#####    ]  42% 1.2 GiB/2.0 GiB 310.5 MiB/s ETA 0:03`. */
export function progressBar(label: string, progress: Progress, elapsedMs: number): string {
  const fraction = fractionOf(progress);
  const filled = Math.round(fraction * BAR_WIDTH);
  const speed = pace(progress, elapsedMs);
  return `${label} [${'#'.repeat(filled)}${' '.repeat(BAR_WIDTH - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ` +
    `${formatBytes(progress.done)}/${formatBytes(progress.total)}` +
    (speed ? ` ${formatBytes(speed.rate)}/s ETA ${formatDuration(speed.eta)}` : '');
}

/** The tenths (1..10) a step from `lastTenth` to this progress crosses, each to be reported. */
export function crossedTenths(lastTenth: number, progress: Progress): number[] {
  const tenth = Math.floor(fractionOf(progress) * 10 + 1e-9);
  const crossed: number[] = [];
  for (let t = Math.max(lastTenth + 1, 0); t <= tenth; t++) crossed.push(t);
  return crossed;
}

/** The plain line for one tenth: `backup: 30% (96.0 MiB of 320.0 MiB, 12.0 MiB read, 40.1 MiB/s)`. */
export function progressLine(label: string, tenth: number, progress: Progress, elapsedMs: number): string {
  const speed = pace(progress, elapsedMs);
  return `${label}: ${tenth * 10}% (${formatBytes(progress.done)} of ${formatBytes(progress.total)}, ` +
    `${formatBytes(progress.bytesRead)} read${speed ? `, ${formatBytes(speed.rate)}/s` : ''})`;
}

export interface ProgressReporter {
  onProgress: (progress: Progress) => void;
  finish: () => void;
}

export function progressReporter(label: string, stream: NodeJS.WriteStream = process.stderr): ProgressReporter {
  const started = performance.now();
  let lastTenth = -1;
  let drawn = false;
  return {
    onProgress(progress: Progress): void {
      const elapsed = performance.now() - started;
      if (stream.isTTY) {
        stream.write(`\r${progressBar(label, progress, elapsed)}\x1b[K`);
        drawn = true;
        return;
      }
      for (const tenth of crossedTenths(lastTenth, progress)) {
        stream.write(`${progressLine(label, tenth, progress, elapsed)}\n`);
        lastTenth = tenth;
      }
    },
    finish(): void {
      if (drawn) stream.write('\n');
    },
  };
}
