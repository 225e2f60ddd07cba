/**
 * Running a parsed command: its usage checked first, then the settings
 * resolved, the clusters connected, the command run, and the connections
 * closed backup first, source last, whatever happened. A failure to close
 * after the command failed never replaces the command's own error.
 */
import { BackupEngine } from '../backup/engine.js';
import type { Cluster } from '../ceph/cluster.js';
import { cephEnvironment } from '../ceph/ceph-args.js';
import { COMMANDS } from './commands.js';
import type { Output, Ui, Values } from './command.js';
import { loadConfigFile } from './config-file.js';
import { connectCluster } from './connect.js';
import { resolveSettings, type Settings } from './settings.js';

function flag(values: Values, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

export async function settingsOf(values: Values): Promise<Settings> {
  const file = await loadConfigFile(flag(values, 'config'));
  return resolveSettings({
    source: {
      conf: flag(values, 'conf'), user: flag(values, 'id') ?? flag(values, 'user'), keyring: flag(values, 'keyring'),
      cluster: flag(values, 'cluster'), monHost: flag(values, 'mon-host'),
    },
    backup: {
      conf: flag(values, 'backup-conf'), user: flag(values, 'backup-user'), keyring: flag(values, 'backup-keyring'),
      cluster: flag(values, 'backup-cluster'), monHost: flag(values, 'backup-mon-host'),
    },
    backupPool: flag(values, 'backup-pool'),
  }, cephEnvironment(), file);
}

/** Closes what was connected, the backup cluster before the source; returns the failures. */
async function closeAll(clusters: Cluster[]): Promise<unknown[]> {
  const failures: unknown[] = [];
  for (const cluster of [...clusters].reverse()) {
    await cluster.close().catch((error: unknown) => failures.push(error));
  }
  return failures;
}

export async function runCommand(name: string, values: Values, positionals: string[], ui: Ui): Promise<Output> {
  const prepared = await COMMANDS[name].prepare(values, positionals);
  if (prepared.offline) return prepared.run(ui);
  const settings = await settingsOf(values);
  const connected: Cluster[] = [];
  let outcome: { ok: true; output: Output } | { ok: false; error: unknown };
  try {
    const source = await connectCluster(settings.source);
    connected.push(source);
    const backupCluster = settings.backup === undefined ? source : await connectCluster(settings.backup);
    if (backupCluster !== source) connected.push(backupCluster);
    const engine = new BackupEngine({
      ...settings.engine, source, backupCluster, backupPool: prepared.backupPool ?? settings.backupPool,
    });
    outcome = { ok: true, output: await prepared.run(engine, ui) };
  } catch (error) {
    outcome = { ok: false, error };
  }
  const closeFailures = await closeAll(connected);
  if (!outcome.ok) {
    for (const closeFailure of closeFailures) ui.notice(`also: ${(closeFailure as Error).message}`);
    throw outcome.error;
  }
  if (closeFailures.length > 0) throw closeFailures[0];
  return outcome.output;
}
