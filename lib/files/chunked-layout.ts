/**
 * Cinder's chunked backup layout on a file system, as its POSIX and NFS
 * drivers write it (cinder/backup/chunkeddriver.py, drivers/posix.py): a
 * backup's files live in its container, `<id[0:2]>/<id[2:4]>/<id>` under
 * the backup root unless the record names another; the prefix (the
 * record's service_metadata) names them: `<prefix>-<index, 5 digits at
 * least>` hold the data, one extent each, `<prefix>_metadata` lists them
 * (JSON, version "1.0.0") and `<prefix>_sha256file` holds a SHA-256 per
 * 32 KiB block of the volume. Pure: paths and documents only; nothing
 * taken from a document or record reaches a path unchecked.
 */
import { resolve, sep } from 'node:path';
import { invalidArgument } from '../ceph/errors.js';
import { describeValue } from '../ceph/validate.js';
import { ChunkedBackupError } from './errors.js';

/** The only version of the metadata Cinder writes and restores (DRIVER_VERSION). */
export const CHUNKED_VERSION = '1.0.0';

/** A file or directory name of the layout: what Cinder's names are made of, never `.` or `..`. */
const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$/;

/**
 * The container Cinder's POSIX and NFS drivers give a backup that names
 * none: os.path.join(id[0:2], id[2:4], id), which skips an empty part (an
 * id of 2 characters or fewer).
 */
export function defaultContainer(backupId: string): string {
  return [backupId.slice(0, 2), backupId.slice(2, 4), backupId].filter((part) => part !== '').join('/');
}

/**
 * The container's directory under root. A container is relative and made
 * of plain names: one that is absolute or climbs (`..`) is refused, so a
 * record cannot point outside the backup root.
 */
export function containerPath(root: string, container: unknown, operation: string): string {
  if (typeof container !== 'string' || container === '') {
    throw invalidArgument(operation, root, `the backup's container must be a relative path under ${root}, got ${describeValue(container)}`);
  }
  const parts = container.split('/');
  if (parts.length > 16 || !parts.every((part) => NAME.test(part))) {
    throw invalidArgument(operation, root,
      `the backup's container ${JSON.stringify(container).slice(0, 200)} is not a relative path of plain names (no '.', '..', or absolute path) under ${root}`);
  }
  const base = resolve(root);
  const path = resolve(base, ...parts);
  // Belt and braces: plain names cannot climb, and this says so.
  if (!path.startsWith(base + sep)) throw invalidArgument(operation, root, `the backup's container ${container} is outside ${root}`);
  return path;
}

/** Checks a prefix (a record's service_metadata) before it names a file. */
export function checkPrefix(prefix: unknown, operation: string, resource: string): string {
  if (typeof prefix !== 'string' || !NAME.test(prefix)) {
    throw invalidArgument(operation, resource,
      `the backup's object prefix (its record's service_metadata) must be a plain file name, got ${describeValue(prefix)}`);
  }
  return prefix;
}

/** Cinder's '%s-%05d'. */
export function objectName(prefix: string, index: number): string {
  return `${prefix}-${String(index).padStart(5, '0')}`;
}

export function metadataName(prefix: string): string {
  return `${prefix}_metadata`;
}

export function sha256Name(prefix: string): string {
  return `${prefix}_sha256file`;
}

/** The prefix of a metadata file's name, when it is one. */
export function prefixOfMetadataName(name: string): string | undefined {
  const match = /^(.+)_metadata$/.exec(name);
  return match !== null && NAME.test(match[1]!) ? match[1] : undefined;
}

/** The compressions Cinder writes (`backup_compression_algorithm`), by the names it stores. */
export type Compression = 'none' | 'zlib' | 'bz2' | 'zstd';

export interface ChunkedObject {
  name: string;
  /** Where its data goes in the volume. */
  offset: number;
  /** Its data's length, uncompressed. */
  length: number;
  /** md5 of its data, uncompressed (hex). */
  md5: string;
  compression: Compression;
}

export interface ChunkedMetadata {
  version: string;
  backupId: string;
  volumeId: string;
  parentId: string | null;
  /** In the order they are restored (Cinder's: as listed). */
  objects: ChunkedObject[];
  /** Cinder's volume metadata, kept as it came. */
  volumeMeta: unknown;
  /** As written (Python's str of a datetime); null when absent. */
  createdAt: string | null;
  name: string | null;
  description: string | null;
}

/** Cinder's names for each algorithm, as _get_compressor takes them. */
export function compressionOf(value: unknown): Compression | undefined {
  if (typeof value !== 'string') return undefined;
  const name = value.toLowerCase();
  if (['none', 'off', 'no'].includes(name)) return 'none';
  if (['zlib', 'gzip'].includes(name)) return 'zlib';
  if (['bz2', 'bzip2'].includes(name)) return 'bz2';
  if (name === 'zstd') return 'zstd';
  return undefined;
}

const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/**
 * A `<prefix>_metadata` document, checked: its version, and every object
 * a name of the backup's prefix with an offset, a length, an md5 and a
 * known compression. file names it in errors.
 */
export function parseChunkedMetadata(text: string, prefix: string, file: string, operation = 'restore'): ChunkedMetadata {
  const bad = (detail: string): ChunkedBackupError => new ChunkedBackupError({ operation, resource: file, detail });
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw bad(`the backup's metadata is not JSON (${(error as Error).message}): the file is damaged or truncated`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw bad('the backup\'s metadata is not a JSON object');
  const fields = parsed as Record<string, unknown>;
  if (fields.version !== CHUNKED_VERSION) {
    throw bad(`the backup's metadata is of version ${JSON.stringify(fields.version)}; only ${CHUNKED_VERSION} (what Cinder writes) is known`);
  }
  if (typeof fields.backup_id !== 'string' || typeof fields.volume_id !== 'string') throw bad('the backup\'s metadata has no backup_id or volume_id');
  if (fields.parent_id !== null && fields.parent_id !== undefined && typeof fields.parent_id !== 'string') throw bad('its parent_id is not a string');
  if (!Array.isArray(fields.objects)) throw bad('the backup\'s metadata has no list of objects');
  const pattern = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-\\d{5,}$`);
  const objects = fields.objects.map((entry: unknown, index): ChunkedObject => {
    const keys = entry !== null && typeof entry === 'object' && !Array.isArray(entry) ? Object.keys(entry) : [];
    if (keys.length !== 1 || !pattern.test(keys[0]!)) throw bad(`object ${index} of the list is not one entry named ${prefix}-NNNNN`);
    const name = keys[0]!;
    const item = (entry as Record<string, unknown>)[name] as Record<string, unknown> | null;
    const compression = compressionOf(item?.compression);
    if (item === null || typeof item !== 'object' || !isCount(item.offset) || !isCount(item.length)
      || typeof item.md5 !== 'string' || !/^[0-9a-f]{32}$/.test(item.md5)) {
      throw bad(`object ${name} has no offset, length and md5`);
    }
    if (compression === undefined) throw bad(`object ${name} is compressed with ${JSON.stringify(item.compression)}, which Cinder does not write`);
    return { name, offset: item.offset, length: item.length, md5: item.md5, compression };
  });
  return {
    version: CHUNKED_VERSION, backupId: fields.backup_id, volumeId: fields.volume_id,
    parentId: typeof fields.parent_id === 'string' && fields.parent_id !== '' ? fields.parent_id : null,
    objects, volumeMeta: fields.volume_meta ?? null,
    createdAt: typeof fields.created_at === 'string' ? fields.created_at : null,
    name: typeof fields.backup_name === 'string' ? fields.backup_name : null,
    description: typeof fields.backup_description === 'string' ? fields.backup_description : null,
  };
}

/** Cinder's backup_file_size: the most data one object holds (a multiple of the hash block). */
export const DEFAULT_BACKUP_FILE_SIZE = 1_999_994_880;
/** Cinder's backup_sha_block_size_bytes: the block each SHA-256 of the sha256file covers. */
export const DEFAULT_SHA_BLOCK_SIZE = 32_768;

/** The POSIX driver's prefix (drivers/posix.py): `volume_<volume id>_<UTC %Y%m%d%H%M%S>_backup_<backup id>`. */
export function backupPrefix(volumeId: string, backupId: string, now: Date): string {
  const stamp = now.toISOString().replace(/\.\d{3}Z$/, '').replace(/[-:T]/g, '');
  return `volume_${volumeId}_${stamp}_backup_${backupId}`;
}

/** Python's str() of an aware UTC datetime, as Cinder writes created_at into both documents. */
export function pythonTime(date: Date): string {
  const micros = String(date.getUTCMilliseconds() * 1000).padStart(6, '0');
  return `${date.toISOString().slice(0, 10)} ${date.toISOString().slice(11, 19)}.${micros}+00:00`;
}

/**
 * Python's json.dumps(value, sort_keys=True, indent=2) (ensure_ascii on):
 * the documents Cinder writes, byte for byte, for values of strings,
 * integers, null, arrays and objects.
 */
export function pythonJson(value: unknown): string {
  const sorted = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sorted);
    if (v !== null && typeof v === 'object') {
      return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted((v as Record<string, unknown>)[k])]));
    }
    return v;
  };
  return JSON.stringify(sorted(value), null, 2)
    .replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** What a backup's two documents say of it besides its data. */
export interface ChunkedBackupFacts {
  backupId: string;
  volumeId: string;
  displayName: string | null;
  displayDescription: string | null;
  createdAt: Date;
}

/** `<prefix>_metadata`, as Cinder's _write_metadata writes it (metadataFrame around metadataList's pieces). */
export function metadataDocument(facts: ChunkedBackupFacts, objects: readonly ChunkedObject[], parentId: string | null,
  volumeMeta: string | null): string {
  const { head, tail } = metadataFrame(facts, parentId, volumeMeta);
  return head + [...metadataList(objects, objects.length)].join('') + tail;
}

/**
 * `<prefix>_metadata` around its list of objects, which an incremental of
 * scattered changes makes thousands long: the text before and after it.
 */
export function metadataFrame(facts: ChunkedBackupFacts, parentId: string | null, volumeMeta: string | null): { head: string; tail: string } {
  return frameAt({
    version: CHUNKED_VERSION, backup_id: facts.backupId, volume_id: facts.volumeId,
    backup_name: facts.displayName, backup_description: facts.displayDescription, created_at: pythonTime(facts.createdAt),
    parent_id: parentId, volume_meta: volumeMeta,
  }, 'objects');
}

/**
 * pythonJson of a document's top-level fields and key, split where key's
 * value goes: the text before and after it. The value is found by its key
 * on a line of its own (`\n  "key": `): no string holds a raw newline, so
 * nothing a name, a description or volume_meta holds can match, not even
 * a string equal to the mark.
 */
function frameAt(fields: Record<string, unknown>, key: string): { head: string; tail: string } {
  const MARK = '@VALUE@';
  const text = pythonJson({ ...fields, [key]: MARK });
  const before = `\n  ${JSON.stringify(key)}: `;
  const at = text.indexOf(`${before}"${MARK}"`) + before.length;
  return { head: text.slice(0, at), tail: text.slice(at + MARK.length + 2) };
}

/** The metadata's list of objects as json.dumps(indent=2) writes it there, in pieces of up to perPiece entries. */
export function* metadataList(objects: readonly ChunkedObject[], perPiece: number): Generator<string> {
  if (objects.length === 0) {
    yield '[]';
    return;
  }
  for (let first = 0; first < objects.length; first += perPiece) {
    const entries = objects.slice(first, first + perPiece).map((o) =>
      pythonJson({ [o.name]: { offset: o.offset, length: o.length, md5: o.md5, compression: o.compression } }).replace(/^/gm, '    '));
    const last = first + perPiece >= objects.length;
    yield `${first === 0 ? '[\n' : ',\n'}${entries.join(',\n')}${last ? '\n  ]' : ''}`;
  }
}

/**
 * `<prefix>_sha256file` (Cinder's _write_sha256file) around its list of
 * digests, which can be millions long: the text before and after the
 * list's entries, which go between them as `    "<hex>",` lines (the
 * last without its comma), or `[]` for none.
 */
export function sha256FileFrame(facts: ChunkedBackupFacts, blockSize: number): { head: string; tail: string } {
  return frameAt({
    version: CHUNKED_VERSION, backup_id: facts.backupId, volume_id: facts.volumeId,
    backup_name: facts.displayName, backup_description: facts.displayDescription, created_at: pythonTime(facts.createdAt),
    chunk_size: blockSize,
  }, 'sha256s');
}
