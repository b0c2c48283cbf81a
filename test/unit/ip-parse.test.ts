/**
 * parse.ts against real iproute2 6.1 output captured in a sandbox on Linux
 * 6.18 (test/unit/fixtures/ip/), and renderBatch()'s quoting rules.
 *
 * The fixtures' scenario (host side): br0 (mtu 1400, mac 02:aa:00:00:00:01,
 * alias netkeep:bridge/br0, 10.1.0.1/24, 10.1.0.2/24, fd00:0:0:1::1/64,
 * fd00:0:0:1::abcd/64), a same-namespace veth pair veth-a/veth-b, hv1 (port
 * of br0) whose peer eth0 is in netns pod1; routes 10.2.0.0/16 via 10.1.0.10
 * proto 77, 10.3.0.0/16 metric 20, blackhole 10.4.0.0/16, 10.5.0.0/16 in
 * table 100, fd00:0:0:2::/64 proto 77, ::/0 dev br0 metric 7 proto 77.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  abortFailures,
  abortingLine,
  canonicalDestination,
  parseBatchStderr,
  parseJsonLines,
  parseLinks,
  parseRoutes,
} from '../../src/kernel/ip/parse.js';
import { renderBatch, renderBatchArg } from '../../src/kernel/ip/client.js';
import { BatchArgError, classifyStderr } from '../../src/kernel/errors.js';
import type { BatchLine } from '../../src/kernel/ip/types.js';

const fixture = (name: string): string => readFileSync(new URL(`./fixtures/ip/${name}`, import.meta.url), 'utf8');
const json = (name: string): unknown => JSON.parse(fixture(name)) as unknown;

test('parseLinks reads the host fixture: kinds, alias, MAC, master, peers', () => {
  const links = parseLinks(json('addr-host.json'));
  assert.deepEqual(
    links.map((l) => [l.ifindex, l.ifname, l.kind, l.up]),
    [
      [1, 'lo', '', true],
      [2, 'br0', 'bridge', true],
      [3, 'veth-b', 'veth', false],
      [4, 'veth-a', 'veth', false],
      [5, 'hv1', 'veth', true],
    ],
  );
  const [lo, br0, vethB, vethA, hv1] = links;
  assert.deepEqual(br0, {
    ifindex: 2,
    ifname: 'br0',
    kind: 'bridge',
    alias: 'netkeep:bridge/br0',
    mtu: 1400,
    mac: '02:aa:00:00:00:01',
    up: true,
    master: '',
    peerIfindex: 0,
    vlanFiltering: false,
    hairpin: false,
    addresses: [
      { family: 4, address: '10.1.0.1', prefixLength: 24, scope: 'global' },
      { family: 4, address: '10.1.0.2', prefixLength: 24, scope: 'global' },
      // newest IPv6 address first; RFC 5952 text
      { family: 6, address: 'fd00:0:0:1::abcd', prefixLength: 64, scope: 'global' },
      { family: 6, address: 'fd00:0:0:1::1', prefixLength: 64, scope: 'global' },
      { family: 6, address: 'fe80::aa:ff:fe00:1', prefixLength: 64, scope: 'link' },
    ],
  });
  assert.equal(lo?.mtu, 65536);
  assert.deepEqual(lo?.addresses.map((a) => `${a.address}/${a.prefixLength} ${a.scope}`), ['127.0.0.1/8 host', '::1/128 host']);
  // same-namespace peers are printed as "link": "<ifname>" and resolved here
  assert.equal(vethB?.peerIfindex, 4);
  assert.equal(vethA?.peerIfindex, 3);
  // a peer in another namespace is "link_index"
  assert.equal(hv1?.peerIfindex, 2);
  assert.equal(hv1?.master, 'br0');
  assert.equal(hv1?.alias, 'netkeep:veth/pod1');
});

test('parseLinks reads the pod fixture: lo up, eth0 pointing back at hv1', () => {
  const [lo, eth0] = parseLinks(json('addr-pod1.json'));
  assert.equal(lo?.up, true);
  assert.equal(eth0?.ifname, 'eth0');
  assert.equal(eth0?.peerIfindex, 5);
  assert.deepEqual(
    eth0?.addresses.map((a) => `${a.address}/${a.prefixLength}`),
    ['10.1.0.10/24', 'fd00:0:0:1::10/64', 'fe80::895:92ff:fe2d:2518/64'],
  );
});

test('parseLinks reads vlan_filtering as 1 or true, lowercases MACs', () => {
  const [br] = parseLinks([
    { ifindex: 7, ifname: 'brv', flags: ['BROADCAST'], mtu: 1500, address: '02:AB:CD:00:00:01', linkinfo: { info_kind: 'bridge', info_data: { vlan_filtering: 1 } }, addr_info: [] },
  ]);
  assert.equal(br?.vlanFiltering, true);
  assert.equal(br?.mac, '02:ab:cd:00:00:01');
  assert.equal(parseLinks([{ ifindex: 1, ifname: 'x', linkinfo: { info_data: { vlan_filtering: true } } }])[0]?.vlanFiltering, true);
});

test('parseLinks rejects output that is not a list of links', () => {
  assert.throws(() => parseLinks({}), /expected a JSON array/);
  assert.throws(() => parseLinks([{ ifname: 'x' }]), /lacks ifindex/);
});

const hostRoutes = [
  { family: 4, destination: '10.1.0.0/24', via: '', device: 'br0', metric: 0, protocol: 'kernel' },
  { family: 4, destination: '10.2.0.0/16', via: '10.1.0.10', device: 'br0', metric: 0, protocol: '77' },
  { family: 4, destination: '10.3.0.0/16', via: '10.1.0.10', device: 'br0', metric: 20, protocol: 'boot' },
  { family: 6, destination: 'fd00:0:0:1::/64', via: '', device: 'br0', metric: 256, protocol: 'kernel' },
  { family: 6, destination: 'fd00:0:0:2::/64', via: 'fd00:0:0:1::10', device: 'br0', metric: 1024, protocol: '77' },
  { family: 6, destination: 'fe80::/64', via: '', device: 'hv1', metric: 256, protocol: 'kernel' },
  { family: 6, destination: 'fe80::/64', via: '', device: 'br0', metric: 256, protocol: 'kernel' },
  // ::/0 without a gateway: only `pref` says it is IPv6
  { family: 6, destination: 'default', via: '', device: 'br0', metric: 7, protocol: '77' },
];

test('parseRoutes keeps main-table unicast routes of `ip -j -d route show table all`', () => {
  assert.deepEqual(parseRoutes(json('route-host-detailed.json')), hostRoutes);
});

test('parseRoutes gives the same result for the plain output (no type/table/boot printed)', () => {
  assert.deepEqual(parseRoutes(json('route-host-plain.json')), hostRoutes);
});

test('parseRoutes: IPv4 default metric is 0; host routes get /32', () => {
  assert.deepEqual(parseRoutes([{ dst: 'default', gateway: '10.0.0.1', dev: 'eth0', flags: [] }]), [
    { family: 4, destination: 'default', via: '10.0.0.1', device: 'eth0', metric: 0, protocol: 'boot' },
  ]);
  assert.equal(parseRoutes([{ dst: '10.9.9.9', dev: 'eth0' }])[0]?.destination, '10.9.9.9/32');
  assert.equal(canonicalDestination('FD00:0:0:0::1'), 'fd00::1/128');
});

test('parseJsonLines splits the observe batch output into one document per command', () => {
  const [addrs, routes] = parseJsonLines(fixture('observe-pod1-batch.txt'), 2);
  assert.deepEqual(parseLinks(addrs).map((l) => l.ifname), ['lo', 'eth0']);
  assert.deepEqual(parseRoutes(routes), [
    { family: 4, destination: 'default', via: '10.1.0.1', device: 'eth0', metric: 0, protocol: '77' },
    { family: 4, destination: '10.1.0.0/24', via: '', device: 'eth0', metric: 0, protocol: 'kernel' },
    { family: 6, destination: 'fd00:0:0:1::/64', via: '', device: 'eth0', metric: 256, protocol: 'kernel' },
    { family: 6, destination: 'fe80::/64', via: '', device: 'eth0', metric: 256, protocol: 'kernel' },
  ]);
  assert.throws(() => parseJsonLines('[]\n', 2), /expected 2 JSON documents, got 1/);
  assert.throws(() => parseJsonLines('[}\n', 1), /not JSON/);
});

const line = (owner: string, ...args: string[]): BatchLine => ({ owner, args });

test('parseBatchStderr maps each "Command failed -:N" to its line, owner and text', () => {
  const lines = [
    line('bridge/br0', 'link', 'add', 'name', 'br0', 'type', 'bridge'),
    line('veth/x', 'link', 'set', 'dev', 'nope', 'up'),
    line('bridge/br0', 'addr', 'add', '10.1.0.1/24', 'dev', 'br0'),
    line('route/r1', 'route', 'add', '10.9.0.0/16', 'via', '10.7.0.1'),
    line('bridge/br0', 'link', 'set', 'dev', 'br0', 'up'),
  ];
  assert.deepEqual(parseBatchStderr(fixture('batch-failures.stderr'), lines), {
    failures: [
      { index: 0, owner: 'bridge/br0', message: 'RTNETLINK answers: File exists' },
      { index: 1, owner: 'veth/x', message: 'Cannot find device "nope"' },
      { index: 2, owner: 'bridge/br0', message: 'Error: ipv4: Address already assigned.' },
      { index: 3, owner: 'route/r1', message: 'Error: Nexthop has invalid gateway.' },
    ],
    trailing: '',
  });
  assert.throws(() => parseBatchStderr('x\nCommand failed -:9\n', lines), /names no line/);
});

test('an abort (ip exits on an unparsable argument) is attributed by the quoted argument', () => {
  const lines = [
    line('bridge/br0', 'link', 'set', 'dev', 'br0', 'up'),
    line('bridge/x1', 'link', 'add', 'name', 'x1', 'type', 'bridge'),
    line('veth/p1', 'link', 'set', 'dev', 'hv1', 'master', 'nope'),
    line('bridge/br0', 'link', 'set', 'dev', 'br0', 'up'),
  ];
  const { failures, trailing } = parseBatchStderr(fixture('batch-abort.stderr'), lines);
  assert.deepEqual(failures, []);
  assert.equal(trailing, 'Error: argument "nope" is wrong: Device does not exist');
  const index = abortingLine(trailing, lines, -1);
  assert.equal(index, 2);
  assert.deepEqual(abortFailures(lines, 2, trailing), [
    { index: 2, owner: 'veth/p1', message: 'Error: argument "nope" is wrong: Device does not exist' },
    { index: 3, owner: 'bridge/br0', message: 'not run: ip -batch exited at line 3' },
  ]);
  // "netns" in 'Invalid "netns" value' is the keyword, not the argument
  const veth = [line('veth/v', 'link', 'add', 'name', 'v0', 'type', 'veth', 'peer', 'name', 'v1', 'netns', 'gone')];
  assert.equal(abortingLine('Error: argument "gone" is wrong: Invalid "netns" value', veth, -1), 0);
  assert.equal(abortingLine('Command line is not complete. Try option "help"', veth, -1), undefined);
  assert.equal(abortingLine('Error: argument "gone" is wrong: Invalid "netns" value', veth, 0), undefined);
});

test('classifyStderr reads the texts iproute2 6.1 prints', () => {
  const cases: Array<[string, string]> = [
    [fixture('batch-missing-netns.stderr'), 'netns-not-found'],
    ['Cannot remove namespace file "/run/netns/x": No such file or directory', 'netns-not-found'],
    ['Error: argument "x" is wrong: Invalid "netns" value', 'netns-not-found'],
    ['RTNETLINK answers: File exists', 'exists'],
    ['Cannot create namespace file "/run/netns/t1": File exists', 'exists'],
    ['Error: ipv6: address already assigned.', 'exists'],
    ['Cannot find device "nope"', 'not-found'],
    ['RTNETLINK answers: No such process', 'not-found'],
    ['Error: ipv4: Address not found.', 'not-found'],
    ['Error: argument "br9" is wrong: Device does not exist', 'not-found'],
    ['Error: Nexthop has invalid gateway.', 'unreachable'],
    ['RTNETLINK answers: No route to host', 'unreachable'],
    ['Error: Device for nexthop is not up.', 'unreachable'],
    ['RTNETLINK answers: Operation not supported', 'unsupported'],
    ['Error: Unknown device type.', 'unsupported'],
    ['Error: Attribute failed policy validation.', 'invalid'],
    ['Error: either "to" is duplicate, or "x" is a garbage.', 'invalid'],
    ['not run: ip -batch exited at line 3', 'not-run'],
    ['something new', 'unknown'],
  ];
  for (const [text, kind] of cases) assert.equal(classifyStderr(text), kind, text);
});

test('renderBatchArg writes plain words as is and quotes the way makeargs() reads', () => {
  assert.equal(renderBatchArg('netkeep:bridge/br0'), 'netkeep:bridge/br0');
  assert.equal(renderBatchArg(''), '""');
  assert.equal(renderBatchArg('a b'), '"a b"');
  assert.equal(renderBatchArg('tab\there'), '"tab\there"');
  assert.equal(renderBatchArg('say "hi"'), `'say "hi"'`);
  assert.equal(renderBatchArg("it's"), `"it's"`);
  for (const bad of ['a#b', 'back\\slash', 'new\nline', 'cr\r', 'nul\0', `both"'`]) {
    assert.throws(() => renderBatchArg(bad), BatchArgError, JSON.stringify(bad));
  }
});

test('renderBatch renders one line per BatchLine and rejects bad lines before anything runs', () => {
  assert.equal(
    renderBatch([line('a', 'link', 'set', 'dev', 'br0', 'alias', 'x y'), line('b', 'link', 'del', 'dev', 'v0')]),
    'link set dev br0 alias "x y"\nlink del dev v0\n',
  );
  assert.throws(() => renderBatch([line('a')]), /line is empty/);
  assert.throws(
    () => renderBatch([line('ok', 'link', 'del', 'dev', 'v0'), line('route/r9', 'route', 'add', '10.0.0.0/8#x')]),
    (err: unknown) => err instanceof BatchArgError && err.index === 1 && err.owner === 'route/r9',
  );
  assert.throws(() => renderBatch([line('big', ...Array.from({ length: 100 }, () => 'x'))]), /too many/);
});
