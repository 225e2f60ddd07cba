/**
 * The README's TypeScript examples compile against the library as it is
 * (a user's first contact; an example that does not compile is a bug).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

test('every ```ts block of the README compiles', { timeout: 120_000 }, async () => {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.ok(blocks.length >= 2, 'the README has its library examples');
  const dir = await mkdtemp(join(tmpdir(), 'readme-examples-'));
  try {
    const index = join(ROOT, 'lib', 'index.js');
    for (const [i, block] of blocks.entries()) {
      await writeFile(join(dir, `example${i}.ts`), `${block.replaceAll("'ceph-rbd-backup'", JSON.stringify(index))}\nexport {};\n`);
    }
    await writeFile(join(dir, 'package.json'), '{"type":"module"}');
    await writeFile(join(dir, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        target: 'ES2022', lib: ['ES2022', 'esnext.disposable'], module: 'NodeNext', moduleResolution: 'NodeNext',
        strict: true, noEmit: true, skipLibCheck: true, types: ['node'], typeRoots: [join(ROOT, 'node_modules', '@types')],
      },
      include: ['*.ts'],
    }));
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const run = await promisify(execFile)(process.execPath, [tsc, '-p', dir]).then(
      () => ({ ok: true, output: '' }),
      (error: { stdout?: string }) => ({ ok: false, output: error.stdout ?? String(error) }));
    assert.ok(run.ok, `README examples do not compile:\n${run.output}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
