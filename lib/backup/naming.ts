/**
 * The names Cinder's Ceph backup driver gives things, which existing backup
 * pools depend on, and the id checks that keep any input from addressing
 * another image.
 */
import { invalidArgument } from '../ceph/errors.js';

/** Volume and backup ids: what Cinder uses (UUIDs) and the snapshot pattern can carry. */
const ID = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;

/** `backup.<backup_id>.snap.<unix time with fraction>` */
export const BACKUP_SNAPSHOT = /^backup\.([a-z0-9-]+?)\.snap\.(.+)$/;

export function checkId(kind: 'volume' | 'backup', id: unknown, operation: string): string {
  // A backup id 'base' would name its chain image like the pre-Train one.
  if (typeof id !== 'string' || !ID.test(id) || (kind === 'backup' && id === 'base')) {
    throw invalidArgument(operation, `${kind} ${String(id)}`,
      `${kind} id must be 1-64 characters of a-z, 0-9 and '-' (not starting or ending with '-'${kind === 'backup' ? ", not 'base'" : ''}), got ${JSON.stringify(id)}`);
  }
  return id;
}

export function volumeImageName(volumeId: string): string {
  return `volume-${volumeId}`;
}

/**
 * The pre-Train (2019) chain image: one per volume, one snapshot per backup.
 * Cinder still writes it for backups of a volume snapshot.
 */
export function baseImageName(volumeId: string): string {
  return `volume-${volumeId}.backup.base`;
}

/**
 * The image a full backup creates: since Train a chain image that the
 * incrementals after it continue (one snapshot per backup), before that a
 * legacy full copy without snapshots.
 */
export function backupImageName(volumeId: string, backupId: string): string {
  return `volume-${volumeId}.backup.${backupId}`;
}

export function metaObjectName(backupId: string): string {
  return `backup.${backupId}.meta`;
}

/** Cinder writes Python's str(time.time()): seconds with a fraction. */
export function backupSnapshotName(backupId: string, now: Date = new Date()): string {
  const seconds = now.getTime() / 1000;
  const text = Number.isInteger(seconds) ? `${seconds}.0` : String(seconds);
  return `backup.${backupId}.snap.${text}`;
}

export interface ParsedSnapshotName {
  backupId: string;
  /** The time part as written. */
  stamp: string;
  /** The time part as a number of seconds, NaN if it is not one. */
  seconds: number;
}

export function parseBackupSnapshotName(name: string): ParsedSnapshotName | undefined {
  const match = BACKUP_SNAPSHOT.exec(name);
  if (!match) return undefined;
  return { backupId: match[1], stamp: match[2], seconds: Number(match[2]) };
}

/**
 * The name a full backup's new chain image has until the backup is
 * complete; renamed to backupImageName then. No reader takes an image of
 * this name for a backup, whatever a killed run left in it.
 */
export function unfinishedImageName(volumeId: string, backupId: string): string {
  return `${backupImageName(volumeId, backupId)}.unfinished`;
}

/** The backup id an unfinished chain image name of this volume carries, if it is one. */
export function parseUnfinishedImageName(volumeId: string, imageName: string): string | undefined {
  const match = /^(.+)\.unfinished$/.exec(imageName);
  const suffix = match ? parseBackupImageName(volumeId, match[1]) : undefined;
  return suffix === 'base' ? undefined : suffix;
}

/**
 * What follows `volume-<volumeId>.backup.` in a backup image name of this
 * volume ('base' or a full backup's id); undefined for any other name.
 */
export function parseBackupImageName(volumeId: string, imageName: string): string | undefined {
  const prefix = `volume-${volumeId}.backup.`;
  if (!imageName.startsWith(prefix)) return undefined;
  const rest = imageName.slice(prefix.length);
  return rest === 'base' || ID.test(rest) ? rest : undefined;
}

/** The volume id a backup image name (`volume-<id>.backup.<suffix>`, unfinished or not) carries, if it is one. */
export function volumeOfBackupImage(imageName: string): string | undefined {
  const match = /^volume-(.+?)\.backup\.([^.]+)(\.unfinished)?$/.exec(imageName);
  if (!match || !ID.test(match[1])) return undefined;
  const volumeId = match[1];
  const known = parseBackupImageName(volumeId, imageName) ?? parseUnfinishedImageName(volumeId, imageName);
  return known === undefined ? undefined : volumeId;
}

/** The volume id of a volume image name (`volume-<id>`), if it is one. */
export function volumeOfVolumeImage(imageName: string): string | undefined {
  const match = /^volume-(.+)$/.exec(imageName);
  return match && ID.test(match[1]) ? match[1] : undefined;
}

/**
 * A backup image name taken from input (a record's service_metadata): only
 * this volume's backup images may be addressed, never another image.
 */
export function checkBackupImageName(volumeId: string, imageName: unknown, operation: string): string {
  if (typeof imageName !== 'string' || parseBackupImageName(volumeId, imageName) === undefined) {
    throw invalidArgument(operation, `volume ${volumeId}`,
      `the record's service_metadata must name a backup image of this volume (volume-${volumeId}.backup.<base or backup id>), got ${JSON.stringify(imageName)}`);
  }
  return imageName;
}
