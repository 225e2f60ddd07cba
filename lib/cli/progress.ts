/**
 * Progress for the CLI: a redrawn bar on a terminal, a plain line per tenth
 * otherwise (logs and pipes stay readable).
 */
import type { Progress } from '../engine/options.js';

const MiB = 1 << 20;

export function progressReporter(label: string, stream: NodeJS.WriteStream = process.stderr): {
  onProgress: (progress: Progress) => void;
  finish: () => void;
} {
  const started = performance.now();
  let lastTenth = -1;
  let drawn = false;
  const rate = (bytes: number): string => {
    const seconds = (performance.now() - started) / 1000;
    return seconds > 0 ? `${(bytes / MiB / seconds).toFixed(1)} MiB/s` : '';
  };
  return {
    onProgress({ done, total, bytesRead }: Progress): void {
      const fraction = total > 0 ? Math.min(1, done / total) : 0;
      if (stream.isTTY) {
        const width = 30;
        const filled = Math.round(fraction * width);
        stream.write(`\r${label} [${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ${rate(bytesRead)}   `);
        drawn = true;
      } else {
        const tenth = Math.floor(fraction * 10);
        if (tenth > lastTenth) {
          lastTenth = tenth;
          stream.write(`${label}: ${tenth * 10}% (${(bytesRead / MiB).toFixed(0)} MiB read, ${rate(bytesRead)})\n`);
        }
      }
    },
    finish(): void {
      if (drawn) stream.write('\n');
    },
  };
}
