/**
 * FakeIpClient executes the batch lines the reconciler writes and answers
 * like Linux 6.x + iproute2 6.1 (the kernel parity test in
 * test/kernel/ip-client.test.ts checks the same scenario against the kernel).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeIpClient } from '../../src/kernel/ip/fake.js';
import { BatchArgError, NetnsNotFoundError } from '../../src/kernel/errors.js';
import type { BatchLine, ObservedLink, ObservedNetns } from '../../src/kernel/ip/types.js';

/** Batch lines from "ip" command texts (no quoting needed in these tests). */
const lines = (owner: string, ...cmds: string[]): BatchLine[] => cmds.map((c) => ({ owner, args: c.split(' ') }));

const link = (obs: ObservedNetns, ifname: string): ObservedLink => {
  const l = obs.links.find((x) => x.ifname === ifname);
  assert.ok(l, `no link ${ifname} in ${JSON.stringify(obs.netns)}`);
  return l;
};

async function podOnBridge(ip: FakeIpClient): Promise<void> {
  assert.deepEqual(
    await ip.batch('', [
      ...lines('namespace/pod1', 'netns add pod1'),
      ...lines(
        'bridge/br0',
        'link add name br0 type bridge',
        'link set dev br0 mtu 1400 address 02:00:0a:00:00:01 alias netkeep:bridge/br0 up',
        'addr add 10.10.0.1/24 dev br0',
        'addr add fd00:10::1/64 dev br0',
      ),
      ...lines(
        'veth/p1',
        'link add name hv1 mtu 1400 address 02:00:0a:00:01:01 type veth peer name eth0 netns pod1 mtu 1400 address 02:00:0a:00:01:02',
        'link set dev hv1 master br0 alias netkeep:veth/p1 up',
      ),
      ...lines('route/r1', 'route add 10.20.0.0/16 via 10.10.0.2 proto 77'),
    ]),
    [],
  );
  assert.deepEqual(
    await ip.batch('pod1', [
      ...lines('namespace/pod1', 'link set dev lo up'),
      ...lines('veth/p1', 'link set dev eth0 alias netkeep:veth/p1 up', 'addr add 10.10.0.2/24 dev eth0', 'addr add fd00:10::2/64 dev eth0'),
      ...lines('route/r2', 'route add default via 10.10.0.1 proto 77', 'route add fd00:20::/64 via fd00:10::1 proto 77'),
    ]),
    [],
  );
}

test('a new fake has the host namespace with lo up and no named namespace', async () => {
  const ip = new FakeIpClient();
  assert.deepEqual(await ip.listNetns(), []);
  assert.deepEqual(await ip.observe(''), {
    netns: '',
    links: [
      {
        ifindex: 1, ifname: 'lo', kind: '', alias: '', mtu: 65536, mac: '00:00:00:00:00:00', up: true, master: '',
        peerIfindex: 0, vlanFiltering: false, hairpin: false,
        addresses: [
          { family: 4, address: '127.0.0.1', prefixLength: 8, scope: 'host' },
          { family: 6, address: '::1', prefixLength: 128, scope: 'host' },
        ],
      },
    ],
    routes: [],
  });
  await assert.rejects(ip.observe('nope'), NetnsNotFoundError);
  await assert.rejects(ip.batch('nope', lines('x', 'link set dev lo up')), NetnsNotFoundError);
});

test('a pod on a bridge: links, ifindexes, peers, addresses and routes as the kernel shows them', async () => {
  const ip = new FakeIpClient();
  await podOnBridge(ip);
  assert.deepEqual(await ip.listNetns(), ['pod1']);
  assert.equal(ip.writes, 2);

  const host = await ip.observe('');
  assert.deepEqual(host.links.map((l) => [l.ifindex, l.ifname]), [[1, 'lo'], [2, 'br0'], [3, 'hv1']]);
  assert.deepEqual(link(host, 'br0'), {
    ifindex: 2, ifname: 'br0', kind: 'bridge', alias: 'netkeep:bridge/br0', mtu: 1400, mac: '02:00:0a:00:00:01',
    up: true, master: '', peerIfindex: 0, vlanFiltering: false, hairpin: false,
    addresses: [
      { family: 4, address: '10.10.0.1', prefixLength: 24, scope: 'global' },
      { family: 6, address: 'fd00:10::1', prefixLength: 64, scope: 'global' },
    ],
  });
  assert.equal(link(host, 'hv1').master, 'br0');
  assert.equal(link(host, 'hv1').peerIfindex, 2); // eth0 is ifindex 2 in pod1: the peer registers first

  const pod = await ip.observe('pod1');
  assert.deepEqual(pod.links.map((l) => [l.ifindex, l.ifname, l.up]), [[1, 'lo', true], [2, 'eth0', true]]);
  assert.equal(link(pod, 'eth0').peerIfindex, 3);
  assert.equal(link(pod, 'eth0').mac, '02:00:0a:00:01:02');
  assert.deepEqual(host.routes, [
    { family: 4, destination: '10.10.0.0/24', via: '', device: 'br0', metric: 0, protocol: 'kernel' },
    { family: 4, destination: '10.20.0.0/16', via: '10.10.0.2', device: 'br0', metric: 0, protocol: '77' },
    { family: 6, destination: 'fd00:10::/64', via: '', device: 'br0', metric: 256, protocol: 'kernel' },
  ]);
  assert.deepEqual(pod.routes, [
    { family: 4, destination: 'default', via: '10.10.0.1', device: 'eth0', metric: 0, protocol: '77' },
    { family: 4, destination: '10.10.0.0/24', via: '', device: 'eth0', metric: 0, protocol: 'kernel' },
    { family: 6, destination: 'fd00:10::/64', via: '', device: 'eth0', metric: 256, protocol: 'kernel' },
    { family: 6, destination: 'fd00:20::/64', via: 'fd00:10::1', device: 'eth0', metric: 1024, protocol: '77' },
  ]);
});

test('failures are attributed to their line and owner, and -force keeps going', async () => {
  const ip = new FakeIpClient();
  await podOnBridge(ip);
  const failures = await ip.batch('', [
    ...lines('bridge/br0', 'link add name br0 type bridge'),
    ...lines('bridge/br1', 'link add name br1 type bridge'),
    ...lines('veth/x', 'link set dev nope up', 'addr add 10.10.0.1/24 dev br0'),
    ...lines('route/r9', 'route add 10.99.0.0/16 via 10.77.0.1', 'route add 10.20.0.0/16 via 10.10.0.2'),
    ...lines('route/r8', 'route del 10.98.0.0/16', 'addr del 10.10.0.9/24 dev br0'),
  ]);
  assert.deepEqual(failures, [
    { index: 0, owner: 'bridge/br0', message: 'RTNETLINK answers: File exists' },
    { index: 2, owner: 'veth/x', message: 'Cannot find device "nope"' },
    { index: 3, owner: 'veth/x', message: 'Error: ipv4: Address already assigned.' },
    { index: 4, owner: 'route/r9', message: 'Error: Nexthop has invalid gateway.' },
    { index: 5, owner: 'route/r9', message: 'RTNETLINK answers: File exists' },
    { index: 6, owner: 'route/r8', message: 'RTNETLINK answers: No such process' },
    { index: 7, owner: 'route/r8', message: 'Error: ipv4: Address not found.' },
  ]);
  assert.ok(link(await ip.observe(''), 'br1'), 'the line after a failure ran');
});

test('an unparsable line ends the batch like ip exits: it fails and the rest is not run', async () => {
  const ip = new FakeIpClient();
  await podOnBridge(ip);
  const before = ip.dump();
  const failures = await ip.batch('', [
    ...lines('bridge/br0', 'link set dev br0 down'),
    ...lines('veth/p1', 'link set dev hv1 master nope'),
    ...lines('bridge/br2', 'link add name br2 type bridge'),
  ]);
  assert.deepEqual(failures, [
    { index: 1, owner: 'veth/p1', message: 'Error: argument "nope" is wrong: Device does not exist' },
    { index: 2, owner: 'bridge/br2', message: 'not run: ip -batch exited at line 2' },
  ]);
  assert.notEqual(ip.dump(), before, 'line 0 ran');
  assert.equal((await ip.observe('')).links.some((l) => l.ifname === 'br2'), false);
  const [missingNs] = await ip.batch('', lines('veth/v9', 'link add name v9 type veth peer name v9p netns gone'));
  assert.equal(missingNs?.message, 'Error: argument "gone" is wrong: Invalid "netns" value');
});

test('bad arguments are rejected before anything runs, and count no write', async () => {
  const ip = new FakeIpClient();
  await assert.rejects(
    ip.batch('', [{ owner: 'bridge/b', args: ['link', 'add', 'name', 'b0', 'type', 'bridge'] }, { owner: 'bridge/b', args: ['link', 'set', 'dev', 'b0', 'alias', 'x#y'] }]),
    BatchArgError,
  );
  assert.equal(ip.writes, 0);
  assert.equal((await ip.observe('')).links.length, 1);
  assert.deepEqual(await ip.batch('', []), []);
  assert.equal(ip.writes, 0);
});

test('deleting a veth end deletes its peer; deleting a namespace deletes the peers of its veths', async () => {
  const ip = new FakeIpClient();
  await podOnBridge(ip);
  await ip.batch('', lines('veth/p1', 'link del dev hv1'));
  assert.deepEqual((await ip.observe('pod1')).links.map((l) => l.ifname), ['lo']);

  await ip.batch('', lines('veth/p2', 'link add name hv2 type veth peer name eth0 netns pod1'));
  const host = await ip.observe('');
  assert.equal(link(host, 'hv2').ifindex, 4, 'ifindexes are not reused');
  assert.equal(link(host, 'hv2').peerIfindex, 3);
  await ip.batch('', lines('namespace/pod1', 'netns del pod1'));
  assert.deepEqual(await ip.listNetns(), []);
  assert.deepEqual((await ip.observe('')).links.map((l) => l.ifname), ['lo', 'br0']);
  const [f] = await ip.batch('', lines('namespace/pod1', 'netns del pod1'));
  assert.equal(f?.message, 'Cannot remove namespace file "/run/netns/pod1": No such file or directory');
});

test('a bridge follows its ports\' smallest MTU and MAC unless they were set explicitly', async () => {
  const ip = new FakeIpClient();
  await ip.batch('', [
    ...lines(
      'b',
      'link add name br0 mtu 1400 type bridge',
      'link add name va mtu 1500 address 02:00:00:00:00:09 type veth peer name vb',
      'link add name vc mtu 9000 address 02:00:00:00:00:03 type veth peer name vd',
    ),
  ]);
  const br0 = async () => link(await ip.observe(''), 'br0');
  assert.equal((await br0()).mtu, 1400);
  await ip.batch('', lines('b', 'link set dev va master br0'));
  assert.equal((await br0()).mtu, 1500, 'mtu given to link add does not count as set by the user');
  assert.equal((await br0()).mac, '02:00:00:00:00:09');
  await ip.batch('', lines('b', 'link set dev vc master br0'));
  assert.equal((await br0()).mac, '02:00:00:00:00:03');
  await ip.batch('', lines('b', 'link set dev va nomaster', 'link set dev vc nomaster'));
  assert.equal((await br0()).mac, '00:00:00:00:00:00');
  assert.equal((await br0()).mtu, 1500);

  await ip.batch('', lines('b', 'link set dev br0 mtu 1280 address 02:00:00:00:00:aa', 'link set dev vc master br0'));
  assert.equal((await br0()).mtu, 1280);
  assert.equal((await br0()).mac, '02:00:00:00:00:aa');
});

test('link down drops its routes and IPv6 addresses; up brings back the connected routes only', async () => {
  const ip = new FakeIpClient();
  await podOnBridge(ip);
  ip.setDownByHand('', 'br0');
  const down = await ip.observe('');
  assert.deepEqual(link(down, 'br0').addresses.map((a) => a.address), ['10.10.0.1']);
  assert.deepEqual(down.routes, []);
  await ip.batch('', lines('bridge/br0', 'link set dev br0 up'));
  assert.deepEqual((await ip.observe('')).routes.map((r) => r.destination), ['10.10.0.0/24']);
  assert.equal(ip.writes, 3, 'setDownByHand is not a write');
});

test('addresses: primaries before secondaries, newest IPv6 first, a primary takes its secondaries along', async () => {
  const ip = new FakeIpClient();
  await ip.batch('', [
    ...lines(
      'b',
      'link add name br0 type bridge',
      'link set dev br0 up',
      'addr add 10.5.0.1/24 dev br0',
      'addr add 10.5.0.2/24 dev br0',
      'addr add 10.6.0.1/24 dev br0',
      'addr add fd00:1::1/64 dev br0',
      'addr add fd00:2::1/64 dev br0',
    ),
  ]);
  const addrs = async () => link(await ip.observe(''), 'br0').addresses.map((a) => `${a.address}/${a.prefixLength}`);
  assert.deepEqual(await addrs(), ['10.5.0.1/24', '10.6.0.1/24', '10.5.0.2/24', 'fd00:2::1/64', 'fd00:1::1/64']);
  await ip.batch('', lines('b', 'addr del 10.5.0.1/24 dev br0'));
  assert.deepEqual(await addrs(), ['10.6.0.1/24', 'fd00:2::1/64', 'fd00:1::1/64']);
  const v4 = (await ip.observe('')).routes.filter((r) => r.family === 4).map((r) => r.destination);
  assert.deepEqual(v4, ['10.6.0.0/24']);
});

test('an IPv6 gateway without dev needs carrier: a veth with its peer down has none', async () => {
  const ip = new FakeIpClient();
  await ip.batch('', lines('v', 'link add name e type veth peer name f', 'link set dev e up', 'addr add fd00:5::1/64 dev e'));
  const [noCarrier] = await ip.batch('', lines('r', 'route add fd00:50::/64 via fd00:5::2'));
  assert.equal(noCarrier?.message, 'RTNETLINK answers: No route to host');
  assert.deepEqual(await ip.batch('', lines('r', 'route add fd00:51::/64 via fd00:5::2 dev e')), []);
  assert.deepEqual(await ip.batch('', lines('r', 'link set dev f up', 'route add fd00:50::/64 via fd00:5::2')), []);
  assert.deepEqual(await ip.batch('', lines('r', 'link set dev e down')), []);
  const failures = await ip.batch('', lines('r', 'route add 10.8.0.0/16 dev e', 'route add fd00:8::/64 dev e', 'route add 10.9.0.0/16'));
  assert.deepEqual(failures.map((f) => f.message), [
    'Error: Device for nexthop is not up.',
    'Error: Nexthop device is not up.',
    'RTNETLINK answers: No such device',
  ]);
});

test('route replace, del and default routes behave like ip route', async () => {
  const ip = new FakeIpClient();
  await ip.batch('', [
    ...lines(
      'r',
      'link add name br0 type bridge',
      'link set dev br0 up',
      'addr add 10.1.0.1/24 dev br0',
      'addr add fd00:1::1/64 dev br0',
      'route add default via 10.1.0.254 proto 77',
      'route add default via fd00:1::fe metric 5 proto 77',
      'route add 10.2.0.0/16 via 10.1.0.2 proto 77',
      'route replace 10.2.0.0/16 via 10.1.0.3 proto 77',
      'route replace 10.2.0.0/16 via 10.1.0.4 metric 9',
    ),
  ]);
  const routes = async () => (await ip.observe('')).routes.filter((r) => r.protocol !== 'kernel');
  assert.deepEqual(await routes(), [
    { family: 4, destination: 'default', via: '10.1.0.254', device: 'br0', metric: 0, protocol: '77' },
    { family: 4, destination: '10.2.0.0/16', via: '10.1.0.3', device: 'br0', metric: 0, protocol: '77' },
    { family: 4, destination: '10.2.0.0/16', via: '10.1.0.4', device: 'br0', metric: 9, protocol: 'boot' },
    { family: 6, destination: 'default', via: 'fd00:1::fe', device: 'br0', metric: 5, protocol: '77' },
  ]);
  const [hostBits] = await ip.batch('', lines('r', 'route add 10.3.0.1/16 dev br0'));
  assert.equal(hostBits?.message, 'Error: Invalid prefix for given prefix length.');
  assert.deepEqual(await ip.batch('', lines('r', 'route del 10.2.0.0/16', 'route del default via fd00:1::fe')), []);
  assert.deepEqual((await routes()).map((r) => `${r.destination} ${r.metric}`), ['default 0', '10.2.0.0/16 9']);
  const [proto] = await ip.batch('', lines('r', 'route add 10.4.0.0/16 dev br0 proto 300'));
  assert.equal(proto?.message, 'Error: argument "300" is wrong: "protocol" value is invalid');
});

test('drift helpers change state without counting writes; dump() is deterministic text', async () => {
  const ip = new FakeIpClient();
  await podOnBridge(ip);
  assert.equal(ip.dump(), ip.dump());
  const writes = ip.writes;
  ip.deleteAddressByHand('', 'br0', 'fd00:10::1/64');
  ip.deleteRouteByHand('', '10.20.0.0/16');
  ip.setNomasterByHand('', 'hv1');
  ip.addForeignLink('', { ifname: 'eth9', kind: 'dummy', up: true });
  ip.deleteLinkByHand('pod1', 'eth0');
  assert.equal(ip.writes, writes);
  assert.throws(() => ip.deleteLinkByHand('pod1', 'eth0'), /Cannot find device "eth0"/);
  assert.equal(
    ip.dump(),
    [
      'netns ""',
      '  1: lo up mtu 65536 mac 00:00:00:00:00:00',
      '      inet 127.0.0.1/8 scope host',
      '      inet6 ::1/128 scope host',
      '  2: br0 bridge up mtu 1400 mac 02:00:0a:00:00:01 vlan_filtering 0 alias "netkeep:bridge/br0"',
      '      inet 10.10.0.1/24 scope global',
      '  4: eth9 dummy up mtu 1500 mac 02:fa:ce:00:00:02',
      '  route 10.10.0.0/24 dev br0 proto kernel metric 0',
      'netns "pod1"',
      '  1: lo up mtu 65536 mac 00:00:00:00:00:00',
      '      inet 127.0.0.1/8 scope host',
      '      inet6 ::1/128 scope host',
      '',
    ].join('\n'),
  );
  ip.deleteNetnsByHand('pod1');
  assert.deepEqual(await ip.listNetns(), []);
});

test('vlan_filtering: kept on bridges, or refused like a kernel without CONFIG_BRIDGE_VLAN_FILTERING', async () => {
  const ip = new FakeIpClient();
  await ip.batch('', lines('b', 'link add name br0 type bridge vlan_filtering 1'));
  assert.equal(link(await ip.observe(''), 'br0').vlanFiltering, true);
  await ip.batch('', lines('b', 'link set dev br0 type bridge vlan_filtering 0'));
  assert.equal(link(await ip.observe(''), 'br0').vlanFiltering, false);

  const old = new FakeIpClient({ vlanFilteringSupported: false });
  const failures = await old.batch('', lines('b', 'link add name br0 type bridge vlan_filtering 0', 'link add name br1 type bridge'));
  assert.deepEqual(failures, [{ index: 0, owner: 'b', message: 'RTNETLINK answers: Operation not supported' }]);
});

test('commands the fake does not model throw instead of pretending', async () => {
  const ip = new FakeIpClient();
  await assert.rejects(ip.batch('', lines('x', 'route add blackhole 10.0.0.0/8')), /does not model route type blackhole/);
  await assert.rejects(ip.batch('', lines('x', 'link add a type bridge')), /positional ifname "a"/);
  await assert.rejects(ip.batch('', lines('x', 'rule add from all')), /does not model ip rule/);
});
