/**
 * Checks of typed errors, a recorder of progress reports, and readable
 * values for failure messages.
 */
import assert from 'node:assert/strict';
import type { CephError, Progress } from '../../lib/index.js';

/** Every field of a CephError that assertFails compares. */
export interface ErrorShape {
  code: string;
  errno: number;
  operation: string;
  resource: string;
  message: RegExp;
}

/**
 * Asserts that call fails with exactly this class and these fields, whether
 * it throws synchronously or rejects.
 */
export async function assertFails(call: () => unknown, Class: abstract new (...args: never[]) => CephError,
  shape: ErrorShape): Promise<void> {
  await assert.rejects(async () => call(), (error: unknown) => {
    assert.ok(error instanceof Class, `expected ${Class.name}, got ${String(error)}`);
    assert.equal(error.constructor, Class);
    assert.equal(error.code, shape.code);
    assert.equal(error.errno, shape.errno);
    assert.equal(error.operation, shape.operation);
    assert.equal(error.resource, shape.resource);
    assert.match(error.message, shape.message);
    return true;
  });
}

/**
 * Asserts that promise rejects with exactly this class, code and message,
 * and the operation and resource when given; returns the error for further
 * checks.
 */
export async function assertCephError(promise: Promise<unknown>, Class: new (...args: never[]) => CephError,
  shape: { code: string; operation?: string; resource?: string; message: RegExp }): Promise<CephError> {
  let caught: unknown;
  await assert.rejects(promise, (error: unknown) => {
    caught = error;
    return true;
  });
  assert.ok(caught instanceof Class, `expected ${Class.name}, got ${String(caught)}`);
  assert.equal((caught as CephError).constructor, Class);
  const error = caught as CephError;
  assert.equal(error.code, shape.code);
  if (shape.operation !== undefined) assert.equal(error.operation, shape.operation);
  if (shape.resource !== undefined) assert.equal(error.resource, shape.resource);
  assert.match(error.message, shape.message);
  return error;
}

/** Every progress report of an operation, copied as it came. */
export function progressLog(): { reports: Progress[]; onProgress: (p: Progress) => void } {
  const reports: Progress[] = [];
  return { reports, onProgress: (p) => reports.push({ ...p }) };
}

/** JSON, bigints included (as 123n), for failure messages and diagnostics. */
export function show(value: unknown): string {
  return JSON.stringify(value, (_, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
}
