/**
 * The five conditions under which a restore may take the diff path
 * (lib/backup/conditions.ts), evaluated in order: the first that fails is
 * the one reported, and the restore is then a full copy. No cluster needed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decideRestore, type RestoreFacts } from '../../lib/backup/conditions.js';

const POINT = 'backup.b1.snap.1714557600.5';

/** Facts under which every condition holds. */
const ALL_HOLD: RestoreFacts = {
  baseExists: true,
  restorePoints: [POINT],
  targetIsRbd: true,
  targetIsSource: false,
  targetHasExtents: false,
};

describe('decideRestore', () => {
  test('all five hold: the diff path from the one restore point', () => {
    assert.deepEqual(decideRestore(ALL_HOLD), { path: 'diff', restorePoint: POINT });
  });

  // Each row breaks condition n and every later one, so the first failing one is reported.
  const table: Array<{ condition: 1 | 2 | 3 | 4 | 5; facts: Partial<RestoreFacts>; reason: RegExp }> = [
    { condition: 1, facts: { baseExists: false, restorePoints: [], targetIsRbd: false, targetIsSource: true, targetHasExtents: true },
      reason: /^the backup has no diff-format base image in the backup pool$/ },
    { condition: 2, facts: { restorePoints: [], targetIsRbd: false, targetIsSource: true, targetHasExtents: true },
      reason: /^the base image has no snapshot of this backup$/ },
    { condition: 3, facts: { targetIsRbd: false, targetIsSource: true, targetHasExtents: undefined },
      reason: /^the target is not an RBD image$/ },
    { condition: 4, facts: { targetIsSource: true, targetHasExtents: true },
      reason: /^the target is the backup's own source volume$/ },
    { condition: 5, facts: { targetHasExtents: true },
      reason: /^the target volume already holds data$/ },
  ];
  for (const row of table) {
    test(`condition ${row.condition} fails first: full copy, condition ${row.condition}`, () => {
      const decision = decideRestore({ ...ALL_HOLD, ...row.facts });
      assert.equal(decision.path, 'full');
      assert.ok(decision.path === 'full');
      assert.equal(decision.condition, row.condition);
      assert.match(decision.reason, row.reason);
    });

    test(`condition ${row.condition} alone fails: full copy, condition ${row.condition}`, () => {
      const only: Partial<RestoreFacts> = {
        1: { baseExists: false },
        2: { restorePoints: [] },
        3: { targetIsRbd: false },
        4: { targetIsSource: true },
        5: { targetHasExtents: true },
      }[row.condition];
      const decision = decideRestore({ ...ALL_HOLD, ...only });
      assert.ok(decision.path === 'full', JSON.stringify(decision));
      assert.equal(decision.condition, row.condition);
      assert.match(decision.reason, row.reason);
    });
  }

  test('condition 2 with more than one restore point says how many', () => {
    const decision = decideRestore({ ...ALL_HOLD, restorePoints: [POINT, 'backup.b1.snap.1714557700.5'] });
    assert.ok(decision.path === 'full');
    assert.equal(decision.condition, 2);
    assert.equal(decision.reason, 'the base image has 2 snapshots of this backup');
  });

  test('a target whose extents are unknown (not RBD) is condition 3, not 5', () => {
    const decision = decideRestore({ ...ALL_HOLD, targetIsRbd: false, targetHasExtents: undefined });
    assert.ok(decision.path === 'full');
    assert.equal(decision.condition, 3);
  });

  test('an empty RBD target that is not the source: diff', () => {
    assert.equal(decideRestore({ ...ALL_HOLD, targetHasExtents: false }).path, 'diff');
  });
});
