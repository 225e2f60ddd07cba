/**
 * Every name the backup layer makes or parses: those Cinder's Ceph backup
 * driver gives things, which existing backup pools depend on, those of
 * named images (any RBD image, not only a Cinder volume), and the checks
 * that keep any input from addressing another image.
 *
 * What is backed up is a subject: a Cinder volume (its id; its image is
 * volume-<id> in whatever pool the caller names, as in Cinder) or a named
 * image (pool, namespace, name). Each subject has a key that begins every
 * name derived from it: `<key>.backup.<backup id>` (chain images and legacy
 * copies), `<key>.backup.base`, `<key>.backup.<backup id>.unfinished`,
 * `<key>.backup.lock` and, beside a restore target, `<key>.restore.lock`.
 * A volume's key is `volume-<id>`, Cinder's. A named image's is
 * `image.<pool[/namespace]>.<name>` with both parts percent-encoded
 * (every byte of their UTF-8 outside [A-Za-z0-9_-] as %XX, upper-case hex):
 * it never starts with `volume-`, its parts hold no '.', so the separators
 * are unambiguous and no image name (dots, '%', `a.backup.b`, unicode) can
 * read as another subject's, and two pools' images of one name never share
 * a chain.
 */
import { invalidArgument } from '../ceph/errors.js';
import { checkDate, checkId, checkName, CINDER_ID as ID, describeValue } from '../ceph/validate.js';

export { checkId };

/** `backup.<backup_id>.snap.<unix time with fraction>` */
export const BACKUP_SNAPSHOT = /^backup\.([a-z0-9-]+?)\.snap\.(.+)$/;
/**
 * A backup id as the snapshot pattern carries one: what objects named
 * after a backup found in a pool take (looser than a Cinder id, which new
 * backups and records must be: checkId).
 */
const ID_IN_SNAPSHOT = /^[a-z0-9-]+$/;


/** The longest name RBD and RADOS take here (lib/ceph/validate.ts checks every name against it). */
const MAX_NAME_BYTES = 255;
/** What the longest derived name adds to a key: `.backup.<64-character backup id>.unfinished`. */
const LONGEST_SUFFIX_BYTES = '.backup.'.length + 64 + '.unfinished'.length;

export interface VolumeSubject {
  readonly kind: 'volume';
  readonly volumeId: string;
  /** `volume-<id>`: begins every name derived from the volume. */
  readonly key: string;
}

export interface ImageSubject {
  readonly kind: 'image';
  /** The image's pool and namespace ('' for the default one). */
  readonly pool: string;
  readonly namespace: string;
  /** The image's name in it. */
  readonly image: string;
  /** `image.<pool[/namespace]>.<name>`, percent-encoded: begins every name derived from the image. */
  readonly key: string;
}

/** What is backed up: a Cinder volume or a named RBD image. */
export type Subject = VolumeSubject | ImageSubject;

/** An RBD image as callers name it. */
export interface NamedImage {
  pool: string;
  /** Default: the pool's default namespace. */
  namespace?: string;
  image: string;
}

/** How callers name a subject: a Cinder volume id, a named image, or a subject (checked again). */
export type SubjectInput = string | NamedImage | Subject;

/** A Cinder volume id when it is one (`volume-<id>` with a valid id), else undefined. */
export function volumeOfVolumeImage(imageName: string): string | undefined {
  const match = /^volume-(.+)$/.exec(imageName);
  return match && ID.test(match[1]) ? match[1] : undefined;
}

export function volumeSubject(volumeId: unknown, operation: string): VolumeSubject {
  const id = checkId('volume', volumeId, operation);
  return { kind: 'volume', volumeId: id, key: `volume-${id}` };
}

const PLAIN = /^[A-Za-z0-9_-]$/;

/** Every byte of text's UTF-8 outside [A-Za-z0-9_-] as %XX: the result holds no '.', '/' or '@'. */
export function encodeNamePart(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const char = String.fromCharCode(byte);
    out += byte < 0x80 && PLAIN.test(char) ? char : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The text an encoded part stands for; undefined unless the part is exactly what encodeNamePart makes of it. */
export function decodeNamePart(part: string): string | undefined {
  if (!/^(?:[A-Za-z0-9_-]|%[0-9A-F]{2})*$/.test(part)) return undefined;
  const bytes = Buffer.from(part.replace(/%([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))), 'latin1');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
  // Canonical only: `%2D` for '-' would be a second name for the same image.
  return encodeNamePart(text) === part ? text : undefined;
}

function imageKey(pool: string, namespace: string, image: string): string {
  return `image.${encodeNamePart(namespace ? `${pool}/${namespace}` : pool)}.${encodeNamePart(image)}`;
}

/**
 * A named image as a subject, checked: names RBD takes, not a Cinder volume
 * (`volume-<id>` is backed up by its volume id, so that one image never has
 * two chains whose source snapshots each would take for the other's
 * leftovers), and short enough that every name derived from it fits.
 */
export function imageSubject(input: { pool: unknown; namespace?: unknown; image: unknown }, operation: string): ImageSubject {
  const resource = `image ${String(input.pool)}/${String(input.image)}`;
  const pool = checkName('pool', input.pool, operation, resource);
  const namespace = checkName('namespace', input.namespace ?? '', operation, resource, { allowEmpty: true });
  const image = checkName('image', input.image, operation, resource);
  // A lone surrogate has no UTF-8: it would reach Ceph as U+FFFD, another name.
  if (Buffer.from(image, 'utf8').toString('utf8') !== image) {
    throw invalidArgument(operation, resource, `image name ${JSON.stringify(image)} is not valid unicode`);
  }
  const volumeId = volumeOfVolumeImage(image);
  if (volumeId !== undefined) {
    throw invalidArgument(operation, resource,
      `image ${image} is a Cinder volume's; back it up by its volume id (volumeId '${volumeId}', --volume ${volumeId}), ` +
      `and restore into it as a volume (target { volume: { pool, id: '${volumeId}' } }, --target-volume ${volumeId})`);
  }
  const key = imageKey(pool, namespace, image);
  if (Buffer.byteLength(key) + LONGEST_SUFFIX_BYTES > MAX_NAME_BYTES) {
    throw invalidArgument(operation, resource,
      `the backup images of this image would be named ${key}.backup.<backup id>, longer than RBD's ${MAX_NAME_BYTES} bytes ` +
      `(the key is ${Buffer.byteLength(key)} bytes, at most ${MAX_NAME_BYTES - LONGEST_SUFFIX_BYTES} fit; ` +
      'every byte outside A-Z, a-z, 0-9, _ and - takes three); rename the image or back it up under a shorter name');
  }
  return { kind: 'image', pool, namespace, image, key };
}

/** A subject from what a caller gave: a volume id, a named image, or a subject (checked again). */
export function resolveSubject(input: SubjectInput, operation: string): Subject {
  if (typeof input === 'string') return volumeSubject(input, operation);
  if (!input || typeof input !== 'object') {
    throw invalidArgument(operation, String(input), 'give a volume id or { pool, namespace?, image }');
  }
  if ('kind' in input && input.kind === 'volume') return volumeSubject(input.volumeId, operation);
  return imageSubject(input as { pool: unknown; namespace?: unknown; image: unknown }, operation);
}

/** How errors and logs name a subject: 'volume <id>' or 'image <pool[/namespace]>/<name>'. */
export function describeSubject(subject: Subject): string {
  return subject.kind === 'volume' ? `volume ${subject.volumeId}` : `image ${imageSpec(subject)}`;
}

/** pool[/namespace]/name of a named image. */
export function imageSpec(subject: ImageSubject): string {
  return `${subject.namespace ? `${subject.pool}/${subject.namespace}` : subject.pool}/${subject.image}`;
}

/** The subject's own image in its pool: volume-<id>, or the named image. */
export function sourceImageName(subject: Subject): string {
  return subject.kind === 'volume' ? volumeImageName(subject.volumeId) : subject.image;
}

export function volumeImageName(volumeId: string): string {
  return `volume-${checkId('volume', volumeId, 'volumeImageName')}`;
}

/** The subject of a key, when it is exactly one's. */
function subjectOfKey(key: string): Subject | undefined {
  const volumeId = volumeOfVolumeImage(key);
  if (volumeId !== undefined) return { kind: 'volume', volumeId, key };
  const parts = key.split('.');
  if (parts.length !== 3 || parts[0] !== 'image') return undefined;
  const spec = decodeNamePart(parts[1]);
  const image = decodeNamePart(parts[2]);
  if (spec === undefined || image === undefined) return undefined;
  const slash = spec.indexOf('/');
  try {
    const subject = imageSubject({
      pool: slash < 0 ? spec : spec.slice(0, slash), namespace: slash < 0 ? '' : spec.slice(slash + 1), image,
    }, 'parse');
    return subject.key === key ? subject : undefined;
  } catch {
    // Not a name this library makes (a pool name Ceph refuses, a volume's image name): no subject's.
    return undefined;
  }
}

/** A subject given as itself or, as the Cinder names always were, by volume id. */
function asSubject(of: Subject | string): Subject {
  return typeof of === 'string' ? volumeSubject(of, 'name') : of;
}

/**
 * The pre-Train (2019) chain image: one per volume, one snapshot per backup.
 * Cinder still writes it for backups of a volume snapshot.
 */
export function baseImageName(of: SubjectInput): string {
  return `${resolveSubject(of, 'baseImageName').key}.backup.base`;
}

/**
 * The image a full backup creates: since Train a chain image that the
 * incrementals after it continue (one snapshot per backup), before that a
 * legacy full copy without snapshots.
 */
export function backupImageName(of: SubjectInput, backupId: string): string {
  const operation = 'backupImageName';
  return `${resolveSubject(of, operation).key}.backup.${checkId('backup', backupId, operation)}`;
}

/** A backup id that names an object beside the backup: any a backup snapshot in a pool can carry. */
function objectNameId(backupId: unknown, operation: string): string {
  if (typeof backupId !== 'string' || !ID_IN_SNAPSHOT.test(backupId)) {
    throw invalidArgument(operation, `backup ${String(backupId)}`, `backup id must be a-z, 0-9 and '-' (as backup snapshot names carry it), got ${describeValue(backupId)}`);
  }
  return backupId;
}

export function metaObjectName(backupId: string): string {
  return `backup.${objectNameId(backupId, 'metaObjectName')}.meta`;
}

/** The object holding a backup's block digests (lib/backup/digests.ts), beside its .meta object. */
export function digestsObjectName(backupId: string): string {
  return `backup.${objectNameId(backupId, 'digestsObjectName')}.digests`;
}

/** The object whose RADOS lock keeps two operations on one subject's backups apart, in the backup pool. */
export function lockObjectName(of: Subject | string): string {
  return `${asSubject(of).key}.backup.lock`;
}

/** The lock of backups into files of the subject, beside its image in its pool. */
export function fileBackupLockObjectName(of: Subject | string): string {
  return `${asSubject(of).key}.files-backup.lock`;
}

/** The lock a restore into the subject's image holds, beside the image in its pool. */
export function restoreLockObjectName(of: Subject | string): string {
  return `${asSubject(of).key}.restore.lock`;
}

/** Cinder writes Python's str(time.time()): seconds with a fraction. */
export function backupSnapshotName(backupId: string, now: Date = new Date()): string {
  const operation = 'backupSnapshotName';
  checkId('backup', backupId, operation);
  const seconds = checkDate('now', now, operation, `backup ${backupId}`).getTime() / 1000;
  const text = Number.isInteger(seconds) ? `${seconds}.0` : String(seconds);
  return `backup.${backupId}.snap.${text}`;
}

/**
 * A backup into files' snapshot on the source, where its incremental
 * successor's diff starts: named apart from the backup pool's snapshots
 * (whose leftovers and trimming must not take it). Seconds as above.
 */
export const FILE_BACKUP_SNAPSHOT = /^backup-files\.([a-z0-9-]+?)\.snap\.(.+)$/;

export function fileBackupSnapshotName(backupId: string, now: Date = new Date()): string {
  return backupSnapshotName(backupId, now).replace(/^backup\./, 'backup-files.');
}

export function parseFileBackupSnapshotName(name: string): ParsedSnapshotName | undefined {
  return parseSnapshotName(FILE_BACKUP_SNAPSHOT, name);
}

export interface ParsedSnapshotName {
  backupId: string;
  /** The time part as written. */
  stamp: string;
  /** The time part as a number of seconds, NaN if it is not one. */
  seconds: number;
}

/** A snapshot name of pattern (backup id, then time stamp), parsed. */
function parseSnapshotName(pattern: RegExp, name: string): ParsedSnapshotName | undefined {
  const match = pattern.exec(name);
  if (!match) return undefined;
  return { backupId: match[1]!, stamp: match[2]!, seconds: Number(match[2]) };
}

export function parseBackupSnapshotName(name: string): ParsedSnapshotName | undefined {
  if (typeof name !== 'string') {
    throw invalidArgument('parseBackupSnapshotName', 'name', `a snapshot name must be a string, got ${describeValue(name)}`);
  }
  return parseSnapshotName(BACKUP_SNAPSHOT, name);
}

/**
 * The name a full backup's new chain image has until the backup is
 * complete; renamed to backupImageName then. No reader takes an image of
 * this name for a backup, whatever a killed run left in it.
 */
export function unfinishedImageName(of: Subject | string, backupId: string): string {
  return `${backupImageName(of, backupId)}.unfinished`;
}

/** The backup id an unfinished chain image name of this subject carries, if it is one. */
export function parseUnfinishedImageName(of: Subject | string, imageName: string): string | undefined {
  const match = /^(.+)\.unfinished$/.exec(imageName);
  const suffix = match ? parseBackupImageName(of, match[1]) : undefined;
  return suffix === 'base' ? undefined : suffix;
}

/**
 * What follows `<key>.backup.` in a backup image name of this subject
 * ('base' or a full backup's id); undefined for any other name.
 */
export function parseBackupImageName(of: Subject | string, imageName: string): string | undefined {
  const prefix = `${asSubject(of).key}.backup.`;
  if (!imageName.startsWith(prefix)) return undefined;
  const rest = imageName.slice(prefix.length);
  return rest === 'base' || ID.test(rest) ? rest : undefined;
}

/** The subject a backup image name (`<key>.backup.<suffix>`, unfinished or not) belongs to, if any. */
export function subjectOfBackupImage(imageName: string): Subject | undefined {
  // Each '.backup.' is tried as the key's end (a pool may be called
  // 'backup'). A key has no dot (a volume's) or exactly two (an image's),
  // so at most one split is a key.
  for (let at = imageName.indexOf('.backup.'); at > 0; at = imageName.indexOf('.backup.', at + 1)) {
    const subject = subjectOfKey(imageName.slice(0, at));
    if (subject === undefined) continue;
    const known = parseBackupImageName(subject, imageName) ?? parseUnfinishedImageName(subject, imageName);
    if (known !== undefined) return subject;
  }
  return undefined;
}

/**
 * A backup image name taken from input (a record's service_metadata): only
 * this subject's backup images may be addressed, never another image.
 */
export function checkBackupImageName(of: Subject | string, imageName: unknown, operation: string): string {
  const subject = asSubject(of);
  if (typeof imageName !== 'string' || parseBackupImageName(subject, imageName) === undefined) {
    const what = subject.kind === 'volume' ? 'volume' : 'image';
    const ids = subject.kind === 'volume' ? '<base or backup id>' : '<backup id>';
    throw invalidArgument(operation, describeSubject(subject),
      `the record's service_metadata must name a backup image of this ${what} (${subject.key}.backup.${ids}), got ${JSON.stringify(imageName)}`);
  }
  return imageName;
}
