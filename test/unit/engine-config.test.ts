/**
 * BackupEngine's configuration (lib/backup/config.ts): defaults, and every
 * bad value refused when the engine is made. No cluster needed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BackupEngine, InvalidArgumentError, type Cluster } from '../../lib/index.js';

const source = {} as Cluster;

test('defaults', () => {
  const { config } = new BackupEngine({ source });
  assert.equal(config.backupPool, 'backups');
  assert.equal(config.backupCluster, source);
  assert.equal(config.maxSourceSnapshots, 2);
  assert.equal(config.ioConcurrency, undefined, 'the transfer engine\'s own default');
  assert.equal(config.memoryBytes, undefined);
});

test('bad values are refused when the engine is made, naming the option', () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ ioConcurrency: 0 }, /concurrency/],
    [{ ioConcurrency: 1.5 }, /concurrency/],
    [{ memoryBytes: 1024 }, /memoryBytes/],
    [{ memoryBytes: 'lots' }, /memoryBytes/],
    [{ chunkSize: 0 }, /chunkSize/],
    [{ volumeConcurrency: 0 }, /volumeConcurrency/],
    [{ lockTtlMs: 10 }, /lockTtlMs/],
    [{ backupPool: '../x' }, /pool/],
  ];
  for (const [bad, message] of cases) {
    assert.throws(() => new BackupEngine({ source, ...bad }), (error: unknown) => {
      assert.ok(error instanceof InvalidArgumentError, `${JSON.stringify(bad)}: ${String(error)}`);
      assert.match(error.message, message);
      return true;
    });
  }
  assert.equal(new BackupEngine({ source, ioConcurrency: 8, memoryBytes: 32 << 20 }).config.ioConcurrency, 8);
});
