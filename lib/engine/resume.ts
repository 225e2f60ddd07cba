/**
 * Transfers that resume. A transfer records on its target image how far
 * it has come: the image metadata key rbd-backup.transfer (what it moves,
 * from which snapshots, and `done`: every byte below was written and
 * acknowledged), and with digests their final entries so far in the
 * object rbd-backup.transfer.<target id>.digests of the target's pool. A
 * transfer of the same source snapshot (by id) into the same target picks
 * up from there once the record checks out; otherwise it starts clean and
 * says why.
 */
import { NotFoundError } from '../ceph/errors.js';
import type { Image } from '../ceph/image.js';
import { DigestTable } from './digest-table.js';
import { logEngine } from './log.js';

export const RESUME_KEY = 'rbd-backup.transfer';

/** What must be the same for a transfer to continue another's work: ids, not only names. */
export interface TransferIdentity {
  kind: 'diff' | 'copy';
  /** pool/image of the source, and its id (the data objects' prefix). */
  source: string;
  sourceId: string;
  snapshot: string;
  snapshotId: string;
  /** A diff's from-snapshot, by its id on the source and on the target. */
  from?: { name: string; sourceId: string; targetId: string };
  length: string;
  /** With digests: their block size. */
  digestBlock?: string;
}

/** How the first run judged its target, kept: by now the target holds what that run wrote. */
export interface TargetPlan {
  targetIsZero: boolean;
  zeroGaps: boolean;
}

export interface ResumeRecord extends TransferIdentity, TargetPlan {
  version: 1;
  done: string;
  updatedAt: string;
}

export interface ResumePoint extends TargetPlan {
  /** Where the transfer picks up (with digests, on a block boundary). */
  start: bigint;
  /** With digests: the final entries of the blocks below start. */
  digests?: Buffer;
}

/** The snapshot ids and image ids that make an identity, read from the open images. */
export async function identify(source: Image, target: Image, parts: {
  kind: TransferIdentity['kind']; snapshot: string; fromSnapshot: string | undefined; length: bigint; digestBlock: bigint | undefined;
}): Promise<TransferIdentity | undefined> {
  const [sourceStat, sourceSnapshots, targetSnapshots] = await Promise.all([source.stat(), source.listSnapshots(), target.listSnapshots()]);
  const end = sourceSnapshots.find((s) => s.name === parts.snapshot);
  if (end === undefined) return undefined;
  let from: TransferIdentity['from'];
  if (parts.fromSnapshot !== undefined) {
    const onSource = sourceSnapshots.find((s) => s.name === parts.fromSnapshot);
    const onTarget = targetSnapshots.find((s) => s.name === parts.fromSnapshot);
    if (onSource === undefined || onTarget === undefined) return undefined;
    from = { name: parts.fromSnapshot, sourceId: onSource.id.toString(), targetId: onTarget.id.toString() };
  }
  return {
    kind: parts.kind, source: `${source.pool.spec}/${source.name}`, sourceId: sourceStat.blockNamePrefix,
    snapshot: parts.snapshot, snapshotId: end.id.toString(), ...(from === undefined ? {} : { from }),
    length: parts.length.toString(),
    ...(parts.digestBlock === undefined ? {} : { digestBlock: parts.digestBlock.toString() }),
  };
}

async function digestsObject(target: Image): Promise<string> {
  const { blockNamePrefix } = await target.stat();
  return `${RESUME_KEY}.${blockNamePrefix.replace(/^rbd_data\./, '')}.digests`;
}

const IDENTITY_FIELDS: Array<keyof TransferIdentity> = ['kind', 'source', 'sourceId', 'snapshot', 'snapshotId', 'length', 'digestBlock'];

/** Why a record does not describe this transfer, or undefined when it does. */
function mismatch(record: Partial<ResumeRecord>, identity: TransferIdentity): string | undefined {
  if (record.version !== 1) return `a record of version ${String(record.version)}`;
  for (const field of IDENTITY_FIELDS) {
    if (record[field] !== identity[field]) return `its ${field} was ${String(record[field])}, now ${String(identity[field])}`;
  }
  if (JSON.stringify(record.from ?? null) !== JSON.stringify(identity.from ?? null)) {
    return `its from-snapshot was ${JSON.stringify(record.from ?? null)}, now ${JSON.stringify(identity.from ?? null)}`;
  }
  if (typeof record.done !== 'string' || !/^\d+$/.test(record.done) || BigInt(record.done) > BigInt(identity.length)) {
    return 'its progress is not a byte count within the length';
  }
  if (typeof record.targetIsZero !== 'boolean' || typeof record.zeroGaps !== 'boolean') return 'it does not say how its target was written';
  return undefined;
}

/**
 * Where a transfer of this identity into target picks up: undefined when
 * there is nothing to resume; { refused } when a record is there but does
 * not describe this transfer (it is removed: the transfer starts clean).
 */
export async function resumePoint(target: Image, identity: TransferIdentity): Promise<ResumePoint | { refused: string } | undefined> {
  const record = await readResumeRecord(target);
  if (record === undefined) return undefined;
  const why = mismatch(record, identity);
  const refuse = async (reason: string): Promise<{ refused: string }> => {
    await clearResume(target);
    return { refused: reason };
  };
  if (why !== undefined) return refuse(`the target's progress record is another transfer's (${why})`);
  const done = BigInt(record.done!);
  const plan = { targetIsZero: record.targetIsZero!, zeroGaps: record.zeroGaps! };
  if (identity.digestBlock === undefined) return { start: done, ...plan };
  const blockSize = BigInt(identity.digestBlock);
  const blocks = done >= BigInt(identity.length) ? DigestTable.blocksOf(BigInt(identity.length), blockSize) : done / blockSize;
  let entries: Buffer;
  try {
    entries = await target.pool.readObject(await digestsObject(target));
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
    return refuse('the digests of its progress are missing');
  }
  if (BigInt(entries.length) < blocks * 8n) return refuse(`the digests of its progress cover ${entries.length / 8} blocks, not ${blocks}`);
  const start = blocks * blockSize < BigInt(identity.length) ? blocks * blockSize : BigInt(identity.length);
  return { start, digests: entries.subarray(0, Number(blocks) * 8), ...plan };
}

/**
 * The progress record on an image: undefined when it has none, {} when it
 * does not parse; its fields unchecked (mismatch() checks them).
 */
export async function readResumeRecord(image: Image): Promise<Partial<ResumeRecord> | undefined> {
  const text = await image.getMetadata(RESUME_KEY);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as Partial<ResumeRecord>;
  } catch {
    return {};
  }
}

/** Removes a target's progress record (after its transfer completed, or when it is another's). */
export async function clearResume(target: Image): Promise<void> {
  await target.removeMetadata(RESUME_KEY).catch((error: unknown) => {
    if (!(error instanceof NotFoundError)) throw error;
  });
  await target.pool.removeObject(await digestsObject(target)).catch((error: unknown) => {
    if (!(error instanceof NotFoundError)) throw error;
  });
}

/** Records progress now and then; never fails the transfer (a record not written only means less to skip). */
export class Checkpointer {
  readonly #target: Image;
  readonly #identity: TransferIdentity;
  readonly #plan: TargetPlan;
  /** With digests: the final entries so far (a copy grown as reports come). */
  #entries: Buffer | undefined;
  #finalBlocks = 0;
  #done: bigint;
  #written: bigint;
  /** A transfer shorter than the interval records nothing (and costs no round trip). */
  #lastWrite = performance.now();
  #records = 0;
  #writing: Promise<void> = Promise.resolve();
  #busy = false;
  readonly #intervalMs: number;

  constructor(target: Image, identity: TransferIdentity, plan: TargetPlan, start: ResumePoint | undefined, intervalMs = 1000) {
    this.#target = target;
    this.#identity = identity;
    this.#plan = plan;
    this.#done = start?.start ?? 0n;
    this.#written = this.#done;
    if (identity.digestBlock !== undefined) {
      const count = Number(DigestTable.blocksOf(BigInt(identity.length), BigInt(identity.digestBlock)));
      this.#entries = Buffer.alloc(count * 8);
      if (start?.digests !== undefined) {
        start.digests.copy(this.#entries);
        this.#finalBlocks = start.digests.length / 8;
      }
    }
    // A table of 8 MiB is written at most every 8 s: checkpoints cost a
    // small share of what the transfer moves, whatever the volume size.
    this.#intervalMs = Math.max(intervalMs, ((this.#entries?.length ?? 0) / (1 << 20)) * 1000);
  }

  /** A progress report of the native job. */
  report(done: bigint, digestsFrom: number, digests: Buffer | undefined): void {
    if (this.#entries !== undefined && digests !== undefined) {
      if (digestsFrom !== this.#finalBlocks) {
        // A report was lost (its queue was full): the digests so far are unknown, so nothing more is recorded.
        logEngine('transfer checkpoints of %s stop: digest entries from block %d arrived, %d expected', this.#target.spec, digestsFrom, this.#finalBlocks);
        this.#entries = undefined;
        return;
      }
      digests.copy(this.#entries, digestsFrom * 8);
      this.#finalBlocks += digests.length / 8;
    }
    if (this.#identity.digestBlock !== undefined && this.#entries === undefined) return;
    this.#done = done;
    if (this.#busy || done === this.#written || performance.now() - this.#lastWrite < this.#intervalMs) return;
    this.#busy = true;
    this.#lastWrite = performance.now();
    this.#writing = this.#write().finally(() => { this.#busy = false; });
  }

  async #write(): Promise<void> {
    const done = this.#done;
    // Counted before: one that fails may still have landed.
    this.#records++;
    try {
      if (this.#entries !== undefined) {
        // First: a record never claims blocks whose digests are not stored.
        await this.#target.pool.writeObject(await digestsObject(this.#target), this.#entries.subarray(0, this.#finalBlocks * 8));
      }
      const record: ResumeRecord = {
        version: 1, ...this.#identity, ...this.#plan, done: done.toString(), updatedAt: new Date().toISOString(),
      };
      await this.#target.setMetadata(RESUME_KEY, JSON.stringify(record));
      this.#written = done;
    } catch (error) {
      logEngine('transfer checkpoint of %s failed: %s', this.#target.spec, (error as Error).message);
    }
  }

  /** Waits for a checkpoint write in flight (before the record is removed or the call returns). */
  settled(): Promise<void> {
    return this.#writing;
  }

  /** Records written or tried (one that failed may still have landed): a record to remove once the transfer is complete. */
  get records(): number {
    return this.#records;
  }
}

/** A transfer's identity and where it picks up, or why it starts clean. */
export interface Resuming {
  identity: TransferIdentity;
  point: ResumePoint | undefined;
  /** Why a record on the target was not taken (it was removed). */
  refused: string | undefined;
}

/** What a transfer into target resumes from; undefined when its snapshots cannot be identified (nothing is recorded then). */
export async function findResume(source: Image, target: Image, parts: Parameters<typeof identify>[2]): Promise<Resuming | undefined> {
  const identity = await identify(source, target, parts);
  if (identity === undefined) return undefined;
  const found = await resumePoint(target, identity);
  if (found !== undefined && 'refused' in found) {
    logEngine('transfer into %s starts clean: %s', target.spec, found.refused);
    return { identity, point: undefined, refused: found.refused };
  }
  if (found !== undefined) logEngine('transfer into %s resumes at byte %d', target.spec, found.start);
  return { identity, point: found, refused: undefined };
}
