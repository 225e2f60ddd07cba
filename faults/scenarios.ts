/**
 * The fault suite's scenarios: what each does in a worker process, and on
 * which kind of cluster it runs (the OSD restart needs a store that
 * survives it, the full OSD a small one of its own).
 */
import { leastPrivilege, wrongKey } from './access.js';
import { faultedRun, pickOperation, type Fault } from './faulted.js';
import { fuzzRecords, fuzzStreams } from './fuzz.js';
import type { Context } from './kit.js';
import { killBackup, killRestore } from './kills.js';
import { liveWrites } from './live-writes.js';
import { full, markDown, osdSocketFailures, pause, restart } from './osd-faults.js';
import type { RunOutcome } from './outcome.js';

export type ClusterKind = 'memstore' | 'bluestore' | 'full';

export interface Scenario {
  name: string;
  cluster: ClusterKind;
  /** Its count is of inputs (settings.fuzz), not of worker runs. */
  fuzz?: boolean;
  /** A run takes half a minute or more (the OSD comes back slowly): the CI subset runs it less. */
  slow?: boolean;
  run(ctx: Context): Promise<RunOutcome[]>;
}

/** A fault that is a property of the client's connection, not an event. */
function clientSideFault(what: string): Fault {
  return { at: 0, strike: async () => undefined, heal: async () => undefined, describe: () => what };
}

/** Volumes on the small full-OSD cluster: the ballast takes the rest. */
const FULL_VOLUME_MIB = 48;

/** The socket-failure storms last a whole backup-and-restore cycle. */
const CYCLE = ['full backup', 'restore'] as const;

export const SCENARIOS: Scenario[] = [
  { name: 'live-writes', cluster: 'memstore', run: liveWrites },
  { name: 'kill-backup', cluster: 'memstore', run: killBackup },
  { name: 'kill-restore', cluster: 'memstore', run: killRestore },
  { name: 'least-privilege', cluster: 'memstore', run: leastPrivilege },
  { name: 'wrong-key', cluster: 'memstore', run: wrongKey },
  { name: 'fuzz-records', cluster: 'memstore', fuzz: true, run: fuzzRecords },
  { name: 'fuzz-streams', cluster: 'memstore', fuzz: true, run: fuzzStreams },
  {
    name: 'client-socket-failures', cluster: 'memstore',
    run: (ctx) => faultedRun(ctx, CYCLE, clientSideFault('client-side ms_inject_socket_failures 200'),
      { options: { ms_inject_socket_failures: '200' } }),
  },
  { name: 'osd-socket-failures', cluster: 'memstore', run: (ctx) => faultedRun(ctx, CYCLE, osdSocketFailures(ctx)) },
  { name: 'osd-pause', cluster: 'memstore', run: (ctx) => faultedRun(ctx, [pickOperation(ctx)], pause(ctx)) },
  { name: 'osd-down', cluster: 'memstore', slow: true, run: (ctx) => faultedRun(ctx, [pickOperation(ctx)], markDown(ctx)) },
  {
    name: 'osd-restart', cluster: 'bluestore',
    run: (ctx) => faultedRun({ ...ctx, settings: { ...ctx.settings, sizeMiB: ctx.settings.restartSizeMiB } },
      [pickOperation(ctx)], restart(ctx)),
  },
  {
    name: 'full-osd', cluster: 'full', slow: true,
    run: (ctx) => faultedRun({ ...ctx, settings: { ...ctx.settings, sizeMiB: FULL_VOLUME_MIB } },
      [ctx.rng() < 0.5 ? 'full backup' : 'restore'], full(ctx)),
  },
];
