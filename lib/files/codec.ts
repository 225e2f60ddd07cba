/**
 * zstd and bz2 as stream stages, by the addon (libzstd and libbz2 on the
 * thread pool): what Cinder's chunked driver compresses objects with
 * besides zlib. A stage is an async generator function, so that a pipeline
 * holds it to its consumer's pace (a 1 MiB piece of zeros can inflate to a
 * gigabyte: it comes out a megabyte at a time).
 */
import { Duplex } from 'node:stream';
import { fromNative } from '../ceph/errors.js';
import { addon, type NativeCodecKind } from '../ceph/native.js';

/** Output taken from the codec per call. */
const OUTPUT_CAP = 1 << 20;

export type CodecStage = (source: AsyncIterable<Buffer>) => AsyncGenerator<Buffer>;

/** A stage that runs its input through a new codec of this kind; resource names the file in errors. */
export function codecStage(kind: NativeCodecKind, operation: string, resource: string): CodecStage {
  return async function* stage(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    const codec = new addon.Codec(kind);
    const run = async function* (input: Buffer, finish: boolean): AsyncGenerator<Buffer> {
      let rest = input;
      for (;;) {
        let step;
        try {
          step = await codec.run(rest, finish, OUTPUT_CAP);
        } catch (error) {
          throw fromNative(error, operation, resource);
        }
        if (step.output.length > 0) yield step.output;
        rest = rest.subarray(step.consumed);
        if (step.done || (rest.length === 0 && step.output.length < OUTPUT_CAP && !finish)) return;
        if (rest.length === 0 && step.output.length < OUTPUT_CAP && finish) {
          throw fromNative(Object.assign(new Error(`the ${kind.split('-')[0]} stream did not end`), { code: 'EBADMSG', errno: 74 }),
            operation, resource);
        }
      }
    };
    for await (const chunk of source) yield* run(chunk, false);
    yield* run(Buffer.alloc(0), true);
  };
}

/** The same as a Duplex: written to, read from, with back-pressure both ways. */
export function codecDuplex(kind: NativeCodecKind, operation: string, resource: string): Duplex {
  return Duplex.from(codecStage(kind, operation, resource));
}
