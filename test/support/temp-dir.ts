/** A temporary directory for a test's files, removed whatever happens. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export async function withTempDir(prefix: string, use: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  try {
    await use(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
