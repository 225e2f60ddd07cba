/** Runs the rbd-backup CLI as a user would: a child process without a TTY (shared by the cli*.test.ts files). */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../bin/rbd-backup.js', import.meta.url));

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/**
 * `env` is added to a copy of this process's environment without CEPH_ARGS
 * and CEPH_CONF, so only what a test sets reaches the CLI.
 */
export function run(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const base = { ...process.env };
  delete base.CEPH_ARGS;
  delete base.CEPH_CONF;
  const started = performance.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { maxBuffer: 64 << 20, timeout: 120_000, env: { ...base, ...env } },
      (error, stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr, ms: performance.now() - started });
      });
  });
}

/** run, with standard output as bytes (a raw image). */
export function runRaw(args: string[]): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { encoding: 'buffer', maxBuffer: 64 << 20, timeout: 120_000 },
      (error, stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr: stderr.toString() });
      });
  });
}
