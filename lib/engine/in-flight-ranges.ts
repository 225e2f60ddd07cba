/**
 * Byte ranges of the operations in flight, so that a pipelined writer keeps
 * stream order where it matters: an operation on a range waits for the
 * earlier ones overlapping it, and runs alongside all the others.
 */
interface Entry {
  start: bigint;
  end: bigint;
  settled: Promise<unknown>;
}

export class InFlightRanges {
  // A list, not an interval tree: it holds at most the engine's window
  // (default 64, at most 1024) operations, and every record scans it once.
  readonly #entries = new Set<Entry>();

  get size(): number {
    return this.#entries.size;
  }

  /**
   * Resolves once every operation in flight that overlaps [start, end) has
   * settled, successfully or not (the caller's window reports failures).
   * An empty range overlaps nothing.
   */
  async overlapsSettled(start: bigint, end: bigint): Promise<void> {
    if (start >= end) return;
    const overlapping: Promise<unknown>[] = [];
    for (const entry of this.#entries) {
      if (entry.start < end && start < entry.end) overlapping.push(entry.settled);
    }
    if (overlapping.length > 0) await Promise.allSettled(overlapping);
  }

  /** Records operation as in flight on [start, end) until it settles; returns it unchanged. */
  track<T>(start: bigint, end: bigint, operation: Promise<T>): Promise<T> {
    if (start >= end) return operation;
    const entry: Entry = { start, end, settled: operation };
    this.#entries.add(entry);
    const forget = (): void => { this.#entries.delete(entry); };
    entry.settled = operation.then(forget, forget);
    return operation;
  }
}
