/**
 * The names Cinder's Ceph backup driver gives things (lib/backup/naming.ts),
 * which existing backup pools depend on, and the id checks that keep any
 * input from addressing another image. No cluster needed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BACKUP_SNAPSHOT, backupImageName, backupSnapshotName, baseImageName, checkBackupImageName, checkId, metaObjectName,
  parseBackupImageName, parseBackupSnapshotName, volumeImageName,
} from '../../lib/backup/naming.js';
import { CephError, InvalidArgumentError } from '../../lib/ceph/errors.js';
import * as publicApi from '../../lib/index.js';

const UUID = '0b7d1e2a-5c3f-4a8e-9d6b-1f2e3a4b5c6d';

describe('image and object names', () => {
  test('volume, pre-Train base, chain/legacy image and meta names are Cinder\'s', () => {
    assert.equal(volumeImageName(UUID), `volume-${UUID}`);
    assert.equal(baseImageName(UUID), `volume-${UUID}.backup.base`);
    assert.equal(backupImageName(UUID, 'b1'), `volume-${UUID}.backup.b1`);
    assert.equal(backupImageName('v1', UUID), `volume-v1.backup.${UUID}`);
    assert.equal(metaObjectName('b1'), 'backup.b1.meta');
    assert.equal(metaObjectName(UUID), `backup.${UUID}.meta`);
  });

  test('the public API exports the same naming functions', () => {
    assert.equal(publicApi.baseImageName, baseImageName);
    assert.equal(publicApi.backupImageName, backupImageName);
    assert.equal(publicApi.volumeImageName, volumeImageName);
    assert.equal(publicApi.metaObjectName, metaObjectName);
    assert.equal(publicApi.backupSnapshotName, backupSnapshotName);
    assert.equal(publicApi.parseBackupSnapshotName, parseBackupSnapshotName);
    assert.equal('legacyImageName' in publicApi, false, 'replaced by backupImageName');
  });

  test('parseBackupImageName gives the suffix of this volume\'s backup images only, base included', () => {
    assert.equal(parseBackupImageName('v1', 'volume-v1.backup.b1'), 'b1');
    assert.equal(parseBackupImageName('v1', `volume-v1.backup.${UUID}`), UUID);
    assert.equal(parseBackupImageName('v1', 'volume-v1.backup.base'), 'base', 'the pre-Train chain image');
    assert.equal(parseBackupImageName('v1', backupImageName('v1', 'b1')), 'b1', 'round trip');
    assert.equal(parseBackupImageName('v1', 'volume-v2.backup.b1'), undefined, 'another volume');
    assert.equal(parseBackupImageName('v1', 'volume-v1-x.backup.b1'), undefined, 'another volume with v1 as prefix');
    assert.equal(parseBackupImageName('v1', 'volume-v1'), undefined);
    assert.equal(parseBackupImageName('v1', 'volume-v1.backup.'), undefined);
    assert.equal(parseBackupImageName('v1', 'volume-v1.backup.B1'), undefined, 'not an id');
    assert.equal(parseBackupImageName('v1', 'volume-v1.backup.b1.x'), undefined, 'not an id');
    assert.equal(parseBackupImageName('v1', 'volume-v1.backup.base.x'), undefined, 'not an id');
  });

  test('checkBackupImageName accepts this volume\'s backup images and refuses any other name', () => {
    for (const name of ['volume-v1.backup.base', 'volume-v1.backup.b1', `volume-v1.backup.${UUID}`]) {
      assert.equal(checkBackupImageName('v1', name, 'someOp'), name);
    }
    for (const name of ['volume-v2.backup.base', 'volume-v1', 'other', '../volume-v1.backup.base',
      'rbd/volume-v1.backup.base', 'volume-v1.backup.base@snap', 'volume-v1.backup.', '', 5, null, undefined]) {
      assert.throws(() => checkBackupImageName('v1', name, 'someOp'), (e: unknown) => {
        assert.ok(e instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(e)}`);
        assert.equal(e.code, 'EINVAL');
        assert.equal(e.operation, 'someOp');
        assert.equal(e.resource, 'volume v1');
        assert.match(e.message, /must name a backup image of this volume \(volume-v1\.backup\.<base or backup id>\)/);
        return true;
      }, String(name));
    }
  });
});

describe('backup snapshot names', () => {
  test('backup.<id>.snap.<seconds with fraction>, as Python\'s str(time.time()) writes it', () => {
    assert.equal(backupSnapshotName('b1', new Date(1714557600123)), 'backup.b1.snap.1714557600.123');
    assert.equal(backupSnapshotName('b1', new Date(1714557600500)), 'backup.b1.snap.1714557600.5');
    // A whole second still has a fraction, as str(float) gives '1714557600.0'.
    assert.equal(backupSnapshotName('b1', new Date(1714557600000)), 'backup.b1.snap.1714557600.0');
    assert.equal(backupSnapshotName(UUID, new Date(1000)), `backup.${UUID}.snap.1.0`);
  });

  test('without a date the stamp is now', () => {
    const before = Date.now() / 1000;
    const parsed = parseBackupSnapshotName(backupSnapshotName('b1'));
    const after = Date.now() / 1000;
    assert.ok(parsed);
    assert.equal(parsed.backupId, 'b1');
    assert.match(parsed.stamp, /^\d+\.\d+$/);
    assert.ok(parsed.seconds >= before && parsed.seconds <= after, `${parsed.seconds} not in [${before}, ${after}]`);
  });

  test('the pattern is Cinder\'s regex', () => {
    assert.equal(BACKUP_SNAPSHOT.source, String.raw`^backup\.([a-z0-9-]+?)\.snap\.(.+)$`);
  });

  test('names round trip through parseBackupSnapshotName', () => {
    for (const [id, ms] of [['b1', 1714557600123], [UUID, 1714557600000], ['a-b-c', 1], ['0', 1714557600999]] as const) {
      const date = new Date(ms);
      const name = backupSnapshotName(id, date);
      assert.match(name, BACKUP_SNAPSHOT);
      const parsed = parseBackupSnapshotName(name);
      assert.ok(parsed, name);
      assert.equal(parsed.backupId, id);
      assert.equal(parsed.seconds, ms / 1000);
      assert.equal(`backup.${parsed.backupId}.snap.${parsed.stamp}`, name);
    }
  });

  test('Cinder\'s own names (more fraction digits) parse', () => {
    const parsed = parseBackupSnapshotName(`backup.${UUID}.snap.1714557600.1234567`);
    assert.deepEqual(parsed, { backupId: UUID, stamp: '1714557600.1234567', seconds: 1714557600.1234567 });
  });

  test('a stamp that is not a number parses with NaN seconds', () => {
    const parsed = parseBackupSnapshotName('backup.b1.snap.later');
    assert.ok(parsed);
    assert.equal(parsed.backupId, 'b1');
    assert.equal(parsed.stamp, 'later');
    assert.ok(Number.isNaN(parsed.seconds));
  });

  test('other names are not backup snapshots', () => {
    for (const name of ['', 'snap1', 'backup.b1', 'backup.b1.snap.', 'backup..snap.1.0', 'backup.B1.snap.1.0',
      'xbackup.b1.snap.1.0', 'backup.b_1.snap.1.0', 'backup.b/1.snap.1.0', 'backup.b1.snapx1.0']) {
      assert.equal(parseBackupSnapshotName(name), undefined, name);
    }
  });
});

describe('checkId', () => {
  function refused(kind: 'volume' | 'backup', id: unknown): (e: unknown) => boolean {
    return (e) => {
      assert.ok(e instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(e)}`);
      assert.ok(e instanceof CephError);
      assert.equal(e.code, 'EINVAL');
      assert.equal(e.errno, 22);
      assert.equal(e.operation, 'someOp');
      assert.equal(e.resource, `${kind} ${String(id)}`);
      assert.match(e.message, new RegExp(`${kind} id must be 1-64 characters`));
      assert.ok(e.message.includes(JSON.stringify(id) ?? 'undefined'), e.message);
      return true;
    };
  }

  test('accepts UUIDs, short ids and 64 characters', () => {
    for (const id of [UUID, 'a', '0', 'ab', 'a-b', 'x'.repeat(64), `v-${'0'.repeat(62)}`]) {
      assert.equal(checkId('volume', id, 'someOp'), id);
      assert.equal(checkId('backup', id, 'someOp'), id);
    }
  });

  const bad: Array<[string, unknown]> = [
    ['empty', ''],
    ['a path', '../x'],
    ['a slash', 'a/b'],
    ['a snapshot separator', 'a@b'],
    ['upper case', 'UPPER'],
    ['65 characters', 'x'.repeat(65)],
    ['a leading dash', '-a'],
    ['a trailing dash', 'a-'],
    ['a dot', 'a.b'],
    ['a space', 'a b'],
    ['an underscore', 'a_b'],
    ['a newline', 'a\nb'],
    ['not a string', 12],
    ['undefined', undefined],
    ['null', null],
  ];
  for (const [what, id] of bad) {
    test(`refuses ${what}`, () => {
      assert.throws(() => checkId('volume', id, 'someOp'), refused('volume', id));
      assert.throws(() => checkId('backup', id, 'someOp'), refused('backup', id));
    });
  }
});
