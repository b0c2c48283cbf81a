/**
 * parseIp: the address text netkeep stores is what inet_pton(3), and so the
 * kernel, reads from the same input.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseIp } from '../../src/domain/validate.js';

test('parseIp reads IPv6 with an embedded IPv4 address as inet_pton does', () => {
  const read = (text: string) => {
    const ip = parseIp(text);
    return ip && [ip.address, ip.ipv4Mapped];
  };
  assert.deepEqual(read('::1.2.3.4'), ['::102:304', false], 'IPv4-compatible (RFC 4291 §2.5.5.1) is not IPv4-mapped');
  assert.deepEqual(read('::ffff:1.2.3.4'), ['::ffff:102:304', true]);
  assert.deepEqual(read('64:ff9b::10.0.0.1'), ['64:ff9b::a00:1', false]);
  assert.deepEqual(read('FD00::0001'), ['fd00::1', false]);
});

test('parseIp refuses what the kernel would not read as one address', () => {
  for (const text of ['010.0.0.1', '10.0.0.256', ' 10.0.0.1', 'fe80::1%eth0', '10.0.0.0/8', '::1.2.3', '']) {
    assert.equal(parseIp(text), undefined, text);
  }
});
