/**
 * Volumes for the BackupEngine tests, named as Cinder names them
 * (volume-<id> in pool rbd of cluster a), with random data, and everything
 * backups of them leave behind (every volume-<id>.backup.* image: chain
 * images, `.backup.base`, legacy copies; the lock object) removed when the
 * test that made them ends.
 */
import { after, before } from 'node:test';
import { randomBytes, randomInt } from 'node:crypto';
import {
  BackupEngine, NotFoundError, type Cluster, type FeatureName, type Image, type Pool,
} from '../../lib/index.js';
import { lockObjectName } from '../../lib/backup/lock.js';
import { connect, rbdExportSha256, uniqueName } from './clusters.js';
import { removeImageFully } from './scratch.js';

const MiB = 1024 * 1024;

export const POOL = 'rbd';
export const BACKUP_POOL = 'backups';
export const VOLUME_FEATURES: FeatureName[] = ['layering', 'exclusive-lock', 'object-map', 'fast-diff'];

/**
 * removeImageFully, retrying EBUSY: an image a backup or restore has just
 * used can still be held for a moment.
 */
export function removeImagePatiently(pool: Pool, name: string): Promise<void> {
  return removeImageFully(pool, name, { busyRetries: 10 });
}

/** Removes a RADOS object; a missing one is fine. */
export async function removeObjectQuietly(pool: Pool, name: string): Promise<void> {
  await pool.removeObject(name).catch((error: unknown) => {
    if (!(error instanceof NotFoundError)) throw error;
  });
}

/**
 * count random [offset, length] ranges of up to maxLength bytes in the first
 * size bytes, some across object boundaries.
 */
export function randomRanges(size: number, count: number, maxLength = 3 * MiB): Array<[number, number]> {
  return Array.from({ length: count }, () => {
    const length = randomInt(1, maxLength);
    return [randomInt(0, size - length), length] as [number, number];
  });
}

/** The snapshot names of an image; undefined when there is no such image. */
export async function snapshotsOf(pool: Pool, name: string): Promise<string[] | undefined> {
  if (!(await pool.imageExists(name))) return undefined;
  const image = await pool.openImage(name, { readOnly: true });
  try {
    return (await image.listSnapshots()).map((s) => s.name);
  } finally {
    await image.close();
  }
}

/**
 * The backup images of a volume in a backup pool (chain images, `.backup.base`,
 * legacy copies, unfinished ones), sorted by name.
 */
export async function backupImagesOf(pool: Pool, volumeId: string): Promise<string[]> {
  return (await pool.listImages()).filter((name) => name.startsWith(`volume-${volumeId}.backup.`)).sort();
}

/** Removes a test's volume and everything of it in the backup pool (images, lock object). */
export async function removeVolumeAndBackups(volumes: Pool, backups: Pool, volumeId: string): Promise<void> {
  await removeImageFully(volumes, `volume-${volumeId}`);
  for (const name of await backupImagesOf(backups, volumeId)) await removeImageFully(backups, name);
  await removeObjectQuietly(backups, lockObjectName(volumeId));
}

/** sha256 of `rbd export` of a volume's snapshot. */
export function snapshotSha(volumeId: string, snapshot: string): Promise<string> {
  return rbdExportSha256('a', `${POOL}/volume-${volumeId}@${snapshot}`);
}

/** sha256 of `rbd export` of a volume. */
export function volumeSha(volumeId: string): Promise<string> {
  return rbdExportSha256('a', `${POOL}/volume-${volumeId}`);
}

/**
 * Where a fixture registers its removal: a test's TestContext, or whatever
 * else runs the steps when its work ends (the fault suite's runs).
 */
export interface Teardown {
  after(step: () => Promise<void>): void;
}

/** Volumes in `volumes`, whose backups may land in any of `backupPools`. */
export class VolumeFixtures {
  readonly #volumes: Pool;
  readonly #backupPools: readonly Pool[];

  constructor(volumes: Pool, backupPools: readonly Pool[]) {
    this.#volumes = volumes;
    this.#backupPools = backupPools;
  }

  /** A new volume-<id>, removed with all its backups when the test ends. */
  async newVolume(t: Teardown, size: number, features = VOLUME_FEATURES): Promise<string> {
    const id = uniqueName('v');
    t.after(() => this.#removeVolumeAndBackups(id));
    await this.#volumes.createImage(`volume-${id}`, size, { features });
    return id;
  }

  /** A volume id for a restore target, removed when the test ends. */
  targetId(t: Teardown): string {
    const id = uniqueName('t');
    t.after(() => removeImagePatiently(this.#volumes, `volume-${id}`));
    return id;
  }

  async withVolume<T>(volumeId: string, use: (image: Image) => Promise<T>): Promise<T> {
    const image = await this.#volumes.openImage(`volume-${volumeId}`);
    try {
      return await use(image);
    } finally {
      await image.close();
    }
  }

  /** Writes random bytes at each [offset, length]. */
  async writeRandom(volumeId: string, ranges: Array<[number, number]>): Promise<void> {
    await this.withVolume(volumeId, async (image) => {
      for (const [offset, length] of ranges) await image.write(randomBytes(length), offset);
    });
  }

  /** Everything a volume id may leave behind: the volume, its backup images of every layout, its lock object. */
  async #removeVolumeAndBackups(volumeId: string): Promise<void> {
    await removeImagePatiently(this.#volumes, `volume-${volumeId}`);
    for (const pool of this.#backupPools) {
      for (const name of await backupImagesOf(pool, volumeId)) await removeImagePatiently(pool, name);
      await removeObjectQuietly(pool, lockObjectName(volumeId));
    }
  }
}

/** What the BackupEngine test files work with: cluster a, its two pools, an engine on it, the volume fixtures. */
export interface BackupTestbed {
  cluster: Cluster;
  volumes: Pool;
  backups: Pool;
  /** An engine with the default configuration (maxSourceSnapshots 2). */
  engine: BackupEngine;
  /**
   * An engine keeping every source snapshot (maxSourceSnapshots 0): for
   * tests that compare restores of older backups with their source
   * snapshots, or count them.
   */
  keepAll: BackupEngine;
  fx: VolumeFixtures;
}

/**
 * Registers the test file's before and after hooks: the before hook
 * connects, opens the pools and hands the testbed to `ready`; the after
 * hook closes whatever was opened.
 */
export function useBackupTestbed(ready: (testbed: BackupTestbed) => void): void {
  let cluster: Cluster | undefined;
  let volumes: Pool | undefined;
  let backups: Pool | undefined;
  before(async () => {
    cluster = await connect('a');
    volumes = await cluster.pool(POOL);
    backups = await cluster.pool(BACKUP_POOL);
    ready({
      cluster, volumes, backups,
      engine: new BackupEngine({ source: cluster }),
      keepAll: new BackupEngine({ source: cluster, maxSourceSnapshots: 0 }),
      fx: new VolumeFixtures(volumes, [backups]),
    });
  });
  after(async () => {
    await backups?.close();
    await volumes?.close();
    await cluster?.close();
  });
}
