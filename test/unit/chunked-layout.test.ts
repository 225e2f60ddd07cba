/**
 * Cinder's chunked file layout (lib/files/chunked-layout.ts): container
 * paths that never leave the backup root, names, and the metadata document
 * checked field by field. No cluster needed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../../lib/ceph/errors.js';
import {
  checkPrefix, containerPath, defaultContainer, metadataName, objectName, parseChunkedMetadata, prefixOfMetadataName, sha256Name,
} from '../../lib/files/chunked-layout.js';
import { ChunkedBackupError } from '../../lib/files/errors.js';

const PREFIX = 'volume_v1_20261130120000_backup_51e2c303';

function document(extra: Record<string, unknown> = {}, object: Record<string, unknown> = {}): string {
  return JSON.stringify({
    version: '1.0.0', backup_id: '51e2c303', volume_id: 'v1', parent_id: null, volume_meta: null,
    objects: [{ [`${PREFIX}-00001`]: { offset: 0, length: 8, md5: '0'.repeat(32), compression: 'zlib', ...object } }],
    ...extra,
  });
}

describe('paths and names', () => {
  test('Cinder\'s default container, and names as its drivers write them', () => {
    assert.equal(defaultContainer('51e2c303-aaaa'), '51/e2/51e2c303-aaaa');
    // Python's os.path.join skips the empty part of a short id.
    assert.equal(defaultContainer('abc'), 'ab/c/abc');
    assert.equal(defaultContainer('p1'), 'p1/p1');
    assert.equal(objectName(PREFIX, 1), `${PREFIX}-00001`);
    assert.equal(objectName('backup', 123456), 'backup-123456');
    assert.equal(metadataName('backup'), 'backup_metadata');
    assert.equal(sha256Name(PREFIX), `${PREFIX}_sha256file`);
    assert.equal(prefixOfMetadataName(`${PREFIX}_metadata`), PREFIX);
    assert.equal(prefixOfMetadataName(`${PREFIX}_sha256file`), undefined);
    assert.equal(checkPrefix('backup', 'restore', '/r'), 'backup');
  });

  test('a container is a relative path of plain names under the root: nothing else reaches a path', () => {
    assert.equal(containerPath('/srv/backup', '51/e2/51e2c303', 'restore'), '/srv/backup/51/e2/51e2c303');
    for (const bad of ['../etc', '51/../../x', '/etc/passwd', '', '51//e2', './51', '51/e2/.', 'a\0b', 7, null]) {
      assert.throws(() => containerPath('/srv/backup', bad, 'restore'), InvalidArgumentError, String(bad));
    }
    for (const bad of ['../x', 'a/b', '', '.hidden', undefined]) assert.throws(() => checkPrefix(bad, 'restore', '/r'), InvalidArgumentError);
  });
});

describe('parseChunkedMetadata', () => {
  test('Cinder\'s document: objects with offsets, lengths, md5s and compressions by any of Cinder\'s names', () => {
    const parsed = parseChunkedMetadata(document({ parent_id: 'p1' }, { compression: 'gzip' }), PREFIX, '/f');
    assert.deepEqual(parsed.objects, [{ name: `${PREFIX}-00001`, offset: 0, length: 8, md5: '0'.repeat(32), compression: 'zlib' }]);
    assert.equal(parsed.parentId, 'p1');
    assert.equal(parseChunkedMetadata(document({}, { compression: 'bzip2' }), PREFIX, '/f').objects[0]!.compression, 'bz2');
    assert.equal(parseChunkedMetadata(document({}, { compression: 'None' }), PREFIX, '/f').objects[0]!.compression, 'none');
  });

  test('what does not parse, another version, or objects that do not fit: ChunkedBackupError naming the file', () => {
    const cases: Array<[string, RegExp]> = [
      ['{"version": "1.0.0", "objects": [', /not JSON/],
      [document({ version: '2.0.0' }), /version "2.0.0"/],
      [document({ objects: 'x' }), /no list of objects/],
      [document({}, { md5: 'xyz' }), /no offset, length and md5/],
      [document({}, { offset: -1 }), /no offset, length and md5/],
      [document({}, { compression: 'lzma' }), /"lzma", which Cinder does not write/],
      [JSON.stringify({ ...JSON.parse(document()), objects: [{ 'other-00001': {} }] }), /not one entry named/],
      [JSON.stringify({ ...JSON.parse(document()), objects: [{ [`${PREFIX}-1/../x`]: {} }] }), /not one entry named/],
    ];
    for (const [text, message] of cases) {
      assert.throws(() => parseChunkedMetadata(text, PREFIX, '/srv/b/m'),
        (e: unknown) => e instanceof ChunkedBackupError && e.code === 'EBADMSG' && message.test(e.message) && e.message.includes('/srv/b/m'), text);
    }
  });
});
