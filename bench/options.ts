/** The benchmark's command line. */
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EngineSettings } from './protocol.js';

const MiB = 1 << 20;
/** Both passes at 2048 MiB need more RAM and time than this machine has (bench/README.md). */
const DEFAULT_SIZE_MIB = 1024;
const DEFAULT_JSON = join(fileURLToPath(new URL('../../', import.meta.url)), 'bench', 'results', 'latest.json');

export interface Config {
  sizeMiB: number;
  /** A second full transfer at this size, to show peak RSS does not scale with size. */
  rssCheckMiB: number | undefined;
  jsonPath: string;
  engine: EngineSettings;
  strict: boolean;
  deadlineMin: number;
  /** Runs of each repeatable pair (export, copy, full transfers); the medians are reported. */
  repeat: number;
  /** librados/librbd options for our side only (experiments). */
  clientOptions: Record<string, string>;
  /** The passes, in order: ~0 (loopback) and/or ~4 ms per operation. */
  latencies: Latency[];
  /** Leave out cluster B and the cross-cluster pair (one cluster per pass). */
  skipCross: boolean;
  /** The groups of scenarios to run (--only), in the order of GROUPS; all of them by default. */
  groups: Group[];
}

/**
 * The scenarios in groups that --only selects (each pass runs the selected
 * ones in the order of bench/README.md): the export stream, the full copy,
 * the cross-cluster transfer, the transfers (full, incrementals with and
 * without digests, restores by diff and by full copy), the deep verify of
 * a BackupEngine backup (and the read ceiling), the instant and in-place
 * restores of that backup.
 */
export const GROUPS = ['export', 'copy', 'cross', 'transfers', 'verify', 'restores', 'files'] as const;
export type Group = (typeof GROUPS)[number];

/** A pass's latency: '0' is loopback memstore, '4' the OSD delaying client messages (~4 ms per operation). */
export type Latency = '0' | '4';

/** The OSD's ms_inject_delay_max for each pass (DESIGN section 6): 1 ms max gives ~4 ms per client op. */
export const INJECT_DELAY_MAX_S: Record<Latency, number> = { 0: 0, 4: 0.001 };

export const USAGE = `usage: node dist/bench/run.js [options]
  --size-mib N       volume size in MiB, a multiple of 4 (default 1024); give it twice
                     (e.g. --size-mib 1024 --size-mib 256) to add the RSS check at the second size
  --rss-check        add a full transfer at a quarter of the size, to show peak RSS does not scale
  --json PATH        where to write the results (default bench/results/latest.json)
  --concurrency N    engine window (ops in flight); default: the library's (64)
  --memory-mib N     engine buffer bound; default: the library's (64 MiB)
  --whole-object     diff at object granularity (fast-diff), for ours and rbd export-diff alike
  --client-option K=V  a librados/librbd option for our connections only (repeatable), for
                     experiments, e.g. --client-option rbd_disable_zero_copy_writes=false
  --repeat N         runs of each repeatable pair, alternating which tool goes first;
                     the median is reported (default 3; incrementals run once per tool)
  --latency both|0|4 the passes: loopback (~0), ~4 ms per operation, or both in one run (default both)
  --skip-cross       leave out cluster B and the cross-cluster full transfer (one cluster per pass)
  --only G,G,...     run only these groups of scenarios: export, copy, cross, transfers (full
                     transfer, incrementals with and without digests, restores by diff and
                     copy), verify (deep verify of a BackupEngine backup, read ceiling),
                     restores (instant and in-place), files (backups into files vs rbd
                     export-diff into a file); default all. Without cross, cluster B
                     is not started
  --deadline-min N   give up (and clean up) after N minutes for the whole run (default 45)
  --strict           exit 2 when a bar of DESIGN section 7 fails
`;

export function parseArgs(argv: string[]): Config {
  const sizes: number[] = [];
  let rssCheck = false;
  const config: Config = {
    sizeMiB: DEFAULT_SIZE_MIB, rssCheckMiB: undefined, jsonPath: DEFAULT_JSON, engine: {}, strict: false, deadlineMin: 45,
    repeat: 3, clientOptions: {}, latencies: ['0', '4'], skipCross: false, groups: [...GROUPS],
  };
  const int = (name: string, value: string | undefined, min: number): number => {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`${name} needs an integer ≥ ${min}, got ${value}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    switch (flag) {
      case '--size-mib': sizes.push(int(flag, value(), 64)); break;
      case '--rss-check': rssCheck = true; break;
      case '--json': config.jsonPath = resolve(value() ?? ''); break;
      case '--concurrency': config.engine.concurrency = int(flag, value(), 1); break;
      case '--memory-mib': config.engine.memoryBytes = int(flag, value(), 4) * MiB; break;
      case '--whole-object': config.engine.wholeObject = true; break;
      case '--deadline-min': config.deadlineMin = int(flag, value(), 1); break;
      case '--repeat': config.repeat = int(flag, value(), 1); break;
      case '--client-option': {
        const option = value() ?? '';
        const at = option.indexOf('=');
        if (at <= 0) throw new UsageError(`--client-option needs KEY=VALUE, got ${option}`);
        config.clientOptions[option.slice(0, at)] = option.slice(at + 1);
        break;
      }
      case '--latency': {
        const latency = value();
        if (latency === 'both') config.latencies = ['0', '4'];
        else if (latency === '0' || latency === '4') config.latencies = [latency];
        else throw new UsageError(`--latency needs both, 0 or 4, got ${latency}`);
        break;
      }
      case '--skip-cross': config.skipCross = true; break;
      case '--only': config.groups = parseGroups(value()); break;
      case '--strict': config.strict = true; break;
      case '-h': case '--help': process.stdout.write(USAGE); process.exit(0);
      default: throw new UsageError(`unknown argument ${arg}`);
    }
  }
  if (sizes.length > 2) throw new UsageError('--size-mib at most twice');
  if (sizes[0] !== undefined) config.sizeMiB = sizes[0];
  if (sizes[1] !== undefined) config.rssCheckMiB = sizes[1];
  else if (rssCheck) config.rssCheckMiB = Math.max(64, Math.floor(config.sizeMiB / 16) * 4);
  if (!config.groups.includes('cross')) config.skipCross = true;
  for (const size of [config.sizeMiB, config.rssCheckMiB]) {
    if (size !== undefined && size % 4 !== 0) throw new UsageError(`sizes must be multiples of 4 MiB, got ${size}`);
  }
  return config;
}

function parseGroups(value: string | undefined): Group[] {
  const names = (value ?? '').split(',').map((name) => name.trim()).filter((name) => name !== '');
  if (names.length === 0) throw new UsageError(`--only needs groups out of ${GROUPS.join(', ')}`);
  for (const name of names) {
    if (!(GROUPS as readonly string[]).includes(name)) {
      throw new UsageError(`--only: unknown group ${name} (the groups: ${GROUPS.join(', ')})`);
    }
  }
  return GROUPS.filter((group) => names.includes(group));
}

export class UsageError extends Error {}
