/**
 * Runs a test fixture in a child process against this process's cluster,
 * so that a crash or an abort in librbd fails one test instead of ending
 * the whole test run (fixture-process.ts does the spawning).
 */
import { testCluster, type Which } from './clusters.js';
import { startFixture, type ChildResult } from './fixture-process.js';

/** The RBD_TEST_<WHICH>_* variables that make a child use this process's cluster instead of starting one. */
export async function clusterEnv(which: Which = 'a'): Promise<Record<string, string>> {
  const { info } = await testCluster(which);
  const prefix = `RBD_TEST_${which.toUpperCase()}_`;
  return {
    [`${prefix}DIR`]: info.dir, [`${prefix}CONF`]: info.conf,
    [`${prefix}KEYRING`]: info.keyring, [`${prefix}MON_HOST`]: info.monHost,
  };
}

/**
 * Runs `node script ...args` to its end; one that outlives timeoutMs is
 * killed (by its pid) and reported with signal SIGKILL, not thrown.
 */
export async function runChild(script: string, args: string[], env: Record<string, string>,
  timeoutMs: number): Promise<ChildResult> {
  const fixture = startFixture(script, args, { env, timeoutMs });
  try {
    return await fixture.exited;
  } catch (error) {
    if (fixture.child.signalCode !== 'SIGKILL' && !fixture.child.killed) throw error;
    return { code: null, signal: 'SIGKILL', ...fixture.output() };
  }
}

/** What a failed child said, for an assertion message: its end, where the cause is. */
export function describeChild(outcome: ChildResult): string {
  const tail = (text: string): string => text.split('\n').slice(-40).join('\n');
  return `exit code ${outcome.code}, signal ${outcome.signal}\n--- stdout:\n${tail(outcome.stdout)}\n--- stderr:\n${tail(outcome.stderr)}`;
}
