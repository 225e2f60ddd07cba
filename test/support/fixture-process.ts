/**
 * Runs a test fixture (a script under test/fixtures) in a node process of
 * its own, collecting its output, and kills it if it outlives its time.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface ChildResult {
  /** Exit code, or null when a signal ended the child (SIGABRT for a failed ceph_assert). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface FixtureOptions {
  /** Arguments for node itself, before the script (e.g. --expose-gc). */
  nodeArgs?: string[];
  /** Added to this process's environment. */
  env?: Record<string, string>;
  /** The child is killed, and `exited` rejects, when it runs longer. */
  timeoutMs: number;
  /** Run it in this directory with core dumps allowed (core_pattern permitting): a crash leaves its core there. */
  coreDir?: string;
}

export interface RunningFixture {
  child: ChildProcess;
  /** Settles when the child has exited (or rejects once it ran out of time). */
  exited: Promise<ChildResult>;
  /** The first stdout line starting with prefix; rejects if the child exits without one. */
  line(prefix: string): Promise<string>;
  /** What it has written so far (all of it once it has exited or was killed). */
  output(): { stdout: string; stderr: string };
}

export function startFixture(script: string, args: string[], options: FixtureOptions): RunningFixture {
  // Without NODE_TEST_CONTEXT, which node --test sets for its own children:
  // a node:test fixture would report in the runner's internal format instead of TAP.
  const { NODE_TEST_CONTEXT: _, ...inherited } = process.env;
  const argv = [...(options.nodeArgs ?? []), script, ...args];
  const child = options.coreDir === undefined
    ? spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...inherited, ...options.env } })
    // exec: the shell becomes the child, its pid and its signals node's.
    : spawn('/bin/bash', ['-c', 'ulimit -c unlimited 2>/dev/null; exec "$0" "$@"', process.execPath, ...argv], {
      stdio: ['ignore', 'pipe', 'pipe'], env: { ...inherited, ...options.env }, cwd: options.coreDir,
    });
  let stdout = '';
  let stderr = '';
  let ended = false;
  // line() calls waiting for more output, or for the end.
  const waiters: Array<() => void> = [];
  const wake = (): void => {
    for (const look of waiters.splice(0)) look();
  };
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    wake();
  });
  child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const exited = new Promise<ChildResult>((resolve, reject) => {
    const end = (): void => {
      clearTimeout(timer);
      ended = true;
      wake();
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      end();
      reject(new Error(`${script} ${args.join(' ')} did not exit within ${options.timeoutMs} ms; ` +
        `stdout: ${stdout} stderr: ${stderr}`));
    }, options.timeoutMs);
    child.once('error', (error) => { end(); reject(error); });
    child.once('close', (code, signal) => {
      end();
      resolve({ code, signal, stdout, stderr });
    });
  });
  // A caller that only waits for lines learns of the end through line().
  exited.catch(() => undefined);

  function line(prefix: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const look = (): void => {
        // Only whole lines: the last piece may still be arriving.
        const found = stdout.split('\n').slice(0, -1).find((l) => l.startsWith(prefix));
        if (found !== undefined) {
          resolve(found);
        } else if (ended) {
          reject(new Error(`${script} ${args.join(' ')} ended without a '${prefix}' line; ` +
            `stdout: ${stdout} stderr: ${stderr}`));
        } else {
          waiters.push(look);
        }
      };
      look();
    });
  }

  return { child, exited, line, output: () => ({ stdout, stderr }) };
}

/** Runs a fixture to its end. */
export function runFixture(script: string, args: string[], options: FixtureOptions): Promise<ChildResult> {
  return startFixture(script, args, options).exited;
}
