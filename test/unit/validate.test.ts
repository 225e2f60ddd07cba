/**
 * Input checks that run before anything reaches Ceph (lib/ceph/validate.ts)
 * and the feature-name table (lib/ceph/features.ts). No cluster needed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { checkName, toIntInRange, toU64 } from '../../lib/ceph/validate.js';
import { featureBits, featureNames } from '../../lib/ceph/features.js';
import { CephError, InvalidArgumentError } from '../../lib/ceph/errors.js';

const OP = 'someOperation';
const RES = 'pool/image@snap';

/** A predicate for assert.throws: an InvalidArgumentError naming OP and RES whose message matches. */
function invalid(pattern: RegExp, resource = RES, operation = OP): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(e)}`);
    assert.ok(e instanceof CephError);
    assert.equal(e.code, 'EINVAL');
    assert.equal(e.errno, 22);
    assert.equal(e.operation, operation);
    assert.equal(e.resource, resource);
    assert.equal(e.name, 'InvalidArgumentError');
    assert.match(e.message, pattern);
    assert.ok(e.message.startsWith(`${operation} ${resource}: `), e.message);
    assert.ok(e.message.endsWith(' [EINVAL]'), e.message);
    return true;
  };
}

describe('checkName', () => {
  test('returns a valid name unchanged', () => {
    assert.equal(checkName('image', 'volume-1234.backup.base', OP, RES), 'volume-1234.backup.base');
    assert.equal(checkName('snapshot', 'backup.abc-1.snap.1700000000.123', OP, RES),
      'backup.abc-1.snap.1700000000.123');
    assert.equal(checkName('pool', 'rbd', OP, RES), 'rbd');
  });

  test('refuses an empty name unless allowEmpty', () => {
    assert.throws(() => checkName('pool', '', OP, RES), invalid(/pool name must not be empty/));
    assert.throws(() => checkName('image', '', OP, RES), invalid(/image name must not be empty/));
    assert.equal(checkName('namespace', '', OP, RES, { allowEmpty: true }), '');
  });

  test('pool and namespace names follow the Ceph tools\' rules', () => {
    for (const name of ['rbd', 'backups', 'volumes-ssd', 'pool_2', 'a.b', 'A1']) {
      assert.equal(checkName('pool', name, OP, RES), name);
      assert.equal(checkName('namespace', name, OP, RES), name);
    }
    for (const name of ['..', '.', '.hidden', 'a\nb', 'tab\t', 'rb\u0501', 'pöol', 'sp ace', 'semi;colon', '\u202erbd']) {
      assert.throws(() => checkName('pool', name, OP, RES), invalid(/letters, digits/), `accepted pool ${JSON.stringify(name)}`);
      assert.throws(() => checkName('namespace', name, OP, RES), invalid(/letters, digits/), `accepted namespace ${JSON.stringify(name)}`);
    }
    assert.equal(checkName('image', 'volume-ü', OP, RES), 'volume-ü', 'image names keep their wider rules');
  });

  test("refuses '/' and '@' anywhere in the name", () => {
    for (const name of ['/', '@', 'a/b', 'a@b', '../rbd', 'img@snap', '/leading', 'trailing@', 'x/y@z']) {
      assert.throws(() => checkName('image', name, OP, RES),
        invalid(/image name .* must not contain '\/' or '@'/), `accepted ${JSON.stringify(name)}`);
    }
  });

  test('allows separators only when asked', () => {
    assert.equal(checkName('metadata key', 'conf_rbd/cache@x', OP, RES, { allowSeparators: true }),
      'conf_rbd/cache@x');
    assert.throws(() => checkName('metadata key', 'conf_rbd/cache@x', OP, RES),
      invalid(/metadata key name .* must not contain/));
    assert.throws(() => checkName('metadata key', 'a/b', OP, RES, { allowSeparators: false }),
      invalid(/must not contain '\/' or '@'/));
  });

  test('refuses NUL, even where separators are allowed', () => {
    assert.throws(() => checkName('image', 'a\0b', OP, RES), invalid(/image name must not contain NUL/));
    assert.throws(() => checkName('image', '\0', OP, RES), invalid(/must not contain NUL/));
    assert.throws(() => checkName('lock cookie', 'x\0', OP, RES, { allowSeparators: true }),
      invalid(/lock cookie name must not contain NUL/));
  });

  test('allows 255 bytes and refuses 256', () => {
    assert.equal(checkName('image', 'a'.repeat(255), OP, RES), 'a'.repeat(255));
    assert.throws(() => checkName('image', 'a'.repeat(256), OP, RES),
      invalid(/image name is longer than 255 bytes/));
  });

  test('counts multi-byte UTF-8 in bytes, not in characters', () => {
    // 'é' is 2 bytes, '€' 3, '🙂' 4 (and 2 UTF-16 code units).
    assert.equal(checkName('image', 'é'.repeat(127) + 'a', OP, RES).length, 128); // 255 bytes
    assert.throws(() => checkName('image', 'é'.repeat(128), OP, RES), // 128 chars, 256 bytes
      invalid(/longer than 255 bytes/));
    assert.equal(checkName('image', '€'.repeat(85), OP, RES).length, 85); // 255 bytes
    assert.throws(() => checkName('image', '€'.repeat(86), OP, RES), invalid(/longer than 255 bytes/));
    assert.throws(() => checkName('image', '🙂'.repeat(64), OP, RES), invalid(/longer than 255 bytes/));
    assert.equal(checkName('image', '🙂'.repeat(63) + 'abc', OP, RES), '🙂'.repeat(63) + 'abc');
  });

  test('honours a custom maxBytes', () => {
    assert.equal(checkName('user', 'abcd', OP, RES, { maxBytes: 4 }), 'abcd');
    assert.throws(() => checkName('user', 'abcde', OP, RES, { maxBytes: 4 }),
      invalid(/user name is longer than 4 bytes/));
  });

  test('refuses non-strings and names their type', () => {
    const cases: Array<[unknown, string]> = [
      [undefined, 'undefined'], [null, 'object'], [42, 'number'], [42n, 'bigint'], [true, 'boolean'],
      [{ toString: () => 'rbd' }, 'object'], [['rbd'], 'object'], [Buffer.from('rbd'), 'object'],
      [Symbol('rbd'), 'symbol'],
    ];
    for (const [value, type] of cases) {
      assert.throws(() => checkName('pool', value, OP, RES),
        invalid(new RegExp(`pool name must be a string, got ${type} \\[EINVAL\\]$`)),
        `accepted ${String(type)}`);
    }
  });
});

describe('toU64', () => {
  test('accepts bigints across the whole 64-bit range', () => {
    assert.equal(toU64('size', 0n, OP, RES), 0n);
    assert.equal(toU64('size', 1n << 40n, OP, RES), 1n << 40n);
    assert.equal(toU64('size', (1n << 64n) - 1n, OP, RES), 18446744073709551615n);
  });

  test('accepts safe non-negative integer numbers and returns a bigint', () => {
    const zero = toU64('offset', 0, OP, RES);
    assert.equal(typeof zero, 'bigint');
    assert.equal(zero, 0n);
    assert.equal(toU64('offset', 4096, OP, RES), 4096n);
    assert.equal(toU64('offset', Number.MAX_SAFE_INTEGER, OP, RES), 9007199254740991n);
  });

  test('refuses negative values', () => {
    assert.throws(() => toU64('size', -1n, OP, RES), invalid(/size -1 is outside 0\.\.2\^64-1/));
    assert.throws(() => toU64('size', -1, OP, RES), invalid(/size must be a non-negative integer, got -1/));
  });

  test('refuses values above 2^64-1', () => {
    assert.throws(() => toU64('length', 1n << 64n, OP, RES),
      invalid(/length 18446744073709551616 is outside 0\.\.2\^64-1/));
  });

  test('refuses non-integers, NaN, infinities and unsafe numbers', () => {
    for (const value of [1.5, 0.1, NaN, Infinity, -Infinity, 2 ** 53, 2 ** 64, Number.MAX_VALUE]) {
      assert.throws(() => toU64('offset', value, OP, RES),
        invalid(/offset must be a non-negative integer, got /), `accepted ${value}`);
    }
  });

  test('refuses strings and other types', () => {
    for (const [value, type] of [['10', 'string'], [undefined, 'undefined'], [null, 'object'],
      [true, 'boolean'], [{}, 'object']] as Array<[unknown, string]>) {
      assert.throws(() => toU64('size', value, OP, RES),
        invalid(new RegExp(`size must be a number or bigint, got ${type}`)), `accepted ${String(value)}`);
    }
  });
});

describe('toIntInRange', () => {
  test('accepts integers within the bounds, inclusive', () => {
    assert.equal(toIntInRange('order', 12, 12, 26, OP, RES), 12);
    assert.equal(toIntInRange('order', 22, 12, 26, OP, RES), 22);
    assert.equal(toIntInRange('order', 26, 12, 26, OP, RES), 26);
  });

  test('refuses values outside the bounds', () => {
    assert.throws(() => toIntInRange('order', 11, 12, 26, OP, RES),
      invalid(/order must be an integer in 12\.\.26, got 11/));
    assert.throws(() => toIntInRange('order', 27, 12, 26, OP, RES),
      invalid(/order must be an integer in 12\.\.26, got 27/));
  });

  test('refuses non-integers and non-numbers', () => {
    for (const [value, shown] of [[12.5, '12.5'], [NaN, 'NaN'], [Infinity, 'Infinity'], ['20', '20'],
      [20n, '20'], [undefined, 'undefined'], [null, 'null']] as Array<[unknown, string]>) {
      assert.throws(() => toIntInRange('window', value, 1, 64, OP, RES),
        invalid(new RegExp(`window must be an integer in 1\\.\\.64, got ${shown} \\[EINVAL\\]$`)),
        `accepted ${String(value)}`);
    }
  });
});

describe('features', () => {
  const all = ['layering', 'striping', 'exclusive-lock', 'object-map', 'fast-diff', 'deep-flatten',
    'journaling', 'data-pool', 'operations', 'migrating', 'non-primary', 'dirty-cache'] as const;

  test('feature names map to the bits of include/rbd/features.h', () => {
    const expected: Record<string, bigint> = {
      'layering': 1n, 'striping': 2n, 'exclusive-lock': 4n, 'object-map': 8n, 'fast-diff': 16n,
      'deep-flatten': 32n, 'journaling': 64n, 'data-pool': 128n, 'operations': 256n,
      'migrating': 512n, 'non-primary': 1024n, 'dirty-cache': 2048n,
    };
    for (const name of all) assert.equal(featureBits([name], OP, RES), expected[name], name);
    // librbd's rbd_default_features for Pacific.
    assert.equal(featureBits(['layering', 'exclusive-lock', 'object-map', 'fast-diff', 'deep-flatten'],
      OP, RES), 61n);
  });

  test('featureBits and featureNames round-trip, in bit order', () => {
    assert.equal(featureBits([], OP, RES), 0n);
    assert.deepEqual(featureNames(0n), []);
    assert.deepEqual(featureNames(featureBits(all, OP, RES)), [...all]);
    assert.deepEqual(featureNames(featureBits(['fast-diff', 'layering', 'object-map'], OP, RES)),
      ['layering', 'object-map', 'fast-diff']);
    for (const name of all) assert.deepEqual(featureNames(featureBits([name], OP, RES)), [name]);
    // Every subset of the first six features survives the round trip.
    for (let mask = 0; mask < 64; mask++) {
      const names = all.slice(0, 6).filter((_, i) => (mask & (1 << i)) !== 0);
      assert.deepEqual(featureNames(featureBits(names, OP, RES)), names);
      assert.equal(featureBits(names, OP, RES), BigInt(mask));
    }
  });

  test('a repeated name sets its bit once', () => {
    assert.equal(featureBits(['layering', 'layering'], OP, RES), 1n);
  });

  test('bits without a known name are left out of featureNames', () => {
    assert.deepEqual(featureNames((1n << 40n) | 1n), ['layering']);
  });

  test('an unknown feature is refused with the known ones listed', () => {
    assert.throws(() => featureBits(['layering', 'bogus'], OP, RES),
      invalid(/unknown image feature "bogus" \(known: layering, striping, exclusive-lock, .*dirty-cache\)/));
    assert.throws(() => featureBits(['Layering'], OP, RES), invalid(/unknown image feature "Layering"/));
    assert.throws(() => featureBits([''], OP, RES), invalid(/unknown image feature ""/));
  });
});
