/**
 * Incremental parser of RBD diff v1 streams. Bytes go in as they arrive;
 * records come out, with the data of 'w' records cut into pieces of at most
 * maxPiece bytes so that memory stays bounded whatever a record claims.
 * Anything malformed raises a DiffStreamError naming the byte offset.
 */
import {
  DIFF_HEADER, DiffStreamError, MAX_NAME_BYTES, RECORD_END, RECORD_FROM, RECORD_SIZE, RECORD_TO,
  RECORD_WRITE, RECORD_ZERO,
} from './diff-format.js';

export type DiffRecord =
  | { kind: 'from'; name: string; at: number }
  | { kind: 'to'; name: string; at: number }
  | { kind: 'size'; size: bigint; at: number }
  /** One piece of a 'w' record's data; at is the record's offset. */
  | { kind: 'data'; offset: bigint; data: Buffer; at: number }
  | { kind: 'zero'; offset: bigint; length: bigint; at: number }
  | { kind: 'end'; at: number };

const U64_LIMIT = 1n << 64n;

export class DiffStreamParser {
  readonly #operation: string;
  readonly #resource: string;
  readonly #maxPiece: number;
  /** Unconsumed input. */
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** Stream offset of the first pending byte. */
  #position = 0;
  #headerSeen = false;
  #dataSeen = false;
  #ended = false;
  /** Inside a 'w' record: where the rest of its data goes. */
  #write: { offset: bigint; remaining: bigint; at: number } | undefined;

  constructor(operation: string, resource: string, maxPiece = 4 << 20) {
    this.#operation = operation;
    this.#resource = resource;
    this.#maxPiece = maxPiece;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Bytes consumed so far. */
  get position(): number {
    return this.#position;
  }

  #fail(at: number, detail: string): never {
    throw new DiffStreamError(this.#operation, this.#resource, at, detail);
  }

  /**
   * The next `length` bytes (all pending), consumed. When they lie in the
   * input's first chunk, a view into it, or with `owned` a copy (the
   * caller's chunks may be reused by whoever made them); else the chunks
   * they span, copied into one buffer: only those, so that no byte is
   * copied twice however the input is cut.
   */
  #take(length: number, owned = false): Buffer {
    const first = this.#pending[0]!;
    const within = first.length >= length;
    let taken = within ? first.subarray(0, length) : this.#gather(length);
    if (owned && within) taken = Buffer.from(taken);
    this.#drop(length);
    return taken;
  }

  /** The first `length` pending bytes copied into a new buffer. */
  #gather(length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    let filled = 0;
    for (const chunk of this.#pending) {
      filled += chunk.copy(out, filled, 0, Math.min(chunk.length, length - filled));
      if (filled === length) break;
    }
    return out;
  }

  /** Consumes `length` pending bytes. */
  #drop(length: number): void {
    let left = length;
    let used = 0;
    while (left > 0 && this.#pending[used]!.length <= left) left -= this.#pending[used++]!.length;
    this.#pending.splice(0, used);
    if (left > 0) this.#pending[0] = this.#pending[0]!.subarray(left);
    this.#pendingBytes -= length;
    this.#position += length;
  }

  #peek(length: number): Buffer | undefined {
    if (this.#pendingBytes < length) return undefined;
    // A header cut across chunks: a copy of its few bytes, the input left as it is.
    return this.#pending[0]!.length >= length ? this.#pending[0]!.subarray(0, length) : this.#gather(length);
  }

  /** Feeds bytes; returns the records completed by them. */
  push(chunk: Buffer): DiffRecord[] {
    if (chunk.length === 0) return [];
    if (this.#ended) this.#fail(this.#position, `${chunk.length} bytes after the end record`);
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    const records: DiffRecord[] = [];
    for (;;) {
      const record = this.#next();
      if (!record) break;
      records.push(record);
      if (record.kind === 'end') {
        if (this.#pendingBytes > 0) this.#fail(this.#position, `${this.#pendingBytes} bytes after the end record`);
        break;
      }
    }
    return records;
  }

  /** The input is over: a stream that stopped before its end record is truncated. */
  finish(): void {
    if (this.#ended) return;
    if (!this.#headerSeen) this.#fail(0, `truncated in the header (${this.#pendingBytes} of ${DIFF_HEADER.length} bytes)`);
    if (this.#write) {
      // Data that arrived but waited for a whole piece is there, not missing.
      const missing = this.#write.remaining - BigInt(this.#pendingBytes);
      this.#fail(this.#write.at, `truncated in a write record: ${missing} data bytes missing`);
    }
    this.#fail(this.#position, this.#pendingBytes > 0
      ? `truncated inside a record (${this.#pendingBytes} bytes of it)`
      : 'truncated: no end record');
  }

  #next(): DiffRecord | undefined {
    if (!this.#headerSeen) {
      const header = this.#peek(DIFF_HEADER.length);
      if (!header) {
        const have = Buffer.concat(this.#pending, this.#pendingBytes);
        if (!DIFF_HEADER.subarray(0, have.length).equals(have)) this.#fail(0, 'not an RBD diff v1 stream (bad header)');
        return undefined;
      }
      if (!header.equals(DIFF_HEADER)) this.#fail(0, 'not an RBD diff v1 stream (bad header)');
      this.#take(DIFF_HEADER.length);
      this.#headerSeen = true;
    }
    if (this.#write) return this.#nextData();
    const tagBytes = this.#peek(1);
    if (!tagBytes) return undefined;
    const at = this.#position;
    const tag = tagBytes[0];
    switch (tag) {
      case RECORD_FROM:
      case RECORD_TO: {
        const head = this.#peek(5);
        if (!head) return undefined;
        if (this.#dataSeen) this.#fail(at, `'${String.fromCharCode(tag)}' record after data records`);
        const length = head.readUInt32LE(1);
        if (length > MAX_NAME_BYTES) this.#fail(at, `snapshot name length ${length} is larger than ${MAX_NAME_BYTES}`);
        if (this.#pendingBytes < 5 + length) return undefined;
        const name = this.#take(5 + length).subarray(5).toString('utf8');
        return tag === RECORD_FROM ? { kind: 'from', name, at } : { kind: 'to', name, at };
      }
      case RECORD_SIZE: {
        const record = this.#peek(9);
        if (!record) return undefined;
        if (this.#dataSeen) this.#fail(at, "'s' record after data records");
        const size = record.readBigUInt64LE(1);
        this.#take(9);
        return { kind: 'size', size, at };
      }
      case RECORD_WRITE:
      case RECORD_ZERO: {
        const record = this.#peek(17);
        if (!record) return undefined;
        const offset = record.readBigUInt64LE(1);
        const length = record.readBigUInt64LE(9);
        if (offset + length >= U64_LIMIT) this.#fail(at, `extent of ${length} bytes at offset ${offset} overflows 64 bits`);
        this.#take(17);
        this.#dataSeen = true;
        if (tag === RECORD_ZERO) return { kind: 'zero', offset, length, at };
        this.#write = { offset, remaining: length, at };
        return this.#nextData();
      }
      case RECORD_END:
        this.#take(1);
        this.#ended = true;
        return { kind: 'end', at };
      default:
        return this.#fail(at, `unknown record type 0x${tag.toString(16).padStart(2, '0')}`);
    }
  }

  #nextData(): DiffRecord | undefined {
    const write = this.#write!;
    if (write.remaining === 0n) {
      this.#write = undefined;
      return this.#next();
    }
    const want = write.remaining < BigInt(this.#maxPiece) ? Number(write.remaining) : this.#maxPiece;
    // Wait for a whole piece, unless the input holds all there is of it.
    if (this.#pendingBytes < want) return undefined;
    // Errors about the extent name the record, not the piece.
    const at = write.at;
    // Bytes of its own: the piece outlives the input chunks it was cut from.
    const data = this.#take(want, true);
    const record: DiffRecord = { kind: 'data', offset: write.offset, data, at };
    write.offset += BigInt(want);
    write.remaining -= BigInt(want);
    if (write.remaining === 0n) this.#write = undefined;
    return record;
  }
}
