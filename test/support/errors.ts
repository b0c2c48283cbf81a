/** Assertions on the typed errors the service layer throws. */
import assert from 'node:assert/strict';
import type { NetkeepError } from '../../src/domain/errors.js';

/** Runs `fn`, which must throw a `cls`, with a violation on `field` when given; returns the error. */
export function fails<E extends NetkeepError>(fn: () => unknown, cls: new (...a: never[]) => E, field?: string): E {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
    if (field) assert.ok(err.violations.some((v) => v.field === field), `no violation on ${field}: ${err.message}`);
    return err;
  }
  assert.fail(`expected ${cls.name}`);
}
