/**
 * What the backup pool keeps beside each backup (lib/backup/backup-info.ts):
 * the metadata value's format, and values it cannot read. No cluster needed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BACKUP_INFO_PREFIX, backupInfoKey, decodeBackupInfos, encodeBackupInfo } from '../../lib/backup/backup-info.js';

test('one versioned JSON value per backup, under rbd-backup.backup.<id>', () => {
  assert.equal(backupInfoKey('b1'), 'rbd-backup.backup.b1');
  const info = { displayName: 'nightly', displayDescription: null, bytesWritten: 4096n };
  assert.deepEqual(JSON.parse(encodeBackupInfo(info)),
    { version: 1, display_name: 'nightly', display_description: null, bytes_written: 4096 });
  assert.deepEqual(decodeBackupInfos(new Map([[backupInfoKey('b1'), encodeBackupInfo(info)]])), new Map([['b1', info]]));
});

test('other keys are ignored; values that do not parse are left out; wrong types read as unknown', () => {
  const infos = decodeBackupInfos(new Map([
    ['rbd-backup.incomplete', 'b0'],
    [`${BACKUP_INFO_PREFIX}bad`, '{not json'],
    [`${BACKUP_INFO_PREFIX}odd`, JSON.stringify({ display_name: 7, display_description: 'kept', bytes_written: -1 })],
    [`${BACKUP_INFO_PREFIX}huge`, JSON.stringify({ bytes_written: 2 ** 60 })],
  ]));
  assert.deepEqual([...infos.keys()].sort(), ['huge', 'odd']);
  assert.deepEqual(infos.get('odd'), { displayName: null, displayDescription: 'kept', bytesWritten: null });
  assert.equal(infos.get('huge')!.bytesWritten, null);
});

test('a pending mark: pending_since while an incremental is not complete; one that does not parse is still a mark, dated long ago', () => {
  const since = new Date('2026-11-30T10:00:00.000Z');
  const pending = { displayName: null, displayDescription: null, bytesWritten: null, pendingSince: since, snapshot: 'backup.b2.snap.1.5' };
  assert.deepEqual(JSON.parse(encodeBackupInfo(pending)), {
    version: 1, display_name: null, display_description: null, bytes_written: null, pending_since: '2026-11-30T10:00:00.000Z',
    snapshot: 'backup.b2.snap.1.5',
  });
  assert.deepEqual(decodeBackupInfos(new Map([[backupInfoKey('b2'), encodeBackupInfo(pending)]])).get('b2'), pending);
  const garbled = decodeBackupInfos(new Map([[backupInfoKey('b3'), JSON.stringify({ pending_since: 'yesterday-ish' })]]));
  assert.deepEqual(garbled.get('b3')!.pendingSince, new Date(0));
});
