/**
 * NftCliClient against nft 1.0 and the kernel, inside a throwaway sandbox
 * (test/support/sandbox.ts): what netkeep expects a rendering to list as
 * (expectedObjects) is what nft lists, object by object, for every kind of
 * rule the renderer writes, after a whole write and after an incremental
 * one. If nft listed something otherwise, every whole-table check would
 * take it for a change by hand.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { execa } from 'execa';
import { NftCliClient } from '../../src/kernel/nft/client.js';
import { SUMMARY_OBJECTS } from '../../src/kernel/nft/types.js';
import { expectedObjects, objectNames, renderDeleteTable, renderTable, tableObjects, type DesiredServicePort } from '../../src/reconcile/nft.js';
import { services, web } from '../support/lb-services.js';
import { sandbox } from '../support/sandbox.js';

const sb = await sandbox(import.meta.url);
const skip = sb.skip;
const nft = new NftCliClient();

/** More of what users write: several and adjacent sourceRanges, long affinity timeouts, IPv6 ranges, weights. */
const more: DesiredServicePort[] = [
  ...services,
  { ...web, name: 'ranges', owner: 'loadbalancers/ranges', vip: '10.96.0.60', sourceRanges: ['10.60.0.0/16', '10.50.0.128/25', '10.50.0.0/25'] },
  { ...web, name: 'spans', owner: 'loadbalancers/spans', vip: '10.96.0.63', sourceRanges: ['10.50.2.0/24', '10.50.1.0/24', '10.50.1.128/25'] },
  { ...web, name: 'hosts', owner: 'loadbalancers/hosts', vip: '10.96.0.64', sourceRanges: ['10.50.0.11/32'] },
  { ...web, name: 'hosts2', owner: 'loadbalancers/hosts2', vip: '10.96.0.65', sourceRanges: ['10.50.0.11/32', '10.50.0.10/32', '10.50.0.20/32'] },
  { ...web, name: 'hosts3', owner: 'loadbalancers/hosts3', vip: '10.96.0.66', sourceRanges: ['10.50.0.11/32', '10.50.0.10/32', '10.50.0.12/32'] },
  { ...web, name: 'host6', owner: 'loadbalancers/host6', family: 6, vip: 'fd00:96::65', sourceRanges: ['fd00:50::11/128', 'fd00:50::12/127'], backends: [] },
  { ...web, name: 'sticky3h', owner: 'loadbalancers/sticky3h', vip: '10.96.0.61', affinitySeconds: 10800, algorithm: 'ROUND_ROBIN' },
  { ...web, name: 'stickyodd', owner: 'loadbalancers/stickyodd', vip: '10.96.0.62', protocol: 'UDP', affinitySeconds: 90061 },
  {
    ...web, name: 'six', owner: 'loadbalancers/six', family: 6, vip: 'fd00:96::61', sourceRanges: ['fd00:50::/64', 'fd00:60::/48'],
    backends: [{ address: 'fd00:50::11', port: 8080, weight: 7 }, { address: 'fd00:50::12', port: 9090, weight: 100 }],
  },
];

async function listed(): Promise<Map<string, string>> {
  const observed = await nft.observe('');
  assert.ok(observed, 'the table exists');
  return observed.objects;
}

function assertSame(actual: Map<string, string>, expected: Map<string, string>) {
  const differ = [...new Set([...actual.keys(), ...expected.keys()])].filter((k) => actual.get(k) !== expected.get(k)).sort();
  assert.deepEqual(differ, [], 'objects nft lists otherwise than expected');
}

test('a whole write lists exactly as expectedObjects says, and the summary is its digests of the maps and prerouting', { skip }, async () => {
  const script = renderTable(more);
  await nft.apply('', script);
  const expected = expectedObjects(script);
  assertSame(await listed(), expected);
  const summary = await nft.summarize('');
  assert.deepEqual([...summary!.keys()], [...SUMMARY_OBJECTS]);
  for (const [key, digest] of summary!) assert.equal(digest, expected.get(key), key);
});

test('an incremental write lists as a whole rendering of the new state', { skip }, async () => {
  const next = more
    .filter((s) => s.name !== 'dns')
    .map((s) => (s.name === 'web' ? { ...s, backends: s.backends.slice(1) } : s.name === 'sticky' ? { ...s, affinitySeconds: 60 } : s));
  next.push({ ...web, name: 'added', owner: 'loadbalancers/added', vip: '10.96.0.70' });
  await nft.apply('', renderTable(next, tableObjects(more), more));
  assertSame(await listed(), expectedObjects(renderTable(next)));
});

test('hand changes show: a flushed table in the summary, a changed chain in the listing', { skip }, async () => {
  // Back to `more`, whole, as the reconciler does after a hand change: what is not wanted is deleted.
  await nft.apply('', renderTable(more, objectNames((await listed()).keys())));
  const expected = expectedObjects(renderTable(more));
  assertSame(await listed(), expected);
  const summary = await nft.summarize('');
  await execa('nft', ['insert', 'rule', 'inet', 'netkeep', 'svc-web-tcp-80', 'ip', 'saddr', '10.50.0.10', 'drop']);
  const changed = await listed();
  assert.notEqual(changed.get('chain svc-web-tcp-80'), expected.get('chain svc-web-tcp-80'));
  assert.deepEqual(await nft.summarize(''), summary, 'a service chain is not in the summary');
  await execa('nft', ['flush', 'table', 'inet', 'netkeep']);
  assert.notDeepEqual(await nft.summarize(''), summary);
  await nft.apply('', renderDeleteTable());
  assert.equal(await nft.summarize(''), undefined);
  assert.equal(await nft.observe(''), undefined);
});

test('ensureForwarding reads and turns on both families in a named namespace, in one process each way', { skip }, async () => {
  await execa('ip', ['netns', 'add', 'fwd']);
  try {
    await execa('ip', ['netns', 'exec', 'fwd', 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=0', 'net.ipv6.conf.all.forwarding=0']);
    assert.deepEqual(await nft.ensureForwarding('fwd', [4, 6]), ['net.ipv4.ip_forward', 'net.ipv6.conf.all.forwarding']);
    assert.deepEqual(await nft.ensureForwarding('fwd', [4, 6]), []);
    const { stdout } = await execa('ip', ['netns', 'exec', 'fwd', 'sysctl', '-n', 'net.ipv4.ip_forward', 'net.ipv6.conf.all.forwarding']);
    assert.equal(stdout, '1\n1');
  } finally {
    await execa('ip', ['netns', 'del', 'fwd']);
  }
});
