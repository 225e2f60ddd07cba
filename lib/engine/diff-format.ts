/**
 * RBD diff stream, version 1: what `rbd export-diff` writes and
 * `rbd import-diff` reads. A 12-byte header, then records tagged by one
 * byte; integers little-endian, strings as le32 length + bytes:
 *
 *   'f' from-snapshot name   't' to-snapshot name   's' le64 image size
 *   'w' le64 offset, le64 length, data               'z' le64 offset, le64 length
 *   'e' end
 *
 * Metadata records (f, t, s) come before data records (w, z).
 */
import { InvalidArgumentError } from '../ceph/errors.js';

export const DIFF_HEADER = Buffer.from('rbd diff v1\n', 'latin1');

export const RECORD_FROM = 0x66; // 'f'
export const RECORD_TO = 0x74; // 't'
export const RECORD_SIZE = 0x73; // 's'
export const RECORD_WRITE = 0x77; // 'w'
export const RECORD_ZERO = 0x7a; // 'z'
export const RECORD_END = 0x65; // 'e'

/** Snapshot names in a stream longer than this are corruption, not names. */
export const MAX_NAME_BYTES = 4096;

export function encodeName(tag: number, name: string): Buffer {
  const bytes = Buffer.from(name, 'utf8');
  const record = Buffer.allocUnsafe(5 + bytes.length);
  record[0] = tag;
  record.writeUInt32LE(bytes.length, 1);
  bytes.copy(record, 5);
  return record;
}

export function encodeSize(size: bigint): Buffer {
  const record = Buffer.allocUnsafe(9);
  record[0] = RECORD_SIZE;
  record.writeBigUInt64LE(size, 1);
  return record;
}

/** The 17-byte head of a 'w' or 'z' record; a 'w' head is followed by length bytes of data. */
export function encodeExtentHead(tag: typeof RECORD_WRITE | typeof RECORD_ZERO, offset: bigint,
  length: bigint): Buffer {
  const record = Buffer.allocUnsafe(17);
  record[0] = tag;
  record.writeBigUInt64LE(offset, 1);
  record.writeBigUInt64LE(length, 9);
  return record;
}

export const END_RECORD = Buffer.from([RECORD_END]);

/** A stream that is not a well-formed RBD diff v1 stream; byteOffset says where. */
export class DiffStreamError extends InvalidArgumentError {
  /** Offset in the stream of the header or record that is wrong. */
  readonly byteOffset: number;

  constructor(operation: string, resource: string, byteOffset: number, detail: string) {
    super({ code: 'EINVAL', operation, resource, detail: `corrupt diff stream at byte ${byteOffset}: ${detail}` });
    this.byteOffset = byteOffset;
  }
}
