/**
 * A bounded window of asynchronous operations: run() waits while the window
 * is full (by count, or by the bytes the operations hold), the first failure
 * is kept and rethrown, and drain() waits for everything in flight.
 */
export class Window {
  readonly #limit: number;
  readonly #byteLimit: number;
  readonly #running = new Set<Promise<void>>();
  #bytes = 0;
  #failure: { error: unknown } | undefined;

  constructor(limit: number, byteLimit = Infinity) {
    this.#limit = limit;
    this.#byteLimit = byteLimit;
  }

  throwIfFailed(): void {
    if (this.#failure) throw this.#failure.error;
  }

  /** Starts task (holding `bytes`) once there is room; resolves when it has started, not finished. */
  async run(task: () => Promise<void>, bytes = 0): Promise<void> {
    while (this.#running.size >= this.#limit ||
      (this.#running.size > 0 && this.#bytes + bytes > this.#byteLimit)) {
      await Promise.race(this.#running);
    }
    this.throwIfFailed();
    this.#bytes += bytes;
    const promise: Promise<void> = task().then(
      () => { this.#running.delete(promise); this.#bytes -= bytes; },
      (error: unknown) => {
        this.#running.delete(promise);
        this.#bytes -= bytes;
        this.#failure ??= { error };
      },
    );
    this.#running.add(promise);
  }

  /** Waits for all in flight; throws the first failure. */
  async drain(): Promise<void> {
    await this.settle();
    this.throwIfFailed();
  }

  /** Waits for all in flight, ignoring failures. */
  async settle(): Promise<void> {
    while (this.#running.size > 0) {
      await Promise.race(this.#running);
    }
  }
}
