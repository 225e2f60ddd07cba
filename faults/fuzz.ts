/**
 * Garbage in: mutated backup records (through importRecord, and as raw
 * objects straight into restore and delete) against a real backup, and
 * corrupted diff streams through importDiff (the fixture
 * test/fixtures/diff-fuzz-child.ts, in a child process of its own). Every
 * input must be refused with a typed error or do exactly what it names;
 * the real backup must come out intact and nothing may be left over.
 */
import { fileURLToPath } from 'node:url';
import { intBelow } from '../lib/dev/prng.js';
import { CephError, type BackupEngine, type BackupRecord } from '../lib/index.js';
import { restoreLockObjectName } from '../lib/backup/lock.js';
import { POOL, removeImagePatiently, snapshotSha } from '../test/support/backup-fixtures.js';
import { clusterEnv, runChild } from '../test/support/child.js';
import { rbdExportSha256, uniqueName } from '../test/support/clusters.js';
import { debrisOf, filledVolume, healthyEngine, outcome, verifyBackup, type Context } from './kit.js';
import type { RunOutcome, Settled } from './outcome.js';
import { describeError, settle } from './settle.js';

/** Values a field can be given: wrong types, path tricks, other images' names, extremes. */
function hostileValues(record: BackupRecord): unknown[] {
  const volume = record.volume_id;
  return [
    '', ' ', '../../etc/passwd', 'a/b', 'x@y', `volume-${volume}`, `volume-${volume}.backup.base`, 'rbd', 'backups',
    `${record.id}-x`, `${volume}/../x`, 'A'.repeat(70), 'a'.repeat(5000), '\u0000', 'caf\u00e9', '🙂', '-1', '1e400',
    -1, 0, 1.5, 2 ** 53, 2 ** 64, Number.MAX_VALUE, null, true, [], {}, [record.id], { base: `volume-${volume}.backup.base` },
    JSON.stringify({ base: `volume-other.backup.${record.id}` }), JSON.stringify({ base: 'volume-x/../y' }),
    JSON.stringify({ base: `volume-${volume}.backup.base` }), JSON.stringify({ base: 5 }), '{"base":', 'null',
  ];
}

interface Input {
  kind: string;
  /** What importRecord is given, or undefined when the record goes to restore and delete raw. */
  text: string | undefined;
  raw: unknown;
}

/** One mutated input, drawn from the run's seed. */
function mutate(rng: () => number, record: BackupRecord, exported: string): Input {
  const pick = <T>(items: readonly T[]): T => items[intBelow(rng, items.length)]!;
  const encode = (value: unknown): string => Buffer.from(JSON.stringify(value), 'utf8').toString('base64');
  const fields = Object.keys(record);
  const r = rng();
  if (r < 0.2) {
    // Damage the base64 text itself.
    const at = intBelow(rng, exported.length);
    const chars = 'A/+=_- \n\u00e9';
    const how = pick(['flip', 'delete', 'insert', 'truncate'] as const);
    const text = how === 'flip' ? exported.slice(0, at) + pick([...chars]) + exported.slice(at + 1)
      : how === 'delete' ? exported.slice(0, at) + exported.slice(at + 1)
        : how === 'insert' ? exported.slice(0, at) + pick([...chars]) + exported.slice(at)
          : exported.slice(0, at);
    return { kind: `base64 ${how}`, text, raw: undefined };
  }
  const changed: Record<string, unknown> = { ...record };
  let kind: string;
  if (r < 0.35) {
    const field = pick(fields);
    delete changed[field];
    kind = `no ${field}`;
  } else if (r < 0.85) {
    const field = pick(fields);
    changed[field] = pick(hostileValues(record));
    kind = `hostile ${field}`;
  } else if (r < 0.95) {
    // Several fields at once, some of them new.
    for (let i = 0; i < 3; i++) changed[pick([...fields, 'extra', '__proto__', 'constructor'])] = pick(hostileValues(record));
    kind = 'hostile fields';
  } else {
    return { kind: 'not JSON', text: Buffer.from(Array.from({ length: intBelow(rng, 200) }, () => intBelow(rng, 256))).toString('base64'), raw: undefined };
  }
  // Half go through importRecord; half straight into restore and delete, as a caller's own object.
  return rng() < 0.5 ? { kind, text: encode(changed), raw: undefined } : { kind: `${kind} (raw)`, text: undefined, raw: changed };
}

/** The fields that say where a backup is (recordLocation): any other field cannot change what a restore does. */
const LOCATION_FIELDS: ReadonlyArray<keyof BackupRecord> = ['id', 'volume_id', 'container', 'service_metadata', 'snapshot_id'];
/** Of the records that name the real backup's location unchanged, one in this many is restored all the same. */
const SAME_LOCATION_SAMPLE = 20;

/** Whether a restore of record could do anything but what a restore of the real record does. */
function movesLocation(record: unknown, real: BackupRecord): boolean {
  if (!record || typeof record !== 'object') return true;
  return LOCATION_FIELDS.some((field) => (record as Record<string, unknown>)[field] !== real[field]);
}

const RANK: Settled[] = ['completed', 'typed', 'untyped', 'hang'];
const worst = (a: Settled, b: Settled): Settled => (RANK.indexOf(b) > RANK.indexOf(a) ? b : a);

/** importRecord, then restore and delete with what came out (or with the raw object). */
async function tryInput(ctx: Context, engine: BackupEngine, real: { record: BackupRecord; sha: string },
  input: Input): Promise<RunOutcome> {
  let record: unknown = input.raw;
  let settled: Settled = 'completed';
  const notes: string[] = [];
  if (input.text !== undefined) {
    try {
      record = engine.importRecord(input.text);
    } catch (error) {
      settled = error instanceof CephError ? 'typed' : 'untyped';
      if (settled === 'untyped') notes.push(`importRecord: ${describeError(error)}`);
      return outcome(ctx, `record: ${input.kind}`, undefined, { settled, detail: notes.join('; ') });
    }
  }
  if (!movesLocation(record, real.record) && ctx.rng() * SAME_LOCATION_SAMPLE >= 1) {
    return outcome(ctx, `record: ${input.kind}`, undefined, { settled, detail: 'same location as the real record' });
  }
  const target = uniqueName('fz');
  const restored = await settle(ctx.settings.budgetMs, (timeoutMs) => engine.restore({
    backup: record as BackupRecord, target: { volume: { pool: POOL, id: target } }, timeoutMs,
  }));
  settled = worst(settled, restored.settled);
  let corrupt = false;
  const debris: string[] = [];
  if (restored.settled === 'completed') {
    // Only the real backup exists: whatever a record that restores names, it restores exactly that.
    corrupt = (await rbdExportSha256('a', `${POOL}/volume-${target}`)) !== real.sha;
    if (corrupt) notes.push('restored bytes differ from the real backup\'s');
  } else if (restored.settled !== 'typed') {
    notes.push(`restore: ${describeError(restored.error)}`);
  }
  if (restored.settled !== 'completed' && await ctx.volumes.imageExists(`volume-${target}`)) {
    debris.push(`a refused restore left ${POOL}/volume-${target}`);
  }
  if (await ctx.volumes.objectExists(restoreLockObjectName(target))) debris.push(`${POOL}/${restoreLockObjectName(target)} is left`);
  await removeImagePatiently(ctx.volumes, `volume-${target}`);
  // Deleting the real backup is what a record naming it should do; it is kept for the checks.
  if ((record as { id?: unknown } | null)?.id !== real.record.id) {
    const deleted = await settle(ctx.settings.budgetMs, (timeoutMs) => engine.delete(record as BackupRecord, { timeoutMs }));
    settled = worst(settled, deleted.settled);
    if (deleted.settled === 'untyped' || deleted.settled === 'hang') notes.push(`delete: ${describeError(deleted.error)}`);
  }
  return outcome(ctx, `record: ${input.kind}`, restored, { settled, corrupt, debris, detail: notes.join('; ') });
}

export async function fuzzRecords(ctx: Context): Promise<RunOutcome[]> {
  // Small: thousands of records may restore it.
  const volumeId = await filledVolume(ctx, 4);
  const engine = healthyEngine(ctx);
  const backup = await engine.backup({ pool: POOL, volumeId, backupId: uniqueName('real') });
  const real = { record: backup.record, sha: await snapshotSha(volumeId, backup.snapshot) };
  const exported = engine.exportRecord(backup.record);
  const outcomes: RunOutcome[] = [];
  for (let i = 0; i < ctx.settings.fuzz; i++) outcomes.push(await tryInput(ctx, engine, real, mutate(ctx.rng, backup.record, exported)));
  // The real backup survived all of it, and nothing is left over.
  const checked = await verifyBackup(ctx, backup.record, volumeId, backup.snapshot);
  const last = outcomes.at(-1)!;
  last.corrupt ||= checked.corrupt;
  last.debris.push(...await debrisOf(ctx, volumeId));
  if (checked.corrupt) last.detail += `; the real backup after the fuzzing: ${checked.detail}`;
  return outcomes;
}

/** The fixture's own time, besides a second per variant: set-up, and each variant may take up to its 60 s limit. */
const CHILD_BASE_MS = 300_000;
const DIFF_FUZZ_CHILD = fileURLToPath(new URL('../test/fixtures/diff-fuzz-child.js', import.meta.url));

/**
 * Which rule of the fixture a failed run broke, from the assertion message
 * in its output. An error of the wrong class or naming the wrong offset
 * counts as untyped: not the error the contract promises.
 */
function brokenRule(message: string): { settled: Settled; corrupt: boolean } {
  if (/did not settle/.test(message)) return { settled: 'hang', corrupt: false };
  if (/imported|size went|snapshots are|end snapshot|snapshot size/.test(message)) return { settled: 'completed', corrupt: true };
  return { settled: 'untyped', corrupt: false };
}

/**
 * diff-fuzz-child.ts against this cluster: RBD_FUZZ_ITERATIONS variants of
 * each of its two streams (ours and `rbd export-diff`'s), plus its
 * truncations. Its summary line gives the outcomes by kind.
 */
export async function fuzzStreams(ctx: Context): Promise<RunOutcome[]> {
  const iterations = Math.max(1, Math.round(ctx.settings.fuzz / 2));
  const child = await runChild(DIFF_FUZZ_CHILD, [], {
    ...await clusterEnv('a'), RBD_FUZZ_ITERATIONS: String(iterations), DIFF_FUZZ_SEED: String(ctx.seed),
  }, CHILD_BASE_MS + iterations * 1000);
  const outcomes: RunOutcome[] = [];
  const summary = /^# \d+ variants: (.*)$/m.exec(child.stdout)?.[1] ?? '';
  for (const part of summary.split('; ').filter(Boolean)) {
    const match = /^(.*): (\S+) (\d+)$/.exec(part);
    if (!match) continue;
    const [, kind, result, count] = match;
    for (let i = 0; i < Number(count); i++) {
      outcomes.push(outcome(ctx, `stream: ${kind}`, undefined, { settled: result === 'imported' ? 'completed' : 'typed', detail: '' }));
    }
  }
  if (child.signal !== null || child.code !== 0) {
    const failure = /variant \d+ \(.*/.exec(child.stdout)?.[0] ?? child.stdout.split('\n').slice(-20).join(' ');
    // runChild ends an overdue child with SIGKILL: that is a hang; any other signal is a crash.
    const rule = child.signal === 'SIGKILL' ? { settled: 'hang' as const, corrupt: false }
      : child.signal !== null ? { settled: 'crash' as const, corrupt: false } : brokenRule(failure);
    outcomes.push(outcome(ctx, 'stream', undefined, {
      ...rule, detail: `diff-fuzz-child ${child.signal ?? `exit ${child.code}`}: ${failure.slice(0, 500)} ${child.stderr.slice(-500)}`,
    }));
  }
  return outcomes;
}
