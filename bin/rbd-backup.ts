#!/usr/bin/env node
/** The rbd-backup command line (see `rbd-backup --help`). */
import { COMMANDS, commandHelp, mainHelp, parseCommand } from '../lib/cli/commands.js';
import type { Ui } from '../lib/cli/command.js';
import { EXIT, exitCodeFor, UsageError } from '../lib/cli/exit-codes.js';
import { progressReporter } from '../lib/cli/progress.js';
import { runCommand } from '../lib/cli/run.js';
import { packageVersion } from '../lib/cli/version.js';

/** JSON output: sizes (bigint inside) as numbers, errors with their fields. */
function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return Number(value);
  if (value instanceof Error) return { ...value, name: value.name, message: value.message };
  return value;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--version') {
    process.stdout.write(`rbd-backup ${await packageVersion()}\n`);
    return EXIT.ok;
  }
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
    const { values, positionals } = parseCommand(name, rest);
    json = values.json === true;
    if (values.help) {
      process.stdout.write(commandHelp(name));
      return EXIT.ok;
    }
    if (values.version) {
      process.stdout.write(`rbd-backup ${await packageVersion()}\n`);
      return EXIT.ok;
    }
    const quiet = values.quiet === true;
    const showProgress = !json && !quiet && values['no-progress'] !== true;
    const controller = new AbortController();
    const ui: Ui = {
      progress: (label) => (showProgress ? progressReporter(label) : undefined),
      notice: (text) => { if (!quiet) process.stderr.write(`rbd-backup ${name}: ${text}\n`); },
      signal: controller.signal,
    };
    const onSignal = (): void => controller.abort(new Error('interrupted'));
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      const output = await runCommand(name, values, positionals, ui);
      // text undefined: a raw image went to stdout, and nothing else may follow it there.
      if (output.text !== undefined) {
        process.stdout.write(`${json ? JSON.stringify(output.data, jsonReplacer, 2) : output.text}\n`);
      }
      return output.exitCode ?? EXIT.ok;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  } catch (error) {
    const code = exitCodeFor(error);
    if (json) {
      process.stderr.write(`${JSON.stringify({ error: error instanceof Error ? error : String(error), exitCode: code }, jsonReplacer)}\n`);
    } else {
      process.stderr.write(`rbd-backup ${name}: ${error instanceof Error ? error.message : String(error)}\n`);
      if (error instanceof UsageError) process.stderr.write(`(rbd-backup ${name} --help for its options)\n`);
    }
    return code;
  }
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
