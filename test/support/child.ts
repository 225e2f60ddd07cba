/**
 * Runs a test fixture in a child process, so that a crash or an abort in
 * librbd fails one test instead of ending the whole test run.
 */
import { spawn } from 'node:child_process';
import { testCluster, type Which } from './clusters.js';

export interface ChildOutcome {
  /** Exit code, or null when a signal ended the child (SIGABRT for a failed ceph_assert). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The RBD_TEST_<WHICH>_* variables that make a child use this process's cluster instead of starting one. */
export async function clusterEnv(which: Which = 'a'): Promise<Record<string, string>> {
  const { info } = await testCluster(which);
  const prefix = `RBD_TEST_${which.toUpperCase()}_`;
  return {
    [`${prefix}DIR`]: info.dir, [`${prefix}CONF`]: info.conf,
    [`${prefix}KEYRING`]: info.keyring, [`${prefix}MON_HOST`]: info.monHost,
  };
}

/** Runs `node script ...args`; kills it (by its pid) after timeoutMs. */
export function runChild(script: string, args: string[], env: Record<string, string>,
  timeoutMs: number): Promise<ChildOutcome> {
  // Without NODE_TEST_CONTEXT, which node --test sets for its own children:
  // a node:test fixture would report in the runner's internal format instead of TAP.
  const { NODE_TEST_CONTEXT: _, ...inherited } = process.env;
  const child = spawn(process.execPath, [script, ...args], {
    env: { ...inherited, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** What a failed child said, for an assertion message: its end, where the cause is. */
export function describeChild(outcome: ChildOutcome): string {
  const tail = (text: string): string => text.split('\n').slice(-40).join('\n');
  return `exit code ${outcome.code}, signal ${outcome.signal}\n--- stdout:\n${tail(outcome.stdout)}\n--- stderr:\n${tail(outcome.stderr)}`;
}
