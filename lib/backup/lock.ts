/**
 * The per-volume lock that keeps two backups of one volume (or a backup and
 * a delete) from running at once, across processes and hosts: a RADOS lock
 * on an object in the backup pool. It expires on its own when its holder
 * dies and is renewed while held; a holder that loses it stops its work.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { BusyError, CephError } from '../ceph/errors.js';
import type { Pool } from '../ceph/pool.js';
import { logBackup } from './log.js';

const LOCK_NAME = 'rbd-backup';

export function lockObjectName(volumeId: string): string {
  return `volume-${volumeId}.backup.lock`;
}

export interface LockHolder {
  client: string;
  address: string;
  description: string;
}

export interface LockOptions {
  onBusy?: 'wait' | 'skip';
  onWait?: (holder: LockHolder) => void;
  /** How long to wait for a lock another holder has. */
  waitMs: number;
  /** How long the lock lives without renewal (renewed every third of it). */
  ttlMs: number;
}

export class VolumeLock {
  readonly #pool: Pool;
  readonly #object: string;
  readonly #cookie = randomUUID();
  readonly #ttlMs: number;
  #timer: NodeJS.Timeout | undefined;
  #renewing: Promise<void> | undefined;
  #released = false;
  readonly #lost = new AbortController();

  private constructor(pool: Pool, object: string, ttlMs: number) {
    this.#pool = pool;
    this.#object = object;
    this.#ttlMs = ttlMs;
  }

  /** Aborts when the lock was lost (it could not be renewed). */
  get lost(): AbortSignal {
    return this.#lost.signal;
  }

  static async acquire(pool: Pool, volumeId: string, purpose: string, options: LockOptions): Promise<VolumeLock> {
    const lock = new VolumeLock(pool, lockObjectName(volumeId), options.ttlMs);
    const deadline = Date.now() + options.waitMs;
    let delay = 100;
    for (;;) {
      try {
        await pool.lockObject(lock.#object, {
          name: LOCK_NAME, cookie: lock.#cookie, durationMs: options.ttlMs,
          description: `${purpose} of volume ${volumeId} by ${hostname()} pid ${process.pid}`,
        });
        break;
      } catch (error) {
        if (!(error instanceof BusyError)) throw error;
        if (Date.now() >= deadline) {
          throw new BusyError({
            code: 'EBUSY', operation: purpose, resource: `volume ${volumeId}`,
            detail: `another backup operation on this volume holds its lock (${pool.spec}/${lock.#object}); waited ${options.waitMs} ms`,
          });
        }
        await sleep(Math.min(delay, Math.max(1, deadline - Date.now())));
        delay = Math.min(delay * 2, 2000);
      }
    }
    logBackup('locked %s/%s', pool.spec, lock.#object);
    lock.#schedule();
    return lock;
  }

  #schedule(): void {
    if (this.#released) return;
    this.#timer = setTimeout(() => {
      this.#renewing = this.#pool.lockObject(this.#object, {
        name: LOCK_NAME, cookie: this.#cookie, durationMs: this.#ttlMs, renew: true,
      }).then(() => this.#schedule(), (error: unknown) => {
        logBackup('lost lock %s/%s: %s', this.#pool.spec, this.#object, (error as Error).message);
        this.#lost.abort(error instanceof CephError ? error : new Error(String(error)));
      });
    }, Math.max(1000, Math.floor(this.#ttlMs / 3)));
    // A renewal timer alone must not keep the process alive.
    this.#timer.unref();
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
    }
    logBackup('unlocked %s/%s', this.#pool.spec, this.#object);
  }
}
