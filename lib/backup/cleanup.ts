/**
 * One time budget per BackupEngine call, shared by its every step and its
 * clean-up, and the end of the call: handles closed, locks released and,
 * when it failed, what it made undone, without any of that hiding why it
 * failed or outliving the budget.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Cluster } from '../ceph/cluster.js';
import { BusyError, CephError, TimeoutError } from '../ceph/errors.js';
import { Image } from '../ceph/image.js';
import type { Pool } from '../ceph/pool.js';
import { logBackup } from './log.js';

/**
 * The share of a call's budget kept for its clean-up: the work is stopped
 * when only this much is left, so that undoing it, or at least listing
 * what could not be undone, still ends within the budget.
 */
const CLEANUP_SHARE = 0.2;
/**
 * A handle refuses to close while calls on it are in flight; an abandoned
 * call's native work ends by itself (at the latest at its op timeout), so
 * its release is tried again in the background, this often, this far apart.
 */
const RELEASE_TRIES = 60;
const RELEASE_RETRY_MS = 2000;

/** Runs one clean-up step; a failure is logged, never thrown over the original one. */
export async function undo(step: string, action: () => Promise<void>): Promise<void> {
  try {
    await action();
  } catch (error) {
    logBackup('cleanup step "%s" failed: %s', step, (error as Error).message);
  }
}

interface Step {
  /** What it does, naming the resource: listed as such when it could not be done. */
  name: string;
  /** Steps on one pool run in order; steps on different pools at once. */
  lane: Pool;
  /**
   * 'undo' removes what the call made: when it cannot be done in time it is
   * skipped and listed. 'release' closes a handle or a lock: then it is
   * finished in the background (listed only when `listed`: a lock).
   */
  kind: 'undo' | 'release';
  listed: boolean;
  /** Runs whether or not the call committed. */
  always: boolean;
  action: () => Promise<void>;
}

export interface ScopeOptions {
  /** The call, as its errors name it ('backup', 'restore', ...). */
  operation: string;
  /** What it works on, as its errors name it. */
  resource: string;
  timeoutMs: number;
}

/** The budget a call and every scope nested in it share. */
class Budget {
  readonly #started = performance.now();
  #timeoutMs: number;
  /** Clusters a step timed out against: the clean-up asks them nothing more. */
  readonly unreachable = new Set<Cluster>();
  /** Pools the call's steps are on, to tell which cluster a timed-out step was against. */
  readonly pools = new Set<Pool>();
  /** Aborted when the work must stop; its reason is the TimeoutError. */
  readonly #work = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  readonly #expired: () => TimeoutError;

  constructor(timeoutMs: number, expired: () => TimeoutError) {
    this.#timeoutMs = timeoutMs;
    this.#expired = expired;
    this.#schedule();
  }

  get timeoutMs(): number {
    return this.#timeoutMs;
  }

  get signal(): AbortSignal {
    return this.#work.signal;
  }

  /** Milliseconds until the whole call must have ended. */
  remainingMs(): number {
    return this.#started + this.#timeoutMs - performance.now();
  }

  extend(ms: number): void {
    this.#timeoutMs += ms;
    this.#schedule();
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    if (this.#work.signal.aborted) return;
    const workMs = Math.max(0, this.remainingMs() - CLEANUP_SHARE * this.#timeoutMs);
    // Not unref'd: the call is pending until then, and settles then at the latest.
    this.#timer = setTimeout(() => this.#work.abort(this.#expired()), workMs);
  }

  dispose(): void {
    clearTimeout(this.#timer);
  }

  /** The clusters a timed-out step's resource names, among the pools the call opened. */
  noteTimeout(error: unknown): void {
    if (!(error instanceof TimeoutError) || this.#work.signal.reason === error) return;
    for (const pool of this.pools) {
      const spec = `${pool.spec}/`;
      if (error.resource === pool.spec || error.resource.startsWith(spec) || error.resource.includes(` -> ${spec}`)) {
        this.unreachable.add(pool.cluster);
      }
    }
  }
}

/**
 * Releases a handle or a lock in the background once the calls still on it
 * have ended (until then it refuses with a BusyError) and its cluster
 * answers again (until then it times out).
 */
async function releaseEventually(step: Step, steps: readonly Step[]): Promise<void> {
  for (const next of [step, ...steps]) {
    for (let attempt = 1; ; attempt++) {
      try {
        await next.action();
        break;
      } catch (error) {
        if (!(error instanceof BusyError || error instanceof TimeoutError) || attempt === RELEASE_TRIES) {
          logBackup('cleanup step "%s" failed: %s', next.name, (error as Error).message);
          break;
        }
        // Not keeping the process alive for it: at exit, the addon's clean-up hook closes what is left.
        await sleep(RELEASE_RETRY_MS, undefined, { ref: false });
      }
    }
  }
}

/** What the lanes of one clean-up share. */
interface Ending {
  budget: Budget;
  /** The clean-up stopped waiting: no more is listed. */
  gaveUp: () => boolean;
  report: (line: string) => void;
  /** The call lost its lock: undo steps not yet started change nothing. */
  lockLost: () => boolean;
}

/** Why an undo step was not run, or did not go on, after its call lost its lock. */
const LOCK_LOST = 'not done: the call lost its lock, so another run may own what it would change';

/** The steps of one pool, run in order; what is left of them when the clean-up stops waiting. */
class Lane {
  readonly #steps: Step[];
  readonly #scope: Ending;
  #next = 0;
  #current: Step | undefined;

  constructor(steps: Step[], scope: Ending) {
    this.#steps = steps;
    this.#scope = scope;
  }

  get cluster(): Cluster {
    return this.#steps[0]!.lane.cluster;
  }

  get done(): boolean {
    return this.#next >= this.#steps.length && this.#current === undefined;
  }

  async run(): Promise<void> {
    const { budget, gaveUp, report } = this.#scope;
    while (this.#next < this.#steps.length) {
      if (gaveUp() || budget.unreachable.has(this.cluster)) {
        this.#detach(budget.unreachable.has(this.cluster) ? 'its cluster did not answer in time' : 'no time was left');
        return;
      }
      const step = this.#steps[this.#next++]!;
      if (step.kind === 'undo' && this.#scope.lockLost()) {
        if (step.listed && !gaveUp()) report(`${step.name}: ${LOCK_LOST}`);
        continue;
      }
      this.#current = step;
      try {
        await step.action();
      } catch (error) {
        if (step.kind === 'release' && error instanceof BusyError) {
          // A call the work abandoned is still on this handle: it and the
          // releases after it (its pool) go once that call has ended. The
          // undo steps after it still run (or say why they failed): one
          // registered before the handle was opened, such as removing the
          // volume a restore created, comes after its release.
          const later = this.#steps.splice(this.#next);
          this.#steps.push(...later.filter((s) => s.kind !== 'release'));
          void releaseEventually(step, later.filter((s) => s.kind === 'release'));
          continue;
        }
        // This cluster just did not answer: the rest of the clean-up asks it nothing more.
        if (error instanceof TimeoutError) budget.unreachable.add(this.cluster);
        logBackup('cleanup step "%s" failed: %s', step.name, (error as Error).message);
        if (step.listed && !gaveUp()) report(`${step.name}: failed (${(error as Error).message})`);
      } finally {
        this.#current = undefined;
      }
    }
  }

  /** What is not done yet, as the clean-up gives up waiting: the step in flight and those after it. */
  unfinished(): string[] {
    const lines = this.#current?.listed ? [`${this.#current.name}: did not finish in time`] : [];
    return [...lines, ...this.#steps.slice(this.#next).filter((s) => s.listed).map((s) => `${s.name}: no time was left`)];
  }

  /**
   * The rest of the lane is not waited for: its undo steps are skipped
   * (and listed), its releases run in the background, so that handles and
   * locks go once the cluster answers again.
   */
  #detach(why: string): void {
    const rest = this.#steps.slice(this.#next);
    this.#next = this.#steps.length;
    if (!this.#scope.gaveUp()) {
      for (const step of rest.filter((s) => s.listed)) this.#scope.report(`${step.name}: not done (${why})`);
    }
    const [first, ...others] = rest.filter((s) => s.kind === 'release');
    if (first) void releaseEventually(first, others);
  }
}

/** Adds what a failed call left behind to its error (a CephError lists it in leftBehind and its message). */
function withLeftBehind(error: unknown, left: readonly string[]): unknown {
  if (left.length === 0) return error;
  if (error instanceof CephError) {
    error.leftBehind.push(...left);
    error.message += `; left for the next run or gc: ${left.join('; ')}`;
  } else {
    logBackup('the call failed (%s) and left: %o', String(error), left);
  }
  return error;
}

interface Closable {
  close(): Promise<void>;
}

/**
 * What a call does within its budget and must do when it ends, as one
 * stack: `OperationScope.run(options, (scope) => work)`. The work is
 * stopped (no longer awaited; its next step through the scope throws) when
 * only the clean-up's share of the budget is left, with a TimeoutError
 * naming the call. Then the steps run newest first, so a step registered
 * after a handle was opened runs while that handle is still open; steps on
 * different pools run at once. `onFailure` steps run only when the call
 * did not `commit()`. A step against a cluster that just timed out, and
 * any step still unfinished when the budget ends, is not waited for: undo
 * steps are skipped, releases finish in the background, and what that
 * leaves is listed in the error (CephError.leftBehind). No step's failure
 * replaces the call's own error.
 */
export class OperationScope {
  readonly operation: string;
  readonly resource: string;
  /** What the call is doing, for the message of a TimeoutError. */
  doing = 'starting';
  readonly #budget: Budget;
  readonly #steps: Step[] = [];
  #committed = false;
  #lockLost: AbortSignal | undefined;
  /** The call has settled: the work, if still going, may not register anything more. */
  #over = false;

  private constructor(operation: string, resource: string, budget: Budget | ((scope: OperationScope) => Budget)) {
    this.operation = operation;
    this.resource = resource;
    this.#budget = typeof budget === 'function' ? budget(this) : budget;
  }

  /** Runs work within timeoutMs, then the clean-up within what is left of it. */
  static async run<T>(options: ScopeOptions, work: (scope: OperationScope) => Promise<T>): Promise<T> {
    const scope = new OperationScope(options.operation, options.resource,
      (self) => new Budget(options.timeoutMs, () => self.#timeoutError()));
    try {
      return await scope.#settle(work);
    } finally {
      scope.#budget.dispose();
    }
  }

  /** A scope within this call's budget (gc's scope per volume), ended when work ends. */
  async nested<T>(resource: string, work: (scope: OperationScope) => Promise<T>): Promise<T> {
    this.checkpoint();
    return new OperationScope(this.operation, resource, this.#budget).#settle(work);
  }

  /** Aborted when the work must stop: for transfers and waits. */
  get signal(): AbortSignal {
    return this.#budget.signal;
  }

  /** Milliseconds left of the call's budget. */
  remainingMs(): number {
    return this.#budget.remainingMs();
  }

  /** Lengthens the budget: the default one, once it knows how much data the call moves. */
  extend(ms: number): void {
    this.#budget.extend(ms);
  }

  /** Throws the call's TimeoutError once its work must stop: before a step that cannot be taken back. */
  checkpoint(): void {
    if (this.#over || this.#budget.signal.aborted) throw this.#timeoutError();
  }

  /** Closes the handle when the call ends. */
  async adopt<T extends Closable & (Image | Pool)>(opening: Promise<T>, what = 'close'): Promise<T> {
    const handle = await opening;
    const lane = handle instanceof Image ? handle.pool : (handle as Pool);
    this.#push({ name: `${what} ${handle instanceof Image ? handle.spec : lane.spec}`, lane, kind: 'release', listed: false, always: true, action: () => handle.close() });
    return handle;
  }

  /** Runs when the call ends, whatever the outcome: an undo step, or a lock's release. */
  defer(step: string, lane: Pool, action: () => Promise<void>, kind: 'undo' | 'lock' = 'undo'): void {
    this.#push({ name: step, lane, kind: kind === 'lock' ? 'release' : 'undo', listed: true, always: true, action });
  }

  /** Runs only when the call ends without commit(). */
  onFailure(step: string, lane: Pool, action: () => Promise<void>): void {
    this.#push({ name: step, lane, kind: 'undo', listed: true, always: false, action });
  }

  /**
   * The call's lock: once it is lost (it could not be renewed in time, an
   * OSD stall say), another run may take the volume over, so undo steps not
   * yet started are skipped and listed in leftBehind. A step already
   * running checks it before each change (stillLocked).
   */
  guardBy(lock: { lost: AbortSignal }): void {
    this.#lockLost = lock.lost;
  }

  /** Throws before a change an undo step is about to make once the call's lock was lost. */
  stillLocked(resource: string): void {
    if (this.#lockLost?.aborted) throw new BusyError({ code: 'EBUSY', operation: this.operation, resource, detail: LOCK_LOST });
  }

  /** The call's result stands: onFailure steps will not run. */
  commit(): void {
    this.checkpoint();
    this.#committed = true;
  }

  #push(step: Step): void {
    if (this.#over || this.#budget.signal.aborted) {
      // The work went on past its time and got a handle or a lock after all: let it go.
      if (step.kind === 'release') void undo(step.name, step.action);
      throw this.#timeoutError();
    }
    this.#budget.pools.add(step.lane);
    this.#steps.push(step);
  }

  #timeoutError(): TimeoutError {
    return new TimeoutError({
      code: 'ETIMEDOUT', operation: this.operation, resource: this.resource,
      detail: `did not finish within its time budget of ${this.#budget.timeoutMs} ms (it was ${this.doing})`,
    });
  }

  async #settle<T>(work: (scope: OperationScope) => Promise<T>): Promise<T> {
    let outcome: { value: T } | { error: unknown };
    try {
      outcome = { value: await this.#race(work(this)) };
    } catch (error) {
      this.#budget.noteTimeout(error);
      outcome = { error };
    }
    const left = await this.#end();
    if ('error' in outcome) throw withLeftBehind(outcome.error, left);
    if (left.length > 0) logBackup('%s %s completed; its clean-up left: %o', this.operation, this.resource, left);
    return outcome.value;
  }

  /** The work's result, or the TimeoutError when its time is up (the work is then no longer waited for). */
  async #race<T>(working: Promise<T>): Promise<T> {
    const { signal } = this.#budget;
    if (signal.aborted) throw signal.reason;
    let onAbort: (() => void) | undefined;
    const expired = new Promise<never>((_, reject) => {
      onAbort = () => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([working, expired]);
    } finally {
      signal.removeEventListener('abort', onAbort!);
    }
  }

  /** Runs the steps within what is left of the budget; returns what could not be done. */
  async #end(): Promise<string[]> {
    this.#over = true;
    const steps = this.#steps.reverse().filter((s) => s.always || !this.#committed);
    this.#steps.length = 0;
    const left: string[] = [];
    let gaveUp = false;
    const byPool = new Map<Pool, Step[]>();
    for (const step of steps) byPool.set(step.lane, [...(byPool.get(step.lane) ?? []), step]);
    const shared = {
      budget: this.#budget, gaveUp: () => gaveUp, report: (line: string) => { left.push(line); },
      lockLost: () => this.#lockLost?.aborted === true,
    };
    const lanes = [...byPool.values()].map((laneSteps) => new Lane(laneSteps, shared));
    const timer = new AbortController();
    const running = Promise.all(lanes.map((lane) => lane.run()));
    await Promise.race([running, sleep(Math.max(0, this.#budget.remainingMs()), undefined, { signal: timer.signal }).catch(() => undefined)]);
    timer.abort();
    for (const lane of lanes.filter((l) => !l.done)) left.push(...lane.unfinished());
    gaveUp = true;
    return left;
  }
}

/** Removes an image this run made, snapshots first (rbd_remove refuses them), those in the trash too. */
export async function removeImageWithSnapshots(pool: Pool, name: string, scope?: OperationScope): Promise<void> {
  const spec = `${pool.spec}/${name}`;
  const image = await pool.openImage(name);
  try {
    for (const snapshot of await image.listSnapshots()) {
      scope?.stillLocked(spec);
      await image.removeSnapshot(snapshot.name);
    }
    for (const snapshot of await image.listTrashedSnapshots()) {
      scope?.stillLocked(spec);
      await image.removeSnapshotById(snapshot.id);
    }
  } finally {
    await image.close();
  }
  scope?.stillLocked(spec);
  await pool.removeImage(name);
}
