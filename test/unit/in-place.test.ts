/** Which snapshot an in-place restore converges from (lib/backup/in-place.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseCommonSnapshot, type SnapshotFact } from '../../lib/backup/in-place.js';
import { backupSnapshotName } from '../../lib/backup/naming.js';

const MiB = 1n << 20n;
const names = ['b1', 'b2', 'b3', 'b4'].map((id, i) => backupSnapshotName(id, new Date(Date.UTC(2026, 0, 1 + i))));
const chain: SnapshotFact[] = names.map((name, i) => ({ name, id: BigInt(10 + i), size: 8n * MiB }));
// The volume's own ids differ: snapshots are matched by name (and size).
const onVolume = (...which: number[]): SnapshotFact[] => which.map((i) => ({ name: names[i], id: BigInt(100 + i), size: 8n * MiB }));

test('the restore point itself when the volume still has it', () => {
  assert.deepEqual(chooseCommonSnapshot(onVolume(1, 2, 3), chain, names[2]), { common: names[2] });
});

test('the nearest on the chain, the newer of two as near', () => {
  assert.deepEqual(chooseCommonSnapshot(onVolume(2, 3), chain, names[0]), { common: names[2] });
  assert.deepEqual(chooseCommonSnapshot(onVolume(0, 2), chain, names[1]), { common: names[2] });
  assert.deepEqual(chooseCommonSnapshot(onVolume(0), chain, names[3]), { common: names[0] });
});

test('never a snapshot of another size, a non-backup snapshot, or one an older, larger restore point would outgrow', () => {
  const resized = onVolume(2).map((s) => ({ ...s, size: 16n * MiB }));
  assert.match((chooseCommonSnapshot(resized, chain, names[1]) as { reason: string }).reason, /same size/);
  const user = [{ name: 'before-upgrade', id: 1n, size: 8n * MiB }];
  assert.ok('reason' in chooseCommonSnapshot(user, [...chain, { name: 'before-upgrade', id: 5n, size: 8n * MiB }], names[0]));
  const shrunk = chain.map((s, i) => (i === 3 ? { ...s, size: 4n * MiB } : s));
  const volumeShrunk = onVolume(3).map((s) => ({ ...s, size: 4n * MiB }));
  assert.ok('reason' in chooseCommonSnapshot(volumeShrunk, shrunk, names[1]));
  assert.deepEqual(chooseCommonSnapshot(volumeShrunk, shrunk, names[3]), { common: names[3] });
});

test('a restore point not on the chain image', () => {
  assert.match((chooseCommonSnapshot(onVolume(0), chain, 'missing') as { reason: string }).reason, /no snapshot of the restore point/);
});
