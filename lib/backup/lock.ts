/**
 * The per-volume lock that keeps two backups of one volume (or a backup and
 * a delete or prune, or two restores into one volume) from running at once,
 * across processes and hosts: a RADOS lock on an object, renewed while held. Like
 * librbd's exclusive lock, the holder keeps a watch on the lock object and
 * answers notifies; a contender that finds the lock held sends one, and a
 * holder that does not answer is dead (or cut off): the contender fences it
 * by blocklisting its address and breaks its lock, instead of waiting out
 * the lock's life.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { BusyError, CephError, NotFoundError } from '../ceph/errors.js';
import type { Pool } from '../ceph/pool.js';
import type { ObjectWatch } from '../ceph/watch.js';
import { logBackup } from './log.js';
import { describeSubject, lockObjectName, resolveSubject, type Subject } from './naming.js';

const LOCK_NAME = 'rbd-backup';
/**
 * A killed holder's watch ends on the OSD after this long (rados_watch3's
 * timeout; at least twice librados' 5 s ping interval). Contenders do not
 * wait for it: a dead holder answers no notify while its watch lingers.
 */
const WATCH_TIMEOUT_SECONDS = 10;
/** How long a live holder has to answer: its librados thread answers at once. */
const NOTIFY_TIMEOUT_MS = 3000;
/**
 * A fenced client stays blocklisted this long (Ceph's own default for
 * `osd blocklist add`): long past any stall it could wake up from.
 */
const BLOCKLIST_SECONDS = 3600;

// Made in naming.ts with every other name; the fault suite and the tests take them from here.
export { lockObjectName, restoreLockObjectName } from './naming.js';

/** Who holds a lock, as RADOS reports it. */
export interface LockHolder {
  /** 'client.<gid>' */
  client: string;
  address: string;
  /** What the holder wrote into the lock object: the operation, volume, host and pid. */
  description: string;
}

export interface LockOptions {
  /** How long to wait for a lock a live holder has. */
  waitMs: number;
  /** How long the lock lives without renewal (renewed every third of it). */
  ttlMs: number;
  /** 'skip': fail at once with a BusyError naming the live holder instead of waiting. */
  onBusy?: 'wait' | 'skip';
  /** Called once when a live holder is found and waited for. */
  onWait?: (holder: LockHolder) => void;
  /** The lock object; default the subject's backup lock, lockObjectName(subject). */
  object?: string;
  /** Called when a dead holder's lock was broken. */
  onBreak?: (holder: LockHolder) => void;
  /** Said in the description, in parentheses after the subject, for whoever finds the lock (a restore names its backup). */
  note?: string;
  /**
   * Read what the lock object said when this run took the lock (see
   * VolumeLock.previous), in the same round trip as the lock.
   */
  readPrevious?: boolean;
  /** Stops the waiting (rejecting with its reason): the caller's time is up. */
  signal?: AbortSignal;
}

/** The holder of the lock on object, if any, and whether it answered a notify. */
async function inspectHolder(pool: Pool, object: string): Promise<{ holder: LockHolder & { cookie: string }; alive: boolean } | undefined> {
  const { lockers } = await pool.listLockers(object, LOCK_NAME);
  const [holder] = lockers;
  if (!holder) return undefined;
  const [{ acks }, content] = await Promise.all([
    pool.notifyObject(object, { timeoutMs: NOTIFY_TIMEOUT_MS }),
    pool.readObject(object).catch(() => Buffer.alloc(0)),
  ]);
  const description = content.toString('utf8').slice(0, 200) || 'an unknown holder';
  const gid = holder.client.replace(/^client\./, '');
  if (acks.some((ack) => String(ack.gid) === gid)) return { holder: { ...holder, description }, alive: true };
  // A holder that released between the listing and the notify would be
  // taken for dead: only the same holder, still holding, is.
  const still = (await pool.listLockers(object, LOCK_NAME)).lockers
    .some((l) => l.client === holder.client && l.cookie === holder.cookie);
  return still ? { holder: { ...holder, description }, alive: false } : undefined;
}

/** Fences a dead holder (so it cannot wake up and write) and breaks its lock. */
async function breakDeadLock(pool: Pool, object: string, holder: LockHolder & { cookie: string }): Promise<void> {
  logBackup('lock %s/%s: holder %s at %s (%s) does not answer; fencing it and breaking its lock',
    pool.spec, object, holder.client, holder.address, holder.description);
  try {
    await pool.cluster.blocklistAdd(holder.address, BLOCKLIST_SECONDS);
  } catch (error) {
    // Without the mon capability to blocklist (`profile rbd` has it), the
    // lock is broken unfenced: a holder that was only stalled, not dead,
    // could still write. Said loudly; the operator's caps should allow it.
    logBackup('lock %s/%s: could NOT fence %s (%s); breaking its lock unfenced', pool.spec, object, holder.address, (error as Error).message);
  }
  try {
    await pool.breakLock(object, LOCK_NAME, holder.client, holder.cookie);
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
  }
}

/**
 * What the description of a lock held for a backup id says (a backup of it,
 * or a restore of it): a run that breaks the lock of a dead holder knows
 * whether that was a killed run of the same backup.
 */
export function backupIdNote(backupId: string): string {
  return `backup ${backupId}`;
}

/** Whether a lock described so (a holder's description) was taken for this backup id (see backupIdNote). */
export function heldForBackup(description: string | undefined, backupId: string): boolean {
  return description?.includes(`(${backupIdNote(backupId)})`) === true;
}

export class VolumeLock {
  readonly #pool: Pool;
  readonly #object: string;
  readonly #cookie = randomUUID();
  readonly #ttlMs: number;
  #watch: ObjectWatch | undefined;
  #timer: NodeJS.Timeout | undefined;
  #renewing: Promise<void> | undefined;
  #released = false;
  #previous: string | undefined;
  readonly #lost = new AbortController();

  private constructor(pool: Pool, object: string, ttlMs: number) {
    this.#pool = pool;
    this.#object = object;
    this.#ttlMs = ttlMs;
  }

  /**
   * With readPrevious: the description of the run that held the lock last
   * before this one (released, or broken as dead), which is the last
   * operation on the volume that took it; undefined when none ever did.
   */
  get previous(): string | undefined {
    return this.#previous;
  }

  /** Aborts when the lock was lost (it could not be renewed). */
  get lost(): AbortSignal {
    return this.#lost.signal;
  }

  /** The live holder of a volume's lock (one that answers a notify), if any; nothing is changed. */
  static async liveHolder(pool: Pool, object: string): Promise<LockHolder | undefined> {
    const found = await inspectHolder(pool, object);
    return found?.alive ? found.holder : undefined;
  }

  /** The holder of a lock that does not answer (dead, or cut off), if any: the next contender breaks it; nothing is changed. */
  static async deadHolder(pool: Pool, object: string): Promise<LockHolder | undefined> {
    const found = await inspectHolder(pool, object);
    return found && !found.alive ? found.holder : undefined;
  }

  /** Takes the lock of a subject (a volume id is a Cinder volume's). */
  static async acquire(pool: Pool, of: Subject | string, purpose: string, options: LockOptions): Promise<VolumeLock> {
    const subject = resolveSubject(of, purpose);
    const lock = new VolumeLock(pool, options.object ?? lockObjectName(subject), options.ttlMs);
    try {
      await lock.#take(describeSubject(subject), purpose, options);
    } catch (error) {
      await lock.#watch?.close().catch(() => undefined);
      throw error;
    }
    logBackup('locked %s/%s', pool.spec, lock.#object);
    lock.#schedule();
    return lock;
  }

  /** `what`: the subject as messages name it ('volume <id>', 'image <pool>/<name>'). */
  async #take(what: string, purpose: string, options: LockOptions): Promise<void> {
    const pool = this.#pool;
    // The watch comes first, so that no contender ever sees this holder's
    // lock without its watch and takes it for dead. Watching needs the
    // object to exist.
    await pool.writeObject(this.#object, '', { exclusive: true }).catch((error: unknown) => {
      if (!(error instanceof CephError && error.code === 'EEXIST')) throw error;
    });
    this.#watch = await pool.watchObject(this.#object, { timeoutSeconds: WATCH_TIMEOUT_SECONDS });
    const deadline = Date.now() + options.waitMs;
    let delay = 100;
    let toldWaiting = false;
    for (;;) {
      try {
        const description = `${purpose} of ${what}${options.note === undefined ? '' : ` (${options.note})`} by ${hostname()} pid ${process.pid}`;
        // Beside the lock, in its round trip: only a holder writes the
        // object, so once the lock is ours the read found what the last
        // holder before us wrote (unless a whole other run took and let go
        // of the lock within that one round trip).
        const reading = options.readPrevious ? pool.readObject(this.#object).then((b) => b.toString('utf8'), () => '') : undefined;
        const locking = pool.lockObject(this.#object, { name: LOCK_NAME, cookie: this.#cookie, durationMs: options.ttlMs, description });
        const [previous] = await Promise.all([reading, locking]);
        this.#previous = previous === '' ? undefined : previous;
        try {
          // RADOS lists a lock's holders without its description: contenders read it here.
          await pool.writeObject(this.#object, description);
          await this.#ensureWatch();
        } catch (error) {
          await pool.unlockObject(this.#object, { name: LOCK_NAME, cookie: this.#cookie }).catch(() => undefined);
          throw error;
        }
        return;
      } catch (error) {
        if (!(error instanceof BusyError)) throw error;
      }
      const found = await inspectHolder(pool, this.#object);
      if (found && !found.alive) {
        await breakDeadLock(pool, this.#object, found.holder);
        options.onBreak?.(found.holder);
        continue;
      }
      // Released between our try and the look: try again at once.
      if (!found) continue;
      const held = `${found.holder.description} (${found.holder.client} at ${found.holder.address})`;
      if (options.onBusy === 'skip' || Date.now() >= deadline) {
        throw new BusyError({
          code: 'EBUSY', operation: purpose, resource: what,
          detail: `its lock ${pool.spec}/${this.#object} is held by ${held}${options.onBusy === 'skip' ? '; skipped' : `; waited ${options.waitMs} ms`}`,
        });
      }
      if (!toldWaiting) {
        toldWaiting = true;
        logBackup('%s: waiting for the lock held by %s', what, held);
        options.onWait?.(found.holder);
      }
      options.signal?.throwIfAborted();
      await sleep(Math.min(delay, Math.max(1, deadline - Date.now())), undefined, { signal: options.signal });
      delay = Math.min(delay * 2, 2000);
    }
  }

  /**
   * A watch lapses when its pings stop for its timeout (an OSD pause, a
   * socket storm) and stays dead; a holder without one would be taken for
   * dead by the next contender. Watch again when it lapsed.
   */
  async #ensureWatch(): Promise<void> {
    const watch = this.#watch;
    if (watch && await watch.check().then(() => true, () => false)) return;
    await watch?.close().catch(() => undefined);
    this.#watch = await this.#pool.watchObject(this.#object, { timeoutSeconds: WATCH_TIMEOUT_SECONDS });
  }

  #schedule(): void {
    if (this.#released) return;
    this.#timer = setTimeout(() => {
      this.#renewing = this.#pool.lockObject(this.#object, {
        name: LOCK_NAME, cookie: this.#cookie, durationMs: this.#ttlMs, renew: true,
      }).then(() => this.#ensureWatch()).then(() => this.#schedule(), (error: unknown) => {
        logBackup('lost lock %s/%s: %s', this.#pool.spec, this.#object, (error as Error).message);
        this.#lost.abort(error instanceof CephError ? error : new Error(String(error)));
      });
    }, Math.max(1000, Math.floor(this.#ttlMs / 3)));
    // A renewal timer alone must not keep the process alive.
    this.#timer.unref();
  }

  /**
   * Removes the lock object (the volume has nothing left that needs it)
   * while still holding the lock, unless another live client watches it: a
   * waiter's watch would go with the object, and a holder without a watch
   * is taken for dead. A watcher that does not answer is no waiter but the
   * lingering watch of a dead client (a run killed after it watched the
   * object, before or after it took the lock; the OSD drops the watch only
   * when its timeout passes), which would otherwise keep the object for
   * good: a live waiter's librados answers at once, and one so stalled that
   * it did not watches again once it holds the lock (#ensureWatch).
   */
  async retire(): Promise<void> {
    const { acks } = await this.#pool.notifyObject(this.#object, { timeoutMs: NOTIFY_TIMEOUT_MS });
    const own = this.#pool.cluster.instanceId();
    if (acks.some((w) => w.gid !== own)) return;
    await this.#pool.removeObject(this.#object);
  }

  /**
   * Puts back what the lock object said before this run took the lock
   * (with readPrevious), while still holding it: a run that changed
   * nothing is then not the last one the next run finds (see previous).
   */
  async restorePrevious(): Promise<void> {
    await this.#pool.writeObject(this.#object, this.#previous ?? '');
  }

  async release(): Promise<void> {
    this.#released = true;
    clearTimeout(this.#timer);
    await this.#renewing;
    try {
      await this.#pool.unlockObject(this.#object, { name: LOCK_NAME, cookie: this.#cookie });
    } catch (error) {
      // Expired or broken meanwhile: nothing left to release.
      if (!(error instanceof CephError && error.code === 'ENOENT')) throw error;
    } finally {
      // Kept when closing it fails, for the next try (a cluster not answering yet).
      await this.#watch?.close();
      this.#watch = undefined;
    }
    logBackup('unlocked %s/%s', this.#pool.spec, this.#object);
  }
}
