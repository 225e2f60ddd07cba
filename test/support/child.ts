/**
 * Runs a test fixture in a child process against this process's cluster,
 * so that a crash or an abort in librbd fails one test instead of ending
 * the whole test run (fixture-process.ts does the spawning).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
 * killed (by its pid) and reported with signal SIGKILL, not thrown. A
 * child that crashed (an abort in librbd, say) gets the stacks of its
 * threads from its core added to its stderr, where gdb is installed and
 * the system writes cores into the working directory.
 */
export async function runChild(script: string, args: string[], env: Record<string, string>,
  timeoutMs: number): Promise<ChildResult> {
  const coreDir = mkdtempSync(join(tmpdir(), 'rbd-backup-child-'));
  try {
    const fixture = startFixture(script, args, { env, timeoutMs, coreDir });
    let outcome: ChildResult;
    try {
      outcome = await fixture.exited;
    } catch (error) {
      if (fixture.child.signalCode !== 'SIGKILL' && !fixture.child.killed) throw error;
      return { code: null, signal: 'SIGKILL', ...fixture.output() };
    }
    const core = readdirSync(coreDir).find((name) => name.startsWith('core'));
    if (outcome.signal !== null && outcome.signal !== 'SIGKILL' && core !== undefined && existsSync('/usr/bin/gdb')) {
      const stacks = spawnSync('/usr/bin/gdb', ['-batch', '-ex', 'thread apply all bt 16', process.execPath, join(coreDir, core)],
        { encoding: 'utf8', timeout: 120_000, maxBuffer: 16 << 20 });
      outcome.stderr += `\n--- threads of the crashed child (gdb, its core):\n${stacks.stdout.split('\n').filter((l) => /^(#|Thread)/.test(l)).join('\n')}`;
    }
    return outcome;
  } finally {
    rmSync(coreDir, { recursive: true, force: true });
  }
}

/** What a failed child said, for an assertion message: its end, where the cause is. */
export function describeChild(outcome: ChildResult): string {
  const tail = (text: string): string => text.split('\n').slice(-400).join('\n');
  return `exit code ${outcome.code}, signal ${outcome.signal}\n--- stdout:\n${tail(outcome.stdout)}\n--- stderr:\n${tail(outcome.stderr)}`;
}
