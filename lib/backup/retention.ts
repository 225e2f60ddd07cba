/**
 * Retention policies in the style of Benji's `enforce`
 * (`latest3,days7,weeks4,months6`): keep the newest N backups, and the newest
 * backup of each of the last N hours, days, weeks (ISO, from Monday), months
 * and years, counted back from now in UTC with the current period first. The
 * volume's newest backup is always kept: the next incremental starts from
 * it. Pure: prune.ts applies the decision.
 */
import { invalidArgument } from '../ceph/errors.js';
import { checkDate, checkOptions, describeValue, toIntInRange } from '../ceph/validate.js';

export const PERIODS = ['hours', 'days', 'weeks', 'months', 'years'] as const;
export type Period = typeof PERIODS[number];

export interface RetentionPolicy {
  latest: number;
  periods: Partial<Record<Period, number>>;
}

const TERM = /^(latest|hours|days|weeks|months|years)([1-9][0-9]{0,5})$/;
/** The largest count a term can say. */
const MAX_COUNT = 999_999;

/** Parses 'latest3,days7,...'; refuses anything else before any backup is touched. */
export function parseRetentionPolicy(text: unknown, operation = 'prune'): RetentionPolicy {
  const fail = (detail: string): never => {
    throw invalidArgument(operation, 'retention policy', `${detail}; expected terms like latest3,days7,weeks4,months6 (latest, hours, days, weeks, months, years, each once, followed by a count)`);
  };
  if (typeof text !== 'string' || text.trim() === '') return fail(`the policy must be a non-empty string, got ${describeValue(text)}`);
  const policy: RetentionPolicy = { latest: 0, periods: {} };
  const seen = new Set<string>();
  for (const term of text.split(',').map((t) => t.trim())) {
    const match = TERM.exec(term);
    if (!match) return fail(`${JSON.stringify(term)} is not a policy term`);
    const [, kind, count] = match;
    if (seen.has(kind)) return fail(`${kind} appears twice`);
    seen.add(kind);
    if (kind === 'latest') policy.latest = Number(count);
    else policy.periods[kind as Period] = Number(count);
  }
  return policy;
}

/** How many whole periods before now's the time falls in (0 = the current one). */
function periodsBack(period: Period, time: Date, now: Date): number {
  const y = (d: Date): number => d.getUTCFullYear();
  const m = (d: Date): number => y(d) * 12 + d.getUTCMonth();
  const dayNumber = (d: Date): number => Math.floor(d.getTime() / 86_400_000);
  // 1970-01-01 was a Thursday: shift so weeks start on Monday.
  const weekNumber = (d: Date): number => Math.floor((dayNumber(d) + 3) / 7);
  const back = {
    hours: () => Math.floor(now.getTime() / 3_600_000) - Math.floor(time.getTime() / 3_600_000),
    days: () => dayNumber(now) - dayNumber(time),
    weeks: () => weekNumber(now) - weekNumber(time),
    months: () => m(now) - m(time),
    years: () => y(now) - y(time),
  }[period]();
  return Math.max(0, back);
}

export interface RetainedBackup {
  backupId: string;
  /** Why it stays, e.g. 'latest 2', 'newest of day 3 back'. */
  reasons: string[];
}

export interface RetentionDecision {
  keep: RetainedBackup[];
  /** Backup ids to remove, oldest first. */
  remove: string[];
}

/** A policy as parseRetentionPolicy makes it: latest 0.., each period's count 1.., none past what a term can say. */
function checkPolicy(policy: unknown, operation: string): void {
  const resource = 'retention policy';
  const { latest, periods } = checkOptions(policy as RetentionPolicy, operation, 'policy');
  toIntInRange('latest', latest, 0, MAX_COUNT, operation, resource);
  checkOptions(periods, operation, 'policy.periods');
  for (const [period, count] of Object.entries(periods)) {
    if (!(PERIODS as readonly string[]).includes(period)) {
      throw invalidArgument(operation, resource, `policy.periods takes ${PERIODS.join(', ')}, got ${describeValue(period)}`);
    }
    if (count !== undefined) toIntInRange(period, count, 1, MAX_COUNT, operation, resource);
  }
}

/** The backups decided over: each a backup id with a valid creation time. */
function checkBackups(backups: unknown, operation: string): ReadonlyArray<{ backupId: string; createdAt: Date }> {
  const resource = 'backups';
  if (!Array.isArray(backups)) throw invalidArgument(operation, resource, `backups must be an array of { backupId, createdAt }, got ${describeValue(backups)}`);
  for (const backup of backups as unknown[]) {
    const { backupId, createdAt } = checkOptions(backup as { backupId?: unknown; createdAt?: unknown }, operation, 'each backup');
    if (typeof backupId !== 'string') throw invalidArgument(operation, resource, `backupId must be a string, got ${describeValue(backupId)}`);
    checkDate(`createdAt of backup ${backupId}`, createdAt, operation, resource);
  }
  return backups as ReadonlyArray<{ backupId: string; createdAt: Date }>;
}

export function decideRetention(given: ReadonlyArray<{ backupId: string; createdAt: Date }>,
  policy: RetentionPolicy, now: Date): RetentionDecision {
  const operation = 'decideRetention';
  const backups = checkBackups(given, operation);
  checkPolicy(policy, operation);
  checkDate('now', now, operation, 'retention policy');
  const newestFirst = [...backups].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime());
  const reasons = new Map<string, string[]>(newestFirst.map((b) => [b.backupId, []]));
  newestFirst.slice(0, policy.latest).forEach((b, i) => reasons.get(b.backupId)!.push(`latest ${i + 1}`));
  for (const period of PERIODS) {
    const count = policy.periods[period];
    if (count === undefined) continue;
    const filled = new Set<number>();
    for (const b of newestFirst) {
      const back = periodsBack(period, b.createdAt, now);
      if (back >= count || filled.has(back)) continue;
      filled.add(back);
      const unit = period.slice(0, -1);
      reasons.get(b.backupId)!.push(back === 0 ? `newest of this ${unit}` : `newest of the ${unit} ${back} back`);
    }
  }
  if (newestFirst.length > 0) reasons.get(newestFirst[0].backupId)!.push('newest backup (the next incremental starts from it)');
  const keep = newestFirst.filter((b) => reasons.get(b.backupId)!.length > 0)
    .map((b) => ({ backupId: b.backupId, reasons: reasons.get(b.backupId)! }));
  const remove = newestFirst.filter((b) => reasons.get(b.backupId)!.length === 0).map((b) => b.backupId).reverse();
  return { keep, remove };
}
