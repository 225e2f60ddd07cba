/**
 * When a restore may write into an existing volume (lib/backup/restore-target.ts).
 * No cluster needed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { refuseTarget, type ExistingTarget } from '../../lib/backup/restore-target.js';
import { AlreadyExistsError, BusyError, InvalidArgumentError } from '../../lib/ceph/errors.js';

const empty: ExistingTarget = {
  spec: 'rbd/volume-t', otherWatchers: [], hasExtents: false, unfinishedRestore: undefined, isSource: false, size: 16n,
  backupSize: 16n,
};
const watcher = { address: '127.0.0.1:0/42', id: 4242n, cookie: 1n };

test('an empty, unused, other volume at least the backup\'s size may be written', () => {
  assert.equal(refuseTarget(empty, false, 'restore'), undefined);
  assert.equal(refuseTarget({ ...empty, size: 32n }, false, 'restore'), undefined);
});

test('each refusal is typed, names the volume and says what to do', () => {
  const cases: Array<[Partial<ExistingTarget>, new (...args: never[]) => Error, RegExp]> = [
    [{ isSource: true, hasExtents: true }, InvalidArgumentError, /own source volume.*pass force: true \(--force\)/],
    [{ otherWatchers: [watcher, { ...watcher, id: 7n }] }, BusyError,
      /in use by client\.4242 at 127\.0\.0\.1:0\/42 and 1 more; detach or unmap it first \(rbd status rbd\/volume-t lists its clients\)/],
    [{ hasExtents: true }, AlreadyExistsError, /already holds data; restore into a new or empty volume, or pass force/],
  ];
  for (const [facts, type, message] of cases) {
    const refusal = refuseTarget({ ...empty, ...facts }, false, 'restore');
    assert.ok(refusal instanceof type, `${JSON.stringify(Object.keys(facts))}: ${String(refusal)}`);
    assert.equal(refusal.operation, 'restore');
    assert.equal(refusal.resource, 'rbd/volume-t');
    assert.match(refusal.message, message);
  }
});

test('the source is named before its use and its data; force lifts all three', () => {
  const everything = { ...empty, isSource: true, otherWatchers: [watcher], hasExtents: true };
  assert.ok(refuseTarget(everything, false, 'restore') instanceof InvalidArgumentError);
  assert.ok(refuseTarget({ ...everything, isSource: false }, false, 'restore') instanceof BusyError);
  assert.equal(refuseTarget(everything, true, 'restore'), undefined);
});

test('the data a failed restore left is no reason to refuse the retry; another client\'s use still is', () => {
  const left = { ...empty, hasExtents: true, unfinishedRestore: 'b1' };
  assert.equal(refuseTarget(left, false, 'restore'), undefined);
  assert.ok(refuseTarget({ ...left, otherWatchers: [watcher] }, false, 'restore') instanceof BusyError);
  assert.ok(refuseTarget({ ...left, isSource: true }, false, 'restore') instanceof InvalidArgumentError);
});

test('a volume smaller than the backup is refused even with force', () => {
  const small = { ...empty, size: 8n };
  for (const force of [false, true]) {
    const refusal = refuseTarget(small, force, 'restore');
    assert.ok(refusal instanceof InvalidArgumentError);
    assert.match(refusal.message, /the target volume is 8 bytes, smaller than the backup's 16; restore into a new volume/);
  }
});
