/**
 * The end of an operation: handles closed, locks released and, when it
 * failed, what it made undone, without any of that hiding why it failed.
 */
import type { Pool } from '../ceph/pool.js';
import { logBackup } from './log.js';

/** Runs one clean-up step; a failure is logged, never thrown over the original one. */
export async function undo(step: string, action: () => Promise<void>): Promise<void> {
  try {
    await action();
  } catch (error) {
    logBackup('cleanup step "%s" failed: %s', step, (error as Error).message);
  }
}

interface Closable {
  close(): Promise<void>;
}

/**
 * What an operation must do when it ends, as one stack: `await using scope
 * = new OperationScope()`. Steps run newest first, so a step registered
 * after a handle was opened runs while that handle is still open.
 * `onFailure` steps run only when the operation did not `commit()`. Like
 * AsyncDisposableStack (which Node 20 lacks) with undo steps; no step's
 * failure replaces the operation's own error.
 */
export class OperationScope implements AsyncDisposable {
  readonly #steps: Array<{ step: string; action: () => Promise<void>; always: boolean }> = [];
  #committed = false;

  /** Closes the handle when the operation ends. */
  async adopt<T extends Closable>(opening: Promise<T>, what = 'close'): Promise<T> {
    const handle = await opening;
    this.defer(what, () => handle.close());
    return handle;
  }

  /** Runs when the operation ends, whatever the outcome. */
  defer(step: string, action: () => Promise<void>): void {
    this.#steps.push({ step, action, always: true });
  }

  /** Runs only when the operation ends without commit(). */
  onFailure(step: string, action: () => Promise<void>): void {
    this.#steps.push({ step, action, always: false });
  }

  /** The operation's result stands: onFailure steps will not run. */
  commit(): void {
    this.#committed = true;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const { step, action, always } of this.#steps.reverse()) {
      if (always || !this.#committed) await undo(step, action);
    }
    this.#steps.length = 0;
  }
}

/** Removes an image this run made, snapshots first (rbd_remove refuses them). */
export async function removeImageWithSnapshots(pool: Pool, name: string): Promise<void> {
  const image = await pool.openImage(name);
  try {
    for (const snapshot of await image.listSnapshots()) await image.removeSnapshot(snapshot.name);
  } finally {
    await image.close();
  }
  await pool.removeImage(name);
}
