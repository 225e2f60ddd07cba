/**
 * One latency pass in its own clusters: the delivered latency, the source
 * volume and its write ceiling, then every selected scenario (export
 * stream, stream import, full copy, cross-cluster and same-cluster full transfers, the
 * incremental chains with and without digests, the restores, the deep
 * verify of a backup and the read ceiling, the instant and in-place
 * restores of that backup, the RSS check).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Bench, CONNECT_TIMEOUT_MS, FEATURES, medianRun, OBJECT_SIZE, OP_TIMEOUT_MS, SCENARIO_JS, VerificationError,
} from './bench.js';
import { fullTransfer, runChains, STEPS, tool, TOOLS, type ToolKey } from './chains.js';
import { withDigests } from './digest-cost.js';
import { inPlaceRestores } from './in-place-restores.js';
import { instantRestores } from './instant-restores.js';
import { measureLatency } from './latency.js';
import { run } from './proc.js';
import { cliCopy, cliTransfer } from './rbd-side.js';
import type { Ceiling, Measure, ScenarioRecord } from './results.js';
import type { ScenarioArgs, ScenarioResult } from './protocol.js';
import { backUpSource, deleteSourceBackup } from './source-backup.js';
import { deepVerify } from './verify.js';
import { filesBackups } from './files-backups.js';

const MiB = 1 << 20;

/** Source setup: rbd/src filled by rbd bench (the write ceiling, best of --repeat runs), snapshot s1, its checksum. */
async function setUpSource(bench: Bench): Promise<void> {
  const a = bench.a;
  const size = bench.sizeBytes;
  const reps = bench.config.repeat;
  bench.log(`source: rbd/src, ${bench.config.sizeMiB} MiB, ${OBJECT_SIZE} objects, features ${FEATURES.join(',')}`);
  await bench.createImage(a, 'rbd/src', size);
  bench.pass.cliStartupMs = await bench.cliStartup();
  bench.log('filling rbd/src with rbd bench (the write ceiling)');
  const ceilings = [await bench.fill('rbd/src', size)];
  for (let rep = 1; rep < reps; rep++) {
    bench.log(`  write ceiling again on a fresh scratch image (${rep + 1} of ${reps})`);
    await bench.createImage(a, 'rbd/scratch', size);
    ceilings.push(await bench.fill('rbd/scratch', size));
    await bench.removeImage(a, 'rbd/scratch');
  }
  const speed = (c: Ceiling): number => c.reportedMiBPerS ?? c.wallMiBPerS;
  bench.pass.ceilingRuns = ceilings;
  // The best run: interference from the rest of the machine only ever
  // slows a run down, so the fastest one is the closest to what the
  // cluster can do (and the strictest yardstick for the ceiling bar).
  bench.pass.ceiling = ceilings.reduce((best, c) => (speed(c) > speed(best) ? c : best));
  bench.log(`  ceiling: ${ceilings.map((c) => speed(c).toFixed(0)).join(', ')} MiB/s reported by rbd bench; ` +
    `best ${speed(bench.pass.ceiling).toFixed(0)}`);
  await bench.snapshot(a, 'rbd/src@s1');
  const s1 = await bench.exportHash(a, 'rbd/src@s1', true);
  bench.setSourceHash(a, 'rbd/src@s1', s1);
  if (s1.bytes !== size) throw new Error(`rbd export of rbd/src@s1 gave ${s1.bytes} bytes, expected ${size}`);
  if (s1.zeroBlocks !== 0) {
    throw new Error(`rbd bench left ${s1.zeroBlocks} all-zero 4 KiB blocks in rbd/src; the full transfer needs a fully written volume`);
  }
  bench.log(`  rbd/src@s1: ${size} bytes, no all-zero 4 KiB block, sha256 ${s1.sha256.slice(0, 16)}…`);
  bench.osdSnapshot('afterFill');
}

/**
 * The diff stream into a sink that discards it. Ours is checked once by
 * applying its stream with the real tool (untimed); the stream is
 * deterministic, so every timed run must produce exactly as many bytes.
 */
async function exportStream(bench: Bench): Promise<void> {
  const a = bench.a;
  const size = bench.sizeBytes;
  const src = { cluster: a.ref, pool: 'rbd', image: 'src' };
  bench.log('export-diff stream to a null sink');
  await bench.createImage(a, 'backups/export-check', MiB);
  const args: ScenarioArgs = {
    op: 'export', source: src, snapshot: 's1', sink: 'stdout', engine: bench.config.engine, samplePids: [],
    clientOptions: bench.config.clientOptions, connectTimeoutMs: CONNECT_TIMEOUT_MS, opTimeoutMs: OP_TIMEOUT_MS,
  };
  const importArgs = [...a.rbdArgs, 'import-diff', '--no-progress', '-', 'backups/export-check'];
  const check = await run('bash', ['-o', 'pipefail', '-c', '"$1" "$2" "$3" | rbd "${@:4}"', 'bash',
    process.execPath, SCENARIO_JS, JSON.stringify(args), ...importArgs],
  { label: 'ours exportDiff | rbd import-diff (check)', timeoutMs: bench.timeout(60_000, size, 4) });
  const checkBytes = (JSON.parse(check.stderr.trim().split('\n').pop() ?? '') as ScenarioResult).streamBytes;
  const checked = await bench.verify('exportDiff stream applied by rbd import-diff',
    [a, 'rbd/src@s1'], [a, 'backups/export-check@s1']);
  await bench.removeImage(a, 'backups/export-check');
  bench.record(await bench.pairs({
    id: 'export-null', title: 'export-diff stream -> null', volumeBytes: size,
    detail: 'whole-history diff stream of rbd/src@s1 into a sink that discards it; ours is checked by ' +
      'applying its stream with rbd import-diff (untimed), and each timed run by its stream length',
  }, bench.config.repeat, async () => {
    const m = await bench.ours('exportDiff(rbd/src@s1) -> null Writable',
      { op: 'export', source: src, snapshot: 's1', sink: 'null' }, size);
    if (m.streamBytes !== checkBytes) {
      throw new VerificationError(`VERIFICATION FAILED: exportDiff produced ${m.streamBytes} bytes, ` +
        `the checked stream had ${checkBytes}`);
    }
    m.verified = `${checked}; ${checkBytes} stream bytes, same as the stream rbd import-diff applied`;
    return m;
  }, async () => {
    const m = await bench.cli('export-diff > /dev/null', 'rbd "$@" >/dev/null',
      [...a.rbdArgs, 'export-diff', '--no-progress', 'rbd/src@s1', '-'], size,
      'rbd export-diff rbd/src@s1 - > /dev/null');
    m.verified = 'n/a (the reference)';
    return m;
  }));
}

/**
 * The diff stream applied to a new image: importDiff reading the file
 * `rbd export-diff` wrote (untimed) against `rbd import-diff` of the same
 * file (reading a file, not a pipe, it keeps its default 10 writes in
 * flight). Both byte-checked against the snapshot the stream ends at.
 */
async function importStream(bench: Bench): Promise<void> {
  const a = bench.a;
  const size = bench.sizeBytes;
  const dir = await mkdtemp(join(tmpdir(), 'bench-import-'));
  const file = join(dir, 'src.diff');
  try {
    bench.log('import of a diff stream from a file into a new image');
    await bench.rbd(a, ['export-diff', '--no-progress', 'rbd/src@s1', file], 'rbd export-diff (untimed)', size);
    const into = async (spec: string, label: string, body: () => Promise<Measure>): Promise<Measure> => {
      await bench.createImage(a, spec, MiB);
      const m = await body();
      m.verified = await bench.verify(label, [a, 'rbd/src@s1'], [a, `${spec}@s1`]);
      await bench.removeImage(a, spec);
      return m;
    };
    bench.record(await bench.pairs({
      id: 'import-file', title: 'diff stream from a file -> new image', volumeBytes: size,
      detail: 'the whole-history stream of rbd/src@s1 (rbd export-diff into a file, untimed) applied to a new 1 MiB image, ' +
        'which the stream resizes; ours is importDiff reading the file',
    }, bench.config.repeat,
    () => into('backups/import-ours', 'importDiff', () => bench.ours('importDiff(FILE) -> backups/import-ours',
      { op: 'import', target: { cluster: a.ref, pool: 'backups', image: 'import-ours' }, streamFile: file }, size)),
    () => into('backups/import-cli', 'rbd import-diff', () => bench.cli('import-diff FILE', 'rbd "$@"',
      [...a.rbdArgs, 'import-diff', '--no-progress', file, 'backups/import-cli'], size, 'rbd import-diff FILE backups/import-cli'))));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function fullCopy(bench: Bench): Promise<void> {
  const a = bench.a;
  const size = bench.sizeBytes;
  bench.log('full copy');
  bench.record(await bench.pairs({
    id: 'copy', title: 'full copy', volumeBytes: size,
    detail: 'rbd/src@s1 into a new image of the same size (ours: created before timing; rbd cp creates its own)',
  }, bench.config.repeat, async () => {
    await bench.createImage(a, 'backups/cp-ours', size);
    const m = await bench.ours('copyImage(rbd/src@s1 -> backups/cp-ours)', {
      op: 'copy', source: { cluster: a.ref, pool: 'rbd', image: 'src' }, snapshot: 's1',
      target: { cluster: a.ref, pool: 'backups', image: 'cp-ours' },
    }, size);
    m.verified = await bench.verify('copyImage', [a, 'rbd/src@s1'], [a, 'backups/cp-ours']);
    await bench.removeImage(a, 'backups/cp-ours');
    return m;
  }, async () => {
    const m = await cliCopy(bench, 'rbd cp', 'rbd/src@s1', 'backups/cp-cli', undefined);
    m.verified = await bench.verify('rbd cp', [a, 'rbd/src@s1'], [a, 'backups/cp-cli']);
    await bench.removeImage(a, 'backups/cp-cli');
    return m;
  }));
}

/** Full transfer to the second cluster; B is stopped afterwards (its OSD's memory goes back to the machine). */
async function crossCluster(bench: Bench): Promise<void> {
  const a = bench.a;
  const b = bench.b!;
  const size = bench.sizeBytes;
  bench.log('full transfer across clusters (A -> B)');
  bench.record(await bench.pairs({
    id: 'full-cross', title: 'full transfer A -> B', volumeBytes: size,
    detail: 'whole-history diff of rbd/src@s1 on cluster A into a new 1 MiB image in pool backups on cluster B',
  }, bench.config.repeat, async () => {
    await bench.createImage(b, 'backups/x-ours', MiB);
    const m = await bench.ours('transferDiff(A rbd/src@s1 -> B backups/x-ours)', {
      op: 'transfer', source: { cluster: a.ref, pool: 'rbd', image: 'src' }, snapshot: 's1',
      target: { cluster: b.ref, pool: 'backups', image: 'x-ours' },
    }, size);
    m.verified = await bench.verify('cross-cluster transferDiff', [a, 'rbd/src@s1'], [b, 'backups/x-ours@s1']);
    await bench.removeImage(b, 'backups/x-ours');
    return m;
  }, async () => {
    await bench.createImage(b, 'backups/x-cli', MiB);
    const m = await cliTransfer(bench, 'cross-cluster pipe', a, 'rbd/src@s1', undefined, b, 'backups/x-cli', undefined);
    m.verified = await bench.verify('cross-cluster pipe', [a, 'rbd/src@s1'], [b, 'backups/x-cli@s1']);
    await bench.removeImage(b, 'backups/x-cli');
    return m;
  }));
  bench.osdSnapshot('afterCross');
  await bench.stopB();
}

/**
 * The full transfer (repeat − 1 rotating runs of the four tools into
 * throwaway targets, plus each tool's chain start), the incrementals
 * (each also with digests, next to it) and the restores.
 */
async function transfers(bench: Bench): Promise<void> {
  const a = bench.a;
  const size = bench.sizeBytes;
  bench.log('full transfer (A -> A), with and without digests');
  const standalone = await bench.runRotating(bench.config.repeat - 1, TOOLS.map((chain) => async () => {
    const target = `full-${chain.key}`;
    const m = await fullTransfer(bench, chain, target);
    await bench.removeImage(a, `backups/${target}`);
    return m;
  }));
  const chains = await runChains(bench);
  const runsOf = (key: ToolKey): Measure[] => [...standalone[TOOLS.indexOf(tool(key))]!, chains.full.get(key)!];
  const [oursRuns, digestRuns, rbdRuns, rbd64Runs] = (['ours', 'oursDigests', 'rbd', 'rbd64'] as const).map(runsOf) as
    [Measure[], Measure[], Measure[], Measure[]];
  const full: ScenarioRecord = {
    id: 'full', title: 'full transfer', volumeBytes: size,
    detail: 'whole-history diff of rbd/src@s1 into a new 1 MiB image in pool backups (resized by the transfer), ' +
      'same cluster; the last run of each tool is the start of its incremental chain',
    ours: medianRun(oursRuns), rbd: medianRun(rbdRuns), rbd64: medianRun(rbd64Runs), oursRuns, rbdRuns, rbd64Runs,
  };
  bench.record(full);
  const fullDigests = withDigests(full, medianRun(digestRuns), digestRuns, 'full transfer, with digests',
    'the full transfer with transferDiff\'s digests: the end snapshot\'s blocks hashed as the data passes, from the ' +
    'zeros table (DigestTable.zeros) in the block size a backup of this size gets (digestBlockFor: 64 KiB up to 64 GiB); ' +
    'rbd: the same pipe runs as the row without digests (the pipe hashes nothing). Checked: sha256, and the table ' +
    'equals hashImage of the target\'s snapshot');
  bench.record(fullDigests);
  for (const step of STEPS) {
    const runs = chains.steps.get(step.id)!;
    const ours = runs.get('ours')!;
    const rbd = runs.get('rbd')!;
    const rbd64 = runs.get('rbd64')!;
    const change = chains.changes.get(step.id);
    const plain: ScenarioRecord = {
      id: step.id, title: step.title, volumeBytes: size, ours, rbd, rbd64, oursRuns: [ours], rbdRuns: [rbd], rbd64Runs: [rbd64],
      detail: `diff rbd/src@${step.from}..@${step.snap} into the tool's base image (backups/base-ours, base-cli, base-cli64)`,
      fractionOfFull: {
        ours: ours.elapsedMs / full.ours.elapsedMs, rbd: rbd.elapsedMs / full.rbd!.elapsedMs, rbd64: rbd64.elapsedMs / full.rbd64!.elapsedMs,
      },
      ...(change ? { change } : {}),
    };
    bench.record(plain);
    const digests = runs.get('oursDigests')!;
    const record = withDigests(plain, digests, [digests], `${step.title}, with digests`,
      `the same incremental with transferDiff's digests into backups/base-digests (a chain of its own, from the full ` +
      `transfer with digests): the start table is hashImage of rbd/src@${step.from}, computed before the child ` +
      'starts (neither its time nor its operations count); every block an extent touches is read whole and hashed. ' +
      'rbd: the same pipe runs as the row without digests. Checked: sha256, and the table equals hashImage of the ' +
      'target\'s snapshot');
    record.fractionOfFull = { ...plain.fractionOfFull!, ours: digests.elapsedMs / fullDigests.ours.elapsedMs };
    bench.record(record);
  }
  for (const kind of ['diff', 'copy'] as const) {
    const [ours, rbd, rbd64] = (['ours', 'rbd', 'rbd64'] as const).map((key) => chains.restores.get(key)![kind]) as
      [Measure, Measure, Measure];
    bench.record({
      id: `restore-${kind}`, title: kind === 'diff' ? 'restore by diff' : 'restore by full copy', volumeBytes: size,
      ours, rbd, rbd64, oursRuns: [ours], rbdRuns: [rbd], rbd64Runs: [rbd64],
      detail: kind === 'diff'
        ? 'whole history of the base\'s last snapshot into a new 1 MiB image in pool rbd (ours transferDiff; rbd the pipe)'
        : 'the base\'s last snapshot into a new image of the same size in pool rbd (ours copyImage into an image made ' +
          'before timing; rbd cp)',
    });
  }
}

/**
 * What runs on one BackupEngine backup of rbd/src (with its digests), which
 * goes afterwards: the deep verify, then the restores that clone or
 * converge.
 */
async function ofSourceBackup(bench: Bench): Promise<void> {
  const groups = bench.config.groups;
  bench.log('a BackupEngine backup of rbd/src (with its digests), for the ' +
    `${groups.filter((g) => g === 'verify' || g === 'restores').join(' and ')} rows`);
  const backup = await backUpSource(bench);
  if (groups.includes('verify')) await deepVerify(bench, backup);
  if (groups.includes('restores')) {
    await instantRestores(bench, backup);
    await inPlaceRestores(bench, backup);
  }
  await deleteSourceBackup(bench, backup);
}

async function rssCheck(bench: Bench, sizeMiB: number): Promise<void> {
  const a = bench.a;
  const small = sizeMiB * MiB;
  bench.log(`RSS check: full transfer at ${sizeMiB} MiB`);
  await bench.removeImage(a, 'rbd/src'); // only the small volume is needed now
  await bench.createImage(a, 'rbd/src-small', small);
  bench.pass.rssCheckCeiling = await bench.fill('rbd/src-small', small);
  await bench.snapshot(a, 'rbd/src-small@s1');
  const runs: Measure[] = [];
  for (let rep = 0; rep < Math.max(1, Math.min(bench.config.repeat, 2)); rep++) {
    await bench.createImage(a, 'backups/base-small', MiB);
    const m = await bench.ours('transferDiff(rbd/src-small@s1 -> backups/base-small)', {
      op: 'transfer', source: { cluster: a.ref, pool: 'rbd', image: 'src-small' }, snapshot: 's1',
      target: { cluster: a.ref, pool: 'backups', image: 'base-small' },
    }, small);
    m.verified = await bench.verify('RSS check transfer', [a, 'rbd/src-small@s1'], [a, 'backups/base-small@s1']);
    await bench.removeImage(a, 'backups/base-small');
    runs.push(m);
  }
  bench.record({
    id: 'rss-check', title: `full transfer, ${sizeMiB} MiB`, volumeBytes: small, ours: medianRun(runs), oursRuns: runs,
    detail: `the full transfer again on a ${sizeMiB} MiB volume (ours only), to compare peak RSS`,
  });
}

export async function runPass(bench: Bench): Promise<void> {
  const started = performance.now();
  bench.log('delivered latency (rados bench, 4 KiB objects, queue depth 1 and 16)');
  const delivered = await measureLatency(bench.a.dir, 'rbd', bench.timeout(120_000));
  bench.pass.delivered = delivered;
  for (const line of delivered.output.split('\n')) bench.log(`  ${line}`);
  await setUpSource(bench);
  const groups = bench.config.groups;
  if (groups.includes('export')) {
    await exportStream(bench);
    await importStream(bench);
  }
  if (groups.includes('copy')) await fullCopy(bench);
  if (bench.b && groups.includes('cross')) await crossCluster(bench);
  if (groups.includes('transfers')) await transfers(bench);
  if (groups.includes('verify') || groups.includes('restores')) await ofSourceBackup(bench);
  if (groups.includes('files')) await filesBackups(bench);
  if (bench.config.rssCheckMiB !== undefined) await rssCheck(bench, bench.config.rssCheckMiB);
  bench.osdSnapshot('end');
  bench.pass.durationMs = Math.round(performance.now() - started);
}
