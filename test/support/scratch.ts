/**
 * What a test makes on the cluster (images, clones, open handles), undone in
 * reverse order when the test ends, pass or fail, plus small data helpers.
 */
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BusyError, NotFoundError, type CreateImageOptions, type Image, type OpenImageOptions, type Pool,
} from '../../lib/index.js';
import { uniqueName } from './clusters.js';

/**
 * Removes an image with all its snapshots (unprotecting them first); a
 * missing image is fine. With busyRetries, an image still in use (EBUSY) is
 * tried again that many times, waiting longer each time.
 */
export async function removeImageFully(from: Pool, name: string, { busyRetries = 0 } = {}): Promise<void> {
  let image: Image;
  try {
    image = await from.openImage(name);
  } catch (error) {
    if (error instanceof NotFoundError) return;
    throw error;
  }
  try {
    for (const snap of await image.listSnapshots()) {
      if (snap.protected) await image.unprotectSnapshot(snap.name);
      await image.removeSnapshot(snap.name);
    }
  } finally {
    await image.close();
  }
  for (let attempt = 1; ; attempt++) {
    try {
      await from.removeImage(name);
      return;
    } catch (error) {
      if (!(error instanceof BusyError) || attempt > busyRetries) throw error;
      await sleep(200 * attempt);
    }
  }
}

/** Clean-up steps, run in reverse order by dispose(), every one even when some fail. */
export class UndoStack {
  readonly #undo: Array<() => Promise<void>> = [];

  defer(undo: () => Promise<void>): void {
    this.#undo.push(undo);
  }

  async dispose(): Promise<void> {
    const errors: unknown[] = [];
    for (const undo of this.#undo.reverse()) {
      try {
        await undo();
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, 'clean-up failed');
  }
}

export class Scratch extends UndoStack {
  readonly #pool: Pool;

  constructor(pool: Pool) {
    super();
    this.#pool = pool;
  }

  async createImage(prefix: string, size: number, options: CreateImageOptions = {}, on: Pool = this.#pool): Promise<string> {
    const name = uniqueName(prefix);
    await on.createImage(name, size, options);
    this.defer(() => removeImageFully(on, name));
    return name;
  }

  async clone(parent: string, snapshot: string, prefix: string, on: Pool = this.#pool): Promise<string> {
    const name = uniqueName(prefix);
    await on.clone({ pool: on, image: parent, snapshot }, name);
    this.defer(() => removeImageFully(on, name));
    return name;
  }

  async open(name: string, options: OpenImageOptions = {}, on: Pool = this.#pool): Promise<Image> {
    const image = await on.openImage(name, options);
    this.defer(() => image.close());
    return image;
  }
}

/** A Scratch on pool, disposed when test t ends. */
export function scratch(t: TestContext, pool: Pool): Scratch {
  const s = new Scratch(pool);
  t.after(() => s.dispose());
  return s;
}

/** Writes random bytes to the image and to the model of its content alike. */
export async function writeRandom(image: Image, model: Buffer, offset: number, length: number): Promise<Buffer> {
  const data = randomBytes(length);
  await image.write(data, offset);
  data.copy(model, offset);
  return data;
}
