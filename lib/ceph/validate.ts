/**
 * Input checks done before anything reaches Ceph: a name can only ever
 * address the one thing it names, sizes and offsets are whole numbers
 * that fit in 64 bits, and options and callbacks are what they claim to be
 * (a caller from JavaScript gets an InvalidArgumentError saying what was
 * expected, not a TypeError from deep inside the operation).
 */
import { invalidArgument } from './errors.js';

const MAX_NAME_BYTES = 255;
const MAX_U64 = (1n << 64n) - 1n;

export type NameKind = 'pool' | 'namespace' | 'image' | 'snapshot' | 'object' | 'metadata key'
  | 'lock' | 'lock cookie' | 'user';

/**
 * Pool, image and snapshot names: non-empty, at most 255 bytes, without
 * '/', '@' or NUL (those are the separators of pool/image@snap specs, so a
 * name containing one could address another image).
 */
export function checkName(kind: NameKind, value: unknown, operation: string, resource: string,
  options: { allowEmpty?: boolean; allowSeparators?: boolean; maxBytes?: number } = {}): string {
  if (typeof value !== 'string') {
    throw invalidArgument(operation, resource, `${kind} name must be a string, got ${typeof value}`);
  }
  if (value.length === 0 && !options.allowEmpty) {
    throw invalidArgument(operation, resource, `${kind} name must not be empty`);
  }
  const maxBytes = options.maxBytes ?? MAX_NAME_BYTES;
  if (Buffer.byteLength(value) > maxBytes) {
    throw invalidArgument(operation, resource, `${kind} name is longer than ${maxBytes} bytes`);
  }
  if (value.includes('\0')) {
    throw invalidArgument(operation, resource, `${kind} name must not contain NUL`);
  }
  if (!options.allowSeparators && /[/@]/.test(value)) {
    throw invalidArgument(operation, resource,
      `${kind} name ${JSON.stringify(value)} must not contain '/' or '@'`);
  }
  if ((kind === 'pool' || kind === 'namespace') && value !== '' && !POOL_NAME.test(value)) {
    throw invalidArgument(operation, resource,
      `${kind} name ${JSON.stringify(value)} must be letters, digits, '_', '-' and '.', not starting with '.' (Ceph reserves those for its own pools)`);
  }
  return value;
}

/**
 * Pool and namespace names as the Ceph tools and dashboard create them.
 * Ceph itself stores any bytes, but a name with a newline, a path step
 * ('..') or look-alike unicode only ever reaches a pool nobody meant.
 */
const POOL_NAME = /^[A-Za-z0-9_-][A-Za-z0-9_.-]*$/;

/** A size, offset or length: a non-negative integer number or bigint below 2^64. */
export function toU64(what: string, value: unknown, operation: string, resource: string): bigint {
  if (typeof value === 'bigint') {
    if (value < 0n || value > MAX_U64) {
      throw invalidArgument(operation, resource, `${what} ${value} is outside 0..2^64-1`);
    }
    return value;
  }
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw invalidArgument(operation, resource, `${what} must be a non-negative integer, got ${value}`);
    }
    return BigInt(value);
  }
  throw invalidArgument(operation, resource, `${what} must be a number or bigint, got ${typeof value}`);
}

/** A small count (window size, order): an integer within [min, max]. */
export function toIntInRange(what: string, value: unknown, min: number, max: number,
  operation: string, resource: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalidArgument(operation, resource, `${what} must be an integer in ${min}..${max}, got ${String(value)}`);
  }
  return value;
}

/** Volume and backup ids: what Cinder uses (UUIDs) and the snapshot pattern can carry. */
export const CINDER_ID = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;

/** A Cinder volume or backup id, checked before it names anything (an image, a snapshot, a directory). */
export function checkId(kind: 'volume' | 'backup', id: unknown, operation: string): string {
  // A backup id 'base' would name its chain image like the pre-Train one.
  if (typeof id !== 'string' || !CINDER_ID.test(id) || (kind === 'backup' && id === 'base')) {
    throw invalidArgument(operation, `${kind} ${String(id)}`,
      `${kind} id must be 1-64 characters of a-z, 0-9 and '-' (not starting or ending with '-'${kind === 'backup' ? ", not 'base'" : ''}), got ${describeValue(id)}`);
  }
  return id;
}

/**
 * A value as a message shows what was given: a string quoted (its first 80
 * characters), a number, bigint or boolean as written, anything else by
 * its kind ('an object', 'an array', 'a function'). JSON.stringify would
 * throw on a bigint.
 */
export function describeValue(value: unknown): string {
  switch (typeof value) {
    case 'string': return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value);
    case 'number': case 'boolean': case 'undefined': return String(value);
    case 'bigint': return `${value}n`;
    case 'object': return value === null ? 'null' : Array.isArray(value) ? 'an array' : 'an object';
    default: return `a ${typeof value}`;
  }
}

/** An options argument (`what`, of `operation`'s arguments): an object, not null or an array. */
export function checkOptions<T>(value: T, operation: string, what = 'options'): T {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalidArgument(operation, 'arguments', `${what} must be an object, got ${describeValue(value)}`);
  }
  return value;
}

/** An options argument that may be left out (then none: {}), or else an object. */
export function optionalOptions<T extends object>(value: T | undefined, operation: string): Partial<T> {
  return value === undefined ? {} : checkOptions(value, operation);
}

/** An optional callback. */
export function checkCallback(field: string, value: unknown, operation: string, resource: string): void {
  if (value !== undefined && typeof value !== 'function') {
    throw invalidArgument(operation, resource, `${field} must be a function, got ${describeValue(value)}`);
  }
}

/**
 * An optional flag: true, false or left out. Never a truthy string taken
 * for true: skipZeroes: 'false' would leave a used target's old bytes where
 * the source reads zeros.
 */
export function checkFlag(what: string, value: unknown, operation: string, resource: string): boolean | undefined {
  if (value !== undefined && typeof value !== 'boolean') {
    throw invalidArgument(operation, resource, `${what} must be true or false, got ${describeValue(value)}`);
  }
  return value;
}

/** A point in time: a Date that holds one (not an Invalid Date). */
export function checkDate(what: string, value: unknown, operation: string, resource: string): Date {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) {
    throw invalidArgument(operation, resource,
      `${what} must be a valid Date, got ${value instanceof Date ? 'an Invalid Date' : describeValue(value)}`);
  }
  return value;
}

/**
 * The keys of an options object a destructive call takes: any other is a
 * mistake to refuse, not ignore (prune's `dryrun: true`, a typo, pruned for
 * real). One that differs only in case is named as what was meant.
 */
export function checkKnownKeys(value: object, known: readonly PropertyKey[], operation: string, what = 'options'): void {
  for (const key of Object.keys(value)) {
    if (known.includes(key)) continue;
    const meant = known.find((k) => String(k).toLowerCase() === key.toLowerCase());
    throw invalidArgument(operation, 'arguments',
      `${what} has no option ${JSON.stringify(key)}${meant === undefined ? '' : ` (did you mean ${String(meant)}?)`}; it takes ${known.map(String).join(', ')}`);
  }
}

/**
 * The list of every key of T, as given: the compiler refuses a list that
 * misses one (a new option then cannot be forgotten by checkKnownKeys).
 */
export function everyKeyOf<T>() {
  return <const K extends readonly (keyof T)[]>(keys: K & ([Exclude<keyof T, K[number]>] extends [never] ? unknown : never)): K => keys;
}
