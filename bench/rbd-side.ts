/**
 * The rbd tool's side of the pairs: the export-diff | import-diff pipe,
 * `rbd cp`, `rbd snap rollback`, and commands one after another (a clone's
 * steps), at a given rbd_concurrent_management_ops.
 */
import { FEATURES, OBJECT_SIZE, type Bench } from './bench.js';
import type { BenchCluster } from './clusters.js';
import { markStep } from './proc.js';
import type { Measure } from './results.js';

/**
 * rbd_concurrent_management_ops for an rbd command: undefined leaves the
 * tool's default (10), exactly the command line Cinder runs.
 */
export type RbdOps = number | undefined;

/** The rbd@64 setting: the pipe with as many operations in flight as our engine's default window. */
export const RBD_OPS_HIGH = 64;

export function opsArgs(ops: RbdOps): string[] {
  return ops === undefined ? [] : ['--rbd-concurrent-management-ops', String(ops)];
}

function opsShown(ops: RbdOps): string {
  return ops === undefined ? '' : ` --rbd-concurrent-management-ops ${ops}`;
}

/** `rbd -c X export-diff SRC - | rbd -c Y import-diff - DST`, timed as one; `ops` goes to both commands. */
export function cliTransfer(bench: Bench, label: string, from: BenchCluster, snapSpec: string, fromSnap: string | undefined,
  to: BenchCluster, target: string, ops: RbdOps): Promise<Measure> {
  const exportArgs = [...from.rbdArgs, 'export-diff', '--no-progress', ...opsArgs(ops),
    ...(fromSnap ? ['--from-snap', fromSnap] : []), snapSpec, '-'];
  const importArgs = [...to.rbdArgs, 'import-diff', '--no-progress', ...opsArgs(ops), '-', target];
  const shown = `rbd -c ${from.name} export-diff${opsShown(ops)} ${fromSnap ? `--from-snap ${fromSnap} ` : ''}${snapSpec} - | ` +
    `rbd -c ${to.name} import-diff${opsShown(ops)} - ${target}`;
  return bench.cli(label, 'n=$1; shift; rbd "${@:1:n}" | rbd "${@:n+1}"',
    [String(exportArgs.length), ...exportArgs, ...importArgs], bench.sizeBytes, shown);
}

/** `rbd cp SRC@SNAP DST` in cluster A, with the source's object size and features. */
export function cliCopy(bench: Bench, label: string, snapSpec: string, target: string, ops: RbdOps): Promise<Measure> {
  const args = ['cp', '--no-progress', ...opsArgs(ops), '--object-size', OBJECT_SIZE,
    ...FEATURES.flatMap((f) => ['--image-feature', f]), snapSpec, target];
  return bench.cli(label, 'rbd "$@"', [...bench.a.rbdArgs, ...args], bench.sizeBytes, `rbd cp${opsShown(ops)} ${snapSpec} ${target}`);
}

/** `rbd snap rollback SRC@SNAP` in cluster A: the volume back to its own snapshot. */
export function cliRollback(bench: Bench, label: string, snapSpec: string, ops: RbdOps): Promise<Measure> {
  const args = ['snap', 'rollback', '--no-progress', ...opsArgs(ops), snapSpec];
  return bench.cli(label, 'rbd "$@"', [...bench.a.rbdArgs, ...args], bench.sizeBytes, `rbd snap rollback${opsShown(ops)} ${snapSpec}`);
}

/** One rbd command of cliSteps: its arguments, and the name its return is marked under (Measure.stepsMs). */
export interface RbdStep {
  mark: string;
  args: string[];
}

/** rbd commands in cluster A one after another, timed as one; the first that fails ends it. */
export function cliSteps(bench: Bench, label: string, steps: readonly RbdStep[]): Promise<Measure> {
  // Each step reaches the script as: mark, argument count, arguments.
  const body = `${markStep('start')}
while [ $# -gt 0 ]; do
  mark=$1 n=$2; shift 2
  rbd "\${@:1:n}" || exit
  shift "$n"
  ${markStep('$mark')}
done`;
  const args = steps.flatMap((step) => {
    const all = [...bench.a.rbdArgs, ...step.args];
    return [step.mark, String(all.length), ...all];
  });
  return bench.cli(label, body, args, bench.sizeBytes, steps.map((step) => `rbd ${step.args.join(' ')}`).join(' && '));
}
