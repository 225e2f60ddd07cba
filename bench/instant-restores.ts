/**
 * The instant restore rows: BackupEngine.restore({ instant: true }) of the
 * source's backup into a new image in pool rbd, against the rbd tool's
 * clone of the same backup snapshot. "To first read": ours from the call's
 * start until a 4 KiB read of the new volume returns (flatten 'never');
 * rbd `snap protect`, `clone` (format 1, as ours) and a 4 KiB read by `rbd
 * bench`, from spawn to exit, each step's return marked. "Until flattened":
 * ours with flatten 'background' until its done settles (by then the
 * snapshot is unprotected again); rbd protect, clone, `flatten` and `snap
 * unprotect`, at 10 and 64 ops.
 */
import { FEATURES, medianRun, VerificationError, type Bench } from './bench.js';
import { cliSteps, opsArgs, RBD_OPS_HIGH, type RbdOps, type RbdStep } from './rbd-side.js';
import type { Measure } from './results.js';
import { BACKUP_POOL, type SourceBackup } from './source-backup.js';

const TARGET_POOL = 'rbd';
/** One 4 KiB read at offset 0, the rbd tool's own way: `rbd bench` of a single read. */
const READ_4K = ['bench', '--io-type', 'read', '--io-size', '4096', '--io-threads', '1', '--io-total', '4096', '--io-pattern', 'seq'];

interface RbdInfo {
  /** Present on a clone. */
  parent?: unknown;
  /** For a snapshot: "true" or "false". */
  protected?: unknown;
}

async function info(bench: Bench, spec: string): Promise<RbdInfo> {
  return JSON.parse(await bench.rbd(bench.a, ['info', '--format', 'json', spec], `info ${spec}`)) as RbdInfo;
}

/**
 * Checks the restored volume (a clone, or flattened: by sha256 and by its
 * parent), then removes it and lifts the snapshot's protection if the run
 * left it, so that the next run starts as this one did.
 */
async function checkAndRemove(bench: Bench, backup: SourceBackup, name: string, flattened: boolean): Promise<string> {
  const a = bench.a;
  const spec = `${TARGET_POOL}/${name}`;
  const snap = `${backup.chain}@${backup.snapshot}`;
  const isClone = (await info(bench, spec)).parent !== undefined;
  if (isClone === flattened) {
    throw new VerificationError(`VERIFICATION FAILED: ${spec} is ${isClone ? 'still a clone' : 'no clone'} after an instant ` +
      `restore ${flattened ? 'with' : 'without'} a flatten`);
  }
  const verified = await bench.verify(`instant restore to ${spec}${flattened ? ', flattened' : ''}`, [a, backup.sourceSpec], [a, spec]);
  await bench.removeImage(a, spec);
  const leftProtected = String((await info(bench, snap)).protected) === 'true';
  if (leftProtected) await bench.rbd(a, ['snap', 'unprotect', snap], `snap unprotect ${snap}`);
  return `${verified}; ${flattened ? 'flattened (no parent)' : `a clone of ${snap}`}` +
    (flattened ? `; the snapshot ${leftProtected ? 'was left protected' : 'unprotected again'}` : '');
}

function oursInstant(bench: Bench, backup: SourceBackup, flatten: 'never' | 'background'): () => Promise<Measure> {
  const name = 'instant-ours';
  return async () => {
    const m = await bench.ours(`restore(instant, flatten ${flatten}) -> ${TARGET_POOL}/${name}, a 4 KiB read` +
      `${flatten === 'background' ? ', until flattened' : ''}`, {
      op: 'restore', cluster: bench.a.ref, backupPool: BACKUP_POOL, backup: backup.record,
      target: { pool: TARGET_POOL, name }, how: { kind: 'instant', flatten },
    }, bench.sizeBytes);
    m.verified = await checkAndRemove(bench, backup, name, flatten === 'background');
    return m;
  };
}

/** The rbd tool's clone of the backup snapshot into NAME, then the given steps on it. */
function cliInstant(bench: Bench, backup: SourceBackup, name: string, then: (target: string, snap: string) => RbdStep[],
  flattened: boolean): () => Promise<Measure> {
  const snap = `${backup.chain}@${backup.snapshot}`;
  const target = `${TARGET_POOL}/${name}`;
  return async () => {
    const m = await cliSteps(bench, `instant restore, ${name}`, [
      { mark: 'protected', args: ['snap', 'protect', snap] },
      // Format 1 (a protected parent), as ours makes it.
      { mark: 'cloned', args: ['clone', '--rbd-default-clone-format', '1', ...FEATURES.flatMap((f) => ['--image-feature', f]), snap, target] },
      ...then(target, snap),
    ]);
    m.verified = await checkAndRemove(bench, backup, name, flattened);
    return m;
  };
}

function flattenSteps(ops: RbdOps): (target: string, snap: string) => RbdStep[] {
  return (target, snap) => [
    { mark: 'flattened', args: ['flatten', '--no-progress', ...opsArgs(ops), target] },
    { mark: 'unprotected', args: ['snap', 'unprotect', snap] },
  ];
}

export async function instantRestores(bench: Bench, backup: SourceBackup): Promise<void> {
  const size = bench.sizeBytes;
  bench.log('instant restore: to the first 4 KiB read');
  bench.record(await bench.pairs({
    id: 'restore-instant-read', title: 'instant restore, to first 4 KiB read', volumeBytes: size, noBar: true,
    detail: `ours: restore({ instant: true, flatten: 'never' }) into a new image ${TARGET_POOL}/instant-ours, then a 4 KiB ` +
      'read at offset 0 through a new read-only handle, timed from the call\'s start until the read returned (stats: ' +
      'returnedMs, firstReadMs); rbd: rbd snap protect, rbd clone (format 1, same features) and one 4 KiB read by rbd ' +
      'bench, three commands from spawn to exit (stepsMs: when each returned). Checked: the clone\'s sha256 of rbd ' +
      'export equals the source snapshot\'s',
  }, bench.config.repeat, oursInstant(bench, backup, 'never'),
  cliInstant(bench, backup, 'instant-cli', (target) => [{ mark: 'read', args: [...READ_4K, target] }], false)));

  bench.log('instant restore: until flattened');
  const [ours, rbd, rbd64] = await bench.runRotating(bench.config.repeat, [
    oursInstant(bench, backup, 'background'),
    cliInstant(bench, backup, 'instant-cli', flattenSteps(undefined), true),
    cliInstant(bench, backup, 'instant-cli64', flattenSteps(RBD_OPS_HIGH), true),
  ]) as [Measure[], Measure[], Measure[]];
  bench.record({
    id: 'restore-instant-flat', title: 'instant restore, until flattened', volumeBytes: size, noBar: true,
    ours: medianRun(ours), rbd: medianRun(rbd), rbd64: medianRun(rbd64), oursRuns: ours, rbdRuns: rbd, rbd64Runs: rbd64,
    detail: 'ours: restore({ instant: true, flatten: \'background\' }) and a 4 KiB read, timed from the call\'s start until ' +
      'flattening.done settled (the snapshot unprotected by then; stats: returnedMs, firstReadMs, flattenedMs); rbd: ' +
      'rbd snap protect, rbd clone (format 1), rbd flatten, rbd snap unprotect (rbd@64: the flatten at 64 ops). ' +
      'Checked: the flattened volume has no parent and its sha256 equals the source snapshot\'s',
  });
}
