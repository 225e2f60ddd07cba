#!/usr/bin/env node
/** The rbd-backup command line (see `rbd-backup --help`). */
import { COMMANDS, commandHelp, mainHelp, parseCommand, runCommand } from '../lib/cli/commands.js';
import { EXIT, exitCodeFor, UsageError } from '../lib/cli/exit-codes.js';

function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Error) return { ...value, name: value.name, message: value.message };
  return value;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(mainHelp());
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (!(name in COMMANDS)) {
    process.stderr.write(`rbd-backup: unknown command ${JSON.stringify(name)}\n\n${mainHelp()}`);
    return EXIT.usage;
  }
  let json = rest.includes('--json');
  try {
    const values = parseCommand(name, rest);
    json = values.json === true;
    if (values.help) {
      process.stdout.write(commandHelp(name));
      return EXIT.ok;
    }
    const controller = new AbortController();
    const onSignal = (): void => controller.abort(new Error('interrupted'));
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      const result = await runCommand(name, values, controller.signal);
      // A raw image went to stdout: nothing else may follow it there.
      if (!values.stdout) {
        process.stdout.write(`${json ? JSON.stringify(result, jsonReplacer, 2) : COMMANDS[name].print(result)}\n`);
      }
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    return EXIT.ok;
  } catch (error) {
    const code = exitCodeFor(error);
    if (json) {
      process.stderr.write(`${JSON.stringify({ error: error instanceof Error ? error : String(error), exitCode: code }, jsonReplacer)}\n`);
    } else {
      process.stderr.write(`rbd-backup ${name}: ${error instanceof Error ? error.message : String(error)}\n`);
      if (error instanceof UsageError) process.stderr.write(`\n${commandHelp(name)}`);
    }
    return code;
  }
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
