/**
 * What a test makes on the cluster (images, clones, open handles), undone in
 * reverse order when the test ends, pass or fail, plus small data helpers.
 */
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import {
  NotFoundError, type CreateImageOptions, type Image, type OpenImageOptions, type Pool,
} from '../../lib/index.js';
import { uniqueName } from './clusters.js';

/** Removes an image with all its snapshots (unprotecting them first); a missing image is fine. */
export async function removeImageFully(from: Pool, name: string): Promise<void> {
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
  await from.removeImage(name);
}

export class Scratch {
  readonly #pool: Pool;
  readonly #undo: Array<() => Promise<void>> = [];

  constructor(pool: Pool) {
    this.#pool = pool;
  }

  defer(undo: () => Promise<void>): void {
    this.#undo.push(undo);
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
