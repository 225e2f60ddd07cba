/**
 * The image limits of lib/ceph/limits.ts: objectCount must agree with
 * librbd's Striper::get_num_objects wherever that does not overflow, and
 * maxImageSize must be the exact boundary of MAX_OBJECT_COUNT. No cluster needed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkImageSize, maxImageSize, MAX_OBJECT_COUNT, objectCount, type ImageLayout,
} from '../../lib/ceph/limits.js';
import { InvalidArgumentError } from '../../lib/ceph/errors.js';

const MiB = 1n << 20n;
const plain = (order: number): ImageLayout => ({ objectSize: 1n << BigInt(order), stripeUnit: 1n << BigInt(order), stripeCount: 1n });

describe('objectCount', () => {
  test('counts whole and partial objects of an unstriped image', () => {
    const layout = plain(22);
    assert.equal(objectCount(layout, 0n), 0n);
    assert.equal(objectCount(layout, 1n), 1n);
    assert.equal(objectCount(layout, 4n * MiB), 1n);
    assert.equal(objectCount(layout, 4n * MiB + 1n), 2n);
    assert.equal(objectCount(layout, 1n << 40n), 262_144n);
  });

  test('counts the objects a partial period of a striped image touches', () => {
    // 4 MiB objects, 64 KiB stripe unit, 16 objects per period (64 MiB).
    const layout = { objectSize: 4n * MiB, stripeUnit: 64n * 1024n, stripeCount: 16n };
    assert.equal(objectCount(layout, 64n * 1024n), 1n);
    assert.equal(objectCount(layout, 64n * 1024n + 1n), 2n);
    assert.equal(objectCount(layout, 16n * 64n * 1024n), 16n);
    assert.equal(objectCount(layout, 64n * MiB), 16n);
    assert.equal(objectCount(layout, 64n * MiB + 1n), 17n);
  });

  test('does not wrap where librbd does: 2^64-1 bytes are 2^42 objects of 4 MiB, not 0', () => {
    assert.equal(objectCount(plain(22), (1n << 64n) - 1n), 1n << 42n);
  });
});

describe('maxImageSize', () => {
  const layouts: Array<[string, ImageLayout]> = [
    ['4 KiB objects', plain(12)],
    ['4 MiB objects', plain(22)],
    ['32 MiB objects', plain(25)],
    ['striped 64 KiB x 16', { objectSize: 4n * MiB, stripeUnit: 64n * 1024n, stripeCount: 16n }],
    ['striped 4 KiB x 7', { objectSize: 4n * MiB, stripeUnit: 4096n, stripeCount: 7n }],
    ['stripe count above the object cap', { objectSize: 4n * MiB, stripeUnit: 4096n, stripeCount: (1n << 32n) - 1n }],
  ];
  for (const [name, layout] of layouts) {
    test(`is the last size of at most MAX_OBJECT_COUNT objects: ${name}`, () => {
      const max = maxImageSize(layout);
      assert.ok(objectCount(layout, max) <= MAX_OBJECT_COUNT);
      assert.ok(objectCount(layout, max + 1n) > MAX_OBJECT_COUNT);
      // Far below the sizes where librbd's uint64 arithmetic wraps.
      assert.ok(max < 1n << 56n);
    });
  }

  test('is 976.6 TiB for the default 4 MiB objects', () => {
    assert.equal(maxImageSize(plain(22)), 256_000_000n * 4n * MiB);
  });
});

describe('checkImageSize', () => {
  test('returns sizes up to the maximum and refuses the next one and 2^64-1', () => {
    const layout = plain(22);
    const max = maxImageSize(layout);
    assert.equal(checkImageSize(max, layout, 'resize', 'rbd/x'), max);
    assert.equal(checkImageSize(0n, layout, 'resize', 'rbd/x'), 0n);
    for (const size of [max + 1n, 1n << 63n, (1n << 64n) - 1n]) {
      assert.throws(() => checkImageSize(size, layout, 'resize', 'rbd/x'), (e: unknown) => {
        assert.ok(e instanceof InvalidArgumentError);
        assert.match(e.message, new RegExp(`^resize rbd/x: size ${size} is larger than ${max}`));
        return true;
      });
    }
  });
});
