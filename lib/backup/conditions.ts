/**
 * The five conditions under which a restore may use the diff path (Cinder's
 * Ceph backup driver); when any fails, the restore is a chunked full copy.
 * Evaluated in order; the first that fails is the one reported.
 */
export interface RestoreFacts {
  /** 1. the base image exists in the backup pool */
  baseExists: boolean;
  /** 2. the base image snapshots whose backup id is this backup's */
  restorePoints: readonly string[];
  /** 3. the target is an RBD image (not a file or a stream) */
  targetIsRbd: boolean;
  /** 4. the target is the backup's own source volume */
  targetIsSource: boolean;
  /** 5. the target has data; undefined when not an RBD image */
  targetHasExtents: boolean | undefined;
}

export type RestoreDecision =
  | { path: 'diff'; restorePoint: string }
  | { path: 'full'; condition: 1 | 2 | 3 | 4 | 5; reason: string };

/** The decision; throws nothing: more than one restore point is reported by the caller. */
export function decideRestore(facts: RestoreFacts): RestoreDecision {
  if (!facts.baseExists) {
    return { path: 'full', condition: 1, reason: 'the backup has no diff-format base image in the backup pool' };
  }
  if (facts.restorePoints.length !== 1) {
    return {
      path: 'full', condition: 2,
      reason: facts.restorePoints.length === 0
        ? 'the base image has no snapshot of this backup'
        : `the base image has ${facts.restorePoints.length} snapshots of this backup`,
    };
  }
  if (!facts.targetIsRbd) return { path: 'full', condition: 3, reason: 'the target is not an RBD image' };
  if (facts.targetIsSource) return { path: 'full', condition: 4, reason: "the target is the backup's own source volume" };
  if (facts.targetHasExtents) return { path: 'full', condition: 5, reason: 'the target volume already holds data' };
  return { path: 'diff', restorePoint: facts.restorePoints[0] };
}
