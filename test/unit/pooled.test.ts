/**
 * `addressPools` on bridges and veth ends (issue 3): the allocations a
 * resource owns are made, changed and released in its own transaction,
 * shown in its status, configured by the reconciler, and swept at start-up
 * when their owner is gone.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import { pino } from 'pino';
import {
  AlreadyExistsError,
  FailedPreconditionError,
  NotFoundError,
  ResourceExhaustedError,
} from '../../src/domain/errors.js';
import { FakeIpClient } from '../../src/kernel/ip/fake.js';
import { Reconciler } from '../../src/reconcile/reconciler.js';
import { createServices, type Services } from '../../src/service/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { fails } from '../support/errors.js';

let store: Store;
let svc: Services;

beforeEach(() => {
  store = openStore(':memory:');
  svc = createServices(store, { onChange() {}, ready: () => true });
  svc.namespaces.create({ name: 'blue' });
  svc.namespaces.create({ name: 'red' });
  svc.ipam.createPool({ name: 'net4', cidr: '10.60.0.0/24', gateway: '10.60.0.1' });
  svc.ipam.createPool({ name: 'net6', cidr: 'fd00:60::/64', gateway: 'fd00:60::1' });
});

/** Every row that a failed request must leave as it was. */
function snapshot(): string {
  return JSON.stringify(['resources', 'refs', 'claims', 'allocations', 'ipam_cursors'].map((t) => store.db.prepare(`SELECT * FROM ${t}`).all()));
}

function pod(name: string, pools: string[], extra: Record<string, unknown> = {}) {
  return svc.veths.create({
    name,
    a: { ifname: `vh-${name}`, bridge: 'br0' },
    b: { ifname: 'eth0', namespace: name, addressPools: pools, ...extra },
  });
}

function allocations(pool: string): Array<[string, string]> {
  return svc.ipam.listAllocations(pool, { pageSize: 1000 }).items.map((a) => [a.address, a.owner]);
}

describe('bridges take the gateway of their pools', () => {
  test('the gateway with the pool prefix length is in status and is not an allocation', () => {
    const br = svc.bridges.create({ name: 'br0', addressPools: ['net4', 'net6'] });
    assert.deepEqual(br.spec.addressPools, ['net4', 'net6']);
    assert.deepEqual(br.status.poolAddresses, [
      { pool: 'net4', address: '10.60.0.1/24' },
      { pool: 'net6', address: 'fd00:60::1/64' },
    ]);
    assert.deepEqual(svc.bridges.get('br0').status.poolAddresses, br.status.poolAddresses);
    assert.deepEqual(allocations('net4'), []);
  });

  test('a pool without a gateway, a missing pool, and a pool already serving a bridge are refused; nothing stored', () => {
    svc.ipam.createPool({ name: 'nogw', cidr: '10.61.0.0/24' });
    const before = snapshot();
    fails(() => svc.bridges.create({ name: 'br0', addressPools: ['nogw'] }), FailedPreconditionError, 'addressPools[0]');
    fails(() => svc.bridges.create({ name: 'br0', addressPools: ['net4', 'ghost'] }), NotFoundError, 'addressPools[1]');
    assert.equal(snapshot(), before);
    svc.bridges.create({ name: 'br0', addressPools: ['net4'] });
    fails(() => svc.bridges.create({ name: 'br1', namespace: 'blue', addressPools: ['net4'] }), AlreadyExistsError, 'addressPools[0]');
  });

  test('the gateway is claimed on the segment: the same address typed in on a port is refused', () => {
    svc.bridges.create({ name: 'br0', addressPools: ['net4'] });
    const err = fails(() => pod('blue', [], { addresses: ['10.60.0.1/24'] }), AlreadyExistsError, 'b.addresses[0]');
    assert.match(err.message, /bridges\/br0 \(addressPools\[0\]\)/);
  });

  test('while a bridge uses a pool, its gateway cannot move and the pool cannot be deleted', () => {
    svc.bridges.create({ name: 'br0', addressPools: ['net4'] });
    const moved = fails(() => svc.ipam.updatePool('net4', { gateway: '10.60.0.254' }), FailedPreconditionError, 'gateway');
    assert.deepEqual(moved.dependents, ['bridges/br0']);
    const del = fails(() => svc.ipam.deletePool('net4'), FailedPreconditionError);
    assert.deepEqual(del.dependents, ['bridges/br0']);
    svc.bridges.update('br0', { addressPools: [] });
    assert.equal(svc.ipam.updatePool('net4', { gateway: '10.60.0.254' }).spec.gateway, '10.60.0.254');
    svc.ipam.deletePool('net4');
  });
});

describe('veth ends hold one allocation per pool', () => {
  beforeEach(() => {
    svc.bridges.create({ name: 'br0', addressPools: ['net4', 'net6'] });
  });

  test('allocations are owned by the end, shown in its status with the pool prefix, counted by the pool', () => {
    const v = pod('blue', ['net4', 'net6']);
    assert.deepEqual(v.status.b.poolAddresses, [
      { pool: 'net4', address: '10.60.0.2/24' },
      { pool: 'net6', address: 'fd00:60::2/64' },
    ]);
    assert.deepEqual(v.status.a.poolAddresses, []);
    assert.deepEqual(allocations('net4'), [['10.60.0.2', 'veths/blue/b']]);
    assert.deepEqual(allocations('net6'), [['fd00:60::2', 'veths/blue/b']]);
    assert.equal(svc.ipam.getPool('net4').status.allocated, '1');
    assert.deepEqual(pod('red', ['net4']).status.b.poolAddresses, [{ pool: 'net4', address: '10.60.0.3/24' }]);
  });

  test('delete releases the allocations in the same transaction', () => {
    pod('blue', ['net4', 'net6']);
    svc.veths.delete('blue');
    assert.deepEqual(allocations('net4'), []);
    assert.deepEqual(allocations('net6'), []);
    // The cursor stays: the next pod does not get the address just released.
    assert.equal(pod('red', ['net4']).status.b.poolAddresses[0]!.address, '10.60.0.3/24');
  });

  test('update: a pool added allocates, a pool removed releases, a pool kept keeps its address', () => {
    pod('blue', ['net4']);
    const added = svc.veths.update('blue', { b: { addressPools: ['net4', 'net6'] } });
    assert.deepEqual(added.status.b.poolAddresses.map((p) => p.address), ['10.60.0.2/24', 'fd00:60::2/64']);
    const removed = svc.veths.update('blue', { b: { addressPools: ['net6'] } });
    assert.deepEqual(removed.status.b.poolAddresses.map((p) => p.address), ['fd00:60::2/64']);
    assert.deepEqual(allocations('net4'), []);
    assert.deepEqual(allocations('net6'), [['fd00:60::2', 'veths/blue/b']]);
  });

  test('a full pool is RESOURCE_EXHAUSTED on the field, and nothing of the request is stored', () => {
    svc.ipam.createPool({ name: 'tiny', cidr: '10.62.0.0/30' }); // hosts .1 and .2
    pod('blue', ['tiny']);
    pod('red', ['tiny']);
    svc.namespaces.create({ name: 'green' });
    const before = snapshot();
    fails(() => pod('green', ['net4', 'tiny']), ResourceExhaustedError, 'b.addressPools[1]');
    assert.equal(snapshot(), before, 'no veth row, and no allocation from net4 either');
  });

  test('validateOnly answers with the addresses it would take and stores nothing', () => {
    const before = snapshot();
    const v = svc.veths.create(
      { name: 'blue', a: { ifname: 'vh-blue', bridge: 'br0', addressPools: ['net4'] }, b: { ifname: 'eth0', namespace: 'blue', addressPools: ['net4'] } },
      { validateOnly: true },
    );
    const [a, b] = [v.status.a.poolAddresses[0]!.address, v.status.b.poolAddresses[0]!.address];
    assert.notEqual(a, b, 'the two ends of one request never get the same address');
    assert.equal(snapshot(), before);
  });

  test('validateOnly on update answers what the update does: an address one end frees is there for the other', () => {
    svc.ipam.createPool({ name: 'two', cidr: '10.63.0.0/30' }); // hosts .1 and .2
    pod('blue', ['two']);
    svc.veths.create({ name: 'red', a: { ifname: 'vh-red', bridge: 'br0', addressPools: ['two'] }, b: { ifname: 'eth0', namespace: 'red' } });
    const patch = { a: { addressPools: [] }, b: { addressPools: ['two'] } };
    const before = snapshot();
    const dry = svc.veths.update('red', patch, { validateOnly: true });
    assert.equal(snapshot(), before);
    const real = svc.veths.update('red', patch);
    assert.deepEqual(dry.status.b.poolAddresses, real.status.b.poolAddresses);
    assert.deepEqual(real.status.b.poolAddresses, [{ pool: 'two', address: '10.63.0.2/30' }]);
  });

  test('next-free skips an address typed in on the same segment', () => {
    svc.veths.create({ name: 'red', a: { ifname: 'vh-red', bridge: 'br0' }, b: { ifname: 'eth0', namespace: 'red', addresses: ['10.60.0.2/24'] } });
    assert.deepEqual(pod('blue', ['net4']).status.b.poolAddresses, [{ pool: 'net4', address: '10.60.0.3/24' }]);
  });

  test('an owned allocation cannot be released through the pool; the pool cannot be deleted while named', () => {
    pod('blue', ['net4']);
    const err = fails(() => svc.ipam.release('net4', '10.60.0.2'), FailedPreconditionError);
    assert.deepEqual(err.dependents, ['veths/blue']);
    const del = fails(() => svc.ipam.deletePool('net4'), FailedPreconditionError);
    assert.ok(del.dependents.includes('veths/blue'));
    assert.deepEqual(allocations('net4'), [['10.60.0.2', 'veths/blue/b']]);
  });

  test('an unknown pool is NOT_FOUND on the field', () => {
    fails(() => pod('blue', ['ghost']), NotFoundError, 'b.addressPools[0]');
  });
});

describe('start-up sweep', () => {
  test('removes allocations whose netkeep owner does not exist, keeps every other owner', () => {
    svc.bridges.create({ name: 'br0' });
    pod('blue', ['net4']);
    svc.ipam.allocate('net4', { owner: 'veths/ghost/b' });
    svc.ipam.allocate('net4', { owner: 'container-1234' });
    svc.ipam.allocate('net4', {});
    assert.deepEqual(svc.ipam.sweepOrphans(), ['veths/ghost/b']);
    assert.deepEqual(
      allocations('net4').map(([, owner]) => owner),
      ['veths/blue/b', 'container-1234', ''],
    );
    assert.deepEqual(svc.ipam.sweepOrphans(), []);
  });
});

describe('reconciler', () => {
  test('configures pool addresses on the links and reports them', async () => {
    const ip = new FakeIpClient({ vlanFilteringSupported: false });
    const reconciler = new Reconciler(store, ip, pino({ level: 'silent' }));
    svc.bridges.create({ name: 'br0', addressPools: ['net4'] });
    pod('blue', ['net4', 'net6']);
    const result = await reconciler.pass();
    assert.equal(result.notReady, 0);
    const global = (netns: string, ifname: string) =>
      ip.observe(netns).then((o) =>
        o.links
          .find((l) => l.ifname === ifname)!
          .addresses.filter((a) => a.scope === 'global')
          .map((a) => `${a.address}/${a.prefixLength}`)
          .sort(),
      );
    assert.deepEqual(await global('', 'br0'), ['10.60.0.1/24']);
    assert.deepEqual(await global('blue', 'eth0'), ['10.60.0.2/24', 'fd00:60::2/64']);
    assert.deepEqual(svc.veths.get('blue').status.b.poolAddresses.map((p) => p.address), ['10.60.0.2/24', 'fd00:60::2/64']);
    // A pass never writes what it saw over a change made while it ran.
    let release!: () => void;
    const gate = new Promise<void>((done) => (release = done));
    const slowObserve = ip.observe.bind(ip);
    ip.observe = async (netns) => {
      await gate;
      return slowObserve(netns);
    };
    const inFlight = reconciler.pass();
    await new Promise((done) => setImmediate(done));
    const changed = svc.veths.update('blue', { b: { addressPools: ['net4'] } });
    release();
    await inFlight;
    ip.observe = slowObserve;
    const seen = svc.veths.get('blue');
    assert.equal(seen.generation, changed.generation);
    assert.deepEqual(seen.status.b.poolAddresses, [{ pool: 'net4', address: '10.60.0.2/24' }], 'not the stale [net4, net6] of the pass in flight');
    svc.veths.update('blue', { b: { addressPools: ['net4', 'net6'] } });
    await reconciler.pass();
    // Dropping a pool takes its address off the link at the next pass.
    svc.veths.update('blue', { b: { addressPools: ['net6'] } });
    await reconciler.pass();
    assert.deepEqual(await global('blue', 'eth0'), ['fd00:60::3/64'], 'net6 was dropped and taken again: the cursor moved on');
  });
});
