/**
 * Backup records (lib/backup/record.ts): Cinder's export format (base64 of
 * the record's JSON), the fields Cinder's import requires, records exported
 * by Cinder itself (test/fixtures/records), the chain image a record names,
 * and what a record may address (recordLocation). No cluster needed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  CEPH_BACKUP_SERVICE, exportRecord, importRecord, isoTime, newRecord, recordBaseImage, recordLocation,
  REQUIRED_IMPORT_FIELDS, type BackupRecord,
} from '../../lib/backup/record.js';
import { imageSubject, volumeSubject } from '../../lib/backup/naming.js';
import { BackupEngine, CephError, InvalidArgumentError, type Cluster } from '../../lib/index.js';
import * as publicApi from '../../lib/index.js';

/** From dist/test/unit/ back to the sources' fixtures. */
const FIXTURES = new URL('../../../test/fixtures/records/', import.meta.url);
const fixture = (name: string): string => readFileSync(new URL(name, FIXTURES), 'utf8');

const VOLUME = '3d1c9b7a-5e4f-4a2b-8c9d-0e1f2a3b4c5d';

function sampleRecord(overrides: Partial<BackupRecord> = {}): BackupRecord {
  return {
    id: 'b1',
    volume_id: 'v1',
    container: 'backups',
    service: CEPH_BACKUP_SERVICE,
    service_metadata: JSON.stringify({ base: 'volume-v1.backup.base' }),
    size: 1,
    object_count: 0,
    parent_id: null,
    status: 'available',
    display_name: 'name',
    display_description: 'description',
    created_at: '2024-05-01T10:00:00Z',
    updated_at: '2024-05-01T10:00:00Z',
    data_timestamp: '2024-05-01T10:00:00Z',
    availability_zone: null,
    snapshot_id: null,
    num_dependent_backups: 0,
    ...overrides,
  };
}

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value), 'utf8').toString('base64');

function refused(detail: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(e)}`);
    assert.ok(e instanceof CephError);
    assert.equal(e.code, 'EINVAL');
    assert.equal(e.operation, 'importRecord');
    assert.match(e.message, detail);
    return true;
  };
}

describe('exportRecord / importRecord', () => {
  test('the export is base64 of the record\'s JSON with Cinder\'s field names', () => {
    const record = sampleRecord();
    const text = exportRecord(record);
    assert.match(text, /^[A-Za-z0-9+/]+={0,2}$/);
    assert.deepEqual(JSON.parse(Buffer.from(text, 'base64').toString('utf8')), record);
  });

  test('round trip: import gives the record back, fields the type does not name included', () => {
    const record = { ...sampleRecord({ parent_id: 'b0', display_name: 'ünïcødé ✓' }), extra_field: { kept: [1, 2] } };
    assert.deepEqual(importRecord(exportRecord(record)), record);
  });

  test('the engine\'s exportRecord/importRecord are the same format', () => {
    const engine = new BackupEngine({ source: {} as Cluster });
    const record = sampleRecord();
    assert.equal(engine.exportRecord(record), exportRecord(record));
    assert.deepEqual(engine.importRecord(exportRecord(record)), record);
    assert.equal(publicApi.exportRecord, exportRecord);
    assert.equal(publicApi.importRecord, importRecord);
  });

  test('line breaks and spaces in the base64 are ignored (Python\'s encodestring wraps lines)', () => {
    const text = exportRecord(sampleRecord());
    const wrapped = `${text.match(/.{1,76}/g)!.join('\n')}\n`;
    assert.deepEqual(importRecord(wrapped), sampleRecord());
    assert.deepEqual(importRecord(`  ${text}\r\n`), sampleRecord());
  });

  test('fields the import does not require get defaults', () => {
    const minimal = {
      id: 'b1', volume_id: 'v1', display_name: null, display_description: null, container: 'backups', size: 2,
      service_metadata: null, object_count: 0,
    };
    const record = importRecord(b64(minimal));
    assert.equal(record.id, 'b1');
    assert.equal(record.size, 2);
    assert.equal(record.service, CEPH_BACKUP_SERVICE);
    assert.equal(record.parent_id, null);
    assert.equal(record.status, 'available');
    assert.equal(record.num_dependent_backups, 0);
    assert.equal(recordBaseImage(record), undefined);
  });

  test('without volume_id a record imports only when its service_metadata names a chain image carrying one', () => {
    const minimal = {
      id: 'b1', display_name: null, display_description: null, container: 'backups', size: 2, object_count: 0,
    };
    const record = importRecord(b64({ ...minimal, service_metadata: JSON.stringify({ base: 'volume-v7.backup.b0' }) }));
    assert.equal(record.volume_id, '', 'the default');
    assert.equal(recordBaseImage(record), 'volume-v7.backup.b0');
    for (const service_metadata of [null, '{}', JSON.stringify({ base: 'elsewhere' })]) {
      assert.throws(() => importRecord(b64({ ...minimal, service_metadata })),
        refused(/the record has no volume_id, and no service_metadata base image name that carries one/), String(service_metadata));
    }
  });

  test('a record naming another volume\'s image or a non-backup image does not import', () => {
    for (const base of ['volume-v2.backup.base', 'volume-v1', '../x']) {
      assert.throws(() => importRecord(b64(sampleRecord({ service_metadata: JSON.stringify({ base }) }))),
        refused(/must name a backup image of this volume/), base);
    }
  });

  test('base64 is required', () => {
    for (const text of ['', '   ', 'not base64!', '{"id": "b1"}', 'abc', 'ab=c', '====', 'é']) {
      assert.throws(() => importRecord(text), refused(/the record is not base64/), JSON.stringify(text));
    }
    assert.throws(() => importRecord(42 as unknown as string), refused(/the record must be a string/));
    assert.throws(() => importRecord(undefined as unknown as string), refused(/the record must be a string/));
  });

  test('JSON is required', () => {
    const text = Buffer.from('this is not json', 'utf8').toString('base64');
    assert.throws(() => importRecord(text), refused(/the record is base64 but not JSON/));
  });

  test('a JSON object is required', () => {
    for (const value of [null, [1, 2], 'text', 12, true]) {
      assert.throws(() => importRecord(b64(value)), refused(/the record is not a JSON object/), JSON.stringify(value));
    }
  });

  test('the required fields are Cinder\'s', () => {
    assert.deepEqual([...REQUIRED_IMPORT_FIELDS].sort(),
      ['container', 'display_description', 'display_name', 'id', 'object_count', 'service_metadata', 'size']);
  });

  for (const field of REQUIRED_IMPORT_FIELDS) {
    test(`a record without ${field} is refused, naming it`, () => {
      const record: Record<string, unknown> = { ...sampleRecord() };
      delete record[field];
      assert.throws(() => importRecord(b64(record)),
        refused(new RegExp(`the record lacks the required field\\(s\\) ${field}( |$)`)));
    });
  }

  test('a record lacking several fields names them all', () => {
    assert.throws(() => importRecord(b64({ id: 'b1', container: 'backups', size: 1, object_count: 0 })),
      refused(/lacks the required field\(s\) display_name, display_description, service_metadata/));
    assert.throws(() => importRecord(b64({})),
      (e: unknown) => {
        assert.ok(e instanceof InvalidArgumentError);
        for (const field of REQUIRED_IMPORT_FIELDS) assert.ok(e.message.includes(field), `${field} in ${e.message}`);
        return true;
      });
  });

  test('null is a value: required fields that are null are present', () => {
    const record = importRecord(b64({ ...sampleRecord(), display_name: null, display_description: null, service_metadata: null }));
    assert.equal(record.display_name, null);
    assert.equal(record.service_metadata, null);
  });

  test('ids that could address another image are refused', () => {
    for (const id of ['../x', 'a/b', 'a@b', 'UPPER', '', 'x'.repeat(65), '-a']) {
      assert.throws(() => importRecord(b64(sampleRecord({ id }))), InvalidArgumentError, `id ${id}`);
      assert.throws(() => importRecord(b64(sampleRecord({ volume_id: id || 'A' }))), InvalidArgumentError, `volume_id ${id}`);
      assert.throws(() => importRecord(b64(sampleRecord({ parent_id: id || 'A' }))), InvalidArgumentError, `parent_id ${id}`);
    }
  });

  test('wrong field types are refused', () => {
    assert.throws(() => importRecord(b64(sampleRecord({ container: '' }))), refused(/container must be a pool name/));
    assert.throws(() => importRecord(b64({ ...sampleRecord(), container: 5 })), refused(/container must be a pool name/));
    assert.throws(() => importRecord(b64({ ...sampleRecord(), size: '1' })), refused(/size must be a whole number of GiB/));
    assert.throws(() => importRecord(b64({ ...sampleRecord(), size: 1.5 })), refused(/size must be a whole number of GiB/));
    assert.throws(() => importRecord(b64({ ...sampleRecord(), size: -1 })), refused(/size must be a whole number of GiB/));
    assert.throws(() => importRecord(b64({ ...sampleRecord(), service_metadata: { base: 'x' } })),
      refused(/service_metadata must be a string or null/));
  });
});

describe('records exported by Cinder', () => {
  test('a Cinder-shaped record with all of Cinder\'s fields imports, every field kept', () => {
    const json = JSON.parse(fixture('cinder-ceph-backup.json')) as Record<string, unknown>;
    for (const field of ['id', 'user_id', 'project_id', 'volume_id', 'host', 'availability_zone', 'container',
      'parent_id', 'status', 'fail_reason', 'size', 'display_name', 'display_description', 'service_metadata',
      'service', 'object_count', 'temp_volume_id', 'temp_snapshot_id', 'num_dependent_backups', 'snapshot_id',
      'data_timestamp', 'restore_volume_id', 'metadata', 'encryption_key_id', 'created_at', 'updated_at',
      'deleted_at', 'deleted', 'driver_info']) {
      assert.ok(field in json, `fixture has ${field}`);
    }
    const record = importRecord(fixture('cinder-ceph-backup.b64'));
    assert.deepEqual(record, json);
    assert.equal(record.service, 'cinder.backup.drivers.ceph.CephBackupDriver');
    assert.equal(record.service, CEPH_BACKUP_SERVICE);
    assert.equal(record.volume_id, VOLUME);
    assert.equal(record.created_at, '2024-05-01T10:00:00Z');
    assert.equal(recordBaseImage(record), `volume-${VOLUME}.backup.base`);
  });

  test('the same record exported in Python json.dumps spacing imports from freshly encoded text', () => {
    const text = fixture('cinder-ceph-backup.json').trim();
    assert.ok(text.includes('", "'), 'the fixture has Python\'s separators');
    const record = importRecord(Buffer.from(text, 'utf8').toString('base64'));
    assert.equal(record.id, '6f5a7c1e-2b3d-4e8f-9a0b-1c2d3e4f5a6b');
    assert.equal(record.parent_id, '1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d');
  });

  test('a legacy (non-diff) record, wrapped at 76 columns, imports with no base image', () => {
    const record = importRecord(fixture('legacy-backup.b64'));
    assert.deepEqual(record, JSON.parse(fixture('legacy-backup.json')));
    assert.equal(record.service_metadata, null);
    assert.equal(recordBaseImage(record), undefined);
  });

  test('an imported Cinder record exports again and round trips', () => {
    const record = importRecord(fixture('cinder-ceph-backup.b64'));
    assert.deepEqual(importRecord(exportRecord(record)), record);
  });
});

describe('recordBaseImage', () => {
  test('the base named in service_metadata', () => {
    assert.equal(recordBaseImage({ service_metadata: '{"base": "volume-v1.backup.base"}' }), 'volume-v1.backup.base');
    assert.equal(recordBaseImage({ service_metadata: JSON.stringify({ base: 'other', more: 1 }) }), 'other');
  });

  test('no base: null, empty, not JSON, no base key, base not a string', () => {
    for (const service_metadata of [null, '', 'not json', '{}', '{"base": 5}', '["base"]', 'null', '"base"']) {
      assert.equal(recordBaseImage({ service_metadata }), undefined, String(service_metadata));
    }
    assert.equal(recordBaseImage({ service_metadata: undefined as unknown as null }), undefined);
  });
});

describe('recordLocation', () => {
  function invalid(detail: RegExp): (e: unknown) => boolean {
    return (e) => {
      assert.ok(e instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(e)}`);
      assert.equal(e.code, 'EINVAL');
      assert.equal(e.operation, 'restore');
      assert.match(e.message, detail);
      return true;
    };
  }

  test('a Train+ record: its ids, its chain image, its container', () => {
    const record = sampleRecord({ service_metadata: JSON.stringify({ base: 'volume-v1.backup.b0' }) });
    assert.deepEqual(recordLocation(record, 'restore'), {
      backupId: 'b1', subject: volumeSubject('v1', 'test'), namedImage: 'volume-v1.backup.b0', container: 'backups', fromVolumeSnapshot: false,
    });
  });

  test('a pre-Train record naming .backup.base, and a legacy one naming nothing', () => {
    assert.equal(recordLocation(sampleRecord(), 'restore').namedImage, 'volume-v1.backup.base');
    const legacy = recordLocation(sampleRecord({ service_metadata: null, container: '' }), 'restore');
    assert.equal(legacy.namedImage, undefined);
    assert.deepEqual(legacy.subject, volumeSubject('v1', 'test'));
    assert.equal(legacy.container, undefined, 'an empty container leaves the pool to the engine');
  });

  test('a record of a backup taken from a volume snapshot says so', () => {
    assert.equal(recordLocation(sampleRecord({ snapshot_id: 's1' }), 'restore').fromVolumeSnapshot, true);
    assert.equal(recordLocation(sampleRecord({ snapshot_id: '' }), 'restore').fromVolumeSnapshot, false);
  });

  test('no volume_id: taken from the chain image name, which must carry one', () => {
    for (const volume_id of ['', null, undefined]) {
      const record = sampleRecord({ volume_id: volume_id as string, service_metadata: JSON.stringify({ base: 'volume-v7.backup.b0' }) });
      const location = recordLocation(record, 'restore');
      assert.deepEqual(location.subject, volumeSubject('v7', 'test'), String(volume_id));
      assert.equal(location.namedImage, 'volume-v7.backup.b0');
    }
    for (const service_metadata of [null, '', '{}', '{"other": 1}', 'not json']) {
      assert.throws(() => recordLocation(sampleRecord({ volume_id: '', service_metadata }), 'restore'),
        invalid(/the record has no volume_id, and no service_metadata base image name that carries one/),
        String(service_metadata));
    }
    // A name that carries no valid volume id.
    for (const base of ['volume-A.backup.base', 'volume-../x.backup.base', 'other']) {
      assert.throws(() => recordLocation(sampleRecord({ volume_id: '', service_metadata: JSON.stringify({ base }) }), 'restore'),
        InvalidArgumentError, base);
    }
  });

  test('a record naming another volume\'s image or a non-backup image is refused', () => {
    for (const base of ['volume-v2.backup.base', 'volume-v2.backup.b1', 'volume-v1', 'volume-v1.backup.b1@snap',
      '../x', 'rbd/volume-v1.backup.base', 'volume-v1.backup.', 'volume-v1.backup.B1']) {
      assert.throws(() => recordLocation(sampleRecord({ service_metadata: JSON.stringify({ base }) }), 'restore'),
        invalid(/the record's service_metadata must name a backup image of this volume \(volume-v1\.backup\./), base);
    }
  });

  test('bad ids, a bad container and no record are refused', () => {
    for (const overrides of [{ id: '../x' }, { id: 'A' }, { id: '' }, { volume_id: 'a/b' }, { volume_id: 'a@b' }]) {
      assert.throws(() => recordLocation(sampleRecord(overrides), 'restore'), InvalidArgumentError, JSON.stringify(overrides));
    }
    assert.throws(() => recordLocation({ ...sampleRecord(), container: 5 }, 'restore'), invalid(/container must be a pool name/));
    for (const record of [null, undefined, 'b1', 5]) {
      assert.throws(() => recordLocation(record, 'restore'), invalid(/a backup record is required/), String(record));
    }
  });

  test('the records newRecord makes locate their chain image, or name none for a legacy copy', () => {
    const fields = { id: 'b2', subject: 'v1', container: 'backups', sizeBytes: 1n, parentId: 'b1', createdAt: new Date(0) };
    const chained = newRecord({ ...fields, baseImage: 'volume-v1.backup.b1' });
    assert.deepEqual(JSON.parse(chained.service_metadata!), { base: 'volume-v1.backup.b1' });
    assert.equal(recordLocation(chained, 'restore').namedImage, 'volume-v1.backup.b1');
    const legacy = newRecord({ ...fields, baseImage: undefined });
    assert.equal(legacy.service_metadata, null);
    assert.equal(recordLocation(legacy, 'restore').namedImage, undefined);
  });
});

describe('isoTime', () => {
  test('Cinder\'s form: seconds and Z', () => {
    assert.equal(isoTime(new Date(Date.UTC(2024, 4, 1, 10, 0, 0, 789))), '2024-05-01T10:00:00Z');
  });
});

describe('records of named images', () => {
  const subject = imageSubject({ pool: 'rbd', image: 'vm-100-disk-0' }, 'test');
  const chain = 'image.rbd.vm-100-disk-0.backup.b1';
  const named = (overrides: Record<string, unknown> = {}): Record<string, unknown> => ({
    ...newRecord({ id: 'b2', subject, container: 'backups', baseImage: chain, sizeBytes: 1n, parentId: 'b1', createdAt: new Date(0) }),
    ...overrides,
  });

  test('Cinder\'s fields, volume_id empty, the chain image in service_metadata, the image in source_image', () => {
    const record = named();
    assert.equal(record.volume_id, '');
    assert.deepEqual(JSON.parse(record.service_metadata as string), { base: chain });
    assert.deepEqual(record.source_image, { pool: 'rbd', namespace: '', name: 'vm-100-disk-0' });
    for (const field of REQUIRED_IMPORT_FIELDS) assert.ok(field in record, field);
    assert.equal('source_image' in newRecord({ id: 'b2', subject: 'v1', container: 'backups', baseImage: undefined, sizeBytes: 1n,
      parentId: null, createdAt: new Date(0) }), false, 'a volume\'s record is as it was');
  });

  test('round trip through export and import; the location is the image', () => {
    const record = named();
    const imported = importRecord(exportRecord(record as unknown as BackupRecord));
    assert.deepEqual(imported, record);
    assert.deepEqual(recordLocation(imported, 'restore'), {
      backupId: 'b2', subject, namedImage: chain, container: 'backups', fromVolumeSnapshot: false,
    });
  });

  test('without source_image (a round trip through Cinder drops it) the chain image name carries the image', () => {
    for (const source_image of [undefined, null, '']) {
      assert.deepEqual(recordLocation(named({ source_image }), 'restore').subject, subject, String(source_image));
    }
    const unicode = imageSubject({ pool: 'rbd', namespace: 'ns', image: 'диск.0' }, 'test');
    const base = `${unicode.key}.backup.b1`;
    assert.deepEqual(recordLocation(named({ source_image: undefined, service_metadata: JSON.stringify({ base }) }), 'restore').subject, unicode);
  });

  test('a record can address only its own image\'s backups', () => {
    const invalid = (overrides: Record<string, unknown>, detail: RegExp): void => {
      assert.throws(() => recordLocation(named(overrides), 'restore'), (e: unknown) => {
        assert.ok(e instanceof InvalidArgumentError, String(e));
        assert.match(e.message, detail);
        return true;
      }, JSON.stringify(overrides));
      assert.throws(() => importRecord(b64(named(overrides))), InvalidArgumentError, JSON.stringify(overrides));
    };
    invalid({ volume_id: 'v1' }, /names both a volume_id and a source_image/);
    invalid({ source_image: { pool: 'other', namespace: '', name: 'vm-100-disk-0' } }, /must name a backup image of this image \(image\.other\.vm-100-disk-0/);
    invalid({ source_image: { pool: 'rbd', namespace: '', name: 'vm-100-disk-1' } }, /must name a backup image of this image/);
    invalid({ service_metadata: JSON.stringify({ base: 'volume-v1.backup.b1' }) }, /must name a backup image of this image/);
    invalid({ service_metadata: JSON.stringify({ base: 'image.rbd.vm-100-disk-0%2Ebackup.backup.b1' }) }, /must name a backup image of this image/);
    invalid({ source_image: { pool: 'rbd', namespace: '', name: 'a/b' } }, /must not contain '\/' or '@'/);
    invalid({ source_image: { pool: 'rbd', namespace: '', name: 'volume-v1' } }, /a Cinder volume's/);
    invalid({ source_image: 'rbd/vm-100-disk-0' }, /source_image must be \{ "pool", "namespace", "name" \}/);
    invalid({ source_image: undefined, service_metadata: JSON.stringify({ base: 'image.rbd.vm%2D1.backup.b1' }) },
      /no service_metadata base image name that carries one \(nor a source_image\)/);
  });
});
