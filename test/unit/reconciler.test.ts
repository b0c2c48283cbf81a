/**
 * The reconciler against the in-memory kernel (FakeIpClient, kept honest by
 * the parity test in test/kernel/ip-client.test.ts): statuses, idempotence,
 * drift, foreign objects, and failures attributed to the right resource.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import { pino } from 'pino';
import { FailedPreconditionError } from '../../src/domain/errors.js';
import { FakeIpClient } from '../../src/kernel/ip/fake.js';
import { Reconciler } from '../../src/reconcile/reconciler.js';
import { createServices, type Services } from '../../src/service/index.js';
import { openStore, type Store } from '../../src/store/index.js';


let ip: FakeIpClient;
let store: Store;
let reconciler: Reconciler;
let svc: Services;

beforeEach(() => {
  store = openStore(':memory:');
  ip = new FakeIpClient({ vlanFilteringSupported: false });
  reconciler = new Reconciler(store, ip, pino({ level: 'silent' }));
  svc = createServices(store, {
    onChange: () => {},
    ready: () => true,
    foreignLink: (netns, ifname) => reconciler.foreignLink(netns, ifname),
    foreignNetns: (name) => reconciler.foreignNetns(name),
  });
});

function quickstart() {
  for (const ns of ['blue', 'red']) svc.namespaces.create({ name: ns });
  svc.bridges.create({ name: 'br0', addresses: ['10.50.0.1/24'] });
  svc.veths.create({ name: 'blue', a: { ifname: 'vh-blue', bridge: 'br0' }, b: { ifname: 'eth0', namespace: 'blue', addresses: ['10.50.0.2/24'] } });
  svc.veths.create({ name: 'red', a: { ifname: 'vh-red', bridge: 'br0' }, b: { ifname: 'eth0', namespace: 'red', addresses: ['10.50.0.3/24'] } });
  svc.routes.create({ name: 'blue-default', namespace: 'blue', destination: 'default', via: '10.50.0.1' });
  svc.routes.create({ name: 'red-default', namespace: 'red', destination: 'default', via: '10.50.0.1' });
}

function states(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kind of ['namespaces', 'bridges', 'veths', 'routes'] as const) {
    for (const r of svc[kind].list().items) out[`${kind}/${r.name}`] = r.status.state;
  }
  return out;
}

describe('reconciler', () => {
  test('the quickstart converges in one pass: every resource READY with its observed ifindexes', async () => {
    quickstart();
    const result = await reconciler.pass();
    assert.equal(result.failures, 0);
    assert.equal(result.notReady, 0);
    assert.ok(Object.values(states()).every((s) => s === 'READY'), JSON.stringify(states()));
    const v = svc.veths.get('blue');
    assert.ok(v.status.a.ifindex > 0 && v.status.b.ifindex > 0);
    assert.equal(v.status.observedGeneration, v.generation);
    const br = svc.bridges.get('br0');
    assert.equal(br.status.mac, br.spec.mac, 'the bridge carries its derived MAC');
    const eth0 = (await ip.observe('blue')).links.find((l) => l.ifname === 'eth0')!;
    assert.deepEqual(eth0.addresses.filter((a) => a.scope === 'global').map((a) => `${a.address}/${a.prefixLength}`), ['10.50.0.2/24']);
    assert.equal(eth0.alias, 'netkeep:veths/blue');
    const routes = (await ip.observe('blue')).routes.filter((r) => r.destination === 'default');
    assert.deepEqual(routes.map((r) => [r.via, r.protocol]), [['10.50.0.1', '77']]);
  });

  test('a pass with nothing to change writes nothing to the kernel', async () => {
    quickstart();
    await reconciler.pass();
    const writes = ip.writes;
    const dump = ip.dump();
    const again = await reconciler.pass();
    assert.equal(again.lines, 0);
    assert.equal(ip.writes, writes);
    assert.equal(ip.dump(), dump);
  });

  test('drift: a veth deleted by hand, a bridge set down and an address removed are put back', async () => {
    quickstart();
    await reconciler.pass();
    ip.deleteLinkByHand('', 'vh-blue');
    ip.setDownByHand('', 'br0');
    ip.deleteAddressByHand('red', 'eth0', '10.50.0.3/24');
    const result = await reconciler.pass();
    assert.ok(result.lines > 0);
    assert.equal(result.notReady, 0, JSON.stringify(states()));
    const repaired = await ip.observe('');
    assert.equal(repaired.links.find((l) => l.ifname === 'br0')!.up, true);
    assert.equal(repaired.links.find((l) => l.ifname === 'vh-blue')!.master, 'br0');
    assert.ok((await ip.observe('blue')).routes.some((r) => r.destination === 'default' && r.protocol === '77'));
    assert.ok((await ip.observe('red')).links.find((l) => l.ifname === 'eth0')!.addresses.some((a) => a.address === '10.50.0.3'));
    assert.equal((await reconciler.pass()).lines, 0, 'converged again');
  });

  test('a foreign link holding a name: the resource is FAILED with a message and the link is untouched', async () => {
    svc.bridges.create({ name: 'br9', addresses: ['10.51.0.1/24'] });
    ip.addForeignLink('', { ifname: 'br9', kind: 'bridge', mtu: 9000, up: false });
    const before = ip.dump();
    await reconciler.pass();
    const br = svc.bridges.get('br9');
    assert.equal(br.status.state, 'FAILED');
    assert.match(br.status.message, /already has an interface br9 .*did not create; it is left alone/);
    assert.equal(ip.dump(), before, 'nothing was written');
    // Once seen, the API refuses that name at create.
    svc.bridges.delete('br9');
    assert.throws(() => svc.bridges.create({ name: 'other', ifname: 'br9' }), FailedPreconditionError);
  });

  test('a foreign link that takes the name between the read and the create is never configured nor deleted', async () => {
    svc.bridges.create({ name: 'race', addresses: ['10.53.0.1/24'] });
    // The foreign link appears right before netkeep's create batch runs.
    const racing = Object.create(ip) as FakeIpClient;
    let raced = false;
    racing.batch = async (netns, lines) => {
      if (!raced && lines.some((l) => l.args.join(' ').startsWith('link add name race'))) {
        raced = true;
        ip.addForeignLink('', { ifname: 'race', kind: 'veth', mtu: 1400, up: false });
      }
      return ip.batch(netns, lines);
    };
    const r = new Reconciler(store, racing, pino({ level: 'silent' }));
    await r.pass();
    assert.ok(raced);
    const foreign = (await ip.observe('')).links.find((l) => l.ifname === 'race')!;
    assert.deepEqual([foreign.alias, foreign.mtu, foreign.up, foreign.addresses.length], ['', 1400, false, 0], 'the foreign link is untouched');
    const br = svc.bridges.get('race');
    assert.equal(br.status.state, 'FAILED');
    assert.deepEqual([br.status.ifindex, br.status.mac], [0, ''], 'status never shows the foreign link as ours');
    svc.bridges.delete('race');
    await r.pass();
    assert.ok((await ip.observe('')).links.some((l) => l.ifname === 'race'), 'and it is not deleted with the resource');
  });

  test('when a foreign bridge wins the create race, netkeep\'s ports are not enslaved to it, and stay marked', async () => {
    quickstart();
    const racing = Object.create(ip) as FakeIpClient;
    racing.batch = async (netns, lines) => {
      if (lines.some((l) => l.args.join(' ').startsWith('link add name br0'))) {
        ip.addForeignLink('', { ifname: 'br0', kind: 'bridge', up: true });
      }
      return ip.batch(netns, lines);
    };
    await new Reconciler(store, racing, pino({ level: 'silent' })).pass();
    const host = await ip.observe('');
    for (const port of ['vh-blue', 'vh-red']) {
      const l = host.links.find((x) => x.ifname === port)!;
      assert.equal(l.master, '', `${port} is not a port of the foreign br0`);
      assert.equal(l.alias, `netkeep:veths/${port.slice(3)}`, `${port} is still marked as netkeep's`);
    }
    assert.equal(svc.bridges.get('br0').status.state, 'FAILED');
    assert.ok(host.links.filter((x) => x.master === 'br0').length === 0);
  });

  test('a stored spec the batch cannot carry fails alone; the rest of the pass goes on', async () => {
    quickstart();
    // As an older netkeep might have stored it, before the ifname rule.
    const bad = { ...svc.bridges.get('br0'), name: 'hash', spec: { ...svc.bridges.get('br0').spec, ifname: 'br#1', addresses: [] } };
    store.insert(bad, { references: [], unique: [] });
    const result = await reconciler.pass();
    assert.equal(svc.bridges.get('hash').status.state, 'FAILED');
    assert.match(svc.bridges.get('hash').status.message, /#/);
    const others = Object.entries(states()).filter(([k]) => k !== 'bridges/hash');
    assert.ok(others.every(([, st]) => st === 'READY'), JSON.stringify(others));
    assert.ok(result.lines > 0);
  });

  test('a failed kernel write fails only its resource, with the kernel\'s words', async () => {
    quickstart();
    svc.routes.create({ name: 'unreachable', namespace: 'blue', destination: '10.70.0.0/16', via: '10.99.0.1' });
    const result = await reconciler.pass();
    assert.equal(result.failures, 1);
    const r = svc.routes.get('unreachable');
    assert.equal(r.status.state, 'FAILED');
    assert.match(r.status.message, /^ip route add 10\.70\.0\.0\/16 via 10\.99\.0\.1 .*: Error: Nexthop has invalid gateway\./);
    const others = Object.entries(states()).filter(([k]) => k !== 'routes/unreachable');
    assert.ok(others.every(([, s]) => s === 'READY'), JSON.stringify(others));
    // Fixing the spec makes it READY on the next pass.
    svc.routes.update('unreachable', { via: '10.50.0.1' });
    await reconciler.pass();
    assert.equal(svc.routes.get('unreachable').status.state, 'READY');
  });

  test('deleting everything through the API returns the kernel to how it was', async () => {
    const pristine = ip.dump();
    quickstart();
    await reconciler.pass();
    for (const r of ['blue-default', 'red-default']) svc.routes.delete(r);
    for (const v of ['blue', 'red']) svc.veths.delete(v);
    svc.bridges.delete('br0');
    for (const n of ['blue', 'red']) svc.namespaces.delete(n);
    const result = await reconciler.pass();
    assert.equal(result.failures, 0);
    assert.equal(ip.dump().replace(/ifindex \d+/g, ''), pristine.replace(/ifindex \d+/g, ''));
  });

  test('an update applies in place: MTU and addresses change, the ifindexes stay', async () => {
    quickstart();
    await reconciler.pass();
    const before = svc.veths.get('blue').status;
    svc.veths.update('blue', { mtu: 1400, b: { addresses: ['10.50.0.20/24'] } });
    await reconciler.pass();
    const after = svc.veths.get('blue');
    assert.equal(after.status.state, 'READY');
    assert.deepEqual([after.status.a.ifindex, after.status.b.ifindex], [before.a.ifindex, before.b.ifindex]);
    const eth0 = (await ip.observe('blue')).links.find((l) => l.ifname === 'eth0')!;
    assert.equal(eth0.mtu, 1400);
    assert.deepEqual(eth0.addresses.filter((a) => a.scope === 'global').map((a) => a.address), ['10.50.0.20']);
  });
});
