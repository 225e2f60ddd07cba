/**
 * What the backup pool keeps of each backup beside its snapshot, so that a
 * listing read from the pool alone (a lost database, another cluster) still
 * has the backup's name, description and how much it changed: one image
 * metadata key per backup on its chain image,
 * `rbd-backup.backup.<backup id>` = JSON `{ "version": 1, "display_name",
 * "display_description", "bytes_written", "snapshot"?, "pending_since"? }`
 * (an incremental's is written with pending_since before its transfer and
 * without once complete; snapshot names its snapshot). Cinder neither writes nor
 * reads these keys; a chain image without them (written by Cinder, or by an
 * older version of this project) lists its backups without names.
 */
import { NotFoundError } from '../ceph/errors.js';
import type { Image } from '../ceph/image.js';

export const BACKUP_INFO_PREFIX = 'rbd-backup.backup.';
const VERSION = 1;

export interface BackupInfo {
  displayName: string | null;
  displayDescription: string | null;
  /** Bytes the backup's transfer wrote into the chain image: what changed since its parent (all data for a full one). */
  bytesWritten: bigint | null;
  /**
   * Set from before an incremental's transfer until it is complete: a
   * snapshot of a backup still pending is no backup (a failed run's, or
   * one the OSD wrote after librbd had given up on it), and gc removes it.
   */
  pendingSince?: Date;
  /**
   * The backup's snapshot on the chain image: another snapshot of the same
   * backup id (a late one of a failed attempt the retry reused the id of)
   * is no backup either. Absent in infos older than it (and Cinder's
   * backups have no info at all): then any snapshot of the id is.
   */
  snapshot?: string;
}

export function backupInfoKey(backupId: string): string {
  return `${BACKUP_INFO_PREFIX}${backupId}`;
}

/** Removes a backup's info from its chain image; one that has none (Cinder's backups) is fine. */
export async function removeBackupInfo(chain: Image, backupId: string): Promise<void> {
  try {
    await chain.removeMetadata(backupInfoKey(backupId));
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
  }
}

export function encodeBackupInfo(info: BackupInfo): string {
  return JSON.stringify({
    version: VERSION, display_name: info.displayName, display_description: info.displayDescription,
    bytes_written: info.bytesWritten === null ? null : Number(info.bytesWritten),
    ...(info.pendingSince === undefined ? {} : { pending_since: info.pendingSince.toISOString() }),
    ...(info.snapshot === undefined ? {} : { snapshot: info.snapshot }),
  });
}

const text = (value: unknown): string | null => (typeof value === 'string' ? value : null);

/** The backups' info from a chain image's metadata, by backup id; a value that does not parse is left out. */
export function decodeBackupInfos(metadata: ReadonlyMap<string, string>): Map<string, BackupInfo> {
  const infos = new Map<string, BackupInfo>();
  for (const [key, value] of metadata) {
    if (!key.startsWith(BACKUP_INFO_PREFIX)) continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch {
      continue;
    }
    if (!parsed || typeof parsed !== 'object') continue;
    const fields = parsed as Record<string, unknown>;
    const bytes = fields.bytes_written;
    const pending = fields.pending_since === undefined ? undefined : new Date(String(fields.pending_since));
    infos.set(key.slice(BACKUP_INFO_PREFIX.length), {
      displayName: text(fields.display_name),
      displayDescription: text(fields.display_description),
      bytesWritten: typeof bytes === 'number' && Number.isSafeInteger(bytes) && bytes >= 0 ? BigInt(bytes) : null,
      // A mark whose date does not parse is still a mark: its backup never completed.
      ...(pending === undefined ? {} : { pendingSince: Number.isNaN(pending.getTime()) ? new Date(0) : pending }),
      ...(typeof fields.snapshot === 'string' ? { snapshot: fields.snapshot } : {}),
    });
  }
  return infos;
}
