/**
 * Writes into a Writable in order, waiting for it to drain: a slow consumer
 * holds the writer back, memory stays bounded. Whatever ends the stream
 * early (its error, a destroy, an end by someone else) or an abort fails
 * the write waiting and every later one with a CephError, where waiting for
 * a 'drain' that never comes hung the call until its time budget ran out.
 */
import type { Writable } from 'node:stream';
import { cancelledError } from '../ceph/cancel.js';
import { CephError, fromSystem } from '../ceph/errors.js';

const ZEROES = Buffer.alloc(1 << 20);

export class StreamSink {
  readonly #stream: Writable;
  readonly #operation: string;
  readonly #resource: string;
  readonly #signal: AbortSignal | undefined;
  #failure: CephError | undefined;
  /** Whether the stream emitted 'finish' (its writableFinished is false again by the 'close' of process.stdout). */
  #finished = false;
  /** Wakes a write waiting for 'drain' (or the end waiting for 'finish') when the stream fails. */
  #wake: (() => void) | undefined;
  // Kept on the stream for good: an error it emits after the export must
  // not go unheard (with no listener, Node would throw it at the host).
  readonly #onError = (error: unknown): void => this.#fail(fromSystem(error, this.#operation, this.#resource, 'writing to the stream'));
  readonly #onFinish = (): void => {
    this.#finished = true;
  };
  // A stream closes after its 'finish' too (autoDestroy), which is no failure.
  readonly #onClose = (): void => {
    if (!this.#finished) this.#fail(this.#closed('the stream was closed before it took all the data'));
  };
  readonly #onAbort = (): void => this.#fail(cancelledError(this.#operation, this.#resource, this.#signal));

  constructor(stream: Writable, job: { operation: string; resource: string; signal?: AbortSignal }) {
    this.#stream = stream;
    this.#operation = job.operation;
    this.#resource = job.resource;
    this.#signal = job.signal;
    stream.on('error', this.#onError);
    stream.once('finish', this.#onFinish);
    stream.once('close', this.#onClose);
    this.#signal?.addEventListener('abort', this.#onAbort, { once: true });
    if (stream.destroyed || stream.writableEnded) this.#fail(this.#closed('the stream is already ended or destroyed'));
  }

  async write(data: Buffer): Promise<void> {
    this.#throwIfFailed();
    if (this.#stream.write(data)) return;
    await this.#until('drain');
  }

  /** length zero bytes, a MiB at a time. */
  async writeZeroes(length: bigint): Promise<void> {
    for (let left = length; left > 0n;) {
      const piece = left < BigInt(ZEROES.length) ? Number(left) : ZEROES.length;
      await this.write(ZEROES.subarray(0, piece));
      left -= BigInt(piece);
    }
  }

  /** Ends the stream and waits until it has taken everything. */
  async end(): Promise<void> {
    this.#throwIfFailed();
    this.#stream.end();
    await this.#until('finish');
    this.release();
  }

  /** Stops watching the stream (but for its errors): after end(), or when the export failed. */
  release(): void {
    this.#stream.off('finish', this.#onFinish);
    this.#stream.off('close', this.#onClose);
    this.#signal?.removeEventListener('abort', this.#onAbort);
  }

  #closed(detail: string): CephError {
    return new CephError({ code: 'EPIPE', operation: this.#operation, resource: this.#resource, detail });
  }

  #fail(failure: CephError): void {
    this.#failure ??= failure;
    this.#wake?.();
  }

  #throwIfFailed(): void {
    if (this.#failure) throw this.#failure;
  }

  async #until(event: 'drain' | 'finish'): Promise<void> {
    this.#throwIfFailed();
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.#stream.off(event, done);
        this.#wake = undefined;
        resolve();
      };
      this.#wake = done;
      this.#stream.once(event, done);
    });
    this.#throwIfFailed();
  }
}
