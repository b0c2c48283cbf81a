import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pendingStatus, type Kind, type Resource, type SpecOf } from '../../src/domain/types.js';
import type { ObservedLink, ObservedNetns } from '../../src/kernel/ip/types.js';
import { buildDesired } from '../../src/reconcile/desired.js';
import { plan, type ObservedState } from '../../src/reconcile/plan.js';

function res<K extends Kind>(kind: K, name: string, spec: SpecOf[K]): Resource<K> {
  return {
    kind,
    name,
    labels: {},
    spec,
    generation: 1,
    etag: '1',
    createTime: '',
    updateTime: '',
    status: pendingStatus(kind),
  };
}

const end = (e: Partial<SpecOf['veths']['a']>): SpecOf['veths']['a'] => ({
  ifname: '',
  namespace: '',
  bridge: '',
  addresses: [],
  mac: '',
  addressPools: [],
  ...e,
});

/** The quickstart topology: blue on br0, with a default route. */
function quickstart() {
  return buildDesired({
    namespaces: [res('namespaces', 'blue', {})],
    bridges: [
      res('bridges', 'br0', {
        namespace: '',
        ifname: 'br0',
        mtu: 0,
        mac: '02:00:00:00:00:01',
        addresses: ['10.50.0.1/24'],
        vlanFiltering: false,
        addressPools: [],
      }),
    ],
    veths: [
      res('veths', 'blue', {
        mtu: 0,
        a: end({ ifname: 'vh-blue', bridge: 'br0' }),
        b: end({ ifname: 'eth0', namespace: 'blue', addresses: ['10.50.0.2/24'] }),
      }),
    ],
    routes: [
      res('routes', 'blue-default', { namespace: 'blue', destination: 'default', via: '10.50.0.1', device: '', metric: 0 }),
    ],
  });
}

function link(l: Partial<ObservedLink> & { ifname: string }): ObservedLink {
  return {
    ifindex: 1,
    kind: '',
    alias: '',
    mtu: 1500,
    mac: '00:00:00:00:00:00',
    up: true,
    master: '',
    peerIfindex: 0,
    vlanFiltering: false,
    hairpin: false,
    addresses: [],
    ...l,
  };
}

function observed(byNetns: ObservedNetns[]): ObservedState {
  return {
    netns: new Set(byNetns.map((n) => n.netns).filter((n) => n !== '')),
    byNetns: new Map(byNetns.map((n) => [n.netns, n])),
  };
}

const emptyHost: ObservedNetns = { netns: '', links: [link({ ifname: 'lo', mac: '00:00:00:00:00:00' })], routes: [] };

/** The kernel state the quickstart converges to. */
function converged(): ObservedNetns[] {
  return [
    {
      netns: '',
      links: [
        link({ ifname: 'lo' }),
        link({
          ifname: 'br0',
          ifindex: 2,
          kind: 'bridge',
          alias: 'netkeep:bridges/br0',
          mac: '02:00:00:00:00:01',
          addresses: [
            { family: 4, address: '10.50.0.1', prefixLength: 24, scope: 'global' },
            { family: 6, address: 'fe80::1', prefixLength: 64, scope: 'link' },
          ],
        }),
        link({ ifname: 'vh-blue', ifindex: 3, kind: 'veth', alias: 'netkeep:veths/blue', master: 'br0' }),
      ],
      routes: [],
    },
    {
      netns: 'blue',
      links: [
        link({ ifname: 'lo', alias: 'netkeep:namespaces/blue' }),
        link({
          ifname: 'eth0',
          ifindex: 2,
          kind: 'veth',
          alias: 'netkeep:veths/blue',
          addresses: [{ family: 4, address: '10.50.0.2', prefixLength: 24, scope: 'global' }],
        }),
      ],
      routes: [
        { family: 4, destination: 'default', via: '10.50.0.1', device: 'eth0', metric: 0, protocol: '77' },
        { family: 4, destination: '10.50.0.0/24', via: '', device: 'eth0', metric: 0, protocol: 'kernel' },
      ],
    },
  ];
}

/** Each batch as text; `---` separates the create process from the configure process. */
const render = (p: ReturnType<typeof plan>) =>
  p.batches.map((b) => ({
    netns: b.netns,
    lines: [...b.create.map((l) => l.args.join(' ')), ...(b.create.length > 0 ? ['---'] : []), ...b.lines.map((l) => l.args.join(' '))],
  }));

describe('plan', () => {
  test('from an empty kernel: one host batch, then one per namespace, in DESIGN.md §3 order', () => {
    const p = plan(quickstart(), observed([emptyHost]));
    assert.deepEqual(render(p), [
      {
        netns: '',
        lines: [
          'netns add blue',
          'link add name br0 address 02:00:00:00:00:01 type bridge',
          'link add name vh-blue mtu 1500 type veth peer name eth0 netns blue mtu 1500',
          '---',
          'link set dev br0 alias netkeep:bridges/br0',
          'link set dev vh-blue alias netkeep:veths/blue',
          'link set dev br0 up',
          'link set dev vh-blue master br0 up',
          'addr add 10.50.0.1/24 dev br0',
        ],
      },
      {
        netns: 'blue',
        lines: [
          'link set dev lo alias netkeep:namespaces/blue up',
          'link set dev eth0 alias netkeep:veths/blue',
          'link set dev eth0 up',
          'addr add 10.50.0.2/24 dev eth0',
          'route add default via 10.50.0.1 metric 0 proto 77',
        ],
      },
    ]);
    assert.equal(p.blocked.size, 0);
  });

  test('lines that configure what this pass creates name it, so they never run on a foreign holder', () => {
    const p = plan(quickstart(), observed([emptyHost]));
    const [host, blue] = p.batches;
    assert.deepEqual(host!.create.map((l) => l.creates), ['netns:blue', 'link:/br0', 'link:/vh-blue']);
    const requires = Object.fromEntries(host!.lines.map((l) => [l.args.join(' '), l.requires]));
    assert.deepEqual(requires, {
      'link set dev br0 alias netkeep:bridges/br0': ['link:/br0'],
      'link set dev vh-blue alias netkeep:veths/blue': ['link:/vh-blue'],
      'link set dev br0 up': ['link:/br0'],
      // A port waits for its own create and for its bridge's.
      'link set dev vh-blue master br0 up': ['link:/vh-blue', 'link:/br0'],
      'addr add 10.50.0.1/24 dev br0': ['link:/br0'],
    });
    assert.ok(blue!.lines.every((l) => l.requires?.includes('netns:blue')), 'all of a new namespace needs its netns add');
    assert.ok(blue!.lines.filter((l) => l.args.includes('eth0')).every((l) => l.requires?.includes('link:/vh-blue')));
  });

  test('a converged kernel gives no lines at all (idempotence)', () => {
    const p = plan(quickstart(), observed(converged()));
    assert.deepEqual(render(p), []);
  });

  test('drift: a bridge set down and a removed address are put back; link-local addresses are left alone', () => {
    const state = converged();
    const br0 = state[0]!.links.find((l) => l.ifname === 'br0')!;
    br0.up = false;
    const eth0 = state[1]!.links.find((l) => l.ifname === 'eth0')!;
    eth0.addresses = [{ family: 6, address: 'fe80::2', prefixLength: 64, scope: 'link' }];
    assert.deepEqual(render(plan(quickstart(), observed(state))), [
      { netns: '', lines: ['link set dev br0 up'] },
      { netns: 'blue', lines: ['addr add 10.50.0.2/24 dev eth0'] },
    ]);
  });

  test('drift: a veth deleted by hand is re-created from the host side', () => {
    const state = converged();
    state[0]!.links = state[0]!.links.filter((l) => l.ifname !== 'vh-blue');
    state[1]!.links = state[1]!.links.filter((l) => l.ifname !== 'eth0');
    state[1]!.routes = [];
    const lines = render(plan(quickstart(), observed(state)));
    assert.deepEqual(lines, [
      {
        netns: '',
        lines: [
          'link add name vh-blue mtu 1500 type veth peer name eth0 netns blue mtu 1500',
          '---',
          'link set dev vh-blue alias netkeep:veths/blue',
          'link set dev vh-blue master br0 up',
        ],
      },
      {
        netns: 'blue',
        lines: [
          'link set dev eth0 alias netkeep:veths/blue',
          'link set dev eth0 up',
          'addr add 10.50.0.2/24 dev eth0',
          'route add default via 10.50.0.1 metric 0 proto 77',
        ],
      },
    ]);
  });

  test('everything deleted: routes, then links, then the namespace, and foreign objects are untouched', () => {
    const state = converged();
    state[0]!.links.push(link({ ifname: 'eth0', ifindex: 9, kind: 'veth', alias: '' }));
    state[0]!.routes.push({ family: 4, destination: '10.99.0.0/16', via: '', device: 'eth0', metric: 0, protocol: 'boot' });
    const none = buildDesired({ namespaces: [], bridges: [], veths: [], routes: [] });
    assert.deepEqual(render(plan(none, observed(state))), [
      { netns: '', lines: ['link del dev br0', 'link del dev vh-blue'] },
      { netns: '', lines: ['netns del blue'] },
    ]);
  });

  test('routes through a veth that goes away this pass are not deleted separately (they go with it)', () => {
    const d = buildDesired({ namespaces: [res('namespaces', 'blue', {})], bridges: [], veths: [], routes: [] });
    const lines = render(plan(d, observed(converged()))).flatMap((b) => b.lines);
    assert.ok(lines.includes('link del dev vh-blue'));
    assert.ok(!lines.some((l) => l.startsWith('route del')), lines.join('\n'));
  });

  test('a foreign link, netns or route holding a name blocks that resource and is never written', () => {
    const host: ObservedNetns = {
      netns: '',
      links: [link({ ifname: 'lo' }), link({ ifname: 'br0', kind: 'bridge', alias: 'docker-made' })],
      routes: [],
    };
    const blue: ObservedNetns = { netns: 'blue', links: [link({ ifname: 'lo' })], routes: [] };
    const p = plan(quickstart(), observed([host, blue]));
    assert.match(p.blocked.get('bridges/br0')!, /already has an interface br0 .*did not create/);
    assert.match(p.blocked.get('namespaces/blue')!, /did not create exists \(\/run\/netns\/blue\)/);
    assert.match(p.blocked.get('veths/blue')!, /not ready/);
    assert.match(p.blocked.get('routes/blue-default')!, /namespace blue is not ready/);
    const all = render(p).flatMap((b) => b.lines);
    assert.ok(!all.some((l) => l.includes('br0')), `no line may touch br0, not even to enslave a port: ${all.join('\n')}`);
    assert.ok(!all.some((l) => l.startsWith('netns')), 'the foreign netns is neither added nor deleted');
  });

  test('a veth end whose bridge is held by a foreign link is not enslaved to it', () => {
    const host: ObservedNetns = {
      netns: '',
      links: [link({ ifname: 'lo' }), link({ ifname: 'br0', kind: 'bridge', alias: '' })],
      routes: [],
    };
    const p = plan(quickstart(), observed([host]));
    assert.match(p.blocked.get('veths/blue')!, /bridges\/br0 is not ready/);
    assert.ok(!render(p).flatMap((b) => b.lines).some((l) => l.includes('master')));
  });

  test('a veth between two namespaces: the later namespace waits for the one that creates the pair', () => {
    const d = buildDesired({
      namespaces: [res('namespaces', 'blue', {}), res('namespaces', 'red', {})],
      bridges: [],
      veths: [res('veths', 'p', { mtu: 0, a: end({ ifname: 'to-red', namespace: 'red' }), b: end({ ifname: 'to-blue', namespace: 'blue' }) })],
      routes: [],
    });
    const p = plan(d, observed([emptyHost]));
    assert.deepEqual(
      p.batches.map((b) => [b.netns, b.after]),
      [['', []], ['blue', []], ['red', ['blue']]],
    );
    assert.equal(p.batches[1]!.create[0]!.args.join(' '), 'link add name to-blue mtu 1500 type veth peer name to-red netns red mtu 1500');
  });

  test('an MTU and address change on an existing veth is applied in place', () => {
    const d = buildDesired({
      namespaces: [res('namespaces', 'blue', {})],
      bridges: [],
      veths: [
        res('veths', 'blue', {
          mtu: 1400,
          a: end({ ifname: 'vh-blue' }),
          b: end({ ifname: 'eth0', namespace: 'blue', addresses: ['10.50.0.9/24'] }),
        }),
      ],
      routes: [],
    });
    const state = converged();
    state[0]!.links = state[0]!.links.filter((l) => l.ifname !== 'br0');
    state[1]!.routes = [];
    assert.deepEqual(render(plan(d, observed(state))), [
      { netns: '', lines: ['link set dev vh-blue mtu 1400 nomaster'] },
      { netns: 'blue', lines: ['link set dev eth0 mtu 1400', 'addr del 10.50.0.2/24 dev eth0', 'addr add 10.50.0.9/24 dev eth0'] },
    ]);
  });

  test('IPv6 routes: "default" is written ::/0 and metric 0 means the kernel\'s 1024', () => {
    const d = buildDesired({
      namespaces: [],
      bridges: [],
      veths: [],
      routes: [res('routes', 'v6', { namespace: '', destination: 'default', via: 'fd00::1', device: '', metric: 0 })],
    });
    assert.deepEqual(render(plan(d, observed([emptyHost]))), [
      { netns: '', lines: ['route add ::/0 via fd00::1 metric 1024 proto 77'] },
    ]);
    const host: ObservedNetns = {
      ...emptyHost,
      routes: [{ family: 6, destination: 'default', via: 'fd00::1', device: 'v0', metric: 1024, protocol: '77' }],
    };
    assert.deepEqual(render(plan(d, observed([host]))), []);
  });
});
