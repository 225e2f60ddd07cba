/**
 * Named images as backup subjects (lib/backup/naming.ts): the key that
 * begins every name derived from one, how those names parse back, and the
 * refusals that keep a hostile image name from colliding with Cinder's
 * names or addressing another subject's backups. No cluster needed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  backupImageName, baseImageName, checkBackupImageName, decodeNamePart, describeSubject, encodeNamePart, imageSubject,
  lockObjectName, parseBackupImageName, parseUnfinishedImageName, resolveSubject, restoreLockObjectName,
  subjectOfBackupImage, unfinishedImageName, volumeSubject, type ImageSubject,
} from '../../lib/backup/naming.js';
import { InvalidArgumentError } from '../../lib/ceph/errors.js';

const UUID = '0b7d1e2a-5c3f-4a8e-9d6b-1f2e3a4b5c6d';
const image = (name: string, pool = 'rbd', namespace?: string): ImageSubject =>
  imageSubject({ pool, image: name, ...(namespace === undefined ? {} : { namespace }) }, 'test');

describe('named image subjects', () => {
  test('Proxmox and CSI images: readable keys, every derived name under them', () => {
    const vm = image('vm-100-disk-0');
    assert.equal(vm.key, 'image.rbd.vm-100-disk-0');
    assert.equal(backupImageName(vm, UUID), `image.rbd.vm-100-disk-0.backup.${UUID}`);
    assert.equal(unfinishedImageName(vm, 'b1'), 'image.rbd.vm-100-disk-0.backup.b1.unfinished');
    assert.equal(lockObjectName(vm), 'image.rbd.vm-100-disk-0.backup.lock');
    assert.equal(restoreLockObjectName(vm), 'image.rbd.vm-100-disk-0.restore.lock');
    assert.equal(baseImageName(vm), 'image.rbd.vm-100-disk-0.backup.base');
    const csi = image(`csi-vol-${UUID}`, 'kube', 'tenant-a');
    assert.equal(csi.key, `image.kube%2Ftenant-a.csi-vol-${UUID}`);
    assert.equal(describeSubject(csi), `image kube/tenant-a/csi-vol-${UUID}`);
    assert.equal(describeSubject(vm), 'image rbd/vm-100-disk-0');
  });

  test('a volume subject keeps Cinder\'s names exactly', () => {
    const volume = volumeSubject(UUID, 'test');
    assert.equal(volume.key, `volume-${UUID}`);
    assert.equal(backupImageName(volume, 'b1'), backupImageName(UUID, 'b1'));
    assert.equal(backupImageName(volume, 'b1'), `volume-${UUID}.backup.b1`);
    assert.equal(lockObjectName(volume), `volume-${UUID}.backup.lock`);
    assert.equal(restoreLockObjectName(UUID), `volume-${UUID}.restore.lock`);
    assert.deepEqual(resolveSubject(UUID, 'test'), volume);
  });

  test('no derived name of a named image starts with volume-, whatever the name', () => {
    for (const name of ['volume', 'volume-', 'volume-X', 'volume-a.b', 'volume-a.backup.b', 'a', 'vm-1']) {
      const subject = image(name);
      for (const derived of [backupImageName(subject, 'b1'), unfinishedImageName(subject, 'b1'), lockObjectName(subject),
        restoreLockObjectName(subject)]) {
        assert.ok(derived.startsWith('image.'), derived);
      }
    }
  });

  test('everything outside [A-Za-z0-9_-] is percent-encoded, so parts never hold a separator', () => {
    assert.equal(encodeNamePart('a.backup.b'), 'a%2Ebackup%2Eb');
    assert.equal(encodeNamePart('50%'), '50%25');
    assert.equal(encodeNamePart('диск ü'), '%D0%B4%D0%B8%D1%81%D0%BA%20%C3%BC');
    assert.equal(encodeNamePart('a/b'), 'a%2Fb');
    for (const text of ['a.backup.b', '50%', 'диск ü', '🙂', 'a\nb', 'A_b-c', '']) {
      const encoded = encodeNamePart(text);
      assert.match(encoded, /^(?:[A-Za-z0-9_-]|%[0-9A-F]{2})*$/);
      assert.equal(decodeNamePart(encoded), text);
    }
  });

  test('only the canonical encoding decodes: no second name for one image', () => {
    for (const part of ['vm%2D1', 'a%2ebackup', 'a.b', '%', '%2', '%G0', 'a%2F', '%C3']) {
      if (part === 'a%2F') {
        assert.equal(decodeNamePart(part), 'a/');
        continue;
      }
      assert.equal(decodeNamePart(part), undefined, part);
    }
  });

  test('hostile names parse back to their own subject and no other', () => {
    const names = ['a.backup.b', 'a.backup.b.backup.c', '50%', '%2E', 'x.unfinished', 'диск', '🙂', 'volume-X', 'backup', 'lock'];
    const subjects = [...names.map((n) => image(n)), image('vm', 'backup'), image('backup', 'backup'), image('vm', 'rbd', 'ns'),
      image('vm', 'rbd.x'), volumeSubject('v1', 'test')];
    const keys = new Set(subjects.map((s) => s.key));
    assert.equal(keys.size, subjects.length, 'every subject has its own key');
    for (const subject of subjects) {
      for (const name of [backupImageName(subject, 'b1'), unfinishedImageName(subject, 'b1'), baseImageName(subject)]) {
        assert.deepEqual(subjectOfBackupImage(name), subject, name);
        for (const other of subjects.filter((s) => s !== subject)) {
          assert.equal(parseBackupImageName(other, name), undefined, `${name} is not ${other.key}'s`);
          assert.equal(parseUnfinishedImageName(other, name), undefined, `${name} is not ${other.key}'s`);
        }
      }
      assert.equal(parseBackupImageName(subject, backupImageName(subject, 'b1')), 'b1');
      assert.equal(parseUnfinishedImageName(subject, unfinishedImageName(subject, 'b1')), 'b1');
    }
  });

  test('the same image name in two pools (or namespaces) never shares a chain', () => {
    const a = image('vm-100-disk-0', 'pool-a');
    const b = image('vm-100-disk-0', 'pool-b');
    const c = image('vm-100-disk-0', 'pool-a', 'ns');
    assert.notEqual(a.key, b.key);
    assert.notEqual(a.key, c.key);
    assert.equal(parseBackupImageName(b, backupImageName(a, 'b1')), undefined);
    assert.equal(parseBackupImageName(a, backupImageName(c, 'b1')), undefined);
    // A pool named like another's pool/namespace pair cannot exist ('/' is refused in pool names).
    assert.throws(() => image('vm', 'pool-a/ns'), InvalidArgumentError);
  });

  test('names that are not ours are no subject\'s', () => {
    for (const name of ['image.rbd.vm', 'image.rbd.vm.backup.B1', 'image.rbd.vm%2D1.backup.b1', 'image..vm.backup.b1',
      'image.rbd.volume-v1.backup.b1', 'image.rbd.a.b.backup.b1', 'image.%2Erbd.vm.backup.b1', 'image.rbd.vm.backup.b1.x',
      'image.rbd.vm.backup.', 'other.backup.b1', 'volume-v1.backup.b1.x']) {
      assert.equal(subjectOfBackupImage(name), undefined, name);
    }
  });

  test('a record may name only its subject\'s backup images', () => {
    const vm = image('vm-100-disk-0');
    assert.equal(checkBackupImageName(vm, 'image.rbd.vm-100-disk-0.backup.b1', 'restore'), 'image.rbd.vm-100-disk-0.backup.b1');
    for (const name of ['image.other.vm-100-disk-0.backup.b1', 'image.rbd.vm-100-disk-1.backup.b1', 'volume-v1.backup.b1',
      'vm-100-disk-0', 'image.rbd.vm-100-disk-0.backup.b1@s', 'image.rbd.vm-100-disk-0']) {
      assert.throws(() => checkBackupImageName(vm, name, 'restore'), (e: unknown) => {
        assert.ok(e instanceof InvalidArgumentError);
        assert.match(e.message, /must name a backup image of this image \(image\.rbd\.vm-100-disk-0\.backup\.<backup id>\)/);
        return true;
      }, name);
    }
  });

  test('refused: a Cinder volume\'s image name, names RBD refuses, names too long for their derived names', () => {
    const refused = (input: { pool: unknown; namespace?: unknown; image: unknown }, detail: RegExp): void => {
      assert.throws(() => imageSubject(input, 'backup'), (e: unknown) => {
        assert.ok(e instanceof InvalidArgumentError, String(e));
        assert.equal(e.operation, 'backup');
        assert.match(e.message, detail);
        return true;
      }, JSON.stringify(input));
    };
    refused({ pool: 'rbd', image: `volume-${UUID}` }, new RegExp(`back it up by its volume id \\(volumeId '${UUID}', --volume ${UUID}\\)`));
    refused({ pool: 'rbd', image: '' }, /image name must not be empty/);
    refused({ pool: 'rbd', image: 'a/b' }, /must not contain '\/' or '@'/);
    refused({ pool: 'rbd', image: 'a@b' }, /must not contain '\/' or '@'/);
    refused({ pool: 'rbd', image: 'a\0b' }, /NUL/);
    refused({ pool: 'rbd', image: 5 }, /must be a string/);
    refused({ pool: '../x', image: 'vm' }, /pool name/);
    refused({ pool: 'rbd', namespace: 'a b', image: 'vm' }, /namespace name/);
    refused({ pool: 'rbd', image: 'a\uD800b' }, /not valid unicode/);
    // 172 bytes of key fit (255 with `.backup.<64>.unfinished`); 'image.rbd.' is 10 of them.
    assert.equal(image('x'.repeat(162)).key.length, 172);
    refused({ pool: 'rbd', image: 'x'.repeat(163) }, /longer than RBD's 255 bytes/);
    refused({ pool: 'rbd', image: 'ü'.repeat(30) }, /every byte outside A-Z, a-z, 0-9, _ and - takes three/);
    // A volume id that is not Cinder's form is an ordinary name: kept apart, not refused.
    assert.equal(image('volume-X').key, 'image.rbd.volume-X');
  });

  test('resolveSubject takes a volume id, a named image or a subject, checking each again', () => {
    assert.deepEqual(resolveSubject({ pool: 'rbd', image: 'vm-1' }, 'test'), image('vm-1'));
    assert.deepEqual(resolveSubject(image('vm-1', 'rbd', 'ns'), 'test'), image('vm-1', 'rbd', 'ns'));
    assert.deepEqual(resolveSubject(volumeSubject('v1', 'test'), 'test'), volumeSubject('v1', 'test'));
    const forged = { ...image('vm-1'), image: 'a/b' };
    assert.throws(() => resolveSubject(forged, 'test'), InvalidArgumentError);
    for (const bad of ['V1', '', '../x']) assert.throws(() => resolveSubject(bad, 'test'), InvalidArgumentError);
  });
});
