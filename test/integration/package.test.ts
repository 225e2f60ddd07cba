/**
 * The package as its users get it. `npm pack` runs in a copy of this
 * checkout (its prepack compiles the TypeScript and the prebuilt addon, and
 * the copy keeps this checkout's build/ and dist/ as they are); the
 * tarball's contents are checked; then it is installed into fresh strict
 * TypeScript projects twice: with --ignore-scripts, where the prebuilt addon
 * must load with no install step, and with install scripts, where
 * node-gyp-build must find that the prebuild fits and build nothing. Each
 * time a small service (test/fixtures/package-app) is compiled with
 * tsc --strict against the installed package and run against test cluster
 * a: it backs up a volume and restores it into a new one, and the restored
 * bytes must be the source snapshot's.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Cluster, Pool } from '../../lib/index.js';
import { lockObjectName } from '../../lib/backup/lock.js';
import { metaObjectName } from '../../lib/backup/naming.js';
import { connect, rbdExportSha256, testCluster, uniqueName } from '../support/clusters.js';
import { backupImagesOf, removeImagePatiently, removeObjectQuietly } from '../support/backup-fixtures.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SERVICE = join(ROOT, 'test', 'fixtures', 'package-app', 'service.mts');
const PACKAGE = 'ceph-rbd-backup';

/** What the copy to pack from leaves out: what installing and building make. */
const NOT_COPIED = new Set(['node_modules', 'build', 'dist', 'prebuilds', '.git']);

/** Quiet and quick: the registry is reachable, but the cache holds what the projects need. */
const NPM_INSTALL = ['install', '--prefer-offline', '--no-audit', '--no-fund'];

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function runRaw(command: string, args: string[], cwd: string, timeoutMs: number,
  env: NodeJS.ProcessEnv = process.env): Promise<Ran> {
  return new Promise((resolvePromise) => {
    execFile(command, args, { cwd, env, timeout: timeoutMs, maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolvePromise({ code, stdout, stderr });
    });
  });
}

/** Runs a command that must succeed; a failure carries the end of its output. */
async function run(command: string, args: string[], cwd: string, timeoutMs: number,
  env?: NodeJS.ProcessEnv): Promise<string> {
  const ran = await runRaw(command, args, cwd, timeoutMs, env);
  if (ran.code !== 0) {
    const tail = (text: string) => text.trim().split('\n').slice(-40).join('\n');
    assert.fail(`${command} ${args.join(' ')} (in ${cwd}) exited ${ran.code}:\n${tail(ran.stdout)}\n${tail(ran.stderr)}`);
  }
  return ran.stdout;
}

async function versionOf(dependency: string): Promise<string> {
  const manifest = JSON.parse(await readFile(join(ROOT, 'node_modules', dependency, 'package.json'), 'utf8')) as
    { version: string };
  return manifest.version;
}

/** Every file under dir, as paths relative to it. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => relative(dir, join(e.parentPath, e.name)));
}

interface ServiceOutput {
  backupId: string;
  snapshot: string;
  baseImage: string;
  path: string;
  sourceSha: string;
  restoredSha: string;
}

describe('the npm package', { timeout: 10 * 60_000 }, () => {
  let work: string;
  let tarball: string;
  let contents: string[];
  let cluster: Cluster;
  let volumes: Pool;
  let backups: Pool;
  /** [volume id, backup id] of each service run, for clean-up. */
  const made: Array<[string, string | undefined]> = [];
  const targets: string[] = [];

  before(async () => {
    cluster = await connect('a');
    volumes = await cluster.pool('rbd');
    backups = await cluster.pool('backups');
    work = await mkdtemp(join(tmpdir(), 'pack-'));
    const source = join(work, 'source');
    await cp(ROOT, source, {
      recursive: true,
      filter: (path) => !NOT_COPIED.has(relative(ROOT, path)),
    });
    // prepack needs the dev dependencies (tsc, prebuildify, node-gyp, node-addon-api).
    await symlink(join(ROOT, 'node_modules'), join(source, 'node_modules'), 'dir');
    await run('npm', ['pack', '--pack-destination', work], source, 6 * 60_000);
    const packed = (await readdir(work)).filter((name) => name.endsWith('.tgz'));
    assert.equal(packed.length, 1, `npm pack made one tarball: ${packed.join(', ')}`);
    tarball = join(work, packed[0]);
    contents = (await run('tar', ['-tzf', tarball], work, 60_000)).trim().split('\n')
      .map((line) => line.replace(/^package\//, ''));
  });

  after(async () => {
    for (const [volumeId, backupId] of made) {
      await removeImagePatiently(volumes, `volume-${volumeId}`);
      for (const name of await backupImagesOf(backups, volumeId)) await removeImagePatiently(backups, name);
      await removeObjectQuietly(backups, lockObjectName(volumeId));
      if (backupId) await removeObjectQuietly(backups, metaObjectName(backupId));
    }
    for (const targetId of targets) await removeImagePatiently(volumes, `volume-${targetId}`);
    await backups?.close();
    await volumes?.close();
    await cluster?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('the tarball holds the library, the CLI, the prebuilt addon, the sources to build it and LICENSE; no tests', () => {
    for (const file of ['LICENSE', 'README.md', 'package.json', 'binding.gyp', 'native/addon.cc',
      'dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/bin/rbd-backup.js']) {
      assert.ok(contents.includes(file), `${file} is in the tarball`);
    }
    assert.ok(contents.some((file) => /^prebuilds\/linux-x64\/[^/]+\.node$/.test(file)),
      `a linux-x64 prebuild is in the tarball: ${contents.filter((f) => f.startsWith('prebuilds/')).join(', ')}`);
    const unwanted = contents.filter((file) =>
      /^(scripts|test|bench|faults|build|dist\/(test|bench|faults)|dist\/lib\/dev|lib\/dev)\//.test(file) ||
      /(^|\/)demo\./.test(file));
    assert.deepEqual(unwanted, [], 'no test, benchmark, fault-suite or demo files');
  });

  test('every source map in the tarball points to sources it ships', async () => {
    const unpacked = join(work, 'unpacked');
    await mkdir(unpacked);
    await run('tar', ['-xzf', tarball, '-C', unpacked], work, 60_000);
    const root = join(unpacked, 'package');
    const maps = contents.filter((file) => file.endsWith('.map'));
    assert.ok(maps.length > 0, 'the tarball has source maps (tsconfig sourceMap)');
    const missing: string[] = [];
    for (const map of maps) {
      const { sources } = JSON.parse(await readFile(join(root, map), 'utf8')) as { sources: string[] };
      for (const source of sources) {
        const file = relative(root, resolve(root, dirname(map), source));
        if (!contents.includes(file)) missing.push(`${map} -> ${file}`);
      }
    }
    assert.deepEqual(missing, []);
  });

  /**
   * A fresh project (type module, strict) with the tarball installed and the
   * service compiled with tsc --strict: its path and what npm install printed.
   */
  async function newProject(name: string, installFlags: string[]): Promise<{ app: string; installed: string }> {
    const app = join(work, name);
    await mkdir(join(app, 'src'), { recursive: true });
    await writeFile(join(app, 'package.json'), JSON.stringify({ name, private: true, type: 'module' }, null, 2));
    await writeFile(join(app, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        target: 'ES2022', lib: ['ES2022', 'esnext.disposable'], module: 'NodeNext', moduleResolution: 'NodeNext',
        strict: true, rootDir: 'src', outDir: 'dist', types: ['node'],
      },
      include: ['src'],
    }, null, 2));
    await cp(SERVICE, join(app, 'src', 'service.ts'));
    const installed = await run('npm', [...NPM_INSTALL, ...installFlags, tarball,
      `typescript@${await versionOf('typescript')}`, `@types/node@${await versionOf('@types/node')}`],
    app, 4 * 60_000);
    await run(process.execPath, [join(app, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', app, '--strict'],
      app, 2 * 60_000);
    return { app, installed };
  }

  async function runService(app: string): Promise<void> {
    const { info } = await testCluster('a');
    const volumeId = uniqueName('pkg');
    const targetId = uniqueName('pkgr');
    const entry: [string, string | undefined] = [volumeId, undefined];
    made.push(entry);
    targets.push(targetId);
    const stdout = await run(process.execPath, [join(app, 'dist', 'service.js')], app, 3 * 60_000, {
      ...process.env, RBD_CONF: info.conf, RBD_KEYRING: info.keyring, VOLUME_ID: volumeId, TARGET_ID: targetId,
    });
    const output = JSON.parse(stdout.trim().split('\n').at(-1)!) as ServiceOutput;
    entry[1] = output.backupId;
    assert.equal(output.path, 'diff', 'a new volume is restored by diff');
    assert.equal(output.restoredSha, output.sourceSha, 'the restored volume holds the source snapshot\'s bytes');
    // The same bytes as the rbd tool sees them, not only through the package.
    assert.equal(await rbdExportSha256('a', `rbd/volume-${volumeId}@${output.snapshot}`), output.sourceSha);
    assert.equal(await rbdExportSha256('a', `rbd/volume-${targetId}`), output.sourceSha);
  }

  test('installed with --ignore-scripts: the prebuilt addon loads, the service compiles and restores the same bytes', async () => {
    const { app } = await newProject('app-ignore-scripts', ['--ignore-scripts']);
    const installed = join(app, 'node_modules', PACKAGE);
    assert.ok(!(await readdir(installed)).includes('build'), 'nothing was built');
    await runService(app);

    // Without the prebuild (another platform) and without a build, the
    // import fails saying what to do.
    await rename(join(installed, 'prebuilds'), join(installed, 'prebuilds.hidden'));
    try {
      const ran = await runRaw(process.execPath, [join(app, 'dist', 'service.js')], app, 60_000);
      assert.notEqual(ran.code, 0);
      assert.match(ran.stderr, /no native addon fits this system/);
      assert.match(ran.stderr, /npm rebuild ceph-rbd-backup/);
      assert.match(ran.stderr, /librbd-dev/);
      assert.doesNotMatch(ran.stderr, /Cannot find module/);
    } finally {
      await rename(join(installed, 'prebuilds.hidden'), join(installed, 'prebuilds'));
    }
  });

  test('installed with install scripts: node-gyp-build keeps the prebuild, the service restores the same bytes', async () => {
    // --foreground-scripts: npm then prints each script it runs.
    const { app, installed: printed } = await newProject('app-scripts', ['--foreground-scripts']);
    assert.match(printed, /> ceph-rbd-backup@[^\n]* install\n> node-gyp-build/, 'the install script ran');
    const installed = join(app, 'node_modules', PACKAGE);
    // node-gyp-build builds from source only when the prebuild does not load.
    assert.ok(!(await filesUnder(installed)).some((file) => file.startsWith('build/')),
      'the install did not compile the addon');
    await runService(app);
  });
});
