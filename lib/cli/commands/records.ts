/** rbd-backup export-record and import-record: Cinder's base64 backup records. */
import { describeSubject } from '../../backup/naming.js';
import { CEPH_BACKUP_SERVICE, importRecord, isFileLayoutRecord, recordLocation, type BackupRecord } from '../../backup/record.js';
import { NotFoundError } from '../../ceph/errors.js';
import { UsageError } from '../exit-codes.js';
import {
  optional, readUserFile, required, resolveRecord, SUBJECT_HELP, SUBJECT_OPTIONS, subjectOption, type Command, type Output, type Values,
} from '../command.js';

export const exportRecord: Command = {
  summary: "print a backup's record (Cinder's base64 format)",
  usage: `rbd-backup export-record (--volume ID | --image NAME -p POOL [--namespace NS]) --backup-id ID

${SUBJECT_HELP}`,
  options: { ...SUBJECT_OPTIONS, 'backup-id': { type: 'string' } },
  async prepare(values) {
    const subject = subjectOption(values);
    if (subject === undefined) throw new UsageError('--volume ID or --image NAME is required');
    if (values.image === undefined && values.pool !== undefined) throw new UsageError('-p/--pool goes with --image NAME');
    const ref = { subject, backupId: required(values, 'backup-id') };
    return {
      offline: false,
      async run(engine) {
        const record = await resolveRecord(engine, ref);
        const exportedRecord = engine.exportRecord(record);
        return { data: { record, exportedRecord }, text: exportedRecord };
      },
    };
  },
};

/** The record text of `import-record [SERVICE] RECORD` or `--record-file`. */
async function recordText(values: Values, positionals: string[]): Promise<string> {
  const file = optional(values, 'record-file');
  if (file !== undefined && positionals.length > 0) throw new UsageError('give the record or --record-file, not both');
  if (file !== undefined) return readUserFile(file, '--record-file');
  if (positionals.length === 2) {
    // Cinder's form: cinder backup-import <backup_service> <backup_url>.
    if (positionals[0] !== CEPH_BACKUP_SERVICE && !isFileLayoutRecord({ service: positionals[0] })) {
      throw new UsageError(`the backup service must be ${CEPH_BACKUP_SERVICE}, or Cinder's NFS or POSIX driver's (backups in files), got ${JSON.stringify(positionals[0])}`);
    }
    return positionals[1];
  }
  if (positionals.length !== 1) throw new UsageError('give the record: RECORD, SERVICE RECORD (as cinder backup-import takes them), or --record-file PATH');
  return positionals[0];
}

function describe(r: BackupRecord): string {
  const subject = recordLocation(r, 'import-record').subject;
  return `backup ${r.id} of ${describeSubject(subject)} in pool ${r.container}, ${r.size} GiB, base ${r.service_metadata ?? '(legacy)'}`;
}

export const importRecordCommand: Command = {
  summary: "check a record (ours or Cinder's) and show what it names; --check: that it exists",
  usage: `rbd-backup import-record (RECORD | ${CEPH_BACKUP_SERVICE} RECORD | --record-file PATH) [--check]

  RECORD            the base64 record (Cinder's backup_url); Cinder's two-argument form
                    (backup service, then the record) is accepted as well
  --check           connect and check that the backup exists in the pool the record names`,
  options: { 'record-file': { type: 'string' }, check: { type: 'boolean' } },
  positionals: true,
  async prepare(values, positionals) {
    const record = importRecord(await recordText(values, positionals));
    if (values.check !== true) {
      return { offline: true, run: async (): Promise<Output> => ({ data: { record }, text: describe(record) }) };
    }
    return {
      offline: false,
      ...(record.container ? { backupPool: record.container } : {}),
      async run(engine) {
        const { subject } = recordLocation(record, 'import-record');
        const listed = (await engine.listBackups(subject)).find((l) => l.record.id === record.id);
        if (listed === undefined) {
          throw new NotFoundError({
            code: 'ENOENT', operation: 'import-record', resource: `${engine.config.backupPool}/${subject.key}`,
            detail: `the record names backup ${record.id} of ${describeSubject(subject)}, which is not in pool ${engine.config.backupPool}; check the record and the backup cluster (--backup-conf)`,
          });
        }
        const where = `${engine.config.backupPool}/${listed.image}${listed.snapshot ? `@${listed.snapshot}` : ''}`;
        return { data: { record, found: where }, text: `${describe(record)}\nfound: ${where}` };
      },
    };
  },
};
