/**
 * IprouteClient against the real kernel, inside a throwaway sandbox
 * (test/support/sandbox.ts), and FakeIpClient against the same lines: every
 * step runs through both and the observed state must be the same (parity),
 * which is what keeps the fake honest.
 *
 * The tests run in order and build on each other's state in the one sandbox
 * of this file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ipJson, ping, sandbox, sandboxFacts, type SandboxFacts } from '../support/sandbox.js';
import { IprouteClient } from '../../src/kernel/ip/client.js';
import { FakeIpClient } from '../../src/kernel/ip/fake.js';
import { BatchArgError, NetnsNotFoundError } from '../../src/kernel/errors.js';
import { ROUTE_PROTOCOL, type BatchFailure, type BatchLine, type ObservedNetns } from '../../src/kernel/ip/types.js';

const sb = await sandbox(import.meta.url);
const skip = sb.skip;
const atStart: SandboxFacts | undefined = skip === false ? await sandboxFacts() : undefined;

const real = new IprouteClient();
const fake = new FakeIpClient();

/** Batch lines from "ip" command texts (none of these need quoting). */
const lines = (owner: string, ...cmds: string[]): BatchLine[] => cmds.map((c) => ({ owner, args: c.split(' ') }));

/** Runs the lines through the kernel and the fake; their failures must agree. */
async function both(netns: string, batch: BatchLine[]): Promise<BatchFailure[]> {
  const failures = await real.batch(netns, batch);
  assert.deepEqual(await fake.batch(netns, batch), failures, 'the fake fails the same lines the same way');
  return failures;
}

/**
 * What the fake promises to match: everything but IPv6 link-local addresses
 * and their fe80::/64 routes (the kernel makes them on its own), with routes
 * in a fixed order.
 */
function comparable(obs: ObservedNetns): unknown {
  return {
    netns: obs.netns,
    links: obs.links.map((l) => ({ ...l, addresses: l.addresses.filter((a) => a.scope !== 'link') })),
    routes: obs.routes.filter((r) => !r.destination.startsWith('fe80:')).map((r) => JSON.stringify(r)).sort(),
  };
}

async function assertParity(...namespaces: string[]): Promise<void> {
  for (const netns of namespaces) {
    assert.deepEqual(comparable(await fake.observe(netns)), comparable(await real.observe(netns)), `netns ${JSON.stringify(netns)}`);
  }
  assert.deepEqual(await fake.listNetns(), await real.listNetns());
}

/** Polls until `check` holds (the kernel applies carrier changes from a work queue). */
async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const PROTO = String(ROUTE_PROTOCOL);

test('the sandbox is its own network namespace with a private /run/netns', { skip }, async () => {
  const facts = await sandboxFacts();
  assert.notEqual(facts.netns, facts.outerNetns);
  if (facts.initNetns !== '') assert.notEqual(facts.netns, facts.initNetns);
  assert.equal(facts.runNetnsFsType, 'tmpfs');
  assert.deepEqual(await real.listNetns(), []);
});

test('one batch makes a namespace, a bridge, a veth pair across namespaces, addresses and a proto 77 route', { skip }, async () => {
  assert.deepEqual(
    await both('', [
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
      ...lines('route/r1', `route add 10.20.0.0/16 via 10.10.0.2 proto ${PROTO}`),
    ]),
    [],
  );
  assert.deepEqual(
    await both('pod1', [
      ...lines('namespace/pod1', 'link set dev lo up'),
      ...lines('veth/p1', 'link set dev eth0 alias netkeep:veth/p1 up', 'addr add 10.10.0.2/24 dev eth0', 'addr add fd00:10::2/64 dev eth0'),
      ...lines('route/r2', `route add default via 10.10.0.1 proto ${PROTO}`, `route add fd00:20::/64 via fd00:10::1 proto ${PROTO}`),
    ]),
    [],
  );

  assert.deepEqual(await real.listNetns(), ['pod1']);
  const host = await real.observe('');
  const br0 = host.links.find((l) => l.ifname === 'br0');
  const hv1 = host.links.find((l) => l.ifname === 'hv1');
  assert.deepEqual(
    { ...br0, addresses: br0?.addresses.filter((a) => a.scope === 'global') },
    {
      ifindex: 2, ifname: 'br0', kind: 'bridge', alias: 'netkeep:bridge/br0', mtu: 1400, mac: '02:00:0a:00:00:01',
      up: true, master: '', peerIfindex: 0, vlanFiltering: false, hairpin: false,
      addresses: [
        { family: 4, address: '10.10.0.1', prefixLength: 24, scope: 'global' },
        { family: 6, address: 'fd00:10::1', prefixLength: 64, scope: 'global' },
      ],
    },
  );
  assert.equal(hv1?.kind, 'veth');
  assert.equal(hv1?.master, 'br0');
  assert.equal(hv1?.ifindex, 3);
  assert.equal(hv1?.peerIfindex, 2, "eth0's ifindex in pod1");
  assert.deepEqual(
    host.routes.find((r) => r.destination === '10.20.0.0/16'),
    { family: 4, destination: '10.20.0.0/16', via: '10.10.0.2', device: 'br0', metric: 0, protocol: PROTO },
  );

  const pod = await real.observe('pod1');
  const eth0 = pod.links.find((l) => l.ifname === 'eth0');
  assert.equal(eth0?.peerIfindex, 3);
  assert.equal(eth0?.alias, 'netkeep:veth/p1');
  assert.deepEqual(
    pod.routes.filter((r) => r.protocol === PROTO),
    [
      { family: 4, destination: 'default', via: '10.10.0.1', device: 'eth0', metric: 0, protocol: PROTO },
      { family: 6, destination: 'fd00:20::/64', via: 'fd00:10::1', device: 'eth0', metric: 1024, protocol: PROTO },
    ],
  );
  assert.ok(await ping('pod1', '10.10.0.1'), 'the pod reaches the bridge through the veth');
  assert.ok(await ping('', '10.10.0.2'), 'the host reaches the pod');
});

test('parity: the fake observes the same state as the kernel after the same batches', { skip }, async () => {
  await assertParity('', 'pod1');
  // An IPv6 gateway without `dev` needs carrier on br0, which the kernel
  // turns on from its link-watch queue once hv1's peer is up.
  await waitFor('br0 to lose "linkdown"', async () => {
    const routes = (await ipJson('', ['-6', 'route', 'show', 'dev', 'br0'])) as Array<{ flags?: string[] }>;
    return routes.length > 0 && routes.every((r) => !(r.flags ?? []).includes('linkdown'));
  });
  assert.deepEqual(await both('', lines('route/r3', `route add fd00:30::/64 via fd00:10::2 proto ${PROTO}`)), []);
  await assertParity('');
});

test('parity: a bridge takes its port\'s MTU and MAC unless they were set; link down drops routes and IPv6 addresses', { skip }, async () => {
  assert.deepEqual(
    await both('', [
      ...lines('bridge/auto', 'link add name br-auto mtu 1400 type bridge'),
      ...lines('veth/auto', 'link add name va mtu 1500 address 02:00:0a:00:02:01 type veth peer name vb address 02:00:0a:00:02:02', 'link set dev va master br-auto'),
      ...lines('bridge/br0', 'link set dev br0 down'),
    ]),
    [],
  );
  const auto = (await real.observe('')).links.find((l) => l.ifname === 'br-auto');
  assert.equal(auto?.mtu, 1500, 'an mtu given to `link add` does not pin a bridge');
  assert.equal(auto?.mac, '02:00:0a:00:02:01');
  await assertParity('', 'pod1');
  assert.deepEqual(await both('', lines('bridge/br0', 'link set dev br0 up', 'addr add fd00:10::1/64 dev br0')), []);
  await assertParity('', 'pod1');
});

test('a failing line is attributed to its owner and -force runs the lines after it', { skip }, async () => {
  const failures = await both('', [
    ...lines('bridge/dup', 'link add name br0 type bridge'),
    ...lines('bridge/next', 'link add name br-next address 02:00:0a:00:03:01 type bridge'),
    ...lines('bridge/br0', 'addr add 10.10.0.1/24 dev br0'),
    ...lines('route/bad', 'route add 10.99.0.0/16 via 10.77.0.1', 'route del 10.98.0.0/16'),
    ...lines('veth/gone', 'link set dev gone0 up'),
  ]);
  assert.deepEqual(failures, [
    { index: 0, owner: 'bridge/dup', message: 'RTNETLINK answers: File exists' },
    { index: 2, owner: 'bridge/br0', message: 'Error: ipv4: Address already assigned.' },
    { index: 3, owner: 'route/bad', message: 'Error: Nexthop has invalid gateway.' },
    { index: 4, owner: 'route/bad', message: 'RTNETLINK answers: No such process' },
    { index: 5, owner: 'veth/gone', message: 'Cannot find device "gone0"' },
  ]);
  assert.ok((await real.observe('')).links.some((l) => l.ifname === 'br-next'));
  await assertParity('');
});

test('a line ip cannot parse ends the batch: it is reported, and the rest as not run', { skip }, async () => {
  const failures = await both('', [
    ...lines('bridge/next', 'link set dev br-next up'),
    ...lines('veth/p1', 'link set dev hv1 master nope'),
    ...lines('bridge/never', 'link add name br-never type bridge'),
    ...lines('veth/v9', 'link add name v9 type veth peer name v9p netns gone'),
  ]);
  assert.deepEqual(failures, [
    { index: 1, owner: 'veth/p1', message: 'Error: argument "nope" is wrong: Device does not exist' },
    { index: 2, owner: 'bridge/never', message: 'not run: ip -batch exited at line 2' },
    { index: 3, owner: 'veth/v9', message: 'not run: ip -batch exited at line 2' },
  ]);
  const host = await real.observe('');
  assert.equal(host.links.find((l) => l.ifname === 'br-next')?.up, true, 'the line before ran');
  assert.equal(host.links.some((l) => l.ifname === 'br-never'), false);
  await assertParity('');
});

test('arguments with spaces are quoted for the batch tokenizer; unsafe ones are refused before spawning', { skip }, async () => {
  const alias = 'netkeep:bridge/with "quotes" and spaces';
  assert.deepEqual(await real.batch('', [{ owner: 'bridge/next', args: ['link', 'set', 'dev', 'br-next', 'alias', alias] }]), []);
  assert.equal((await real.observe('')).links.find((l) => l.ifname === 'br-next')?.alias, alias);
  assert.deepEqual(await real.batch('', [{ owner: 'bridge/next', args: ['link', 'set', 'dev', 'br-next', 'alias', ''] }]), []);
  assert.equal((await real.observe('')).links.find((l) => l.ifname === 'br-next')?.alias, '');
  await assert.rejects(
    real.batch('', [
      { owner: 'bridge/x', args: ['link', 'add', 'name', 'br-x', 'type', 'bridge'] },
      { owner: 'bridge/x', args: ['link', 'set', 'dev', 'br-x', 'alias', 'a#comment'] },
    ]),
    BatchArgError,
  );
  assert.equal((await real.observe('')).links.some((l) => l.ifname === 'br-x'), false, 'nothing ran');
});

test('apply() writes and reads back in one process: the read-back equals a fresh observe()', { skip }, async () => {
  const batch = lines('veths/ap', 'netns add apns', 'link add name ap0 type veth peer name ap1 netns apns', 'link set dev ap0 up', 'addr add 10.77.0.1/24 dev ap0');
  const res = await real.apply('', batch);
  assert.deepEqual(res.failures, []);
  assert.ok(res.observed, 'a batch that ran to the end reads the namespace back');
  assert.deepEqual(comparable(res.observed), comparable(await real.observe('')));
  const ap0 = res.observed.links.find((l) => l.ifname === 'ap0')!;
  assert.deepEqual(ap0.addresses.filter((a) => a.family === 4).map((a) => a.address), ['10.77.0.1']);
  // A failed line is reported; the read-back still runs after it.
  const failed = await real.apply('apns', lines('veths/ap', 'link set dev nope up', 'link set dev ap1 up'));
  assert.deepEqual(failed.failures.map((f) => [f.index, f.owner]), [[0, 'veths/ap']]);
  assert.equal(failed.observed?.links.find((l) => l.ifname === 'ap1')?.up, true);
  await real.batch('', lines('veths/ap', 'link del dev ap0', 'netns del apns'));
});

test('a missing namespace is NetnsNotFoundError for observe and batch', { skip }, async () => {
  await assert.rejects(real.observe('nope'), (err: unknown) => err instanceof NetnsNotFoundError && err.netns === 'nope');
  await assert.rejects(real.batch('nope', lines('x', 'link set dev lo up')), NetnsNotFoundError);
  await assert.rejects(fake.observe('nope'), NetnsNotFoundError);
  assert.deepEqual(await real.batch('nope', []), [], 'an empty batch spawns nothing, so it cannot fail');
});

test('deleting the namespace deletes the host end of its veth', { skip }, async () => {
  assert.deepEqual(await both('', lines('namespace/pod1', 'netns del pod1')), []);
  // The kernel tears the namespace down asynchronously (cleanup_net()).
  await waitFor('hv1 to go', async () => !(await real.observe('')).links.some((l) => l.ifname === 'hv1'));
  await assertParity('');
});

test('the host did not change: its /run/netns and links are as before this file ran', { skip }, async () => {
  const now = await sandboxFacts();
  assert.deepEqual(now.hostRunNetns, atStart?.hostRunNetns);
  assert.deepEqual(now.hostLinks, atStart?.hostLinks);
  assert.equal(now.hostLinks.includes('br0'), false);
});
