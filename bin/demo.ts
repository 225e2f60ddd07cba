#!/usr/bin/env node
/**
 * The main job (README's first command): a backup and restore cycle with
 * Cinder's semantics, verified by checksums. Uses the clusters named by
 * RBD_BACKUP_CONF (source) and RBD_BACKUP_BACKUP_CONF (backups; default the
 * source) when set; otherwise starts two throwaway clusters, to show
 * backups crossing clusters, and stops them afterwards.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { AlreadyExistsError, BackupEngine, CancelledError, Cluster, exportRaw, InvalidArgumentError, type Image, type Pool } from '../lib/index.js';
import { ThrowawayCluster } from '../lib/dev/throwaway-cluster.js';

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

async function main(): Promise<void> {
  const started: ThrowawayCluster[] = [];
  const stopAll = async (): Promise<void> => {
    for (const cluster of started.splice(0)) await cluster.stop().catch(() => undefined);
  };
  process.once('SIGINT', () => { void stopAll().then(() => process.exit(130)); });
  try {
    let source: Cluster;
    let backups: Cluster;
    if (process.env.RBD_BACKUP_CONF) {
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
      source = await Cluster.connect({ conf: a.info.conf, keyring: a.info.keyring, ...timeouts });
      backups = await Cluster.connect({ conf: b.info.conf, keyring: b.info.keyring, ...timeouts });
    }
    try {
      await cycle(source, backups, process.env.RBD_BACKUP_POOL ?? 'rbd');
    } finally {
      if (backups !== source) await backups.close();
      await source.close();
    }
  } finally {
    await stopAll();
  }
}

async function cycle(sourceCluster: Cluster, backupCluster: Cluster, poolName: string): Promise<void> {
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
