import assert from 'node:assert/strict';
import { fails } from '../support/errors.js';
import { beforeEach, describe, test } from 'node:test';
import {
  AbortedError,
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
} from '../../src/domain/errors.js';
import { createServices, mergePatch, type Services } from '../../src/service/index.js';
import { openStore, type Store } from '../../src/store/index.js';

let store: Store;
let svc: Services;
let changes = 0;
let foreign: Record<string, string> = {};

beforeEach(() => {
  store = openStore(':memory:');
  changes = 0;
  foreign = {};
  svc = createServices(store, {
    onChange: () => changes++,
    ready: () => true,
    foreignLink: (netns, ifname) => foreign[`${netns}/${ifname}`],
    foreignNetns: (name) => name === 'docker-made',
  });
});

/** Everything the store holds, to show a failed request stored nothing. */
function snapshot() {
  return JSON.stringify(['resources', 'refs', 'claims', 'meta'].map((t) => store.db.prepare(`SELECT * FROM ${t}`).all()));
}

function quickstart() {
  svc.namespaces.create({ name: 'blue' });
  svc.bridges.create({ name: 'br0', addresses: ['10.50.0.1/24'] });
  svc.veths.create({
    name: 'blue',
    a: { ifname: 'vh-blue', bridge: 'br0' },
    b: { ifname: 'eth0', namespace: 'blue', addresses: ['10.50.0.2/24'] },
  });
}

describe('service', () => {
  test('create normalizes once and stores the normalized form', () => {
    svc.namespaces.create({ name: 'blue' });
    const br = svc.bridges.create({ name: 'br0', addresses: ['fd00:0:0::1/64', '10.50.0.1/24'] });
    assert.deepEqual(br.spec.addresses, ['fd00::1/64', '10.50.0.1/24']);
    assert.equal(br.spec.ifname, 'br0');
    assert.match(br.spec.mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    assert.equal(parseInt(br.spec.mac.slice(0, 2), 16) & 0x03, 0x02, 'locally administered unicast');
    assert.equal(svc.bridges.get('br0').spec.mac, br.spec.mac);
    assert.equal(br.generation, 1);
    assert.equal(br.status.state, 'PENDING');
    const r = svc.routes.create({ name: 'r', destination: 'FD00:1::/64', via: 'fd00::1' });
    assert.equal(r.spec.destination, 'fd00:1::/64');
    assert.equal(changes, 3);
  });

  test('the derived bridge MAC is stable for a name and differs between names', () => {
    const a = svc.bridges.create({ name: 'br0' }).spec.mac;
    svc.bridges.delete('br0');
    assert.equal(svc.bridges.create({ name: 'br0' }).spec.mac, a);
    assert.notEqual(svc.bridges.create({ name: 'br1' }).spec.mac, a);
  });

  test('validateOnly answers as if created but stores nothing and triggers nothing', () => {
    const before = snapshot();
    const ns = svc.namespaces.create({ name: 'blue' }, { validateOnly: true });
    assert.equal(ns.name, 'blue');
    assert.equal(snapshot(), before);
    assert.equal(changes, 0);
  });

  test('references must exist, and a veth end may only join a bridge in its own namespace', () => {
    svc.namespaces.create({ name: 'blue' });
    svc.bridges.create({ name: 'br0' });
    const before = snapshot();
    const nf = fails(
      () => svc.veths.create({ name: 'v', a: { ifname: 'x', bridge: 'nope' }, b: { ifname: 'y', namespace: 'blue' } }),
      NotFoundError,
      'a.bridge',
    );
    assert.match(nf.message, /bridges\/nope not found/);
    fails(() => svc.veths.create({ name: 'v', a: { ifname: 'x' }, b: { ifname: 'y', namespace: 'red' } }), NotFoundError, 'b.namespace');
    const ia = fails(
      () => svc.veths.create({ name: 'v', a: { ifname: 'x' }, b: { ifname: 'y', namespace: 'blue', bridge: 'br0' } }),
      InvalidArgumentError,
      'b.bridge',
    );
    assert.match(ia.message, /bridge br0 is in the host namespace, but this end is in namespace blue/);
    assert.equal(snapshot(), before);
  });

  test('an ifname may not be used twice in one namespace, across kinds', () => {
    quickstart();
    const before = snapshot();
    const e = fails(() => svc.bridges.create({ name: 'vh-blue' }), AlreadyExistsError, 'ifname');
    assert.match(e.message, /vh-blue in the host namespace is used by veths\/blue/);
    fails(
      () => svc.veths.create({ name: 'x', a: { ifname: 'x1' }, b: { ifname: 'eth0', namespace: 'blue' } }),
      AlreadyExistsError,
      'b.ifname',
    );
    fails(() => svc.veths.create({ name: 'x', a: { ifname: 'same' }, b: { ifname: 'same' } }), InvalidArgumentError, 'b.ifname');
    assert.equal(snapshot(), before);
    // The same ifname in another namespace is fine.
    svc.namespaces.create({ name: 'red' });
    svc.veths.create({ name: 'red', a: { ifname: 'vh-red', bridge: 'br0' }, b: { ifname: 'eth0', namespace: 'red' } });
  });

  test('an address may not be used twice in one namespace or on one bridge', () => {
    quickstart();
    svc.namespaces.create({ name: 'red' });
    const before = snapshot();
    const e = fails(
      () =>
        svc.veths.create({
          name: 'red',
          a: { ifname: 'vh-red', bridge: 'br0' },
          b: { ifname: 'eth0', namespace: 'red', addresses: ['10.50.0.2/24'] },
        }),
      AlreadyExistsError,
      'b.addresses[0]',
    );
    assert.match(e.message, /10\.50\.0\.2 on the segment of bridge br0 is used by veths\/blue/);
    fails(() => svc.bridges.create({ name: 'br1', addresses: ['10.50.0.1/16'] }), AlreadyExistsError, 'addresses[0]');
    assert.equal(snapshot(), before);
  });

  test('a spec may not claim one address twice, nor two routes the same kernel key', () => {
    svc.namespaces.create({ name: 'red' });
    const e = fails(
      () =>
        svc.veths.create({
          name: 'dup',
          a: { ifname: 'd1a', namespace: 'red', addresses: ['10.60.0.1/24'] },
          b: { ifname: 'd1b', namespace: 'red', addresses: ['10.60.0.1/24'] },
        }),
      InvalidArgumentError,
      'b.addresses[0]',
    );
    assert.match(e.message, /10\.60\.0\.1 .*is also given in a\.addresses\[0\]/);
    // The ends of a pair are one link even across namespaces and without a bridge.
    svc.namespaces.create({ name: 'green' });
    fails(
      () =>
        svc.veths.create({
          name: 'dup2',
          a: { ifname: 'd2a', namespace: 'red', addresses: ['10.61.0.1/24'] },
          b: { ifname: 'd2b', namespace: 'green', addresses: ['10.61.0.1/24'] },
        }),
      InvalidArgumentError,
      'b.addresses[0]',
    );
    svc.routes.create({ name: 'r1', namespace: 'red', destination: '10.72.0.0/16', via: '10.50.0.1' });
    const r = fails(
      () => svc.routes.create({ name: 'r2', namespace: 'red', destination: '10.72.0.0/16', via: '10.50.0.3' }),
      AlreadyExistsError,
      'destination',
    );
    assert.match(r.message, /route to 10\.72\.0\.0\/16 with metric 0 in namespace red is used by routes\/r1/);
    svc.routes.create({ name: 'r3', namespace: 'red', destination: '10.72.0.0/16', via: '10.50.0.3', metric: 10 });
    // IPv6 metric 0 is the kernel's 1024: the same route.
    svc.routes.create({ name: 'v6a', destination: 'fd00:9::/64', via: 'fd00::1' });
    fails(() => svc.routes.create({ name: 'v6b', destination: 'fd00:9::/64', via: 'fd00::2', metric: 1024 }), AlreadyExistsError, 'destination');
  });

  test('a zero-length IPv4 prefix is the default route; IPv6 keeps ::/0 and its family', () => {
    assert.equal(svc.routes.create({ name: 'z4', destination: '0.0.0.0/0', via: '10.50.0.1' }).spec.destination, 'default');
    fails(() => svc.routes.create({ name: 'z4b', destination: 'default', via: '10.50.0.9' }), AlreadyExistsError, 'destination');
    assert.equal(svc.routes.create({ name: 'z6', destination: '::/0', device: 'eth0' }).spec.destination, '::/0');
    fails(() => svc.routes.create({ name: 'z6b', destination: '::/0', via: 'fd00::1' }), AlreadyExistsError, 'destination');
  });

  test('ifnames iproute2 batches cannot carry, and lo, are refused', () => {
    fails(() => svc.bridges.create({ name: 'h', ifname: 'br#1' }), InvalidArgumentError, 'ifname');
    fails(() => svc.bridges.create({ name: 'h', ifname: "br'1" }), InvalidArgumentError, 'ifname');
    fails(() => svc.bridges.create({ name: 'h', ifname: 'br\\1' }), InvalidArgumentError, 'ifname');
    fails(() => svc.routes.create({ name: 'h', destination: '10.1.0.0/16', device: 'x#y' }), InvalidArgumentError, 'device');
    fails(() => svc.bridges.create({ name: 'h', ifname: 'lo' }), InvalidArgumentError, 'ifname');
    // iproute2 reads an unknown "if<N>" as ifindex N.
    fails(() => svc.bridges.create({ name: 'h', ifname: 'if2' }), InvalidArgumentError, 'ifname');
    fails(() => svc.routes.create({ name: 'h', destination: '10.1.0.0/16', device: 'if7' }), InvalidArgumentError, 'device');
    svc.bridges.create({ name: 'ifx', ifname: 'if2x' });
    svc.routes.create({ name: 'via-lo', destination: '10.1.0.0/16', device: 'lo' });
  });

  test('a name held by a foreign kernel object is FAILED_PRECONDITION at create', () => {
    foreign['/eth0'] = 'a device interface eth0 that netkeep did not create exists there (ifindex 2)';
    const before = snapshot();
    fails(() => svc.bridges.create({ name: 'b', ifname: 'eth0' }), FailedPreconditionError, 'ifname');
    fails(() => svc.namespaces.create({ name: 'docker-made' }), FailedPreconditionError, 'name');
    assert.equal(snapshot(), before);
  });

  test('delete of a namespace or bridge still in use is refused and names the dependents', () => {
    quickstart();
    const e = fails(() => svc.namespaces.delete('blue'), FailedPreconditionError);
    assert.deepEqual(e.dependents, ['veths/blue']);
    assert.match(e.message, /veths\/blue \(b\.namespace\)/);
    const b = fails(() => svc.bridges.delete('br0'), FailedPreconditionError);
    assert.deepEqual(b.dependents, ['veths/blue']);
    svc.veths.delete('blue');
    svc.bridges.delete('br0');
    svc.namespaces.delete('blue');
    fails(() => svc.namespaces.get('blue'), NotFoundError);
    fails(() => svc.namespaces.delete('blue'), NotFoundError);
    assert.deepEqual(store.db.prepare('SELECT * FROM claims').all(), []);
  });

  test('update: merge patch of live fields bumps generation and etag; labels alone keep generation', () => {
    quickstart();
    const v0 = svc.veths.get('blue');
    const v1 = svc.veths.update('blue', { mtu: 1400, b: { addresses: ['10.50.0.9/24'] } });
    assert.equal(v1.generation, v0.generation + 1);
    assert.notEqual(v1.etag, v0.etag);
    assert.equal(v1.spec.mtu, 1400);
    assert.deepEqual(v1.spec.b.addresses, ['10.50.0.9/24']);
    assert.equal(v1.spec.b.ifname, 'eth0', 'merge patch keeps fields it does not name');
    const v2 = svc.veths.update('blue', { labels: { team: 'net' } });
    assert.equal(v2.generation, v1.generation);
    assert.notEqual(v2.etag, v1.etag);
    const v3 = svc.veths.update('blue', { mtu: null, labels: { team: null } });
    assert.equal(v3.spec.mtu, 0, 'null resets to the default (RFC 7396)');
    assert.deepEqual(v3.labels, {});
    // The old address is free again, the new one taken.
    svc.namespaces.create({ name: 'red' });
    svc.veths.create({ name: 'red', a: { ifname: 'vh-red' }, b: { ifname: 'eth0', namespace: 'red', addresses: ['10.50.0.2/24'] } });
  });

  test('update: an unchanged patch changes nothing', () => {
    quickstart();
    const before = svc.bridges.get('br0');
    const n = changes;
    const after = svc.bridges.update('br0', { addresses: ['10.50.0.1/24'] });
    assert.equal(after.etag, before.etag);
    assert.equal(changes, n);
  });

  test('update: immutable fields are refused by name, and nothing changes', () => {
    quickstart();
    const before = snapshot();
    fails(() => svc.veths.update('blue', { b: { namespace: '' } }), InvalidArgumentError, 'b.namespace');
    fails(() => svc.bridges.update('br0', { ifname: 'br9' }), InvalidArgumentError, 'ifname');
    fails(() => svc.bridges.update('br0', { name: 'other' }), InvalidArgumentError, 'name');
    fails(() => svc.routes.update('nope', {}), NotFoundError);
    fails(() => svc.bridges.update('br0', { mtu: 10 }), InvalidArgumentError, 'mtu');
    assert.equal(snapshot(), before);
  });

  test('etag mismatch on update and delete is ABORTED', () => {
    quickstart();
    const br = svc.bridges.get('br0');
    fails(() => svc.bridges.update('br0', { mtu: 1400 }, { etag: 'stale' }), AbortedError);
    svc.bridges.update('br0', { mtu: 1400 }, { etag: br.etag });
    fails(() => svc.veths.delete('blue', { etag: 'stale' }), AbortedError);
  });

  test('list pages through every resource in name order', () => {
    for (const n of ['c', 'a', 'e', 'b', 'd']) svc.namespaces.create({ name: n });
    const seen: string[] = [];
    let token = '';
    do {
      const page = svc.namespaces.list({ pageSize: 2, pageToken: token });
      assert.ok(page.items.length <= 2);
      seen.push(...page.items.map((i) => i.name));
      token = page.nextPageToken;
    } while (token);
    assert.deepEqual(seen, ['a', 'b', 'c', 'd', 'e']);
    fails(() => svc.namespaces.list({ pageToken: 'garbage' }), InvalidArgumentError, 'pageToken');
    fails(() => svc.bridges.list({ pageToken: svc.namespaces.list({ pageSize: 1 }).nextPageToken }), InvalidArgumentError, 'pageToken');
    fails(() => svc.namespaces.list({ pageSize: 5000 }), InvalidArgumentError, 'pageSize');
  });

  test('mergePatch follows RFC 7396 appendix A', () => {
    assert.deepEqual(mergePatch({ a: 'b' }, { a: 'c' }), { a: 'c' });
    assert.deepEqual(mergePatch({ a: 'b' }, { b: 'c' }), { a: 'b', b: 'c' });
    assert.deepEqual(mergePatch({ a: 'b' }, { a: null }), {});
    assert.deepEqual(mergePatch({ a: ['b'] }, { a: 'c' }), { a: 'c' });
    assert.deepEqual(mergePatch({ a: { b: 'c' } }, { a: { b: 'd', c: null } }), { a: { b: 'd' } });
    assert.deepEqual(mergePatch({ e: null }, { a: 1 }), { e: null, a: 1 });
    assert.deepEqual(mergePatch({}, { a: { bb: { ccc: null } } }), { a: { bb: {} } });
  });
});
