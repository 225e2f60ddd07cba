/** The restore paths, from a chain's base image at its last snapshot into pool rbd: by diff, and by full copy. */
import type { Bench } from './bench.js';
import type { ChainTool } from './chains.js';
import { cliCopy, cliTransfer } from './rbd-side.js';
import type { Measure } from './results.js';

const MiB = 1 << 20;

export interface RestoreRuns {
  diff: Measure;
  copy: Measure;
}

/**
 * Restores backups/BASE@SNAP twice into a new image in pool rbd, each
 * checked against the source's same snapshot and removed at once: by diff
 * (ours transferDiff of the whole history into a new 1 MiB image; rbd the
 * export-diff | import-diff pipe) and by full copy (ours copyImage into a
 * same-size image made before timing; rbd cp).
 */
export async function runRestores(bench: Bench, tool: ChainTool, snap: string): Promise<RestoreRuns> {
  const a = bench.a;
  const source = `backups/${tool.base}@${snap}`;
  const expected: [typeof a, string] = [a, `rbd/src@${snap}`];
  const name = tool.key === 'ours' ? 'restored-ours' : 'restored-cli';
  const target = `rbd/${name}`;
  const ours = tool.key === 'ours';
  const refs = {
    source: { cluster: a.ref, pool: 'backups', image: tool.base },
    target: { cluster: a.ref, pool: 'rbd', image: name },
  };

  bench.log(`restores of ${tool.key} from ${source}`);
  await bench.createImage(a, target, MiB);
  const diff = ours
    ? await bench.ours(`transferDiff(${source} -> ${target})`, { op: 'transfer', ...refs, snapshot: snap }, bench.sizeBytes)
    : await cliTransfer(bench, 'diff restore', a, source, undefined, a, target, tool.ops);
  diff.verified = await bench.verify(`diff restore, ${tool.key}`, expected, [a, `${target}@${snap}`]);
  await bench.removeImage(a, target);

  let copy: Measure;
  if (ours) {
    await bench.createImage(a, target, bench.sizeBytes);
    copy = await bench.ours(`copyImage(${source} -> ${target})`, { op: 'copy', ...refs, snapshot: snap }, bench.sizeBytes);
  } else {
    copy = await cliCopy(bench, 'rbd cp restore', source, target, tool.ops);
  }
  copy.verified = await bench.verify(`full-copy restore, ${tool.key}`, expected, [a, target]);
  await bench.removeImage(a, target);
  return { diff, copy };
}
