/** The package's version, from its package.json (dist/lib/cli -> the package root). */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { fromSystem } from '../ceph/errors.js';

export async function packageVersion(): Promise<string> {
  const path = fileURLToPath(new URL('../../../package.json', import.meta.url));
  try {
    return (JSON.parse(await readFile(path, 'utf8')) as { version: string }).version;
  } catch (error) {
    throw fromSystem(error, 'read', path, 'cannot read the package version');
  }
}
