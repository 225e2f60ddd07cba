/**
 * DiffStreamParser (lib/engine/diff-parser.ts) on its own, no cluster: the
 * RBD diff v1 format of DESIGN.md section 5, fed in every chunking, and every
 * way a stream can be wrong (header, record type, truncation, 64-bit
 * overflow, name length, metadata after data, bytes after the end), each
 * refused with a DiffStreamError naming the byte offset of the culprit.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { CephError, DiffStreamError, InvalidArgumentError } from '../../lib/index.js';
import { DiffStreamParser, type DiffRecord } from '../../lib/engine/diff-parser.js';
import {
  DIFF_HEADER, END_RECORD, MAX_NAME_BYTES, RECORD_WRITE, RECORD_ZERO, encodeExtentHead, encodeName, encodeSize,
  RECORD_FROM, RECORD_TO,
} from '../../lib/engine/diff-format.js';
import { intBelow, prng } from '../../lib/dev/prng.js';

const OP = 'importDiff';
const RES = 'rbd/unit-target';

/** A stream built record by record, remembering where each record starts. */
class StreamBuilder {
  readonly parts: Buffer[] = [DIFF_HEADER];
  /** Offsets at which records (not the header) start. */
  readonly starts: number[] = [];
  #length = DIFF_HEADER.length;

  #add(...buffers: Buffer[]): this {
    this.starts.push(this.#length);
    for (const b of buffers) {
      this.parts.push(b);
      this.#length += b.length;
    }
    return this;
  }

  from(name: string): this { return this.#add(encodeName(RECORD_FROM, name)); }
  to(name: string): this { return this.#add(encodeName(RECORD_TO, name)); }
  size(size: bigint): this { return this.#add(encodeSize(size)); }
  write(offset: bigint, data: Buffer): this {
    return this.#add(encodeExtentHead(RECORD_WRITE, offset, BigInt(data.length)), data);
  }
  zero(offset: bigint, length: bigint): this { return this.#add(encodeExtentHead(RECORD_ZERO, offset, length)); }
  raw(bytes: Buffer): this { return this.#add(bytes); }
  end(): this { return this.#add(END_RECORD); }

  get length(): number { return this.#length; }
  build(): Buffer { return Buffer.concat(this.parts); }
}

/** Feeds chunks, then finishes; returns every record. */
function parse(chunks: Iterable<Buffer>, maxPiece?: number): DiffRecord[] {
  const parser = new DiffStreamParser(OP, RES, maxPiece);
  const records: DiffRecord[] = [];
  for (const chunk of chunks) records.push(...parser.push(chunk));
  parser.finish();
  assert.equal(parser.ended, true);
  return records;
}

function* split(stream: Buffer, sizes: () => number): Generator<Buffer> {
  for (let at = 0; at < stream.length;) {
    const n = Math.max(1, sizes());
    // Copies, so no chunk shares memory with the next.
    yield Buffer.from(stream.subarray(at, at + n));
    at += n;
  }
}

function oneByteChunks(stream: Buffer): Generator<Buffer> {
  return split(stream, () => 1);
}

/** Asserts call throws a DiffStreamError at byteOffset whose message matches. */
function assertDiffError(call: () => unknown, byteOffset: number, message: RegExp): DiffStreamError {
  let caught: unknown;
  try {
    call();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof DiffStreamError, `expected a DiffStreamError, got ${String(caught)}`);
  assert.ok(caught instanceof InvalidArgumentError);
  assert.ok(caught instanceof CephError);
  assert.equal(caught.name, 'DiffStreamError');
  assert.equal(caught.code, 'EINVAL');
  assert.equal(caught.errno, 22);
  assert.equal(caught.operation, OP);
  assert.equal(caught.resource, RES);
  assert.equal(caught.byteOffset, byteOffset, `byteOffset of: ${caught.message}`);
  assert.match(caught.message, new RegExp(`^${OP} ${RES}: corrupt diff stream at byte ${byteOffset}: `));
  assert.match(caught.message, message);
  assert.match(caught.message, / \[EINVAL\]$/);
  return caught;
}

/** push all of stream (in one chunk), then finish: the error either raises. */
function feedAll(stream: Buffer, chunks?: Iterable<Buffer>): () => void {
  return () => {
    const parser = new DiffStreamParser(OP, RES);
    for (const chunk of chunks ?? [stream]) parser.push(chunk);
    parser.finish();
  };
}

/** A small stream with every record kind, as `rbd export-diff --from-snap` writes them. */
function sampleStream(sizes = [5000, 1, 70_000]): { builder: StreamBuilder; stream: Buffer; data: Buffer[] } {
  const data = sizes.map((n) => randomBytes(n));
  const builder = new StreamBuilder()
    .from('snap-one')
    .to('snap-two')
    .size(8n << 20n)
    .write(0n, data[0])
    .zero(65_536n, 131_072n)
    .write(1_048_575n, data[1])
    .zero(4n << 20n, 1n)
    .write((8n << 20n) - BigInt(data[2].length), data[2])
    .end();
  return { builder, stream: builder.build(), data };
}

describe('DiffStreamParser: well-formed streams', () => {
  test('decodes every record kind with the offset where it starts', () => {
    const { builder, stream, data } = sampleStream();
    const records = parse([stream]);
    const s = builder.starts;
    assert.deepEqual(records, [
      { kind: 'from', name: 'snap-one', at: s[0] },
      { kind: 'to', name: 'snap-two', at: s[1] },
      { kind: 'size', size: 8n << 20n, at: s[2] },
      { kind: 'data', offset: 0n, data: data[0], at: s[3] },
      { kind: 'zero', offset: 65_536n, length: 131_072n, at: s[4] },
      { kind: 'data', offset: 1_048_575n, data: data[1], at: s[5] },
      { kind: 'zero', offset: 4n << 20n, length: 1n, at: s[6] },
      { kind: 'data', offset: (8n << 20n) - 70_000n, data: data[2], at: s[7] },
      { kind: 'end', at: s[8] },
    ]);
  });

  test('decodes a stream written byte by byte from the format description (not by our encoder)', () => {
    // rbd diff v1, as DESIGN.md section 5 and `rbd export-diff` spell it.
    const bytes = Buffer.concat([
      Buffer.from('rbd diff v1\n', 'latin1'),
      Buffer.from([0x66, 2, 0, 0, 0]), Buffer.from('s1'),
      Buffer.from([0x74, 3, 0, 0, 0]), Buffer.from('s2x'),
      Buffer.from([0x73, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00]),
      Buffer.from([0x77, 0x10, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('abc'),
      Buffer.from([0x7a, 0x00, 0x10, 0, 0, 0, 0, 0, 0, 0x00, 0x20, 0, 0, 0, 0, 0, 0]),
      Buffer.from('e'),
    ]);
    const records = parse([bytes]);
    assert.equal(records.length, 6);
    assert.deepEqual(records[0], { kind: 'from', name: 's1', at: 12 });
    assert.deepEqual(records[1], { kind: 'to', name: 's2x', at: 19 });
    assert.deepEqual(records[2], { kind: 'size', size: 4n << 20n, at: 27 });
    // A data piece names its 'w' record.
    assert.deepEqual(records[3], { kind: 'data', offset: 16n, data: Buffer.from('abc'), at: 36 });
    assert.deepEqual(records[4], { kind: 'zero', offset: 4096n, length: 8192n, at: 56 });
    assert.deepEqual(records[5], { kind: 'end', at: 73 });
    // Our encoder writes the same bytes for the same records.
    assert.deepEqual(Buffer.concat([DIFF_HEADER, encodeName(RECORD_FROM, 's1')]), bytes.subarray(0, 19));
    assert.deepEqual(encodeSize(4n << 20n), bytes.subarray(27, 36));
    assert.deepEqual(encodeExtentHead(RECORD_WRITE, 16n, 3n), bytes.subarray(36, 53));
    assert.deepEqual(encodeExtentHead(RECORD_ZERO, 4096n, 8192n), bytes.subarray(56, 73));
  });

  test('gives the same records whatever the chunking (1-byte chunks, random splits)', (t) => {
    const { stream } = sampleStream();
    const expected = parse([stream]);
    assert.deepEqual(parse(oneByteChunks(stream)), expected, '1-byte chunks');
    const seed = Date.now() & 0x7fffffff;
    t.diagnostic(`seed ${seed}`);
    const rng = prng(seed);
    for (let round = 0; round < 300; round++) {
      const biggest = [2, 17, 100, 5000, 100_000][round % 5];
      assert.deepEqual(parse(split(stream, () => 1 + intBelow(rng, biggest))), expected, `seed ${seed} round ${round}`);
    }
    // Chunk edges right at every record boundary, and one byte either side.
    const { builder } = sampleStream();
    for (const at of builder.starts) {
      for (const edge of [at - 1, at, at + 1]) {
        assert.deepEqual(parse([stream.subarray(0, edge), stream.subarray(edge)]), expected, `split at ${edge}`);
      }
    }
  });

  test('cuts write data into pieces of at most maxPiece bytes, the same in every chunking', (t) => {
    const data = randomBytes(10_000);
    const builder = new StreamBuilder().to('x').size(1n << 20n).write(12_345n, data).end();
    const stream = builder.build();
    for (const maxPiece of [1, 7, 4096, 9_999, 10_000, 10_001]) {
      const whole = parse([stream], maxPiece);
      const pieces = whole.filter((r): r is Extract<DiffRecord, { kind: 'data' }> => r.kind === 'data');
      assert.equal(pieces.length, Math.ceil(data.length / maxPiece), `maxPiece ${maxPiece}`);
      let offset = 12_345n;
      for (const piece of pieces) {
        assert.ok(piece.data.length <= maxPiece);
        assert.equal(piece.offset, offset);
        assert.equal(piece.at, builder.starts[2], 'every piece names its write record');
        offset += BigInt(piece.data.length);
      }
      assert.deepEqual(Buffer.concat(pieces.map((p) => p.data)), data);
      const seed = (Date.now() ^ maxPiece) & 0x7fffffff;
      const rng = prng(seed);
      t.diagnostic(`maxPiece ${maxPiece}: seed ${seed}`);
      assert.deepEqual(parse(split(stream, () => 1 + intBelow(rng, 3000)), maxPiece), whole);
    }
  });

  test('data pieces do not share memory with the pushed chunks', () => {
    const data = Buffer.alloc(64, 0xab);
    const stream = new StreamBuilder().to('x').size(4096n).write(0n, data).end().build();
    const chunk = Buffer.from(stream);
    const parser = new DiffStreamParser(OP, RES);
    const records = parser.push(chunk);
    chunk.fill(0);
    const piece = records.find((r) => r.kind === 'data');
    assert.ok(piece && piece.kind === 'data');
    assert.deepEqual(piece.data, data);
  });

  test('the smallest streams: header + end; a full stream; zero-length extents; names of 0 and 4096 bytes', () => {
    assert.deepEqual(parse([Buffer.concat([DIFF_HEADER, END_RECORD])]), [{ kind: 'end', at: 12 }]);
    const longName = 'n'.repeat(MAX_NAME_BYTES);
    const b = new StreamBuilder().to(longName).from('').size(0n).zero(0n, 0n).write(5n, Buffer.alloc(0)).end();
    const records = parse(oneByteChunks(b.build()));
    assert.deepEqual(records, [
      { kind: 'to', name: longName, at: b.starts[0] },
      { kind: 'from', name: '', at: b.starts[1] },
      { kind: 'size', size: 0n, at: b.starts[2] },
      { kind: 'zero', offset: 0n, length: 0n, at: b.starts[3] },
      // A 'w' of no bytes yields no data piece.
      { kind: 'end', at: b.starts[5] },
    ]);
  });

  test('extents right at the 64-bit limit are still well-formed', () => {
    const max = (1n << 64n) - 1n;
    const records = parse([new StreamBuilder().zero(max - 10n, 10n).zero(0n, max).end().build()]);
    assert.deepEqual(records.map((r) => r.kind), ['zero', 'zero', 'end']);
  });

  test('position counts consumed bytes; finish after the end is harmless; empty pushes are ignored', () => {
    const { stream } = sampleStream();
    const parser = new DiffStreamParser(OP, RES);
    assert.deepEqual(parser.push(Buffer.alloc(0)), []);
    parser.push(stream.subarray(0, 5));
    assert.equal(parser.position, 0, 'nothing consumed inside the header');
    parser.push(stream.subarray(5));
    assert.equal(parser.position, stream.length);
    assert.equal(parser.ended, true);
    parser.finish();
    parser.finish();
    assert.deepEqual(parser.push(Buffer.alloc(0)), []);
  });
});

describe('DiffStreamParser: malformed streams', () => {
  test('a wrong header is refused at byte 0, as soon as a byte differs', () => {
    for (const header of ['rbd diff v2\n', 'RBD diff v1\n', 'rbd diff v1\r', 'rbd diff v1 ', '\0bd diff v1\n']) {
      const stream = Buffer.concat([Buffer.from(header, 'latin1'), END_RECORD]);
      assertDiffError(feedAll(stream), 0, /not an RBD diff v1 stream \(bad header\)/);
      // Byte by byte: refused by the push of the first wrong byte, not later.
      const parser = new DiffStreamParser(OP, RES);
      const wrongAt = [...DIFF_HEADER].findIndex((byte, i) => stream[i] !== byte);
      for (let i = 0; i < wrongAt; i++) assert.deepEqual(parser.push(stream.subarray(i, i + 1)), []);
      assertDiffError(() => parser.push(stream.subarray(wrongAt, wrongAt + 1)), 0, /bad header/);
    }
    assertDiffError(feedAll(Buffer.from('{"json": true}')), 0, /bad header/);
    // A v2 stream (`rbd export-diff --export-format 2` is not a thing, but
    // `rbd export --export-format 2` starts like this) is refused, too.
    assertDiffError(feedAll(Buffer.from('rbd image v2\n')), 0, /bad header/);
  });

  test('an unknown record type is refused at its own offset', () => {
    for (const tag of [0x00, 0x45, 0x46, 0x57, 0x5a, 0x64, 0x78, 0xff]) {
      const builder = new StreamBuilder().from('a').to('b').size(4096n).write(0n, Buffer.from('data'));
      const at = builder.length;
      const stream = builder.raw(Buffer.from([tag])).end().build();
      const hex = tag.toString(16).padStart(2, '0');
      assertDiffError(feedAll(stream), at, new RegExp(`unknown record type 0x${hex} \\[EINVAL\\]$`));
      assertDiffError(feedAll(stream, oneByteChunks(stream)), at, /unknown record type/);
    }
    // Right after the header.
    assertDiffError(feedAll(Buffer.concat([DIFF_HEADER, Buffer.from('x')])), 12, /unknown record type 0x78/);
  });

  test('every truncation of a valid stream is refused, by push() or by finish(), at the cut record', () => {
    // Small data, so that every prefix fed byte by byte stays cheap.
    const { builder, stream } = sampleStream([300, 1, 700]);
    const starts = builder.starts;
    for (let cut = 0; cut < stream.length; cut++) {
      // The record the cut falls in (or the boundary it falls on), 0 inside the header.
      const expectedAt = cut < DIFF_HEADER.length ? 0 : Math.max(...starts.filter((s) => s <= cut));
      const prefix = stream.subarray(0, cut);
      for (const chunks of [[prefix], oneByteChunks(prefix)]) {
        const parser = new DiffStreamParser(OP, RES);
        const error = assertDiffError(() => {
          for (const chunk of chunks) parser.push(chunk);
          parser.finish();
        }, expectedAt, /truncated/);
        assert.ok(error.byteOffset <= cut);
        assert.equal(parser.ended, false, `cut ${cut}`);
      }
    }
    // The full stream, and only it, parses.
    assert.equal(parse([stream]).at(-1)?.kind, 'end');
  });

  test('truncation messages say what is missing', () => {
    const data = randomBytes(1000);
    const b = new StreamBuilder().to('x').size(4096n).write(100n, data).end();
    const stream = b.build();
    assertDiffError(feedAll(stream.subarray(0, 0)), 0, /truncated in the header \(0 of 12 bytes\)/);
    assertDiffError(feedAll(stream.subarray(0, 7)), 0, /truncated in the header \(7 of 12 bytes\)/);
    assertDiffError(feedAll(stream.subarray(0, 12)), 12, /truncated: no end record/);
    assertDiffError(feedAll(stream.subarray(0, 14)), 12, /truncated inside a record \(2 bytes of it\)/);
    const w = b.starts[2];
    assertDiffError(feedAll(stream.subarray(0, w + 10)), w, /truncated inside a record \(10 bytes of it\)/);
    assertDiffError(feedAll(stream.subarray(0, w + 17 + 400)), w, /truncated in a write record: 600 data bytes missing/);
    assertDiffError(feedAll(stream.subarray(0, w + 17 + 1000)), w + 17 + 1000, /truncated: no end record/);
  });

  // Data that arrived but still waits for a whole piece is there, not missing.
  test('a write record cut short reports how many data bytes are missing', () => {
    const b = new StreamBuilder().to('x').size(4096n).write(100n, randomBytes(1000)).end();
    const stream = b.build();
    const w = b.starts[2];
    assertDiffError(feedAll(stream.subarray(0, w + 17 + 400)), w, /truncated in a write record: 600 data bytes missing/);
    // With pieces of 300 bytes, one piece has gone out: 600 are still missing either way.
    assertDiffError(() => {
      const parser = new DiffStreamParser(OP, RES, 300);
      parser.push(stream.subarray(0, w + 17 + 400));
      parser.finish();
    }, w, /truncated in a write record: 600 data bytes missing/);
  });

  test('extents whose offset + length overflow 64 bits are refused at the record', () => {
    const max = (1n << 64n) - 1n;
    const cases: Array<[number, bigint, bigint]> = [
      [RECORD_WRITE, max, 1n], [RECORD_WRITE, 1n, max], [RECORD_WRITE, 1n << 63n, 1n << 63n],
      [RECORD_ZERO, max, 1n], [RECORD_ZERO, max, max], [RECORD_ZERO, 1n << 63n, 1n << 63n],
    ];
    for (const [tag, offset, length] of cases) {
      const builder = new StreamBuilder().to('x').size(1n << 30n).zero(0n, 4096n);
      const at = builder.length;
      const stream = builder.raw(encodeExtentHead(tag as typeof RECORD_WRITE, offset, length)).end().build();
      const message = new RegExp(`extent of ${length} bytes at offset ${offset} overflows 64 bits`);
      assertDiffError(feedAll(stream), at, message);
      // Refused as soon as the 17-byte head is in, without waiting for data.
      const parser = new DiffStreamParser(OP, RES);
      parser.push(stream.subarray(0, at + 16));
      assertDiffError(() => parser.push(stream.subarray(at + 16, at + 17)), at, message);
    }
  });

  test('a snapshot name longer than 4096 bytes is refused before its bytes arrive', () => {
    for (const tag of [RECORD_FROM, RECORD_TO]) {
      for (const length of [MAX_NAME_BYTES + 1, 65_536, 0x7fffffff, 0xffffffff]) {
        const head = Buffer.alloc(5);
        head[0] = tag;
        head.writeUInt32LE(length, 1);
        const builder = new StreamBuilder().from('ok');
        const at = builder.length;
        const stream = builder.raw(head).build();
        // Only the 5-byte head: no waiting for gigabytes that will never come.
        const parser = new DiffStreamParser(OP, RES);
        assertDiffError(() => parser.push(stream), at,
          new RegExp(`snapshot name length ${length} is larger than ${MAX_NAME_BYTES}`));
      }
    }
  });

  test('metadata records after data records are refused at the record', () => {
    const metadata: Array<[string, Buffer]> = [
      ['f', encodeName(RECORD_FROM, 'late')], ['t', encodeName(RECORD_TO, 'late')], ['s', encodeSize(4096n)],
    ];
    for (const [letter, record] of metadata) {
      for (const first of ['w', 'z'] as const) {
        const builder = new StreamBuilder().to('x').size(8192n);
        if (first === 'w') builder.write(0n, Buffer.from('abc'));
        else builder.zero(0n, 4096n);
        const at = builder.length;
        const stream = builder.raw(record).end().build();
        assertDiffError(feedAll(stream), at, new RegExp(`'${letter}' record after data records`));
        assertDiffError(feedAll(stream, oneByteChunks(stream)), at, new RegExp(`'${letter}' record after data`));
      }
    }
  });

  test('bytes after the end record are refused, in the same chunk or a later one', () => {
    const builder = new StreamBuilder().to('x').size(4096n).end();
    const stream = builder.build();
    const end = stream.length;
    assertDiffError(feedAll(Buffer.concat([stream, Buffer.from('e')])), end, /1 bytes after the end record/);
    assertDiffError(feedAll(Buffer.concat([stream, Buffer.alloc(10)])), end, /10 bytes after the end record/);
    const parser = new DiffStreamParser(OP, RES);
    assert.equal(parser.push(stream).at(-1)?.kind, 'end');
    assertDiffError(() => parser.push(Buffer.from('rbd diff v1\n')), end, /12 bytes after the end record/);
    // One byte at a time: the byte after 'e' is the one refused.
    const again = Buffer.concat([stream, Buffer.from('xyz')]);
    const p2 = new DiffStreamParser(OP, RES);
    for (let i = 0; i < end; i++) p2.push(again.subarray(i, i + 1));
    assertDiffError(() => p2.push(again.subarray(end, end + 1)), end, /1 bytes after the end record/);
  });

  test('random corruption only ever raises DiffStreamError (never a RangeError or a hang)', (t) => {
    const { stream } = sampleStream();
    const seed = Date.now() & 0x7fffffff;
    t.diagnostic(`seed ${seed}`);
    const rng = prng(seed);
    const outcomes = { parsed: 0, refused: 0 };
    for (let round = 0; round < 5000; round++) {
      const variant = Buffer.from(stream);
      const flips = 1 + intBelow(rng, 4);
      for (let i = 0; i < flips; i++) {
        // Half of the flips land in the record heads, where they matter most.
        const at = rng() < 0.5 ? intBelow(rng, 110) : intBelow(rng, variant.length);
        variant[at] = intBelow(rng, 256);
      }
      const cut = rng() < 0.3 ? intBelow(rng, variant.length + 1) : variant.length;
      const parser = new DiffStreamParser(OP, RES, 1 + intBelow(rng, 100_000));
      try {
        for (const chunk of split(variant.subarray(0, cut), () => 1 + intBelow(rng, 4000))) parser.push(chunk);
        parser.finish();
        outcomes.parsed++;
      } catch (error) {
        if (!(error instanceof DiffStreamError)) {
          assert.fail(`seed ${seed} round ${round}: ${String(error)}`);
        }
        assert.ok(error.byteOffset >= 0 && error.byteOffset <= cut, `seed ${seed} round ${round}: ${error.message}`);
        outcomes.refused++;
      }
    }
    t.diagnostic(`parsed ${outcomes.parsed}, refused ${outcomes.refused}`);
    assert.ok(outcomes.refused > 0);
  });
});
