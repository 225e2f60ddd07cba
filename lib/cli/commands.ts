/**
 * The rbd-backup commands and the options every one takes, their help, and
 * the parsing of a command line into a command's values.
 */
import { parseArgs } from 'node:util';
import { EXIT_CODES_HELP, UsageError } from './exit-codes.js';
import type { Command, Options, Values } from './command.js';
import { backup } from './commands/backup.js';
import { restore } from './commands/restore.js';
import { deleteBackup } from './commands/delete.js';
import { prune } from './commands/prune.js';
import { gc } from './commands/gc.js';
import { ls } from './commands/ls.js';
import { show } from './commands/show.js';
import { verify } from './commands/verify.js';
import { exportRecord, importRecordCommand } from './commands/records.js';
import { DEFAULT_CONFIG_PATH } from './config-file.js';

export const COMMANDS: Record<string, Command> = {
  backup, restore, verify, delete: deleteBackup, prune, gc, ls, show,
  'export-record': exportRecord, 'import-record': importRecordCommand,
};

const COMMON_OPTIONS: Options = {
  'config': { type: 'string' },
  'conf': { type: 'string', short: 'c' },
  'id': { type: 'string' },
  'user': { type: 'string' },
  'keyring': { type: 'string', short: 'k' },
  'cluster': { type: 'string' },
  'mon-host': { type: 'string', short: 'm' },
  'backup-conf': { type: 'string' },
  'backup-user': { type: 'string' },
  'backup-keyring': { type: 'string' },
  'backup-cluster': { type: 'string' },
  'backup-mon-host': { type: 'string' },
  'backup-pool': { type: 'string' },
  'json': { type: 'boolean' },
  'quiet': { type: 'boolean', short: 'q' },
  'no-progress': { type: 'boolean' },
  'help': { type: 'boolean', short: 'h' },
  'version': { type: 'boolean' },
};

const COMMON_HELP = `Source cluster (each: flag > CEPH_ARGS > CEPH_CONF > config file > default):
  -c, --conf PATH          ceph.conf (default /etc/ceph/$cluster.conf)
  --id, --user NAME        user, without 'client.' (default admin)
  -k, --keyring PATH       keyring (default: the conf's, else /etc/ceph/$cluster.client.$id.keyring,
                           /etc/ceph/$cluster.keyring, /etc/ceph/keyring, /etc/ceph/keyring.bin)
  --cluster NAME           cluster name for those defaults (default ceph)
  -m, --mon-host ADDRS     monitor addresses (default: from the conf)
Backup cluster (default: the source connection; anything not given: the [backup] section):
  --backup-conf PATH       its ceph.conf (default: the source's, or /etc/ceph/NAME.conf for --backup-cluster NAME)
  --backup-user NAME       its user (default: the source's)
  --backup-keyring PATH    its keyring (default: its conf's or the search list; never the source's)
  --backup-cluster NAME    its cluster name (default: the source's)
  --backup-mon-host ADDRS  its monitors
  --backup-pool POOL       the backup pool (default backups)
Other:
  --config PATH            configuration file (default ${DEFAULT_CONFIG_PATH} when it exists)
  --json                   print the result as JSON (errors too, on stderr)
  -q, --quiet              no progress and no notes on stderr
  --no-progress            no progress
  --version                print the version
  -h, --help               this help`;

export function mainHelp(): string {
  return `rbd-backup: Ceph RBD backups with Cinder's semantics, from one process.

Usage: rbd-backup COMMAND [options]   (rbd-backup COMMAND --help for its options)

Commands:
${Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(14)} ${c.summary}`).join('\n')}

${COMMON_HELP}

${EXIT_CODES_HELP}
`;
}

export function commandHelp(name: string): string {
  return `${COMMANDS[name].usage}\n\n${COMMON_HELP}\n\n${EXIT_CODES_HELP}\n`;
}

export interface ParsedCommand {
  values: Values;
  positionals: string[];
}

export function parseCommand(name: string, argv: string[]): ParsedCommand {
  const command = COMMANDS[name];
  try {
    const { values, positionals } = parseArgs({
      args: argv, options: { ...COMMON_OPTIONS, ...command.options }, allowPositionals: command.positionals === true,
      strict: true,
    });
    return { values: values as Values, positionals };
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}
