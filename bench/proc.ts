/**
 * Running the benchmark's child processes: explicit argv, a time limit for
 * every one, exit codes checked, stderr kept for the error message. Each
 * child leads its own process group (so a pipeline inside `bash -c` can be
 * ended as a whole), and every live one is tracked so a signal handler can
 * end them — by their own pids, never by name.
 */
import { spawn, type ChildProcess } from 'node:child_process';

const live = new Set<ChildProcess>();
let refusing: string | undefined;

/** From now on run() starts nothing (the run is being torn down). */
export function refuseNewChildren(reason: string): void {
  refusing = reason;
}

/** Ends every child still running (each one's process group). */
export function killChildren(signal: NodeJS.Signals = 'SIGKILL'): void {
  for (const child of live) {
    if (child.pid !== undefined) {
      try {
        process.kill(-child.pid, signal);
      } catch {
        // already gone
      }
    }
  }
}

/** The environment for Ceph tools: nothing in it may point them at another cluster. */
export function cephEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of ['CEPH_ARGS', 'CEPH_CONF', 'CEPH_KEYRING']) delete env[name];
  return env;
}

export interface RunOptions {
  label: string;
  timeoutMs: number;
  /** Receives stdout as it comes; otherwise it is collected (captureStdout) or ignored. */
  onStdout?: (chunk: Buffer) => void;
  captureStdout?: boolean;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  /** Spawn to exit. */
  elapsedMs: number;
}

export class ProcessError extends Error {
  override name = 'ProcessError';
}

const STDERR_KEEP = 64 << 10;

function tail(text: string, lines = 15): string {
  const kept = text.trim().split('\n').slice(-lines).join('\n');
  return kept ? `\n${kept}` : '';
}

export function run(command: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  const { label, timeoutMs } = options;
  if (refusing !== undefined) return Promise.reject(new ProcessError(`${label}: not started (${refusing})`));
  if (!(timeoutMs > 0)) return Promise.reject(new ProcessError(`${label}: no time left for this step`));
  return new Promise((resolve, reject) => {
    const wantStdout = options.onStdout !== undefined || options.captureStdout === true;
    const started = performance.now();
    const child = spawn(command, args, {
      stdio: ['ignore', wantStdout ? 'pipe' : 'ignore', 'pipe'],
      detached: true,
      env: cephEnv(),
    });
    live.add(child);
    let stdout = '';
    let stderr = '';
    let exitedAt = 0;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid === undefined) return;
      try { process.kill(-child.pid, 'SIGTERM'); } catch { /* gone */ }
      setTimeout(() => {
        try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ }
      }, 5000).unref();
    }, timeoutMs);
    child.stdout?.on('data', (chunk: Buffer) => {
      if (options.onStdout) options.onStdout(chunk);
      else stdout += chunk.toString();
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (stderr.length > 2 * STDERR_KEEP) stderr = stderr.slice(-STDERR_KEEP);
    });
    child.once('exit', () => { exitedAt = performance.now(); });
    child.once('error', (error) => {
      clearTimeout(timer);
      live.delete(child);
      reject(new ProcessError(`${label}: could not run ${command}: ${error.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      const elapsedMs = (exitedAt || performance.now()) - started;
      if (timedOut) {
        reject(new ProcessError(`${label}: timed out after ${(timeoutMs / 1000).toFixed(0)} s${tail(stderr)}`));
      } else if (code !== 0) {
        reject(new ProcessError(`${label}: ${command} exited with ${code ?? signal}${tail(stderr)}`));
      } else {
        resolve({ stdout, stderr, elapsedMs });
      }
    });
  });
}

/**
 * Runs `bash -o pipefail -c SCRIPT` with positional args and reads the CPU
 * time of the script's children from bash's `times`, which the script must
 * print last on stderr (see timedScript).
 */
export async function runTimedBash(script: string, args: readonly string[],
  options: RunOptions): Promise<RunResult & { childCpuMs: number }> {
  const result = await run('bash', ['-o', 'pipefail', '-c', script, 'bash', ...args], options);
  const times = [...result.stderr.matchAll(/^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/gm)];
  const children = times[times.length - 1];
  const childCpuMs = children
    ? (Number(children[1]) * 60 + Number(children[2]) + Number(children[3]) * 60 + Number(children[4])) * 1000
    : NaN;
  return { ...result, childCpuMs };
}

/** Appends the exit-status-preserving `times` report to a script body. */
export function timedScript(body: string): string {
  return `${body}; rc=$?; times >&2; exit $rc`;
}

/**
 * A script line marking that the steps before it have returned, with
 * bash's clock (no process spawned); a script's first mark is 'start'.
 */
export function markStep(name: string): string {
  return `echo "mark ${name} $EPOCHREALTIME" >&2`;
}

/** The marks a script wrote (markStep), in ms after its 'start' mark; undefined without one. */
export function stepMarks(stderr: string): Record<string, number> | undefined {
  const at = new Map<string, number>();
  // EPOCHREALTIME uses the locale's decimal point.
  for (const match of stderr.matchAll(/^mark (\S+) (\d+)[.,](\d+)$/gm)) at.set(match[1]!, Number(`${match[2]}.${match[3]}`) * 1000);
  const start = at.get('start');
  if (start === undefined) return undefined;
  at.delete('start');
  return Object.fromEntries([...at].map(([name, ms]) => [name, ms - start]));
}
