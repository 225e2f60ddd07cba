/** rbd-backup verify: a backup against the block digests its transfer stored. */
import type { VerifyMode } from '../../backup/verify.js';
import { backupRef, optional, RECORD_HELP, RECORD_OPTIONS, resolveRecord, type Command } from '../command.js';
import { EXIT, UsageError } from '../exit-codes.js';
import { formatBytes } from '../format.js';

const MODES: readonly VerifyMode[] = ['quick', 'deep', 'source'];

export const verify: Command = {
  summary: 'check a backup against its block digests (exit 8 on a mismatch)',
  usage: `rbd-backup verify (--record TEXT | --record-file PATH | (--volume ID | --image NAME -p POOL) --backup-id ID)
                  [--mode quick|deep|source] [--sample PERCENT] [-p POOL]

${RECORD_HELP}
  --mode MODE           quick (default): the digests are whole and match the backup;
                        deep: read the backup's data again and compare every block;
                        source: read the source volume's snapshot of the backup instead
  --sample PERCENT      with deep or source: read this share of the blocks, at random
  -p, --pool POOL       with source: the source volume's pool (with --image, its own)`,
  options: { ...RECORD_OPTIONS, mode: { type: 'string' }, sample: { type: 'string' } },
  async prepare(values) {
    const mode = optional(values, 'mode') ?? 'quick';
    if (!(MODES as readonly string[]).includes(mode)) throw new UsageError(`--mode is one of ${MODES.join(', ')}, not ${mode}`);
    const sampleText = optional(values, 'sample');
    const samplePercent = sampleText === undefined ? undefined : Number(sampleText);
    if (samplePercent !== undefined && !(samplePercent > 0 && samplePercent <= 100)) {
      throw new UsageError(`--sample is a percentage above 0 and at most 100, not ${String(sampleText)}`);
    }
    const sourcePool = mode === 'source' ? optional(values, 'pool') : undefined;
    const ref = await backupRef(values);
    return {
      offline: false,
      async run(engine, ui) {
        const record = await resolveRecord(engine, ref);
        const progress = mode === 'quick' ? undefined : ui.progress('verify');
        let r;
        try {
          r = await engine.verify(record, {
            mode: mode as VerifyMode, signal: ui.signal,
            ...(samplePercent === undefined ? {} : { samplePercent }),
            ...(sourcePool === undefined ? {} : { sourcePool }),
            ...(progress === undefined ? {} : { onProgress: (p) => progress.onProgress(p) }),
          });
        } finally {
          progress?.finish();
        }
        const compared = r.mode === 'quick'
          ? `${r.blocks} digests of ${formatBytes(r.blockSize)} blocks whole and consistent`
          : `${r.blocksChecked} of ${r.blocks} blocks of ${formatBytes(r.blockSize)} compared, ${formatBytes(r.bytesRead)} read from ${r.checked} at ${formatBytes(BigInt(Math.round(r.readRate)))}/s`;
        return {
          data: r,
          exitCode: r.ok ? EXIT.ok : EXIT.mismatch,
          text: [
            `backup ${r.backupId}: ${r.ok ? 'OK' : `MISMATCH in ${r.mismatches.length} range(s)`} (${r.mode}${r.samplePercent === undefined ? '' : `, ${r.samplePercent}% sample`}): ${compared}`,
            ...r.mismatches.map((m) => `  ${formatBytes(m.length)} at offset ${m.offset} do not match their digests`),
            ...(r.blocksUnknown > 0 ? [`${r.blocksUnknown} block(s) have no digest (the chain's earlier backups were not hashed): a full backup starts a verifiable chain`] : []),
            `point digest ${r.pointDigest}`,
          ].join('\n'),
        };
      },
    };
  },
};
