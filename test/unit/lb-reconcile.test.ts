/**
 * Load balancers through the service layer and the reconciler, on the
 * in-memory kernels (FakeIpClient, FakeNftClient): what is stored, what the
 * reconciler writes and when it writes nothing, status, VIPs from pools,
 * conntrack clean-up and forwarding. Packets are tested in the sandbox.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import { pino } from 'pino';
import { AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError, ResourceExhaustedError } from '../../src/domain/errors.js';
import { FakeIpClient } from '../../src/kernel/ip/fake.js';
import { FakeNftClient } from '../../src/kernel/nft/fake.js';
import { LoadBalancerSync } from '../../src/reconcile/loadbalancers.js';
import { Reconciler } from '../../src/reconcile/reconciler.js';
import { createServices, type Services } from '../../src/service/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { fails } from '../support/errors.js';

let store: Store;
let svc: Services;
let nft: FakeNftClient;
let reconciler: Reconciler;

beforeEach(() => {
  store = openStore(':memory:');
  svc = createServices(store, { onChange() {}, ready: () => true });
  nft = new FakeNftClient();
  reconciler = new Reconciler(store, new FakeIpClient({ vlanFilteringSupported: false }), pino({ level: 'silent' }), nft);
});

const web = (extra: Record<string, unknown> = {}) => ({
  name: 'web',
  vip: '10.96.0.10',
  ports: [{ port: 80, targetPort: 8080 }, { protocol: 'UDP', port: 53 }],
  backends: [{ address: '10.50.0.11' }, { address: '10.50.0.12', weight: 3 }],
  ...extra,
});

describe('load balancer spec', () => {
  test('defaults: TCP, targetPort = port, weight 1, RANDOM, no affinity', () => {
    const lb = svc.loadbalancers.create(web());
    assert.deepEqual(lb.spec.ports, [
      { name: '', protocol: 'TCP', port: 80, targetPort: 8080 },
      { name: '', protocol: 'UDP', port: 53, targetPort: 53 },
    ]);
    assert.deepEqual(lb.spec.backends.map((b) => b.weight), [1, 3]);
    assert.equal(lb.spec.algorithm, 'RANDOM');
    assert.deepEqual(lb.spec.sessionAffinity, {});
    assert.equal(lb.status.vip, '10.96.0.10');
  });

  test('one VIP:port/protocol is one load balancer per namespace', () => {
    svc.loadbalancers.create(web());
    fails(() => svc.loadbalancers.create(web({ name: 'other', ports: [{ port: 80 }] })), AlreadyExistsError, 'ports[0].port');
    svc.loadbalancers.create(web({ name: 'other', ports: [{ port: 443 }] }));
  });

  test('backends and sourceRanges of the other family than a pool VIP are refused', () => {
    svc.ipam.createPool({ name: 'vips6', cidr: 'fd00:96::/64' });
    fails(() => svc.loadbalancers.create({ name: 'x', vipPool: 'vips6', ports: [{ port: 80 }], backends: [{ address: '10.0.0.1' }] }), InvalidArgumentError, 'backends[0].address');
    assert.equal(svc.ipam.listAllocations('vips6').items.length, 0);
  });
});

describe('VIPs from pools', () => {
  beforeEach(() => {
    svc.ipam.createPool({ name: 'vips', cidr: '10.96.0.0/30' }); // .1 and .2
  });

  test('vipPool allocates the VIP to the load balancer; delete releases it; it cannot be released by hand', () => {
    const lb = svc.loadbalancers.create({ name: 'web', vipPool: 'vips', ports: [{ port: 80 }] });
    assert.equal(lb.status.vip, '10.96.0.1');
    assert.deepEqual(svc.ipam.listAllocations('vips').items.map((a) => [a.address, a.owner]), [['10.96.0.1', 'loadbalancers/web']]);
    fails(() => svc.ipam.release('vips', '10.96.0.1'), FailedPreconditionError);
    svc.loadbalancers.delete('web');
    assert.deepEqual(svc.ipam.listAllocations('vips').items, []);
  });

  test('a static VIP inside a pool is allocated too, so the pool never hands it out', () => {
    svc.loadbalancers.create({ name: 'web', vip: '10.96.0.2', ports: [{ port: 80 }] });
    assert.equal(svc.ipam.allocate('vips', { owner: 'someone' }).address, '10.96.0.1');
    fails(() => svc.ipam.allocate('vips', { owner: 'another' }), ResourceExhaustedError);
    fails(() => svc.loadbalancers.create({ name: 'dup', vip: '10.96.0.1', ports: [{ port: 81 }] }), AlreadyExistsError, 'vip');
  });

  test('a pool made after a static VIP in its cidr allocates that VIP to the load balancer', () => {
    svc.loadbalancers.create({ name: 'sf', vip: '10.98.0.5', ports: [{ port: 80 }] });
    svc.ipam.createPool({ name: 'late', cidr: '10.98.0.0/24' });
    assert.deepEqual(svc.ipam.listAllocations('late').items.map((a) => [a.address, a.owner]), [['10.98.0.5', 'loadbalancers/sf']]);
    fails(() => svc.ipam.allocate('late', { address: '10.98.0.5', owner: 'someone' }), AlreadyExistsError, 'address');
    svc.loadbalancers.update('sf', { labels: { x: 'y' } });
    svc.loadbalancers.delete('sf');
    assert.deepEqual(svc.ipam.listAllocations('late').items, []);
  });

  test('a pool whose gateway would be a static VIP is refused, naming the load balancer; nothing is stored', () => {
    svc.loadbalancers.create({ name: 'sf', vip: '10.98.0.1', ports: [{ port: 80 }] });
    const err = fails(() => svc.ipam.createPool({ name: 'late', cidr: '10.98.0.0/24', gateway: '10.98.0.1' }), FailedPreconditionError, 'cidr');
    assert.match(err.message, /10\.98\.0\.1 is the VIP of loadbalancers\/sf/);
    assert.ok(!svc.ipam.listPools().items.some((p) => p.name === 'late'));
    fails(() => svc.ipam.createPool({ name: 'late', cidr: '10.98.0.0/24', gateway: '10.98.0.1' }, { validateOnly: true }), FailedPreconditionError, 'cidr');
  });

  test('two load balancers in different namespaces sharing a static VIP refuse a pool over it, naming both', () => {
    svc.namespaces.create({ name: 'n2' });
    svc.loadbalancers.create({ name: 'd1', vip: '10.100.0.5', ports: [{ port: 80 }] });
    svc.loadbalancers.create({ name: 'd2', namespace: 'n2', vip: '10.100.0.5', ports: [{ port: 80 }] });
    const err = fails(() => svc.ipam.createPool({ name: 'pc', cidr: '10.100.0.0/24' }), FailedPreconditionError, 'cidr');
    assert.match(err.message, /10\.100\.0\.5 is the VIP of loadbalancers\/d1 and of loadbalancers\/d2/);
    assert.ok(!svc.ipam.listPools().items.some((p) => p.name === 'pc'));
  });

  test('validateOnly on a pool create answers what the real create would, adopted VIPs included, and stores nothing', () => {
    svc.loadbalancers.create({ name: 'd4', vip: '10.102.0.1', ports: [{ port: 80 }] });
    const dry = svc.ipam.createPool({ name: 'pd', cidr: '10.102.0.0/24' }, { validateOnly: true });
    assert.equal(dry.status.allocated, '1');
    assert.ok(!svc.ipam.listPools().items.some((p) => p.name === 'pd'));
    assert.equal(svc.ipam.createPool({ name: 'pd', cidr: '10.102.0.0/24' }).status.allocated, '1');
  });

  test('an allocation with a load balancer\'s owner in another pool is a reservation: not its VIP, releasable, kept', async () => {
    svc.ipam.createPool({ name: 'pa', cidr: '10.96.10.0/24' });
    svc.ipam.createPool({ name: 'pb', cidr: '10.97.10.0/24' });
    const reserved = svc.ipam.allocate('pa', { owner: 'loadbalancers/web' });
    const lb = svc.loadbalancers.create({ name: 'web', vipPool: 'pb', ports: [{ port: 80 }] });
    assert.equal(lb.status.vip, '10.97.10.1');
    assert.deepEqual(svc.ipam.listAllocations('pa').items.map((a) => a.address), [reserved.address], 'creating web kept the reservation');
    await reconciler.pass();
    assert.equal(svc.loadbalancers.get('web').status.vip, '10.97.10.1');
    assert.match(nft.applied.at(-1)!.script, /10\.97\.10\.1 \. tcp \. 80/);
    assert.doesNotMatch(nft.applied.at(-1)!.script, /10\.96\.10\.1/);
    fails(() => svc.ipam.release('pb', '10.97.10.1'), FailedPreconditionError);
    svc.ipam.release('pa', reserved.address);
  });

  test('a VIP from a pool is never one of the backends', () => {
    svc.ipam.createPool({ name: 'small', cidr: '10.95.0.0/29' });
    const lb = svc.loadbalancers.create({ name: 'vo1', vipPool: 'small', ports: [{ port: 80 }], backends: [{ address: '10.95.0.1' }, { address: '10.95.0.2' }] });
    assert.equal(lb.status.vip, '10.95.0.3');
  });

  test('errors about a given vip name vip, also with vipPool', () => {
    svc.ipam.createPool({ name: 'gw', cidr: '10.97.0.0/24', gateway: '10.97.0.1' });
    fails(() => svc.loadbalancers.create({ name: 'x', vip: '10.97.0.1', vipPool: 'gw', ports: [{ port: 80 }] }), FailedPreconditionError, 'vip');
    fails(() => svc.loadbalancers.create({ name: 'x', vip: '10.99.0.1', vipPool: 'gw', ports: [{ port: 80 }] }), InvalidArgumentError, 'vip');
    fails(() => svc.loadbalancers.create({ name: 'x', vipPool: 'nope', ports: [{ port: 80 }] }), NotFoundError, 'vipPool');
  });

  test('ports × backends is capped: one request cannot ask for a million chains', () => {
    const ports = Array.from({ length: 101 }, (_, i) => ({ port: i + 1 }));
    const backends = Array.from({ length: 100 }, (_, i) => ({ address: `10.50.${i >> 8}.${(i & 255) + 1}` }));
    fails(() => svc.loadbalancers.create({ name: 'big', vip: '10.96.0.9', ports, backends }), InvalidArgumentError, 'backends');
    svc.loadbalancers.create({ name: 'big', vip: '10.96.0.9', ports: ports.slice(1), backends });
  });

  test('a changed VIP releases the old allocation', () => {
    svc.loadbalancers.create({ name: 'web', vipPool: 'vips', ports: [{ port: 80 }] });
    svc.loadbalancers.update('web', { vipPool: null, vip: '10.97.0.1' });
    assert.deepEqual(svc.ipam.listAllocations('vips').items, []);
  });
});

describe('reconciling load balancers', () => {
  test('one write for a change, none for a pass with nothing to change; status shows the programmed backends', async () => {
    svc.loadbalancers.create(web());
    const first = await reconciler.pass();
    assert.equal(first.nftWrites, 1);
    assert.equal((await reconciler.pass()).nftWrites, 0);
    const lb = svc.loadbalancers.get('web');
    assert.equal(lb.status.state, 'READY');
    assert.deepEqual(lb.status.backends, ['10.50.0.11:53', '10.50.0.11:8080', '10.50.0.12:53', '10.50.0.12:8080']);
    assert.deepEqual([...(nft.forwarding.get('') ?? [])], [4], 'forwarding turned on where the rules live');
  });

  test('a restart (a new reconciler over the same store) writes nothing', async () => {
    svc.loadbalancers.create(web());
    await reconciler.pass();
    const again = new Reconciler(store, new FakeIpClient({ vlanFilteringSupported: false }), pino({ level: 'silent' }), nft);
    // The fake ip kernel is empty, so the links are rebuilt; the table is untouched.
    assert.equal((await again.pass()).nftWrites, 0);
  });

  test('a table flushed or deleted by hand is written again at the next pass', async () => {
    svc.loadbalancers.create(web());
    await reconciler.pass();
    nft.flushByHand('');
    assert.equal((await reconciler.pass()).nftWrites, 1);
    nft.deleteByHand('');
    assert.equal((await reconciler.pass()).nftWrites, 1);
    assert.ok(nft.hasTable(''));
  });

  test('passes between whole-table checks list only the maps; a change is written without a whole listing', async () => {
    svc.loadbalancers.create(web());
    svc.loadbalancers.create({ name: 'other', vip: '10.96.0.11', ports: [{ port: 80 }], backends: [{ address: '10.50.0.21' }] });
    await reconciler.pass();
    const listed = nft.listings.get('') ?? 0;
    assert.ok(listed >= 1, 'the first pass learns the whole table');
    for (let i = 0; i < 3; i++) assert.equal((await reconciler.pass()).nftWrites, 0);
    svc.loadbalancers.update('web', { backends: [{ address: '10.50.0.13' }] });
    assert.equal((await reconciler.pass()).nftWrites, 1);
    assert.equal(nft.listings.get('') ?? 0, listed, 'no whole listing until the check interval (600 s) is up');
    assert.doesNotMatch(nft.applied.at(-1)!.script, /(chain|rule inet netkeep) (svc|be)-other/, 'the other load balancer\'s chains are not rewritten');
  });

  test('a chain changed by hand is put back at the whole-table check; netkeep\'s own changes are not drift', async () => {
    const checking = new Reconciler(store, new FakeIpClient({ vlanFilteringSupported: false }), pino({ level: 'silent' }), nft, { nftCheckMs: 0 });
    svc.loadbalancers.create(web());
    await checking.pass();
    const good = await nft.observe('');
    svc.loadbalancers.update('web', { backends: [{ address: '10.50.0.13' }] });
    assert.equal((await checking.pass()).nftWrites, 1);
    assert.equal((await checking.pass()).nftWrites, 0, 'the check after an incremental write learns it, writes nothing');
    const changed = await nft.observe('');
    assert.notDeepEqual(changed, good);

    nft.flushChainByHand('', 'nat-prerouting');
    nft.flushChainByHand('', 'svc-web-tcp-80');
    assert.equal((await checking.pass()).nftWrites, 1);
    assert.deepEqual(await nft.observe(''), changed, 'the table is as netkeep wrote it');
    assert.equal((await checking.pass()).nftWrites, 0);
  });

  test('the whole-table check waits at least 50 times what the last one took', async () => {
    let now = 0;
    const slow = new FakeNftClient();
    const observe = slow.observe.bind(slow);
    slow.observe = async (netns) => {
      now += 100_000; // a listing of 100 s
      return observe(netns);
    };
    const sync = new LoadBalancerSync(store, slow, pino({ level: 'silent' }), { fullCheckMs: 600_000, clock: () => now });
    const lb = svc.loadbalancers.create(web());
    const pass = () => sync.sync([lb], new Map([['web', lb.status.vip]]), () => true);
    await pass();
    const listed = () => slow.listings.get('') ?? 0;
    const afterFirst = listed();
    now += 1_000_000;
    await pass();
    assert.equal(listed(), afterFirst, '1,000 s later: not yet (50 × 100 s = 5,000 s)');
    now += 4_000_000;
    await pass();
    assert.equal(listed(), afterFirst + 1);
  });

  test('a hand change to a chain netkeep has just rewritten, or made right after a whole write, is put back', async () => {
    const checking = new Reconciler(store, new FakeIpClient({ vlanFilteringSupported: false }), pino({ level: 'silent' }), nft, { nftCheckMs: 0 });
    // Another tool adds rules right after netkeep's whole write, before netkeep reads the table back.
    const apply = nft.apply.bind(nft);
    nft.apply = async (netns, script) => {
      await apply(netns, script);
      nft.addRuleByHand(netns, 'nat-prerouting', 'ip daddr 10.96.0.10 tcp dport 80 dnat ip to 10.50.0.13:9000');
      nft.addRuleByHand(netns, 'filter-output', 'counter');
      nft.apply = apply;
    };
    svc.loadbalancers.create(web());
    await checking.pass();
    // The summary read back after the write holds the change; the whole-table comparison with the rendering does not.
    assert.equal((await checking.pass()).nftWrites, 1);
    const good = await nft.observe('');
    svc.loadbalancers.update('web', { backends: [{ address: '10.50.0.13' }] });
    assert.equal((await checking.pass()).nftWrites, 1);
    const rewritten = await nft.observe('');
    nft.addRuleByHand('', 'svc-web-tcp-80', 'ip saddr 10.50.0.10 drop');
    assert.equal((await checking.pass()).nftWrites, 1, 'the chain the last write rewrote is compared too');
    assert.deepEqual(await nft.observe(''), rewritten);
    assert.notDeepEqual(rewritten, good);
    assert.equal((await checking.pass()).nftWrites, 0);
  });

  test('a restart compares the whole table once and writes nothing', async () => {
    svc.loadbalancers.create(web());
    await reconciler.pass();
    nft.listings.clear();
    const again = new Reconciler(store, new FakeIpClient({ vlanFilteringSupported: false }), pino({ level: 'silent' }), nft);
    assert.equal((await again.pass()).nftWrites, 0);
    assert.equal(nft.listings.get(''), 1);
    nft.flushChainByHand('', 'svc-web-udp-53');
    const third = new Reconciler(store, new FakeIpClient({ vlanFilteringSupported: false }), pino({ level: 'silent' }), nft);
    assert.equal((await third.pass()).nftWrites, 1, 'a chain changed while netkeep was down is put back at start');
  });

  test('deleting the last load balancer removes the table', async () => {
    svc.loadbalancers.create(web());
    await reconciler.pass();
    svc.loadbalancers.delete('web');
    await reconciler.pass();
    assert.equal(nft.hasTable(''), false);
    assert.equal((await reconciler.pass()).nftWrites, 0);
  });

  test('a replaced UDP backend: conntrack entries that still point at the old one are deleted, after the commit', async () => {
    svc.loadbalancers.create(web());
    await reconciler.pass();
    nft.conntrackDeletes.length = 0;
    svc.loadbalancers.update('web', { backends: [{ address: '10.50.0.13' }] });
    await reconciler.pass();
    assert.deepEqual(
      nft.conntrackDeletes.map((f) => `${f.protocol} ${f.vip}:${f.port} reply-src ${f.replySource}`).sort(),
      ['udp 10.96.0.10:53 reply-src 10.50.0.11', 'udp 10.96.0.10:53 reply-src 10.50.0.12'],
    );
  });

  test('UDP backends removed, a UDP port dropped, the load balancer deleted: their conntrack entries are deleted', async () => {
    const shown = () => nft.conntrackDeletes.splice(0).map((f) => `${f.vip}:${f.port} reply-src ${f.replySource ?? 'any'}`).sort();
    svc.loadbalancers.create(web());
    svc.loadbalancers.create({ name: 'dns', vip: '10.96.0.53', ports: [{ protocol: 'UDP', port: 53 }], backends: [{ address: '10.50.0.21' }] });
    await reconciler.pass();
    shown();
    svc.loadbalancers.update('dns', { backends: [] });
    await reconciler.pass();
    assert.deepEqual(shown(), ['10.96.0.53:53 reply-src 10.50.0.21'], 'the last backend removed');
    svc.loadbalancers.update('dns', { backends: [{ address: '10.50.0.22' }] });
    await reconciler.pass();
    assert.deepEqual(shown(), ['10.96.0.53:53 reply-src 10.96.0.53'], 'entries made while there was no backend');
    svc.loadbalancers.update('dns', { sourceRanges: ['10.60.0.0/24'] });
    await reconciler.pass();
    assert.deepEqual(shown(), ['10.96.0.53:53 reply-src any'], 'sourceRanges narrowed: every entry of the port');
    svc.loadbalancers.update('web', { ports: [{ port: 80, targetPort: 8080 }] });
    await reconciler.pass();
    assert.deepEqual(shown(), ['10.96.0.10:53 reply-src 10.50.0.11', '10.96.0.10:53 reply-src 10.50.0.12'], 'the UDP port dropped');
    svc.loadbalancers.delete('web');
    svc.loadbalancers.delete('dns');
    await reconciler.pass();
    assert.equal(nft.hasTable(''), false);
    assert.deepEqual(shown(), ['10.96.0.53:53 reply-src 10.50.0.22'], 'the table removed with the last load balancer');
  });

  test('a load balancer whose namespace does not exist yet is PENDING, and the others are not disturbed', async () => {
    svc.namespaces.create({ name: 'blue' });
    svc.loadbalancers.create(web({ name: 'inblue', namespace: 'blue' }));
    svc.loadbalancers.create(web());
    await reconciler.pass();
    assert.equal(svc.loadbalancers.get('web').status.state, 'READY');
    assert.notEqual(svc.loadbalancers.get('inblue').status.state, 'READY');
  });
});
