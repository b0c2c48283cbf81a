import assert from 'node:assert/strict';
import { fails } from '../support/errors.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, test } from 'node:test';
import fc from 'fast-check';
import {
  AbortedError,
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  ResourceExhaustedError,
} from '../../src/domain/errors.js';
import { addressValue, allocatable, contains, formatAddress, hostInterval, parseNetwork, sortKey, type Interval } from '../../src/ipam/arith.js';
import { IpamService } from '../../src/service/ipam.js';
import { openStore, type Store } from '../../src/store/index.js';

let store: Store;
let ipam: IpamService;
let changes = 0;

beforeEach(() => {
  store = openStore(':memory:');
  changes = 0;
  ipam = new IpamService(store, { onChange: () => changes++ });
});

function snapshot(s: Store = store) {
  return JSON.stringify(['resources', 'allocations', 'ipam_cursors'].map((t) => s.db.prepare(`SELECT * FROM ${t}`).all()));
}

/** Allocates automatically until exhausted; returns the addresses in order. */
function drain(pool: string, max = 10_000): string[] {
  const out: string[] = [];
  for (let i = 0; i < max; i++) {
    try {
      out.push(ipam.allocate(pool).address);
    } catch (err) {
      if (err instanceof ResourceExhaustedError) return out;
      throw err;
    }
  }
  throw new Error(`${pool} not exhausted after ${max}`);
}

describe('pool validation', () => {
  test('the spec is normalized: canonical addresses, defaults', () => {
    const p = ipam.createPool({
      name: 'v6',
      cidr: 'FD00:0:0:1::/64',
      gateway: 'fd00:0:0:1:0:0:0:1',
      ranges: [{ start: 'fd00:0:0:1::10', end: 'fd00:0:0:1::ff' }],
      reserved: ['fd00:0:0:1::20', { start: 'fd00:0:0:1::30', end: 'fd00:0:0:1::3f' }],
    });
    assert.deepEqual(p.spec, {
      cidr: 'fd00:0:0:1::/64',
      gateway: 'fd00:0:0:1::1',
      ranges: [{ start: 'fd00:0:0:1::10', end: 'fd00:0:0:1::ff' }],
      reserved: ['fd00:0:0:1::20', { start: 'fd00:0:0:1::30', end: 'fd00:0:0:1::3f' }],
    });
    assert.equal(p.generation, 1);
    assert.equal(p.status.state, 'READY');
    // 0x10..0xff = 240, minus 1 and 16 reserved.
    assert.deepEqual([p.status.total, p.status.allocated, p.status.free], ['223', '0', '223']);
    const q = ipam.createPool({ name: 'v4', cidr: '10.50.0.0/24' });
    assert.deepEqual(q.spec, { cidr: '10.50.0.0/24', gateway: '', ranges: [], reserved: [] });
    assert.equal(changes, 2);
  });

  const bad: [string, Record<string, unknown>, string][] = [
    ['no cidr', {}, 'cidr'],
    ['host bits set', { cidr: '10.50.0.1/24' }, 'cidr'],
    ['not a network', { cidr: '10.50.0.0' }, 'cidr'],
    ['leading zero', { cidr: '10.050.0.0/24' }, 'cidr'],
    ['prefix too long', { cidr: '10.0.0.0/33' }, 'cidr'],
    ['gateway outside', { cidr: '10.50.0.0/24', gateway: '10.51.0.1' }, 'gateway'],
    ['gateway other family', { cidr: '10.50.0.0/24', gateway: 'fd00::1' }, 'gateway'],
    ['gateway is the network address', { cidr: '10.50.0.0/24', gateway: '10.50.0.0' }, 'gateway'],
    ['gateway is the broadcast address', { cidr: '10.50.0.0/24', gateway: '10.50.0.255' }, 'gateway'],
    ['gateway malformed', { cidr: '10.50.0.0/24', gateway: '10.50.0.1 ' }, 'gateway'],
    ['range start after end', { cidr: '10.50.0.0/24', ranges: [{ start: '10.50.0.9', end: '10.50.0.8' }] }, 'ranges[0].start'],
    [
      'range end outside',
      { cidr: '10.50.0.0/24', ranges: [{ start: '10.50.0.1', end: '10.50.0.2' }, { start: '10.50.0.9', end: '10.50.1.0' }] },
      'ranges[1].end',
    ],
    ['range other family', { cidr: 'fd00::/64', ranges: [{ start: '10.0.0.1', end: 'fd00::9' }] }, 'ranges[0].start'],
    ['range missing end', { cidr: '10.50.0.0/24', ranges: [{ start: '10.50.0.1' }] }, 'ranges[0].end'],
    ['range unknown field', { cidr: '10.50.0.0/24', ranges: [{ start: '10.50.0.1', end: '10.50.0.2', step: 1 }] }, 'ranges[0].step'],
    ['ranges not a list', { cidr: '10.50.0.0/24', ranges: 'all' }, 'ranges'],
    ['reserved outside', { cidr: '10.50.0.0/24', reserved: ['10.50.1.1'] }, 'reserved[0]'],
    ['reserved malformed', { cidr: '10.50.0.0/24', reserved: ['10.50.0.1', 'x'] }, 'reserved[1]'],
    ['reserved bad range', { cidr: '10.50.0.0/24', reserved: [{ start: '10.50.0.9', end: '10.50.0.1' }] }, 'reserved[0].start'],
    ['reserved wrong type', { cidr: '10.50.0.0/24', reserved: [7] }, 'reserved[0]'],
    ['zone index', { cidr: 'fe80::/64', gateway: 'fe80::1%eth0' }, 'gateway'],
    ['unknown field', { cidr: '10.50.0.0/24', subnet: 'x' }, 'subnet'],
  ];
  for (const [what, body, field] of bad) {
    test(`refused: ${what} (${field})`, () => {
      const before = snapshot();
      fails(() => ipam.createPool({ name: 'p', ...body }), InvalidArgumentError, field);
      assert.equal(snapshot(), before);
    });
  }

  test('the name is validated and unique', () => {
    fails(() => ipam.createPool({ name: 'Bad_Name', cidr: '10.0.0.0/24' }), InvalidArgumentError, 'name');
    ipam.createPool({ name: 'p', cidr: '10.0.0.0/24' });
    fails(() => ipam.createPool({ name: 'p', cidr: '10.1.0.0/24' }), AlreadyExistsError, 'name');
  });

  test('pools are not one of the REST/reconciler kinds and do not collide with them', async () => {
    const { KINDS } = await import('../../src/domain/types.js');
    assert.ok(!(KINDS as readonly string[]).includes('pools'));
    ipam.createPool({ name: 'blue', cidr: '10.0.0.0/24' });
    assert.equal(store.get('namespaces', 'blue'), undefined);
    assert.deepEqual(store.all('namespaces'), []);
  });
});

describe('pool rules found by review', () => {
  test('an IPv4-mapped IPv6 network is refused: it would be an IPv4 pool the overlap check cannot see', () => {
    const e = fails(() => ipam.createPool({ name: 'mapped', cidr: '::ffff:10.40.0.0/120' }), InvalidArgumentError, 'cidr');
    assert.match(e.message, /IPv4-mapped/);
  });

  test('an IPv6 gateway may not be the subnet-router anycast address, except in /127 and /128', () => {
    fails(() => ipam.createPool({ name: 'sr', cidr: 'fd00:41::/64', gateway: 'fd00:41::' }), InvalidArgumentError, 'gateway');
    assert.equal(ipam.createPool({ name: 'p127', cidr: 'fd00:41::/127', gateway: 'fd00:41::' }).spec.gateway, 'fd00:41::');
  });

  test('ranges and reserved have at most 256 entries each', () => {
    const many = Array.from({ length: 257 }, (_, i) => `10.50.${i >> 8}.${i & 255}`);
    fails(() => ipam.createPool({ name: 'big', cidr: '10.50.0.0/16', reserved: many }), InvalidArgumentError, 'reserved');
    fails(() => ipam.createPool({ name: 'big', cidr: '10.50.0.0/16', ranges: many.map((a) => ({ start: a, end: a })) }), InvalidArgumentError, 'ranges');
    assert.equal(ipam.createPool({ name: 'big', cidr: '10.50.0.0/16', reserved: many.slice(0, 256) }).spec.reserved.length, 256);
  });

  test('owners: no C1 controls or line separators; the limit counts UTF-8 bytes', () => {
    ipam.createPool({ name: 'o', cidr: '10.51.0.0/24' });
    for (const owner of ['x\u0085y', 'x\u2028y', 'x\ny', 'é'.repeat(127)]) fails(() => ipam.allocate('o', { owner }), InvalidArgumentError, 'owner');
    assert.equal(ipam.allocate('o', { owner: 'é'.repeat(126) }).owner, 'é'.repeat(126));
  });

  test('an update that changes the immutable cidr says only that', () => {
    ipam.createPool({ name: 'imm', cidr: '10.52.0.0/24', reserved: ['10.52.0.200'] });
    const e = fails(() => ipam.updatePool('imm', { cidr: '10.52.0.0/25' }), InvalidArgumentError, 'cidr');
    assert.deepEqual(e.violations.map((x) => x.field), ['cidr']);
  });
});

describe('pool overlap', () => {
  const cases: [string, string, string, boolean][] = [
    ['equal v4', '10.0.0.0/24', '10.0.0.0/24', true],
    ['inside v4', '10.0.0.0/16', '10.0.5.0/24', true],
    ['around v4', '10.0.5.0/24', '10.0.0.0/8', true],
    ['single address inside', '10.0.0.0/24', '10.0.0.255/32', true],
    ['adjacent v4', '10.0.0.0/24', '10.0.1.0/24', false],
    ['adjacent /31s', '10.0.0.0/31', '10.0.0.2/31', false],
    ['equal v6', 'fd00::/64', 'fd00::/64', true],
    ['inside v6', 'fd00::/48', 'fd00:0:0:ffff::/64', true],
    ['around v6', 'fd00::ff/128', 'fd00::/120', true],
    ['adjacent v6', 'fd00::/64', 'fd00:0:0:1::/64', false],
    ['top of v6', 'ffff:ffff:ffff:ffff::/64', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127', true],
    ['v4 vs v6 (different families)', '10.0.0.0/8', 'fd0a::/16', false],
    ['everything v4', '0.0.0.0/0', '192.168.0.0/16', true],
  ];
  for (const [what, a, b, overlap] of cases) {
    test(`${what}: ${a} and ${b} ${overlap ? 'overlap' : 'do not overlap'}, in either order`, () => {
      for (const [x, y] of [
        [a, b],
        [b, a],
      ] as const) {
        const s = openStore(':memory:');
        const svc = new IpamService(s);
        svc.createPool({ name: 'first', cidr: x });
        if (overlap) {
          const e = fails(() => svc.createPool({ name: 'second', cidr: y }), AlreadyExistsError, 'cidr');
          assert.match(e.message, /overlaps .* of pools\/first/);
          assert.equal(svc.listPools().items.length, 1);
        } else {
          svc.createPool({ name: 'second', cidr: y });
        }
        s.close();
      }
    });
  }

  test('the check reads the database inside the write transaction: a second connection sees the first one\'s pool', () => {
    const dir = mkdtempSync(join(tmpdir(), 'netkeep-ipam-'));
    try {
      const a = openStore(join(dir, 'db'));
      const b = openStore(join(dir, 'db'));
      new IpamService(a).createPool({ name: 'one', cidr: 'fd00::/48' });
      fails(() => new IpamService(b).createPool({ name: 'two', cidr: 'fd00:0:0:7::/64' }), AlreadyExistsError, 'cidr');
      // While one connection holds the write lock, the other cannot slip a pool in.
      b.db.pragma('busy_timeout = 0');
      a.db.prepare('BEGIN IMMEDIATE').run();
      assert.throws(() => new IpamService(b).createPool({ name: 'three', cidr: '10.0.0.0/8' }), /database is locked/);
      a.db.prepare('ROLLBACK').run();
      a.close();
      b.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('validateOnly runs the overlap check and stores nothing', () => {
    ipam.createPool({ name: 'a', cidr: '10.0.0.0/24' });
    const before = snapshot();
    fails(() => ipam.createPool({ name: 'b', cidr: '10.0.0.128/25' }, { validateOnly: true }), AlreadyExistsError, 'cidr');
    const ok = ipam.createPool({ name: 'b', cidr: '10.0.1.0/24' }, { validateOnly: true });
    assert.equal(ok.etag, '');
    assert.equal(snapshot(), before);
    assert.equal(changes, 1);
  });
});

describe('pool CRUD', () => {
  test('list pages by name; get; update bumps generation and etag; etag mismatch is ABORTED', () => {
    for (let i = 0; i < 5; i++) ipam.createPool({ name: `p${i}`, cidr: `10.0.${i}.0/24` });
    const first = ipam.listPools({ pageSize: 2 });
    assert.deepEqual(first.items.map((p) => p.name), ['p0', 'p1']);
    const second = ipam.listPools({ pageSize: 2, pageToken: first.nextPageToken });
    assert.deepEqual(second.items.map((p) => p.name), ['p2', 'p3']);
    const last = ipam.listPools({ pageSize: 2, pageToken: second.nextPageToken });
    assert.deepEqual(last.items.map((p) => p.name), ['p4']);
    assert.equal(last.nextPageToken, '');
    fails(() => ipam.listPools({ pageToken: 'nope' }), InvalidArgumentError, 'pageToken');
    fails(() => ipam.listPools({ pageSize: 5000 }), InvalidArgumentError, 'pageSize');

    const p = ipam.getPool('p0');
    const u = ipam.updatePool('p0', { gateway: '10.0.0.1', labels: { team: 'net' } }, { etag: p.etag });
    assert.equal(u.generation, 2);
    assert.notEqual(u.etag, p.etag);
    assert.equal(u.spec.gateway, '10.0.0.1');
    assert.deepEqual(u.labels, { team: 'net' });
    assert.equal(u.status.total, '253');
    fails(() => ipam.updatePool('p0', { gateway: '' }, { etag: p.etag }), AbortedError);
    // null resets (RFC 7396).
    assert.equal(ipam.updatePool('p0', { gateway: null }).spec.gateway, '');
    // Labels only: generation stays.
    const l = ipam.updatePool('p0', { labels: { team: 'x' } });
    assert.equal(l.generation, 3);
    // cidr is immutable.
    fails(() => ipam.updatePool('p0', { cidr: '10.9.0.0/24' }), InvalidArgumentError, 'cidr');
    fails(() => ipam.getPool('nope'), NotFoundError);
    ipam.deletePool('p4');
    fails(() => ipam.getPool('p4'), NotFoundError);
    fails(() => ipam.deletePool('p4'), NotFoundError);
  });

  test('deleting a pool with allocations is refused naming the owners; its cursor goes with it', () => {
    ipam.createPool({ name: 'p', cidr: '10.0.0.0/24' });
    ipam.allocate('p', { owner: 'veths/web/b' });
    ipam.allocate('p', { address: '10.0.0.9' });
    const e = fails(() => ipam.deletePool('p'), FailedPreconditionError);
    assert.deepEqual(e.dependents, ['veths/web/b']);
    assert.match(e.message, /2 allocations: veths\/web\/b \(10\.0\.0\.1\), 10\.0\.0\.9 \(no owner\)/);
    // The foreign key refuses it too, should a caller skip the service.
    assert.throws(() => store.ipam.deletePool('p'), /FOREIGN KEY/);
    ipam.release('p', '10.0.0.1');
    ipam.release('p', '10.0.0.9');
    ipam.deletePool('p');
    assert.deepEqual(store.db.prepare('SELECT * FROM ipam_cursors').all(), []);
  });
});

describe('allocation rules', () => {
  test('next-free skips network, gateway and reserved; counts follow', () => {
    ipam.createPool({ name: 'p', cidr: '10.50.0.0/29', gateway: '10.50.0.1', reserved: ['10.50.0.3', { start: '10.50.0.5', end: '10.50.0.5' }] });
    // Hosts .1-.6; minus .1 .3 .5 → .2 .4 .6.
    assert.deepEqual(drain('p'), ['10.50.0.2', '10.50.0.4', '10.50.0.6']);
    const e = fails(() => ipam.allocate('p'), ResourceExhaustedError);
    assert.match(e.message, /no free address/);
    assert.deepEqual(
      (({ total, allocated, free }) => ({ total, allocated, free }))(ipam.getPool('p').status),
      { total: '3', allocated: '3', free: '0' },
    );
  });

  test('next-free moves forward from the cursor and wraps; a released address is not reused at once', () => {
    ipam.createPool({ name: 'p', cidr: '10.0.0.0/29' });
    assert.deepEqual(drain('p').length, 6);
    ipam.release('p', '10.0.0.2');
    ipam.release('p', '10.0.0.5');
    // Cursor at .6: wraps to .2 first.
    assert.equal(ipam.allocate('p').address, '10.0.0.2');
    // Then forward from .2: .5 (not .2 again).
    ipam.release('p', '10.0.0.3');
    assert.equal(ipam.allocate('p').address, '10.0.0.3');
    assert.equal(ipam.allocate('p').address, '10.0.0.5');
    fails(() => ipam.allocate('p'), ResourceExhaustedError);
  });

  test('the cursor is persisted: a new service over the same database continues where it left off', () => {
    ipam.createPool({ name: 'p', cidr: '10.0.0.0/24' });
    ipam.allocate('p');
    ipam.allocate('p');
    ipam.release('p', '10.0.0.1');
    const again = new IpamService(store);
    assert.equal(again.allocate('p').address, '10.0.0.3');
    assert.equal(store.ipam.cursor('p'), '0a000003');
  });

  test('explicit addresses: exactly that one; outside/malformed/network/broadcast → INVALID_ARGUMENT', () => {
    ipam.createPool({ name: 'p', cidr: '10.50.0.0/24', gateway: '10.50.0.1', ranges: [{ start: '10.50.0.100', end: '10.50.0.199' }], reserved: [{ start: '10.50.0.250', end: '10.50.0.254' }] });
    assert.equal(ipam.allocate('p', { address: '10.50.0.7' }).address, '10.50.0.7', 'outside ranges is fine when asked for');
    const before = snapshot();
    for (const address of ['10.50.1.1', '10.50.0.256', '010.50.0.7', 'fd00::1', '10.50.0.0', '10.50.0.255', 'x', ' 10.50.0.8']) {
      fails(() => ipam.allocate('p', { address }), InvalidArgumentError, 'address');
    }
    fails(() => ipam.allocate('p', { address: 7 } as never), InvalidArgumentError, 'address');
    fails(() => ipam.allocate('p', { address: '10.50.0.1' }), FailedPreconditionError, 'address');
    fails(() => ipam.allocate('p', { address: '10.50.0.252' }), FailedPreconditionError, 'address');
    const taken = fails(() => ipam.allocate('p', { address: '10.50.0.7' }), AlreadyExistsError, 'address');
    assert.match(taken.message, /10\.50\.0\.7 is already allocated/);
    fails(() => ipam.allocate('nope', { address: '10.50.0.7' }), NotFoundError);
    fails(() => ipam.allocate('p', { color: 'red' } as never), InvalidArgumentError, 'color');
    fails(() => ipam.allocate('p', { owner: 'a\nb' }), InvalidArgumentError, 'owner');
    assert.equal(snapshot(), before);
    // Explicit requests do not move the cursor; automatic ones stay in ranges.
    assert.equal(ipam.allocate('p').address, '10.50.0.100');
    const st = ipam.getPool('p').status;
    assert.deepEqual([st.total, st.allocated, st.free], ['100', '2', '99']);
  });

  test('the same owner again gets its allocation (idempotent); a different address for it is ALREADY_EXISTS', () => {
    ipam.createPool({ name: 'p', cidr: '10.0.0.0/24' });
    ipam.createPool({ name: 'q', cidr: '10.0.1.0/24' });
    const a = ipam.allocate('p', { owner: 'veths/web/b', labels: { role: 'web' } });
    assert.deepEqual(ipam.allocate('p', { owner: 'veths/web/b' }), a);
    assert.deepEqual(ipam.allocate('p', { owner: 'veths/web/b', address: a.address }), a);
    fails(() => ipam.allocate('p', { owner: 'veths/web/b', address: '10.0.0.50' }), AlreadyExistsError, 'owner');
    // Another pool: a separate allocation.
    const b = ipam.allocate('q', { owner: 'veths/web/b' });
    assert.equal(b.address, '10.0.1.1');
    assert.deepEqual(ipam.allocationsOf('veths/web/b').map((x) => x.address), ['10.0.0.1', '10.0.1.1']);
    // Ownerless allocations are never merged.
    assert.notEqual(ipam.allocate('p').address, ipam.allocate('p').address);
    // The database enforces one per owner as well.
    assert.throws(
      () => store.ipam.insert({ pool: 'p', address: '10.0.0.99', sortKey: '0a000063', owner: 'veths/web/b', labels: {}, createTime: '' }),
      /UNIQUE/,
    );
    assert.equal(ipam.getAllocation('p', a.address).owner, 'veths/web/b');
    assert.deepEqual(ipam.getAllocation('p', a.address).labels, { role: 'web' });
  });

  test('get / list / release', () => {
    ipam.createPool({ name: 'p', cidr: 'fd00::/64' });
    for (let i = 0; i < 5; i++) ipam.allocate('p', { owner: `o${i}` });
    assert.equal(ipam.getAllocation('p', 'FD00:0::3').address, 'fd00::3');
    fails(() => ipam.getAllocation('p', 'fd00::99'), NotFoundError);
    fails(() => ipam.getAllocation('p', 'fd01::1'), NotFoundError);
    fails(() => ipam.getAllocation('p', 'nope'), InvalidArgumentError, 'address');
    const page = ipam.listAllocations('p', { pageSize: 3 });
    assert.deepEqual(page.items.map((a) => a.address), ['fd00::1', 'fd00::2', 'fd00::3']);
    const rest = ipam.listAllocations('p', { pageSize: 3, pageToken: page.nextPageToken });
    assert.deepEqual(rest.items.map((a) => a.address), ['fd00::4', 'fd00::5']);
    assert.equal(rest.nextPageToken, '');
    fails(() => ipam.listAllocations('p', { pageToken: ipam.listPools({ pageSize: 1 }).nextPageToken || 'x' }), InvalidArgumentError);
    ipam.release('p', 'fd00::3', { validateOnly: true });
    assert.equal(ipam.listAllocations('p').items.length, 5);
    ipam.release('p', 'fd00::3');
    fails(() => ipam.release('p', 'fd00::3'), NotFoundError);
    fails(() => ipam.release('nope', 'fd00::3'), NotFoundError);
    assert.equal(ipam.listAllocations('p').items.length, 4);
    const v = ipam.allocate('p', {}, { validateOnly: true });
    assert.equal(v.address, 'fd00::6');
    assert.equal(ipam.listAllocations('p').items.length, 4);
    assert.equal(store.ipam.cursor('p'), sortKey(6, addressValue('fd00::5')!.value), 'validateOnly leaves the cursor');
  });

  test('an update that would strand allocations is refused naming the owners', () => {
    ipam.createPool({ name: 'p', cidr: '10.0.0.0/24', ranges: [{ start: '10.0.0.10', end: '10.0.0.19' }] });
    ipam.allocate('p', { owner: 'veths/a/b' }); // .10
    ipam.allocate('p', { owner: 'veths/c/d' }); // .11
    ipam.allocate('p', { owner: 'bridges/x', address: '10.0.0.200' }); // outside ranges, on request
    const before = snapshot();
    const gw = fails(() => ipam.updatePool('p', { gateway: '10.0.0.10' }), FailedPreconditionError);
    assert.deepEqual(gw.dependents, ['veths/a/b']);
    const res = fails(() => ipam.updatePool('p', { reserved: [{ start: '10.0.0.11', end: '10.0.0.250' }] }), FailedPreconditionError);
    assert.deepEqual(res.dependents, ['veths/c/d', 'bridges/x']);
    assert.match(res.message, /veths\/c\/d \(10\.0\.0\.11\), bridges\/x \(10\.0\.0\.200\)/);
    const rng = fails(() => ipam.updatePool('p', { ranges: [{ start: '10.0.0.11', end: '10.0.0.30' }] }), FailedPreconditionError);
    assert.deepEqual(rng.dependents, ['veths/a/b']);
    // Removing ranges entirely covers everything: fine, as is widening.
    assert.equal(snapshot(), before);
    ipam.updatePool('p', { ranges: [{ start: '10.0.0.5', end: '10.0.0.40' }] });
    ipam.updatePool('p', { ranges: null, gateway: '10.0.0.1', reserved: ['10.0.0.12'] });
    // Without ranges every host address was covered: narrowing them now strands .200.
    const narrow = fails(() => ipam.updatePool('p', { ranges: [{ start: '10.0.0.10', end: '10.0.0.11' }] }), FailedPreconditionError);
    assert.deepEqual(narrow.dependents, ['bridges/x']);
    ipam.release('p', '10.0.0.200');
    ipam.updatePool('p', { ranges: [{ start: '10.0.0.10', end: '10.0.0.11' }] });
    ipam.allocate('p', { owner: 'bridges/x', address: '10.0.0.200' });
    // An allocation requested outside the ranges is not stranded by a further ranges change.
    ipam.updatePool('p', { ranges: [{ start: '10.0.0.10', end: '10.0.0.20' }] });
    assert.equal(ipam.getPool('p').status.allocated, '3');
  });
});

describe('families and prefix lengths', () => {
  const table: { cidr: string; total: string; first: string[]; forbidden?: string[] }[] = [
    { cidr: '10.0.0.0/8', total: '16777214', first: ['10.0.0.1', '10.0.0.2'], forbidden: ['10.0.0.0', '10.255.255.255'] },
    { cidr: '10.1.0.0/16', total: '65534', first: ['10.1.0.1'], forbidden: ['10.1.255.255'] },
    { cidr: '10.2.0.0/24', total: '254', first: ['10.2.0.1'], forbidden: ['10.2.0.0', '10.2.0.255'] },
    { cidr: '10.3.0.0/30', total: '2', first: ['10.3.0.1', '10.3.0.2'], forbidden: ['10.3.0.0', '10.3.0.3'] },
    { cidr: '10.4.0.0/31', total: '2', first: ['10.4.0.0', '10.4.0.1'] },
    { cidr: '10.5.0.7/32', total: '1', first: ['10.5.0.7'] },
    { cidr: '255.255.255.254/31', total: '2', first: ['255.255.255.254', '255.255.255.255'] },
    { cidr: '255.255.255.255/32', total: '1', first: ['255.255.255.255'] },
    { cidr: '255.255.255.0/24', total: '254', first: ['255.255.255.1'], forbidden: ['255.255.255.255'] },
    { cidr: 'fd00:1::/48', total: ((1n << 80n) - 1n).toString(), first: ['fd00:1::1', 'fd00:1::2'], forbidden: ['fd00:1::'] },
    { cidr: 'fd00:2::/64', total: ((1n << 64n) - 1n).toString(), first: ['fd00:2::1'], forbidden: ['fd00:2::'] },
    { cidr: 'fd00:3::/120', total: '255', first: ['fd00:3::1'], forbidden: ['fd00:3::'] },
    { cidr: 'fd00:4::/127', total: '2', first: ['fd00:4::', 'fd00:4::1'] },
    { cidr: 'fd00:5::5/128', total: '1', first: ['fd00:5::5'] },
    { cidr: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127', total: '2', first: ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'] },
    { cidr: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128', total: '1', first: ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'] },
  ];
  for (const row of table) {
    test(`${row.cidr}: total ${row.total.length > 12 ? '2^n-1' : row.total}, first ${row.first.join(', ')}`, () => {
      const p = ipam.createPool({ name: 'p', cidr: row.cidr });
      assert.equal(p.status.total, row.total);
      assert.equal(p.status.free, row.total);
      for (const f of row.forbidden ?? []) fails(() => ipam.allocate('p', { address: f }), InvalidArgumentError, 'address');
      assert.deepEqual(row.first.map(() => ipam.allocate('p').address), row.first);
      const st = ipam.getPool('p').status;
      assert.equal(st.allocated, String(row.first.length));
      assert.equal(BigInt(st.free), BigInt(row.total) - BigInt(row.first.length));
      if (BigInt(row.total) === BigInt(row.first.length)) {
        // Full at the top of the address space: no wrap to zero, no address past the end.
        fails(() => ipam.allocate('p'), ResourceExhaustedError);
        ipam.release('p', row.first[0]!);
        assert.equal(ipam.allocate('p').address, row.first[0]);
        fails(() => ipam.allocate('p'), ResourceExhaustedError);
      }
    });
  }

  test('the top address of a v6 range is handed out, then it wraps to the start', () => {
    const top = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
    ipam.createPool({ name: 'p', cidr: 'ffff:ffff:ffff:ffff::/64', ranges: [{ start: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd', end: top }] });
    assert.deepEqual(drain('p'), ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe', top]);
    ipam.release('p', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd');
    assert.equal(ipam.allocate('p').address, 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd');
  });

  test('v4 top of space: a /24 at 255.255.255.0 wraps from .254 to .1 without touching .255', () => {
    ipam.createPool({ name: 'p', cidr: '255.255.255.0/24', ranges: [{ start: '255.255.255.250', end: '255.255.255.255' }] });
    assert.deepEqual(drain('p'), ['255.255.255.250', '255.255.255.251', '255.255.255.252', '255.255.255.253', '255.255.255.254']);
  });
});

describe('cost follows the allocations, not the pool size', () => {
  test('5,000 allocations in a /64: one more reads a bounded number of rows; counts do not enumerate', () => {
    ipam.createPool({ name: 'big', cidr: 'fd00:64::/64', gateway: 'fd00:64::1' });
    store.transaction(() => {
      for (let i = 0; i < 5000; i++) ipam.allocate('big', { owner: `o${i}` });
    });
    let rows = 0;
    let iterators = 0;
    const real = store.ipam.allocatedFrom.bind(store.ipam);
    store.ipam.allocatedFrom = (pool: string, fromKey: string) => {
      iterators++;
      const it = real(pool, fromKey);
      const counted: IterableIterator<string> = {
        next: () => {
          const r = it.next();
          if (!r.done) rows++;
          return r;
        },
        return: (v?: unknown) => it.return?.(v) ?? { done: true, value: undefined },
        [Symbol.iterator]() {
          return this;
        },
      };
      return counted;
    };
    const a = ipam.allocate('big');
    assert.equal(a.address, `fd00:64::${(5002).toString(16)}`);
    assert.ok(iterators >= 1);
    assert.ok(rows <= 1, `one more allocation read ${rows} allocation rows`);
    // Counts are COUNTs over index ranges: 2^64 addresses cost nothing to report.
    const st = ipam.getPool('big').status;
    assert.equal(st.allocated, '5001');
    assert.equal(st.total, ((1n << 64n) - 2n).toString());
    assert.equal(BigInt(st.free), (1n << 64n) - 2n - 5001n);
    // The database is still usable after nextFree abandoned an open iterator.
    ipam.release('big', a.address);
  });

  test('a full /22 wraps by passing each allocation once (bounded by allocations), then reports exhaustion', () => {
    ipam.createPool({ name: 'p', cidr: '10.8.0.0/22' });
    store.transaction(() => drain('p'));
    let rows = 0;
    const real = store.ipam.allocatedFrom.bind(store.ipam);
    store.ipam.allocatedFrom = (pool, fromKey) => {
      const it = real(pool, fromKey);
      return (function* () {
        for (const k of it) {
          rows++;
          yield k;
        }
      })();
    };
    fails(() => ipam.allocate('p'), ResourceExhaustedError);
    assert.ok(rows <= 1022 + 1, `read ${rows} rows for 1022 allocations`);
  });
});

describe('property: random allocate/release against a model', () => {
  function spaceOf(cidr: string, ranges: Interval[], excluded: Interval[]) {
    return allocatable(parseNetwork(cidr)!, ranges, excluded);
  }

  const pools = [
    { cidr: '10.9.0.0/28', gateway: '10.9.0.1', reserved: ['10.9.0.7'], ranges: [] as { start: string; end: string }[] },
    { cidr: 'fd00:9::/124', gateway: '', reserved: [{ start: 'fd00:9::3', end: 'fd00:9::4' }], ranges: [{ start: 'fd00:9::2', end: 'fd00:9::c' }] },
    { cidr: '10.9.1.0/31', gateway: '', reserved: [], ranges: [] },
    { cidr: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124', gateway: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', reserved: [], ranges: [] },
  ];
  type Op = { op: 'alloc' } | { op: 'ask'; offset: number } | { op: 'release'; pick: number } | { op: 'owner'; n: number };
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    { weight: 5, arbitrary: fc.constant({ op: 'alloc' } as Op) },
    { weight: 2, arbitrary: fc.integer({ min: 0, max: 15 }).map((offset) => ({ op: 'ask', offset }) as Op) },
    { weight: 3, arbitrary: fc.nat().map((pick) => ({ op: 'release', pick }) as Op) },
    { weight: 2, arbitrary: fc.integer({ min: 0, max: 3 }).map((n) => ({ op: 'owner', n }) as Op) },
  );

  test('no duplicates, always inside the space, exhaustion only when full, store equals model', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: pools.length - 1 }), fc.array(opArb, { maxLength: 60 }), (which, ops) => {
        const def = pools[which]!;
        const s = openStore(':memory:');
        try {
          const svc = new IpamService(s);
          const pool = svc.createPool({ name: 'p', ...def });
          const n = parseNetwork(pool.spec.cidr)!;
          const val = (t: string) => addressValue(t)!.value;
          const excluded = [
            ...(pool.spec.gateway ? [{ start: val(pool.spec.gateway), end: val(pool.spec.gateway) }] : []),
            ...pool.spec.reserved.map((r) => (typeof r === 'string' ? { start: val(r), end: val(r) } : { start: val(r.start), end: val(r.end) })),
          ];
          const ranges = pool.spec.ranges.map((r) => ({ start: val(r.start), end: val(r.end) }));
          const space = spaceOf(pool.spec.cidr, ranges, excluded);
          const inSpace = (x: bigint) => space.some((i) => contains(i, x));
          const model = new Map<string, string>(); // address → owner
          const owners = new Map<string, string>(); // owner → address
          const spaceFull = () => [...model.keys()].filter((a) => inSpace(val(a))).length === space.reduce((k, i) => k + Number(i.end - i.start + 1n), 0);
          for (const o of ops) {
            if (o.op === 'alloc' || o.op === 'owner') {
              const owner = o.op === 'owner' ? `o${o.n}` : '';
              if (owner && owners.has(owner)) {
                assert.equal(svc.allocate('p', { owner }).address, owners.get(owner));
                continue;
              }
              try {
                const a = svc.allocate('p', { owner });
                assert.ok(!model.has(a.address), `duplicate ${a.address}`);
                assert.ok(inSpace(val(a.address)), `${a.address} outside the allocatable space`);
                model.set(a.address, owner);
                if (owner) owners.set(owner, a.address);
              } catch (err) {
                assert.ok(err instanceof ResourceExhaustedError, String(err));
                assert.ok(spaceFull(), 'exhausted while the space has a free address');
              }
            } else if (o.op === 'ask') {
              const x = n.first + BigInt(o.offset) > n.last ? n.last : n.first + BigInt(o.offset);
              // Ask in non-canonical form; the model is keyed by the canonical one.
              const text = formatFor(n.family, x);
              const key = formatAddress(n.family, x);
              try {
                const a = svc.allocate('p', { address: text });
                assert.equal(a.address, key);
                assert.ok(!model.has(a.address));
                assert.ok(contains(hostInterval(n)!, x) && !excluded.some((i) => contains(i, x)));
                model.set(a.address, '');
              } catch (err) {
                if (model.has(key)) assert.ok(err instanceof AlreadyExistsError, String(err));
                else if (excluded.some((i) => contains(i, x))) assert.ok(err instanceof FailedPreconditionError, String(err));
                else assert.ok(err instanceof InvalidArgumentError, String(err));
              }
            } else {
              const held = [...model.keys()];
              if (held.length === 0) continue;
              const addr = held[o.pick % held.length]!;
              svc.release('p', addr);
              const owner = model.get(addr)!;
              model.delete(addr);
              if (owner) owners.delete(owner);
            }
          }
          const stored = s.ipam.page('p', '', 1000).map((a) => a.address).sort();
          assert.deepEqual(stored, [...model.keys()].sort());
          const st = svc.getPool('p').status;
          assert.equal(st.allocated, String(model.size));
        } finally {
          s.close();
        }
      }),
      { numRuns: 150 },
    );
  });
});

function formatFor(family: 4 | 6, x: bigint): string {
  // Uncompressed IPv6 (never RFC 5952 form): requests need not be canonical.
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((x >> s) & 0xffn)).join('.');
  const groups = [];
  for (let i = 7; i >= 0; i--) groups.push(((x >> BigInt(i * 16)) & 0xffffn).toString(16));
  return groups.join(':');
}
