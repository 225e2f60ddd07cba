#!/usr/bin/env node
/**
 * The main job (README's first command): a backup and restore cycle with
 * Cinder's semantics, verified by checksums. Uses the clusters named by
 * RBD_BACKUP_CONF (source) and RBD_BACKUP_BACKUP_CONF (backups; default the
 * source) when set; otherwise starts two throwaway clusters, to show
 * backups crossing clusters, and stops them afterwards.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { AlreadyExistsError, BackupEngine, CancelledError, Cluster, exportRaw, InvalidArgumentError, type Image, type Pool } from '../lib/index.js';
import { ThrowawayCluster } from '../lib/dev/throwaway-cluster.js';
import { readResumeRecord } from '../lib/engine/resume.js';

const MiB = 1 << 20;
const VOLUME_SIZE = 1024 * MiB;
const WRITTEN = 512 * MiB;

function say(message: string): void {
  process.stdout.write(`${message}\n`);
}

/** sha256 of an image (or a snapshot of it) as `rbd export` would write it. */
async function imageSha256(image: Image, snapshot?: string): Promise<string> {
  const hash = createHash('sha256');
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      done();
    },
  });
  await exportRaw(image, { ...(snapshot === undefined ? {} : { snapshot }), to: sink });
  return hash.digest('hex');
}

async function fill(image: Image, from: number, to: number, step: number, length: number): Promise<number> {
  let written = 0;
  for (let offset = from; offset < to; offset += step) {
    const piece = randomBytes(Math.min(length, to - offset));
    await image.write(piece, offset);
    written += piece.length;
  }
  return written;
}

interface Row {
  step: string;
  size: string;
  time: string;
  rate: string;
  path: string;
  check: string;
}

function table(rows: Row[]): string {
  const heads: Row = { step: 'step', size: 'data', time: 'time', rate: 'MiB/s', path: 'path', check: 'verified' };
  const all = [heads, ...rows];
  const width = (key: keyof Row): number => Math.max(...all.map((r) => r[key].length));
  const line = (r: Row): string => (Object.keys(heads) as Array<keyof Row>).map((k) => r[k].padEnd(width(k))).join('  ');
  return [line(heads), (Object.keys(heads) as Array<keyof Row>).map((k) => '-'.repeat(width(k))).join('  '), ...rows.map(line)].join('\n');
}

/** How the CLI reaches a cluster: what the demo itself connected with. */
interface Access {
  conf: string;
  keyring: string | undefined;
  user: string | undefined;
}

async function main(): Promise<void> {
  const started: ThrowawayCluster[] = [];
  const stopAll = async (): Promise<void> => {
    for (const cluster of started.splice(0)) await cluster.stop().catch(() => undefined);
  };
  process.once('SIGINT', () => { void stopAll().then(() => process.exit(130)); });
  try {
    let source: Cluster;
    let backups: Cluster;
    let access: { source: Access; backups: Access };
    if (process.env.RBD_BACKUP_CONF) {
      const sourceAccess = { conf: process.env.RBD_BACKUP_CONF, keyring: process.env.RBD_BACKUP_KEYRING, user: process.env.RBD_BACKUP_USER };
      access = {
        source: sourceAccess,
        backups: process.env.RBD_BACKUP_BACKUP_CONF
          ? { conf: process.env.RBD_BACKUP_BACKUP_CONF, keyring: process.env.RBD_BACKUP_BACKUP_KEYRING, user: process.env.RBD_BACKUP_BACKUP_USER }
          : sourceAccess,
      };
      source = await Cluster.connect({ conf: process.env.RBD_BACKUP_CONF, keyring: process.env.RBD_BACKUP_KEYRING, user: process.env.RBD_BACKUP_USER });
      backups = process.env.RBD_BACKUP_BACKUP_CONF
        ? await Cluster.connect({ conf: process.env.RBD_BACKUP_BACKUP_CONF, keyring: process.env.RBD_BACKUP_BACKUP_KEYRING, user: process.env.RBD_BACKUP_BACKUP_USER })
        : source;
      say(`clusters: source ${process.env.RBD_BACKUP_CONF}, backups ${process.env.RBD_BACKUP_BACKUP_CONF ?? '(same)'}`);
    } else {
      const t0 = performance.now();
      const [a, b] = await Promise.all([
        ThrowawayCluster.start({ memstoreBytes: 6 * 2 ** 30 }),
        ThrowawayCluster.start({ memstoreBytes: 3 * 2 ** 30 }),
      ]);
      started.push(a, b);
      say(`clusters: started two throwaway clusters in ${((performance.now() - t0) / 1000).toFixed(1)} s (source ${a.info.monHost}, backups ${b.info.monHost})`);
      const timeouts = { timeoutMs: 20_000, opTimeoutMs: 60_000 };
      access = { source: { conf: a.info.conf, keyring: a.info.keyring, user: undefined }, backups: { conf: b.info.conf, keyring: b.info.keyring, user: undefined } };
      source = await Cluster.connect({ conf: a.info.conf, keyring: a.info.keyring, ...timeouts });
      backups = await Cluster.connect({ conf: b.info.conf, keyring: b.info.keyring, ...timeouts });
    }
    try {
      await cycle(source, backups, access, process.env.RBD_BACKUP_POOL ?? 'rbd');
    } finally {
      if (backups !== source) await backups.close();
      await source.close();
    }
  } finally {
    await stopAll();
  }
}

async function cycle(sourceCluster: Cluster, backupCluster: Cluster, access: { source: Access; backups: Access }, poolName: string): Promise<void> {
  // Progress recorded every 100 ms: a restore stopped below picks up close to where it stopped.
  const engine = new BackupEngine({ source: sourceCluster, backupCluster, checkpointMs: 100 });
  const pool: Pool = await sourceCluster.pool(poolName);
  const volumeId = randomUUID();
  const volumeName = `volume-${volumeId}`;
  const rows: Row[] = [];
  const made: string[] = [volumeName];
  const mib = (bytes: number | bigint): string => `${(Number(bytes) / MiB).toFixed(0)} MiB`;
  const row = (step: string, bytes: bigint, ms: number, path: string, check: string, rated = true): void => {
    rows.push({ step, size: mib(bytes), time: `${(ms / 1000).toFixed(2)} s`, rate: rated ? (Number(bytes) / MiB / (ms / 1000)).toFixed(0) : '-', path, check });
  };
  try {
    await pool.createImage(volumeName, VOLUME_SIZE, { features: ['layering', 'exclusive-lock', 'object-map', 'fast-diff'] });
    const volume = await pool.openImage(volumeName);
    try {
      say(`volume: ${pool.spec}/${volumeName}, ${mib(VOLUME_SIZE)}`);
      const written = await fill(volume, 0, WRITTEN * 2, 2 * 4 * MiB, 4 * MiB);
      say(`wrote ${mib(written)} of random data (every other 4 MiB)`);

      const full = await engine.backup({ pool: poolName, volumeId, displayName: 'demo full' });
      say(`backup ${full.record.id}: ${full.mode}, snapshot ${full.snapshot}`);
      const fullSha = await imageSha256(volume, full.snapshot);
      row('full backup', full.stats.bytesRead, full.stats.elapsedMs, `${full.mode} -> its own chain image`, 'by restores below');
      say(`chain image: ${full.baseImage}`);

      // 5% of the volume, in 64 KiB pieces at random places.
      let changed = 0;
      while (changed < VOLUME_SIZE * 0.05) {
        const offset = Math.floor(Math.random() * (VOLUME_SIZE / (64 * 1024))) * 64 * 1024;
        await volume.write(randomBytes(64 * 1024), offset);
        changed += 64 * 1024;
      }
      say(`changed ${mib(changed)} (5%) at random places`);
      const incremental = await engine.backup({ pool: poolName, volumeId, displayName: 'demo incremental' });
      const incrementalSha = await imageSha256(volume, incremental.snapshot);
      row('incremental backup', incremental.stats.bytesRead, incremental.stats.elapsedMs,
        `${incremental.mode} from ${full.record.id.slice(0, 8)}`, 'by restores below');
      // Its stored digests against its data, read again from the chain image.
      const deep = await engine.verify(incremental.record, { mode: 'deep' });
      if (!deep.ok || deep.blocksChecked !== deep.blocks) throw new Error(`verify deep of a sound backup: ${JSON.stringify(deep.mismatches)}`);
      row('verify deep (incremental)', deep.bytesRead, deep.elapsedMs, `${deep.blocks} blocks of ${deep.blockSize / 1024n} KiB vs their digests`,
        `${deep.blocksChecked} blocks equal`);

      // The older backup into a new volume: all five conditions hold; its
      // bytes are hashed as they are written and compared with its digests.
      const first = await engine.restore({ backup: full.record, target: { volume: { pool: poolName } }, verify: true });
      made.push(`volume-${first.targetVolumeId}`);
      const firstSha = await withImage(pool, `volume-${first.targetVolumeId}`, (image) => imageSha256(image));
      verify('restore of the full backup', firstSha, fullSha);
      row('restore full -> new volume', first.bytesRead, first.elapsedMs, `${first.path}, verify: true`,
        firstSha === fullSha ? `sha256 equal, ${first.verifiedBlocks} blocks verified` : 'MISMATCH');

      // The newer backup onto that volume, which now holds data: refused
      // unless forced; a dry run says what a forced one would do; then
      // condition 5 fails and it is a full copy.
      const onto = { backup: incremental.record, target: { volume: { pool: poolName, id: first.targetVolumeId! } } };
      const refused = await engine.restore(onto).then(() => undefined, (error: unknown) => error);
      if (!(refused instanceof AlreadyExistsError)) throw new Error(`a restore onto a volume holding data was not refused: ${String(refused)}`);
      const plan = await engine.restore({ ...onto, force: true, dryRun: true });
      say(`restore onto that volume: refused without force (it holds data); a dry run with force: ${plan.path} copy, condition ${plan.failedCondition?.number}, nothing written`);
      // Stopped halfway (as a lost connection or a killed process would),
      // then run again: the copy picks up where its progress record says.
      const stop = new AbortController();
      const stopped = await engine.restore({
        ...onto, force: true, signal: stop.signal,
        onProgress: ({ done, total }) => { if (done * 2n >= total) stop.abort(); },
      }).then(() => undefined, (error: unknown) => error);
      if (!(stopped instanceof CancelledError)) throw new Error(`a restore stopped halfway did not end cancelled: ${String(stopped)}`);
      const second = await engine.restore({ ...onto, force: true });
      if (second.resumedFrom === undefined) throw new Error('the restore run again after a stop started from zero');
      say(`restore onto that volume stopped halfway, run again: picked up at ${mib(second.resumedFrom)}, read ${mib(second.bytesRead)}`);
      const secondSha = await withImage(pool, `volume-${second.targetVolumeId}`, (image) => imageSha256(image));
      verify('restore of the incremental backup', secondSha, incrementalSha);
      row('restore incr. -> used volume', second.size - second.resumedFrom, second.elapsedMs,
        `full copy (condition ${second.failedCondition?.number}), resumed at ${mib(second.resumedFrom)} after a stop`,
        secondSha === incrementalSha ? 'sha256 equal' : 'MISMATCH');

      // Instant: a clone of the backup, usable at once, where the backups
      // are (a recovery site, say); flattened in the background.
      if (backupCluster !== sourceCluster) {
        const across = await engine.restore({ backup: incremental.record, target: { volume: { pool: poolName } }, instant: true })
          .then(() => undefined, (error: unknown) => error);
        if (!(across instanceof InvalidArgumentError)) throw new Error(`an instant restore across clusters was not refused: ${String(across)}`);
        say('instant restore into the source cluster: refused (a clone cannot reach into another cluster; the message says to restore without instant)');
      }
      const recovery = new BackupEngine({ source: backupCluster });
      const recoveryPool = backupCluster === sourceCluster ? pool : await backupCluster.pool(poolName);
      try {
        const t0 = performance.now();
        const instant = await recovery.restore({ backup: incremental.record, target: { volume: { pool: poolName } }, instant: true });
        const instantName = `volume-${instant.targetVolumeId}`;
        try {
          const firstRead = await withImage(recoveryPool, instantName, async (image) => {
            await image.read(0, 4096);
            return performance.now() - t0;
          });
          const cloneSha = await withImage(recoveryPool, instantName, (image) => imageSha256(image));
          await instant.flattening?.done;
          const flatSha = await withImage(recoveryPool, instantName, (image) => imageSha256(image));
          verify('instant restore (as a clone)', cloneSha, incrementalSha);
          verify('instant restore (flattened)', flatSha, incrementalSha);
          row('instant restore (first read)', instant.size, firstRead, `clone in ${recoveryPool.spec} of the backup's cluster, flattened after`,
            'sha256 equal, clone and flat', false);
        } finally {
          await recoveryPool.removeImage(instantName).catch(() => undefined);
        }
      } finally {
        if (recoveryPool !== pool) await recoveryPool.close();
      }

      // In place: the volume after a bad change, back to the incremental by
      // moving only what differs from the snapshot it shares with the chain.
      await volume.write(randomBytes(8 * MiB), 100 * MiB);
      await volume.flush();
      const inPlace = await engine.restore({ backup: incremental.record, target: { volume: { pool: poolName, id: volumeId } }, force: true });
      const inPlaceSha = await withImage(pool, volumeName, (image) => imageSha256(image));
      verify('in-place restore of the incremental', inPlaceSha, incrementalSha);
      row('restore in place (bad change)', inPlace.bytesRead, inPlace.elapsedMs,
        `${inPlace.path} from ${inPlace.commonSnapshot?.slice(0, 16)}... (not ${mib(inPlace.size)} copied)`, 'sha256 equal');

      await showKilledBackupResumes({ engine, access, backupCluster, poolName, volume, volumeId, chainImage: full.baseImage, row, mib });
      await showBackupsIntoFiles({ sourceCluster, pool, poolName, volume, volumeId, row, mib, made });

      say('');
      say(table(rows));
      say('');
      const listed = await engine.listBackups(volumeId);
      // Read from the backup pool alone: the names and sizes are kept beside the snapshots.
      say(`backups in the backup pool: ${listed.map((l) => `${l.record.id.slice(0, 8)} "${l.record.display_name}" (${l.full ? 'full' : 'incremental'}, ` +
        `${l.bytesWritten === undefined ? '?' : mib(l.bytesWritten)} written, ${l.image === full.baseImage ? 'in that chain image' : l.image})`).join(', ')}`);

      // Retention: the full backup goes from the chain, the incremental after it must stay exact.
      const pruned = await engine.prune(volumeId, 'latest1', { sourcePool: poolName });
      say(`prune latest1: kept ${pruned.kept.map((k) => `${k.backupId.slice(0, 8)} (${k.reasons.join('; ')})`).join(', ')}; removed ${pruned.removed.map((r) => r.backupId.slice(0, 8)).join(', ')}`);
      const survivor = await engine.restore({ backup: incremental.record, target: { volume: { pool: poolName } } });
      made.push(`volume-${survivor.targetVolumeId}`);
      const survivorSha = await withImage(pool, `volume-${survivor.targetVolumeId}`, (image) => imageSha256(image));
      verify('restore of the incremental after the prune', survivorSha, incrementalSha);
      say(`restore of ${incremental.record.id.slice(0, 8)} after the prune: sha256 equal to its source snapshot`);
      await showCorruptionFound(engine, backupCluster, incremental.baseImage, incremental.record);
      await engine.delete(incremental.record, { sourcePool: poolName });
      say('deleted the last backup (its chain image went with it)');
      for (const snapshot of await volume.listSnapshots()) await volume.removeSnapshot(snapshot.name);
    } finally {
      await volume.close();
    }
  } finally {
    for (const name of made) await pool.removeImage(name).catch(() => undefined);
    await pool.close();
  }
}

/**
 * A failing disk, played by a raw RADOS write: one byte of the chain
 * image's first data object flipped (no snapshot context goes with the
 * write, so the backup's snapshot, which shares the object, reads it too).
 * verify deep names the block.
 */
async function showCorruptionFound(engine: BackupEngine, backupCluster: Cluster, chainImage: string,
  record: Parameters<BackupEngine['verify']>[0]): Promise<void> {
  const backups = await backupCluster.pool('backups');
  try {
    const { blockNamePrefix } = await withImage(backups, chainImage, (image) => image.stat());
    const object = `${blockNamePrefix}.${'0'.repeat(16)}`;
    const data = await backups.readObject(object);
    const at = 1 * MiB + 5;
    data[at] = data[at]! ^ 0xff;
    await backups.writeObject(object, data);
    const found = await engine.verify(record, { mode: 'deep' });
    const where = found.mismatches.map((m) => `${m.length / 1024n} KiB at offset ${m.offset}`).join(', ');
    if (found.ok || found.mismatches.length !== 1 || found.mismatches[0]!.offset !== BigInt(at) - (BigInt(at) % found.blockSize)) {
      throw new Error(`verify deep after a flipped byte at ${at}: ${where || 'nothing found'}`);
    }
    say(`flipped one byte at offset ${at} in the chain image's RADOS object ${object}: verify deep says MISMATCH, ${where} (exit code 8 in the CLI)`);
  } finally {
    await backups.close();
  }
}

/**
 * An incremental backup by the CLI, its writes throttled by librbd's QoS so
 * that it runs for seconds, SIGKILLed halfway; the same backup run again
 * continues the transfer the killed process recorded, and the chain
 * image's snapshot reads as the source's.
 */
async function showKilledBackupResumes(demo: {
  engine: BackupEngine; access: { source: Access; backups: Access }; backupCluster: Cluster; poolName: string;
  volume: Image; volumeId: string; chainImage: string;
  row: (step: string, bytes: bigint, ms: number, path: string, check: string) => void; mib: (bytes: bigint) => string;
}): Promise<void> {
  const { engine, access, poolName, volume, volumeId, mib } = demo;
  // From 8 MiB on: the chain image's first object stays unshared (showCorruptionFound flips a byte in it).
  await fill(volume, 8 * MiB, VOLUME_SIZE, 16 * MiB, MiB);
  await volume.flush();
  const backupId = randomUUID();
  const dir = await mkdtemp(join(tmpdir(), 'rbd-backup-demo-'));
  let child: ReturnType<typeof spawn> | undefined;
  try {
    // The clusters' own configuration, and 16 MiB/s of writes at most.
    const throttled = async (of: Access, name: string): Promise<[string, string | undefined, string | undefined]> => {
      const conf = join(dir, name);
      await writeFile(conf, `${await readFile(of.conf, 'utf8')}\n[client]\nrbd qos write bps limit = ${16 * MiB}\n`);
      return [conf, of.keyring, of.user];
    };
    const [conf, keyring, user] = await throttled(access.source, 'source.conf');
    const [backupConf, backupKeyring, backupUser] = await throttled(access.backups, 'backups.conf');
    // Progress recorded every 100 ms (default 1000).
    const config = join(dir, 'rbd-backup.conf');
    await writeFile(config, '[engine]\ncheckpoint_ms = 100\n');
    const args = [
      new URL('./rbd-backup.js', import.meta.url).pathname, 'backup', '-p', poolName, '--volume', volumeId, '--backup-id', backupId,
      '--config', config, '-c', conf, ...(keyring ? ['-k', keyring] : []), ...(user ? ['--id', user] : []),
      '--backup-conf', backupConf, ...(backupKeyring ? ['--backup-keyring', backupKeyring] : []), ...(backupUser ? ['--backup-user', backupUser] : []),
    ];
    const started = spawn(process.execPath, args, { stdio: 'ignore' });
    child = started;
    const exited = new Promise<NodeJS.Signals | number | null>((resolve) => started.once('exit', (code, signal) => resolve(signal ?? code)));
    // Killed once its transfer has recorded half the volume done on the chain image (its progress bar runs ahead of what is written).
    const recorded = await waitForProgressRecord(demo.backupCluster, demo.chainImage, exited);
    started.kill('SIGKILL');
    const ended = await exited;
    if (ended !== 'SIGKILL') throw new Error(`the CLI backup to be killed halfway ended first (${String(ended)})`);
    say(`backup by the CLI (writes throttled to 16 MiB/s), SIGKILLed once its progress record said ${mib(recorded)} were written`);
  } finally {
    // Not left running when the demo fails before the kill.
    if (child !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
  const again = await engine.backup({ pool: poolName, volumeId, backupId });
  if (again.resumedFrom === undefined) throw new Error('the backup run again after its process was killed started from zero');
  say(`the same backup run again: continued at ${mib(again.resumedFrom)}, read ${mib(again.stats.bytesRead)}`);
  const backups = await demo.backupCluster.pool('backups');
  try {
    const chainSha = await withImage(backups, again.baseImage, (image) => imageSha256(image, again.snapshot));
    verify('the resumed backup', chainSha, await imageSha256(volume, again.snapshot));
    demo.row('backup killed, run again', again.stats.bytesRead, again.stats.elapsedMs,
      `${again.mode}, continued at ${mib(again.resumedFrom)} of ${mib(BigInt(VOLUME_SIZE))}`, 'sha256 equal (chain = source)');
  } finally {
    await backups.close();
  }
  await engine.delete(again.record, { sourcePool: poolName });
}

/**
 * Backups into a directory (an NFS share's mount point, say) in the layout
 * of Cinder's NFS and POSIX drivers: a full backup, an incremental that
 * reads only what the RBD diff names, and a restore of the incremental
 * from the files into a new volume, checked against its snapshot.
 */
async function showBackupsIntoFiles(demo: {
  sourceCluster: Cluster; pool: Pool; poolName: string; volume: Image; volumeId: string; made: string[];
  row: (step: string, bytes: bigint, ms: number, path: string, check: string) => void; mib: (bytes: bigint) => string;
}): Promise<void> {
  const { poolName, volume, volumeId, row, mib } = demo;
  const root = await mkdtemp(join(tmpdir(), 'rbd-backup-demo-files-'));
  try {
    const files = new BackupEngine({ source: demo.sourceCluster, backupTo: 'files', backupPath: root });
    const full = await files.backup({ pool: poolName, volumeId, displayName: 'demo into files' });
    row('backup into files (full)', full.stats.bytesRead, full.stats.elapsedMs,
      `${full.files!.objects.length} object(s), ${mib(full.files!.bytesStored)} stored, Cinder's NFS/POSIX layout`, 'by the restore below');
    // 1% of the volume, in 4 KiB pieces at random places.
    for (let changed = 0; changed < VOLUME_SIZE / 100; changed += 4096) {
      await volume.write(randomBytes(4096), Math.floor(Math.random() * (VOLUME_SIZE / 4096)) * 4096);
    }
    const incremental = await files.backup({ pool: poolName, volumeId, displayName: 'demo into files, incremental' });
    const incrementalSha = await imageSha256(volume, incremental.snapshot);
    row('backup into files (incr.)', incremental.stats.bytesRead, incremental.stats.elapsedMs,
      `${incremental.mode}: the RBD diff's blocks read, ${incremental.files!.objects.length} objects, ${mib(incremental.files!.bytesStored)} stored`,
      'by the restore below');
    const restored = await files.restore({ backup: incremental.record, target: { volume: { pool: poolName } } });
    demo.made.push(`volume-${restored.targetVolumeId}`);
    const restoredSha = await withImage(demo.pool, `volume-${restored.targetVolumeId}`, (image) => imageSha256(image));
    verify('restore of the incremental backup into files', restoredSha, incrementalSha);
    row('restore from files -> new volume', restored.bytesRead, restored.elapsedMs, `${restored.path}: full + incremental objects, md5s checked`,
      'sha256 equal');
    // Gone at once: the throwaway source cluster's memory holds a few volumes at most.
    await demo.pool.removeImage(`volume-${restored.targetVolumeId}`);
    const removed = await files.delete(full.record, { withDependents: true, sourcePool: poolName });
    say(`deleted the backups into files (${removed.removedBackups!.length}: the full one with the incremental that restores on top of it)`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** The bytes done a transfer's progress record on the chain image says, once that is half its length (or the child ended first). */
async function waitForProgressRecord(backupCluster: Cluster, chainImage: string, exited: Promise<unknown>): Promise<bigint> {
  let ended = false;
  void exited.then(() => { ended = true; });
  const backups = await backupCluster.pool('backups');
  try {
    while (!ended) {
      const record = await withImage(backups, chainImage, readResumeRecord);
      if (record?.done !== undefined && record.length !== undefined && BigInt(record.done) * 2n >= BigInt(record.length)) return BigInt(record.done);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return 0n;
  } finally {
    await backups.close();
  }
}

async function withImage<T>(pool: Pool, name: string, use: (image: Image) => Promise<T>): Promise<T> {
  const image = await pool.openImage(name, { readOnly: true });
  try {
    return await use(image);
  } finally {
    await image.close();
  }
}

function verify(what: string, actual: string, expected: string): void {
  if (actual !== expected) throw new Error(`${what}: checksum ${actual} differs from the source snapshot's ${expected}`);
}

main().catch((error: unknown) => {
  process.stderr.write(`demo failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
