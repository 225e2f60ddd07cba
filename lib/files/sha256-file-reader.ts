/**
 * A parent backup's `_sha256file` read front to back, its digests handed
 * out in order as they are needed: memory stays a few hundred KiB whatever
 * the volume's size (the JSON of a 1 TiB volume's list of 32 KiB blocks is
 * 2.4 GB, more than a JavaScript string holds). Any JSON layout of the
 * document is read (Cinder writes it with sorted keys and an indent of 2);
 * its chunk_size has to come before its sha256s (sorted keys put it
 * there) so that the block is known before the first digest, its version
 * is checked when the end is reached (sorted keys put it after).
 */
import { open, type FileHandle } from 'node:fs/promises';
import { CHUNKED_VERSION } from './chunked-layout.js';
import { ChunkedBackupError } from './errors.js';
import { fromSystem } from '../ceph/errors.js';

/** Bytes read from the file at a time: a turn of the event loop parses at most this. */
const READ_BYTES = 256 << 10;
/** The longest value of a field other than sha256s (a backup's name or description is short). */
const MAX_FIELD_BYTES = 1 << 20;

const QUOTE = 0x22;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const BACKSLASH = 0x5c;
const isSpace = (byte: number): boolean => byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
/** The value of each byte as a hex digit, 0-9 a-f as Cinder's hexdigest() writes them; 16 for any other. */
const HEX_VALUE = Uint8Array.from({ length: 256 }, (_, byte) =>
  byte >= 0x30 && byte <= 0x39 ? byte - 0x30 : byte >= 0x61 && byte <= 0x66 ? byte - 0x61 + 10 : 16);

export class Sha256FileReader {
  readonly path: string;
  /** The block each digest covers (the document's chunk_size). */
  blockSize = 0;
  /** Digests handed out so far. */
  count = 0;
  readonly #handle: FileHandle;
  #buffer = Buffer.alloc(0);
  #at = 0;
  /** Where #buffer starts in the file. */
  #base = 0;
  #eof = false;
  /** Fields read so far (other than sha256s), as parsed JSON values. */
  readonly #fields = new Map<string, unknown>();
  #listEnded = false;

  private constructor(path: string, handle: FileHandle) {
    this.path = path;
    this.#handle = handle;
  }

  /** Opens the file and reads it up to its first digest. */
  static async open(path: string, operation: string): Promise<Sha256FileReader> {
    const handle = await open(path, 'r').catch((error: unknown) => {
      throw fromSystem(error, operation, path, 'opening the parent\'s sha256file');
    });
    const reader = new Sha256FileReader(path, handle);
    try {
      await reader.#readHead(operation);
      return reader;
    } catch (error) {
      await reader.close();
      throw error;
    }
  }

  #bad(operation: string, detail: string): ChunkedBackupError {
    return new ChunkedBackupError({ operation, resource: this.path, detail: `${detail} (at byte ${this.#base + this.#at})` });
  }

  /** At least n bytes from #at on in #buffer, unless the file ends first; returns how many there are. */
  async #want(n: number, operation: string): Promise<number> {
    while (this.#buffer.length - this.#at < n && !this.#eof) {
      const chunk = Buffer.allocUnsafe(READ_BYTES);
      const { bytesRead } = await this.#handle.read(chunk, 0, READ_BYTES, this.#base + this.#buffer.length).catch((error: unknown) => {
        throw fromSystem(error, operation, this.path, 'reading the parent\'s sha256file');
      });
      if (bytesRead === 0) this.#eof = true;
      this.#base += this.#at;
      this.#buffer = Buffer.concat([this.#buffer.subarray(this.#at), chunk.subarray(0, bytesRead)]);
      this.#at = 0;
    }
    return this.#buffer.length - this.#at;
  }

  /** The next byte that is not white space (not taken), or -1 at the file's end. */
  async #peek(operation: string): Promise<number> {
    for (;;) {
      while (this.#at < this.#buffer.length && isSpace(this.#buffer[this.#at]!)) this.#at++;
      if (this.#at < this.#buffer.length) return this.#buffer[this.#at]!;
      if (await this.#want(1, operation) === 0) return -1;
    }
  }

  async #expect(byte: number, what: string, operation: string): Promise<void> {
    if (await this.#peek(operation) !== byte) throw this.#bad(operation, `expected ${what}: the file is damaged or truncated`);
    this.#at++;
  }

  /** One JSON value's text (a string, number, literal, or a nested array or object), bounded. */
  async #rawValue(operation: string): Promise<string> {
    await this.#peek(operation);
    let depth = 0;
    let inString = false;
    let escaped = false;
    for (let offset = 0; ; offset++) {
      if (offset > MAX_FIELD_BYTES) throw this.#bad(operation, `a field longer than ${MAX_FIELD_BYTES} bytes`);
      if (this.#at + offset >= this.#buffer.length && await this.#want(offset + 1, operation) <= offset) {
        throw this.#bad(operation, 'the file ends inside a value: it is truncated');
      }
      const byte = this.#buffer[this.#at + offset]!;
      if (inString) {
        if (escaped) escaped = false;
        else if (byte === BACKSLASH) escaped = true;
        else if (byte === QUOTE) {
          inString = false;
          if (depth === 0) return this.#take(this.#at + offset + 1);
        }
      } else if (byte === QUOTE) inString = true;
      else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) depth++;
      else if (byte === CLOSE_BRACE || byte === CLOSE_BRACKET) {
        if (depth === 0) return this.#take(this.#at + offset);
        if (--depth === 0) return this.#take(this.#at + offset + 1);
      } else if (depth === 0 && (byte === COMMA || isSpace(byte))) return this.#take(this.#at + offset);
    }
  }

  #take(end: number): string {
    const text = this.#buffer.toString('utf8', this.#at, end);
    this.#at = end;
    return text;
  }

  #parse(text: string, operation: string): unknown {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw this.#bad(operation, `${JSON.stringify(text.slice(0, 40))} is not a JSON value: the file is damaged`);
    }
  }

  /** A key and its colon. */
  async #key(operation: string): Promise<string> {
    if (await this.#peek(operation) !== QUOTE) throw this.#bad(operation, 'expected a key: the file is damaged or truncated');
    const key = this.#parse(await this.#rawValue(operation), operation) as string;
    await this.#expect(COLON, '":"', operation);
    return key;
  }

  /** From the start up to the first digest of sha256s, the fields before it kept. */
  async #readHead(operation: string): Promise<void> {
    await this.#expect(OPEN_BRACE, 'a JSON object', operation);
    for (;;) {
      const key = await this.#key(operation);
      if (key === 'sha256s') break;
      this.#fields.set(key, this.#parse(await this.#rawValue(operation), operation));
      if (await this.#peek(operation) !== COMMA) throw this.#bad(operation, 'the document has no list of sha256s');
      this.#at++;
    }
    const blockSize = this.#fields.get('chunk_size');
    if (typeof blockSize !== 'number' || !Number.isSafeInteger(blockSize) || blockSize <= 0) {
      throw this.#bad(operation, 'no positive integer chunk_size before the sha256s');
    }
    this.blockSize = blockSize;
    await this.#expect(OPEN_BRACKET, 'the list of sha256s', operation);
    if (await this.#peek(operation) === CLOSE_BRACKET) {
      this.#at++;
      this.#listEnded = true;
    }
  }

  /**
   * The next n digests (32 bytes each) into out from out's start, fewer
   * where the list ends; returns how many.
   */
  async read(n: number, out: Buffer, operation: string): Promise<number> {
    let got = 0;
    while (got < n && !this.#listEnded) {
      if (!this.#entryInBuffer(out, got, operation)) await this.#entry(out, got, operation);
      got++;
    }
    return got;
  }

  /**
   * The entry at #at taken from what is read already, when all of it is
   * there (the fast path: no await per digest); false when it is not.
   */
  #entryInBuffer(out: Buffer, index: number, operation: string): boolean {
    const b = this.#buffer;
    let i = this.#at;
    while (i < b.length && isSpace(b[i]!)) i++;
    if (i + 66 > b.length) return false;
    let end = i + 66;
    while (end < b.length && isSpace(b[end]!)) end++;
    if (end >= b.length) return false;
    this.#at = i;
    this.#digestAt(out, index, operation);
    this.#at = end;
    this.#separator(b[end]!, operation);
    return true;
  }

  /** The entry at #at, reading what it needs (white space around it can be of any length). */
  async #entry(out: Buffer, index: number, operation: string): Promise<void> {
    if (await this.#peek(operation) !== QUOTE) throw this.#bad(operation, `sha256 ${this.count} is not a string: the file is damaged`);
    if (await this.#want(66, operation) < 66) throw this.#bad(operation, 'the file ends inside the list of sha256s: it is truncated');
    this.#digestAt(out, index, operation);
    this.#separator(await this.#peek(operation), operation);
  }

  /** The '"' 64 hex '"' at #at (all in the buffer) into out's entry index, taken. */
  #digestAt(out: Buffer, index: number, operation: string): void {
    const b = this.#buffer;
    const first = this.#at + 1;
    if (b[this.#at] !== QUOTE) throw this.#bad(operation, `sha256 ${this.count} is not a string: the file is damaged`);
    let invalid = b[first + 64] !== QUOTE;
    for (let k = 0; k < 32; k++) {
      const high = HEX_VALUE[b[first + 2 * k]!]!;
      const low = HEX_VALUE[b[first + 2 * k + 1]!]!;
      invalid ||= high === 16 || low === 16;
      out[index * 32 + k] = (high << 4) | low;
    }
    if (invalid) throw this.#bad(operation, `sha256 ${this.count} is not 64 hex digits: the file is damaged`);
    this.#at = first + 65;
    this.count++;
  }

  /** The ',' or ']' after an entry (the byte at #at), taken. */
  #separator(byte: number, operation: string): void {
    if (byte !== COMMA && byte !== CLOSE_BRACKET) {
      throw this.#bad(operation, 'expected "," or "]" in the list of sha256s: the file is damaged or truncated');
    }
    this.#at++;
    if (byte === CLOSE_BRACKET) this.#listEnded = true;
  }

  /** After the last digest: the rest of the document read and its version checked. */
  async finish(operation: string): Promise<void> {
    if (!this.#listEnded) throw this.#bad(operation, `the list of sha256s goes on past its ${this.count} entries read`);
    while (await this.#peek(operation) === COMMA) {
      this.#at++;
      const key = await this.#key(operation);
      this.#fields.set(key, this.#parse(await this.#rawValue(operation), operation));
    }
    await this.#expect(CLOSE_BRACE, '"}"', operation);
    if (await this.#peek(operation) !== -1) throw this.#bad(operation, 'data after the document');
    const version = this.#fields.get('version');
    if (version !== CHUNKED_VERSION) {
      throw this.#bad(operation, `it is of version ${JSON.stringify(version)}; only ${CHUNKED_VERSION} is known`);
    }
  }

  async close(): Promise<void> {
    await this.#handle.close().catch(() => undefined);
  }
}
