import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  addressValue,
  allocatable,
  countIntervals,
  formatAddress,
  fromSortKey,
  hostInterval,
  networkSize,
  nextFree,
  parseNetwork,
  sortKey,
  type Interval,
} from '../../src/ipam/arith.js';

const v = (text: string) => addressValue(text)!.value;
const net = (text: string) => parseNetwork(text)!;
const fmt = (n: ReturnType<typeof net>, x: bigint | undefined) => (x === undefined ? undefined : formatAddress(n.family, x));

/** Allocations as a sorted array, read lazily from `from`. */
function allocated(list: bigint[]) {
  const sorted = [...list].sort((a, b) => (a < b ? -1 : 1));
  return (from: bigint) => sorted.filter((x) => x >= from);
}

describe('pool arithmetic', () => {
  const table: { cidr: string; size: string; first: string; last: string }[] = [
    { cidr: '10.0.0.0/8', size: '16777216', first: '10.0.0.1', last: '10.255.255.254' },
    { cidr: '10.50.0.0/24', size: '256', first: '10.50.0.1', last: '10.50.0.254' },
    { cidr: '10.50.0.0/30', size: '4', first: '10.50.0.1', last: '10.50.0.2' },
    { cidr: '10.50.0.0/31', size: '2', first: '10.50.0.0', last: '10.50.0.1' },
    { cidr: '10.50.0.7/32', size: '1', first: '10.50.0.7', last: '10.50.0.7' },
    { cidr: '255.255.255.0/24', size: '256', first: '255.255.255.1', last: '255.255.255.254' },
    { cidr: 'fd00:1::/48', size: (1n << 80n).toString(), first: 'fd00:1::1', last: 'fd00:1:0:ffff:ffff:ffff:ffff:ffff' },
    { cidr: 'fd00::/64', size: (1n << 64n).toString(), first: 'fd00::1', last: 'fd00::ffff:ffff:ffff:ffff' },
    { cidr: 'fd00::/126', size: '4', first: 'fd00::1', last: 'fd00::3' },
    { cidr: 'fd00::/127', size: '2', first: 'fd00::', last: 'fd00::1' },
    { cidr: 'fd00::5/128', size: '1', first: 'fd00::5', last: 'fd00::5' },
    { cidr: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120', size: '256', first: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff01', last: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff' },
  ];
  for (const row of table) {
    test(`${row.cidr}: ${row.size} addresses, hosts ${row.first} … ${row.last}`, () => {
      const n = net(row.cidr);
      assert.equal(networkSize(n).toString(), row.size);
      const hosts = hostInterval(n)!;
      assert.equal(formatAddress(n.family, hosts.start), row.first);
      assert.equal(formatAddress(n.family, hosts.end), row.last);
    });
  }

  test('networks with host bits set, or malformed, are refused', () => {
    for (const bad of ['10.0.0.1/24', 'fd00::1/64', '10.0.0.0/33', '10.0.0.0', ' 10.0.0.0/24', 'fd00::/129']) {
      assert.equal(parseNetwork(bad), undefined, bad);
    }
  });

  test('sort keys are fixed width, so text order is numeric order, up to the top of the space', () => {
    const top6 = v('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff');
    assert.equal(sortKey(6, top6), 'f'.repeat(32));
    assert.equal(fromSortKey(sortKey(6, top6)), top6);
    assert.equal(sortKey(4, v('10.0.0.9')), '0a000009');
    assert.ok(sortKey(4, v('10.0.0.9')) < sortKey(4, v('10.0.0.10')));
  });

  test('ranges, gateway and reserved addresses shape the allocatable space', () => {
    const n = net('10.50.0.0/24');
    const space = allocatable(
      n,
      [{ start: v('10.50.0.0'), end: v('10.50.0.20') }],
      [
        { start: v('10.50.0.1'), end: v('10.50.0.1') },
        { start: v('10.50.0.5'), end: v('10.50.0.9') },
      ],
    );
    assert.deepEqual(
      space.map((i) => `${formatAddress(4, i.start)}-${formatAddress(4, i.end)}`),
      ['10.50.0.2-10.50.0.4', '10.50.0.10-10.50.0.20'],
      'the network address stays out even when a range starts there',
    );
    assert.equal(countIntervals(space), 14n);
  });

  test('next free moves forward from the cursor and wraps; a released address is not reused at once', () => {
    const n = net('10.50.0.0/29'); // hosts .1 … .6
    const space = allocatable(n, [], []);
    assert.equal(fmt(n, nextFree(space, undefined, allocated([]))), '10.50.0.1');
    assert.equal(fmt(n, nextFree(space, v('10.50.0.1'), allocated([v('10.50.0.1')]))), '10.50.0.2');
    // .3 was released, the cursor is at .5: the next is .6, then it wraps to .3.
    const taken = [v('10.50.0.1'), v('10.50.0.2'), v('10.50.0.4'), v('10.50.0.5')];
    assert.equal(fmt(n, nextFree(space, v('10.50.0.5'), allocated(taken))), '10.50.0.6');
    assert.equal(fmt(n, nextFree(space, v('10.50.0.6'), allocated([...taken, v('10.50.0.6')]))), '10.50.0.3');
    const all = [1, 2, 3, 4, 5, 6].map((i) => v(`10.50.0.${i}`));
    assert.equal(nextFree(space, v('10.50.0.3'), allocated(all)), undefined, 'full');
  });

  test('at the top of the IPv6 space the cursor does not wrap to zero', () => {
    const n = net('ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffc/126');
    const space = allocatable(n, [], []);
    const top = v('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff');
    assert.equal(fmt(n, nextFree(space, top, allocated([top]))), 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd');
  });

  test('a /48 with allocations costs what its allocations cost, not its size', () => {
    const n = net('fd00:1::/48');
    const space = allocatable(n, [], [{ start: v('fd00:1::1'), end: v('fd00:1::1') }]);
    const taken = Array.from({ length: 1000 }, (_, i) => n.first + 2n + BigInt(i));
    let reads = 0;
    const from = (f: bigint) => {
      const list = taken.filter((x) => x >= f);
      return (function* () {
        for (const x of list) {
          reads++;
          yield x;
        }
      })();
    };
    assert.equal(fmt(n, nextFree(space, undefined, from)), 'fd00:1::3ea');
    assert.ok(reads <= 1001, `read ${reads} allocations`);
  });

  test('property: allocate/release sequences never hand out a taken, excluded or out-of-pool address, and fill exactly the space', () => {
    const pools = fc.constantFrom('10.60.0.0/28', '10.60.0.0/30', '10.60.0.0/31', '10.60.0.4/32', 'fd00:60::/124', 'fd00:60::/127');
    const op = fc.oneof(fc.constant({ op: 'alloc' as const }), fc.record({ op: fc.constant('release' as const), pick: fc.nat() }));
    fc.assert(
      fc.property(pools, fc.array(op, { maxLength: 60 }), fc.array(fc.nat(15), { maxLength: 3 }), (cidr, ops, excludedOffsets) => {
        const n = net(cidr);
        const excluded: Interval[] = excludedOffsets
          .map((o) => n.first + BigInt(o))
          .filter((x) => x <= n.last)
          .map((x) => ({ start: x, end: x }));
        const space = allocatable(n, [], excluded);
        const model = new Set<bigint>();
        let cursor: bigint | undefined;
        const inSpace = (x: bigint) => space.some((i) => x >= i.start && x <= i.end);
        for (const o of ops) {
          if (o.op === 'alloc') {
            const got = nextFree(space, cursor, allocated([...model]));
            if (got === undefined) {
              assert.equal(BigInt(model.size), countIntervals(space), 'exhausted only when every address is taken');
              continue;
            }
            assert.ok(!model.has(got), 'never twice');
            assert.ok(inSpace(got), 'never outside the space (network, broadcast, excluded)');
            model.add(got);
            cursor = got;
          } else if (model.size > 0) {
            const list = [...model];
            model.delete(list[o.pick % list.length]!);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
