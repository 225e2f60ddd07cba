/** Retention policies (lib/backup/retention.ts): parsing and what they keep. No cluster needed. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decideRetention, parseRetentionPolicy } from '../../lib/backup/retention.js';
import { InvalidArgumentError } from '../../lib/ceph/errors.js';

const NOW = new Date('2026-11-29T12:00:00Z');
const HOUR = 3600_000;

function backups(...ageHours: number[]): Array<{ backupId: string; createdAt: Date }> {
  return ageHours.map((h, i) => ({ backupId: `b${i}`, createdAt: new Date(NOW.getTime() - h * HOUR) }));
}

describe('parseRetentionPolicy', () => {
  test('reads every term kind', () => {
    assert.deepEqual(parseRetentionPolicy('latest3,days7,weeks4,months6'),
      { latest: 3, periods: { days: 7, weeks: 4, months: 6 } });
    assert.deepEqual(parseRetentionPolicy(' hours24 , years2 '), { latest: 0, periods: { hours: 24, years: 2 } });
  });

  test('refuses what does not parse, before anything is deleted', () => {
    for (const bad of ['', ' ', 'latest', 'latest0', 'days-1', 'fortnights2', 'latest3,latest4', 'days7;weeks4',
      'latest3,', 'Latest3', 'days1.5', 'days9999999', null, 7, undefined]) {
      assert.throws(() => parseRetentionPolicy(bad), InvalidArgumentError, String(bad));
    }
  });
});

describe('decideRetention', () => {
  test('latestN keeps the newest N', () => {
    const decision = decideRetention(backups(50, 40, 30, 20, 10), parseRetentionPolicy('latest2'), NOW);
    assert.deepEqual(decision.keep.map((k) => k.backupId), ['b4', 'b3']);
    assert.deepEqual(decision.remove, ['b0', 'b1', 'b2'], 'oldest first');
  });

  test('daysN keeps the newest backup of each of the last N days, counted in UTC days from today', () => {
    // Today (12:00) has b4 (1 h) and b3 (2 h); yesterday b2 (20 h); 2 days back b1 (40 h); 4 days back b0 (100 h).
    const decision = decideRetention(backups(100, 40, 20, 2, 1), parseRetentionPolicy('days3'), NOW);
    assert.deepEqual(decision.keep.map((k) => k.backupId), ['b4', 'b2', 'b1']);
    assert.deepEqual(decision.remove, ['b0', 'b3']);
    assert.match(decision.keep[1].reasons.join(), /day 1 back/);
  });

  test('weeks are ISO weeks starting on Monday', () => {
    // NOW is Sunday 2026-11-29: Monday 2026-11-23 is this week, Sunday 2026-11-22 the week before.
    const monday = { backupId: 'mon', createdAt: new Date('2026-11-23T00:30:00Z') };
    const sunday = { backupId: 'sun', createdAt: new Date('2026-11-22T23:30:00Z') };
    const older = { backupId: 'old', createdAt: new Date('2026-11-20T10:00:00Z') };
    const decision = decideRetention([older, sunday, monday], parseRetentionPolicy('weeks2'), NOW);
    assert.deepEqual(decision.keep.map((k) => k.backupId), ['mon', 'sun']);
    assert.deepEqual(decision.remove, ['old']);
  });

  test('months and years count calendar periods', () => {
    const at = (iso: string, id: string) => ({ backupId: id, createdAt: new Date(iso) });
    const list = [at('2025-12-31T23:00:00Z', 'dec25'), at('2026-10-01T00:00:00Z', 'oct1'), at('2026-10-30T00:00:00Z', 'oct30'),
      at('2026-11-01T00:00:00Z', 'nov1')];
    assert.deepEqual(decideRetention(list, parseRetentionPolicy('months2'), NOW).keep.map((k) => k.backupId), ['nov1', 'oct30']);
    assert.deepEqual(decideRetention(list, parseRetentionPolicy('years2'), NOW).keep.map((k) => k.backupId), ['nov1', 'dec25']);
  });

  test('the newest backup is never removed, whatever the policy', () => {
    const decision = decideRetention(backups(24 * 400, 24 * 300), parseRetentionPolicy('hours1'), NOW);
    assert.deepEqual(decision.keep.map((k) => k.backupId), ['b1']);
    assert.match(decision.keep[0].reasons.join(), /newest backup/);
    assert.deepEqual(decision.remove, ['b0']);
  });

  test('a backup kept for several reasons lists them all; none kept twice', () => {
    const decision = decideRetention(backups(1), parseRetentionPolicy('latest3,days7,weeks4'), NOW);
    assert.equal(decision.keep.length, 1);
    assert.equal(decision.keep[0].reasons.length, 4);
  });

  test('no backups: nothing to keep or remove', () => {
    assert.deepEqual(decideRetention([], parseRetentionPolicy('latest1'), NOW), { keep: [], remove: [] });
  });

  test('every backup is either kept or removed, exactly once', () => {
    const list = backups(...Array.from({ length: 60 }, (_, i) => i * 13));
    const decision = decideRetention(list, parseRetentionPolicy('latest3,days7,weeks4,months6'), NOW);
    const all = [...decision.keep.map((k) => k.backupId), ...decision.remove].sort();
    assert.deepEqual(all, list.map((b) => b.backupId).sort());
    assert.ok(decision.remove.length > 0 && decision.keep.length > 3);
  });
});
