/**
 * Typed errors (lib/ceph/errors.ts): what the addon rejects with becomes the
 * right CephError subclass, carrying errno, code, operation and resource.
 * No cluster needed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AlreadyExistsError, BlocklistedError, BusyError, CancelledError, CephError, ClosedError, HasSnapshotsError,
  InvalidArgumentError, NotFoundError, NotSupportedError, PermissionError, TimeoutError,
  cephError, fromNative, invalidArgument, nativeCall,
} from '../../lib/ceph/errors.js';
import * as publicApi from '../../lib/index.js';

/** What native/errors.cc MakeError produces: an Error with errno and code. */
function nativeFailure(message: string, code: string, errno: number): Error {
  return Object.assign(new Error(message), { code, errno });
}

const mapping: Array<[string, number, new (...args: never[]) => CephError, string]> = [
  ['ENOENT', 2, NotFoundError, 'does not exist'],
  ['EEXIST', 17, AlreadyExistsError, 'already exists'],
  ['EBUSY', 16, BusyError, 'is busy'],
  ['ENOTEMPTY', 39, HasSnapshotsError, 'has snapshots'],
  ['EACCES', 13, PermissionError, 'permission denied'],
  ['EPERM', 1, PermissionError, 'operation not permitted'],
  ['ETIMEDOUT', 110, TimeoutError, 'timed out'],
  ['EINVAL', 22, InvalidArgumentError, 'invalid argument'],
  ['EBADF', 9, ClosedError, 'handle is closed'],
  ['ECANCELED', 125, CancelledError, 'cancelled'],
  ['EOPNOTSUPP', 95, NotSupportedError, 'not supported'],
  ['ESHUTDOWN', 108, BlocklistedError, 'client is blocklisted or shut down'],
];

describe('fromNative', () => {
  for (const [code, errno, Class, description] of mapping) {
    test(`${code} becomes ${Class.name}`, () => {
      const error = fromNative(nativeFailure('rbd_something failed', code, errno),
        'createImage', 'rbd/vol-1');
      assert.ok(error instanceof Class, `${code} gave ${error.constructor.name}`);
      assert.ok(error instanceof CephError);
      assert.ok(error instanceof Error);
      assert.equal(error.constructor, Class);
      assert.equal(error.name, Class.name);
      const e = error as CephError;
      assert.equal(e.code, code);
      assert.equal(e.errno, errno);
      assert.equal(e.operation, 'createImage');
      assert.equal(e.resource, 'rbd/vol-1');
      // A message naming only the C call gets the cause appended.
      assert.equal(e.message, `createImage rbd/vol-1: rbd_something failed: ${description} [${code}]`);
    });
  }

  test('the subclasses are distinct: a NotFoundError is no other subclass', () => {
    const error = fromNative(nativeFailure('x failed', 'ENOENT', 2), 'op', 'res');
    for (const [, , Class] of mapping) {
      if (Class !== NotFoundError) assert.ok(!(error instanceof Class), `also a ${Class.name}`);
    }
  });

  test('an unknown code becomes a plain CephError with its errno in the message', () => {
    const error = fromNative(nativeFailure('rados_foo failed', 'EXDEV', 18), 'clone', 'rbd/a@s -> backups/b');
    assert.equal(error.constructor, CephError);
    assert.equal(error.name, 'CephError');
    const e = error as CephError;
    assert.equal(e.code, 'EXDEV');
    assert.equal(e.errno, 18);
    assert.equal(e.operation, 'clone');
    assert.equal(e.resource, 'rbd/a@s -> backups/b');
    assert.equal(e.message, 'clone rbd/a@s -> backups/b: rados_foo failed: errno 18 [EXDEV]');
    for (const [, , Class] of mapping) assert.ok(!(error instanceof Class), `also a ${Class.name}`);
  });

  test('codes with a description but no subclass stay plain CephErrors', () => {
    const error = fromNative(nativeFailure('rbd_write2 failed', 'EROFS', 30), 'write', 'rbd/img@snap');
    assert.equal(error.constructor, CephError);
    assert.equal(error.message, 'write rbd/img@snap: rbd_write2 failed: is read-only [EROFS]');
    assert.equal((error as CephError).errno, 30);
  });

  test("'refused' messages get the cause appended too", () => {
    const error = fromNative(nativeFailure('rbd_clone3 refused', 'EINVAL', 22), 'clone', 'r/a@s -> r/b');
    assert.equal(error.message, 'clone r/a@s -> r/b: rbd_clone3 refused: invalid argument [EINVAL]');
  });

  test('a message that already says what went wrong is kept as it is', () => {
    const error = fromNative(nativeFailure('pool does not exist', 'ENOENT', 2), 'openPool', 'nope');
    assert.ok(error instanceof NotFoundError);
    assert.equal(error.message, 'openPool nope: pool does not exist [ENOENT]');
    const busy = fromNative(nativeFailure('1 image(s) still open; close them first', 'EBUSY', 16),
      'close', 'cluster(client.admin)');
    assert.ok(busy instanceof BusyError);
    assert.equal(busy.message, 'close cluster(client.admin): 1 image(s) still open; close them first [EBUSY]');
  });

  test('keeps the errno the addon reported', () => {
    // The errno comes from the native error, not from the code's usual number.
    const error = fromNative(nativeFailure('odd failed', 'ENOENT', 999), 'op', 'res') as CephError;
    assert.ok(error instanceof NotFoundError);
    assert.equal(error.errno, 999);
  });

  test('passes CephErrors through untouched', () => {
    const original = new BusyError({ code: 'EBUSY', operation: 'close', resource: 'rbd/a', detail: 'in use' });
    assert.equal(fromNative(original, 'other', 'elsewhere'), original);
    assert.equal(original.operation, 'close');
    assert.equal(original.resource, 'rbd/a');
  });

  test('passes errors that are not native failures through untouched', () => {
    const type = new TypeError('not a function');
    assert.equal(fromNative(type, 'op', 'res'), type);
    // A code without a numeric errno is not from the addon.
    const coded = Object.assign(new Error('custom'), { code: 'ENOENT' });
    assert.equal(fromNative(coded, 'op', 'res'), coded);
    const stringErrno = Object.assign(new Error('custom'), { code: 'ENOENT', errno: '2' });
    assert.equal(fromNative(stringErrno, 'op', 'res'), stringErrno);
  });

  test('wraps thrown non-Error values in a plain Error', () => {
    const fromString = fromNative('boom', 'op', 'res');
    assert.equal(fromString.constructor, Error);
    assert.equal(fromString.message, 'boom');
    const fromObject = fromNative({ code: 'ENOENT', errno: 2, message: 'x failed' }, 'op', 'res');
    assert.ok(!(fromObject instanceof CephError), 'a plain object is not a native failure');
    assert.equal(fromObject.message, '[object Object]');
  });
});

describe('CephError', () => {
  test('fills errno from the code when none is given, 0 for unknown codes', () => {
    assert.equal(new CephError({ code: 'EBUSY', operation: 'o', resource: 'r', detail: 'd' }).errno, 16);
    assert.equal(new CephError({ code: 'ENOTEMPTY', operation: 'o', resource: 'r', detail: 'd' }).errno, 39);
    assert.equal(new CephError({ code: 'ECANCELED', operation: 'o', resource: 'r', detail: 'd' }).errno, 125);
    assert.equal(new CephError({ code: 'EWHATEVER', operation: 'o', resource: 'r', detail: 'd' }).errno, 0);
    assert.equal(new CephError({ code: 'EBUSY', errno: 7, operation: 'o', resource: 'r', detail: 'd' }).errno, 7);
  });

  test('builds the message from operation, resource, detail and code', () => {
    const e = new TimeoutError({ code: 'ETIMEDOUT', operation: 'connect', resource: 'cluster(client.admin)',
      detail: 'no connection within 2000 ms' });
    assert.equal(e.message, 'connect cluster(client.admin): no connection within 2000 ms [ETIMEDOUT]');
    assert.equal(e.name, 'TimeoutError');
    assert.match(e.stack ?? '', /^TimeoutError: connect cluster\(client\.admin\)/);
    assert.equal(String(e), `TimeoutError: ${e.message}`);
  });

  test('keeps a cause only when one is given', () => {
    const cause = new Error('underlying');
    assert.equal(new CancelledError({ code: 'ECANCELED', operation: 'o', resource: 'r', detail: 'd', cause }).cause,
      cause);
    assert.ok(!('cause' in new CancelledError({ code: 'ECANCELED', operation: 'o', resource: 'r', detail: 'd' })));
  });

  test('cephError picks the subclass for the code', () => {
    for (const [code, errno, Class] of mapping) {
      const e = cephError({ code, operation: 'op', resource: 'res', detail: 'd' });
      assert.equal(e.constructor, Class, code);
      assert.equal(e.errno, errno, code);
    }
    assert.equal(cephError({ code: 'ENOSPC', operation: 'op', resource: 'res', detail: 'd' }).constructor, CephError);
  });

  test('invalidArgument makes an EINVAL InvalidArgumentError', () => {
    const e = invalidArgument('createImage', 'rbd/x', 'size must be a number');
    assert.ok(e instanceof InvalidArgumentError);
    assert.equal(e.code, 'EINVAL');
    assert.equal(e.errno, 22);
    assert.equal(e.message, 'createImage rbd/x: size must be a number [EINVAL]');
  });

  test('the package exports the same classes', () => {
    assert.equal(publicApi.CephError, CephError);
    assert.equal(publicApi.NotFoundError, NotFoundError);
    assert.equal(publicApi.AlreadyExistsError, AlreadyExistsError);
    assert.equal(publicApi.BusyError, BusyError);
    assert.equal(publicApi.HasSnapshotsError, HasSnapshotsError);
    assert.equal(publicApi.PermissionError, PermissionError);
    assert.equal(publicApi.TimeoutError, TimeoutError);
    assert.equal(publicApi.InvalidArgumentError, InvalidArgumentError);
    assert.equal(publicApi.ClosedError, ClosedError);
    assert.equal(publicApi.NotSupportedError, NotSupportedError);
    assert.equal(publicApi.CancelledError, CancelledError);
    assert.equal(publicApi.BlocklistedError, BlocklistedError);
  });
});

describe('nativeCall', () => {
  test('resolves with the call result', async () => {
    assert.deepEqual(await nativeCall('listPools', 'c', async () => ['rbd']), ['rbd']);
  });

  test('turns a rejection into a typed error', async () => {
    await assert.rejects(nativeCall('removeImage', 'rbd/v', () =>
      Promise.reject(nativeFailure('image has snapshots', 'ENOTEMPTY', 39))),
    (e) => e instanceof HasSnapshotsError && e.code === 'ENOTEMPTY' && e.errno === 39 &&
      e.operation === 'removeImage' && e.resource === 'rbd/v' &&
      e.message === 'removeImage rbd/v: image has snapshots [ENOTEMPTY]');
  });

  test('turns a synchronous throw of the call into a rejection', async () => {
    const promise = nativeCall('fsid', 'c', () => { throw nativeFailure('cluster handle is closed', 'EBADF', 9); });
    assert.ok(promise instanceof Promise);
    await assert.rejects(promise, (e) => e instanceof ClosedError && e.code === 'EBADF' &&
      e.message === 'fsid c: cluster handle is closed [EBADF]');
  });
});
