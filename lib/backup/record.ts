/**
 * Backup records in the shape Cinder exports and imports them: base64 of a
 * JSON object with Cinder's field names. Records exported by Cinder itself
 * import here, and ours import into Cinder.
 */
import { invalidArgument } from '../ceph/errors.js';
import { checkOptions } from '../ceph/validate.js';
import {
  checkBackupImageName, checkId, imageSubject, resolveSubject, subjectOfBackupImage, volumeSubject, type Subject,
} from './naming.js';

export const CEPH_BACKUP_SERVICE = 'cinder.backup.drivers.ceph.CephBackupDriver';

/** What records of backups into files name (Cinder's backup_driver setting for a file system, as a record stores it). */
export const POSIX_BACKUP_SERVICE = 'cinder.backup.drivers.posix.PosixBackupDriver';

/** Cinder's NFS and POSIX drivers (by module or class), whose backups are files in its chunked layout (lib/files). */
const FILE_LAYOUT_SERVICE = /^cinder\.backup\.drivers\.(nfs|posix)(\.(NFSBackupDriver|PosixBackupDriver))?$/;

/** Whether a record is of a backup in Cinder's chunked file layout: restored from a backup root, not a pool. */
export function isFileLayoutRecord(record: unknown): boolean {
  const service = (record as { service?: unknown } | null)?.service;
  return typeof service === 'string' && FILE_LAYOUT_SERVICE.test(service);
}

/** What Cinder's import requires (cinder/backup/api.py import_record). */
export const REQUIRED_IMPORT_FIELDS = [
  'display_name', 'display_description', 'container', 'size', 'service_metadata', 'object_count', 'id',
] as const;

/**
 * A backup record with Cinder's field names. Fields of a Cinder record that
 * are not named here are kept as they came (and exported again), but not
 * typed: a misspelt field (`record.parentId`) is a compile error.
 */
export interface BackupRecord {
  id: string;
  /** The Cinder volume backed up; '' for a named image's backup (see source_image). */
  volume_id: string;
  /** The backup pool. */
  container: string;
  service: string;
  /** JSON text, e.g. '{"base": "volume-<id>.backup.base"}'. */
  service_metadata: string | null;
  /** Volume size in GiB, as Cinder counts it. */
  size: number;
  object_count: number;
  parent_id: string | null;
  status: string;
  display_name: string | null;
  display_description: string | null;
  created_at: string;
  updated_at: string | null;
  data_timestamp: string;
  availability_zone: string | null;
  snapshot_id: string | null;
  num_dependent_backups: number;
  /**
   * Not Cinder's: the named image backed up (a backup of a Cinder volume
   * has none). Its chain image's name carries the same, so a record that
   * lost this field (a round trip through Cinder) still finds its backup.
   */
  source_image?: SourceImageField;
}

/** A record's source_image. */
export interface SourceImageField {
  pool: string;
  /** '' for the pool's default namespace. */
  namespace: string;
  name: string;
}

/** Cinder's ISO 8601 form (oslo isotime): seconds, 'Z'. */
export function isoTime(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export interface RecordLocation {
  backupId: string;
  /** The volume or named image it is a backup of. */
  subject: Subject;
  /** The chain image its service_metadata names, checked to be the subject's. */
  namedImage: string | undefined;
  /** The backup pool; undefined when the record leaves it to the engine's. */
  container: string | undefined;
  /** Taken from a volume snapshot (Cinder copies those into `.backup.base`). */
  fromVolumeSnapshot: boolean;
}

const absent = (value: unknown): boolean => value === undefined || value === null || value === '';

/**
 * What a record addresses images with, every part checked: no record,
 * whatever it holds, may address an image of another subject or outside
 * the backup image names. The subject is its volume_id or its
 * source_image (never both); without either, the one its chain image name
 * carries.
 */
export function recordLocation(record: unknown, operation: string): RecordLocation {
  if (!record || typeof record !== 'object') throw invalidArgument(operation, 'backup', 'a backup record is required');
  const fields = record as Partial<BackupRecord>;
  const backupId = checkId('backup', fields.id, operation);
  const namedImage = recordBaseImage(fields);
  let subject: Subject;
  if (!absent(fields.volume_id)) {
    if (!absent(fields.source_image)) {
      throw invalidArgument(operation, `backup ${backupId}`,
        'the record names both a volume_id and a source_image; a backup is of a Cinder volume or of a named image, not both');
    }
    subject = volumeSubject(fields.volume_id, operation);
  } else if (!absent(fields.source_image)) {
    const source = fields.source_image as Partial<SourceImageField>;
    if (typeof source !== 'object') {
      throw invalidArgument(operation, `backup ${backupId}`, 'source_image must be { "pool", "namespace", "name" }');
    }
    subject = imageSubject({ pool: source.pool, namespace: source.namespace, image: source.name }, operation);
  } else {
    const carried = namedImage === undefined ? undefined : subjectOfBackupImage(namedImage);
    if (carried === undefined) {
      throw invalidArgument(operation, `backup ${backupId}`,
        'the record has no volume_id, and no service_metadata base image name that carries one (nor a source_image)');
    }
    subject = carried;
  }
  if (namedImage !== undefined) checkBackupImageName(subject, namedImage, operation);
  if (fields.container !== undefined && fields.container !== null && typeof fields.container !== 'string') {
    throw invalidArgument(operation, `backup ${backupId}`, 'container must be a pool name');
  }
  return {
    backupId, subject, namedImage,
    container: fields.container ? fields.container : undefined,
    fromVolumeSnapshot: typeof fields.snapshot_id === 'string' && fields.snapshot_id !== '',
  };
}

/** The base image a record names in its service_metadata, if any. */
export function recordBaseImage(record: { service_metadata?: unknown }): string | undefined {
  if (typeof record.service_metadata !== 'string' || record.service_metadata === '') return undefined;
  try {
    const metadata: unknown = JSON.parse(record.service_metadata);
    if (metadata && typeof metadata === 'object' && typeof (metadata as { base?: unknown }).base === 'string') {
      return (metadata as { base: string }).base;
    }
  } catch {
    // Not JSON: Cinder wrote other things there in old releases; no base then.
  }
  return undefined;
}

const GiB = 1n << 30n;

/** A record for a backup found in or made into a backup pool. */
export function newRecord(fields: {
  id: string;
  /** What it is a backup of (a string: a Cinder volume id). */
  subject: Subject | string;
  container: string;
  /** The diff-format base image holding it; undefined for a legacy image. */
  baseImage: string | undefined;
  sizeBytes: bigint;
  parentId: string | null;
  createdAt: Date;
  /** When the record itself was last written; null when rebuilt from the pool. */
  updatedAt?: Date;
  displayName?: string;
  displayDescription?: string;
  /** A backup into files: Cinder's POSIX driver's service, its object prefix and object count. */
  files?: { prefix: string; objectCount: number };
}): BackupRecord {
  const subject = resolveSubject(fields.subject, 'newRecord');
  return {
    id: fields.id,
    volume_id: subject.kind === 'volume' ? subject.volumeId : '',
    container: fields.container,
    service: fields.files === undefined ? CEPH_BACKUP_SERVICE : POSIX_BACKUP_SERVICE,
    service_metadata: fields.files?.prefix ?? (fields.baseImage === undefined ? null : JSON.stringify({ base: fields.baseImage })),
    // Cinder counts volume sizes in whole GiB.
    size: Number((fields.sizeBytes + GiB - 1n) / GiB),
    object_count: fields.files?.objectCount ?? 0,
    parent_id: fields.parentId,
    status: 'available',
    display_name: fields.displayName ?? null,
    display_description: fields.displayDescription ?? null,
    created_at: isoTime(fields.createdAt),
    updated_at: fields.updatedAt ? isoTime(fields.updatedAt) : null,
    data_timestamp: isoTime(fields.createdAt),
    availability_zone: null,
    snapshot_id: null,
    num_dependent_backups: 0,
    ...(subject.kind === 'image' ? { source_image: { pool: subject.pool, namespace: subject.namespace, name: subject.image } } : {}),
  };
}

export function exportRecord(record: BackupRecord): string {
  const operation = 'exportRecord';
  checkOptions(record, operation, 'the record');
  let text: string | undefined;
  try {
    text = JSON.stringify(record) as string | undefined;
  } catch (error) {
    throw invalidArgument(operation, 'backup record', `the record must be what JSON can write (no bigint, no cycle): ${(error as Error).message}`);
  }
  // A toJSON can make it nothing.
  if (text === undefined) throw invalidArgument(operation, 'backup record', 'the record must be what JSON can write: it wrote nothing');
  return Buffer.from(text, 'utf8').toString('base64');
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export function importRecord(text: string): BackupRecord {
  const operation = 'importRecord';
  const fail = (detail: string): never => { throw invalidArgument(operation, 'backup record', detail); };
  if (typeof text !== 'string') return fail('the record must be a string');
  const compact = text.replace(/\s+/g, '');
  if (compact.length === 0 || compact.length % 4 !== 0 || !BASE64.test(compact)) {
    return fail('the record is not base64');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(compact, 'base64').toString('utf8'));
  } catch (error) {
    return fail(`the record is base64 but not JSON (${(error as Error).message})`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return fail('the record is not a JSON object');
  const fields = parsed as Record<string, unknown>;
  const missing = REQUIRED_IMPORT_FIELDS.filter((field) => !(field in fields));
  if (missing.length > 0) return fail(`the record lacks the required field(s) ${missing.join(', ')}`);
  checkId('backup', fields.id, operation);
  if (typeof fields.container !== 'string' || fields.container === '') fail('container must be a pool name');
  if (typeof fields.size !== 'number' || !Number.isInteger(fields.size) || fields.size < 0) {
    fail('size must be a whole number of GiB');
  }
  if (fields.service_metadata !== null && typeof fields.service_metadata !== 'string') {
    fail('service_metadata must be a string or null');
  }
  if (fields.parent_id !== undefined && fields.parent_id !== null) checkId('backup', fields.parent_id, operation);
  recordLocation(fields, operation);
  return {
    volume_id: '',
    service: CEPH_BACKUP_SERVICE,
    parent_id: null,
    status: 'available',
    created_at: '',
    updated_at: null,
    data_timestamp: '',
    availability_zone: null,
    snapshot_id: null,
    num_dependent_backups: 0,
    ...fields,
  } as BackupRecord;
}
