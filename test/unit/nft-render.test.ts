/**
 * The rendered `inet netkeep` transaction (issue 4), against a reviewed
 * golden file, and the properties a pass relies on: byte-identical output
 * for the same input, incremental work for one changed load balancer, and
 * the clean-up of what is no longer wanted. The kernel's side (the listing,
 * packets) is tested in test/kernel/loadbalancer.test.ts.
 *
 * Regenerate the golden file after a deliberate change with
 * `NETKEEP_UPDATE_GOLDEN=1 node --import tsx --test test/unit/nft-render.test.ts`, and review the diff.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { parseListing } from '../../src/kernel/nft/listing.js';
import { services, web } from '../support/lb-services.js';
import { backendChain, expectedObjects, intervals, nftDuration, objectNames, renderTable, serviceChain, tableObjects, type DesiredServicePort } from '../../src/reconcile/nft.js';

const GOLDEN = new URL('./fixtures/nft/services.nft', import.meta.url);

test('a set of load balancers renders as the reviewed golden transaction', () => {
  const script = renderTable(services);
  if (process.env.NETKEEP_UPDATE_GOLDEN === '1') writeFileSync(GOLDEN, script);
  assert.equal(script, readFileSync(GOLDEN, 'utf8'));
});

test('the same services in another order render byte-identical', () => {
  assert.equal(renderTable([...services].reverse()), renderTable(services));
});

test('one changed load balancer: only its chains are rewritten; no map element is written', () => {
  const existing = { chains: services.flatMap((s) => [serviceChain(s), ...s.backends.map((b) => backendChain(s, b))]), sets: [] };
  const changedWeb = { ...web, backends: web.backends.slice(1) };
  const next = [changedWeb, ...services.slice(1)];
  const script = renderTable(next, existing, services);
  assert.match(script, new RegExp(`flush chain inet netkeep ${serviceChain(web)}\\n`));
  assert.doesNotMatch(script, /flush chain inet netkeep svc-dns-udp-53/);
  assert.doesNotMatch(script, /add rule inet netkeep svc-sticky/);
  // The removed backend's chain is emptied, then deleted.
  const gone = backendChain(web, web.backends[0]!);
  assert.match(script, new RegExp(`flush chain inet netkeep ${gone}\\n[\\s\\S]*delete chain inet netkeep ${gone}\\n`));
  assert.doesNotMatch(script, /element|flush (map|set)/);
});

test('load balancers added and removed: only their map elements are added and deleted, before their chains go', () => {
  const existing = { chains: services.flatMap((s) => [serviceChain(s), ...s.backends.map((b) => backendChain(s, b))]), sets: [] };
  const added: DesiredServicePort = { ...web, name: 'api', owner: 'loadbalancers/api', vip: '10.96.0.40' };
  const next = [...services.filter((s) => s.name !== 'dns' && s.name !== 'web6'), added];
  const lines = renderTable(next, existing, services).split('\n');
  assert.deepEqual(lines.filter((l) => /element/.test(l)), [
    'delete element inet netkeep service-ips-v4 { 10.96.0.53 . udp . 53 }',
    'delete element inet netkeep service-ports-v4 { 10.96.0.53 . udp . 53 }',
    'add element inet netkeep service-ips-v4 { 10.96.0.40 . tcp . 80 : goto svc-api-tcp-80 }',
    'add element inet netkeep service-ports-v4 { 10.96.0.40 . tcp . 80 }',
    'delete element inet netkeep service-ips-v6 { fd00:96::10 . sctp . 80 }',
    'delete element inet netkeep service-ports-v6 { fd00:96::10 . sctp . 80 }',
  ]);
  const deleteChain = lines.indexOf('delete chain inet netkeep svc-dns-udp-53');
  assert.ok(deleteChain > lines.indexOf('delete element inet netkeep service-ips-v4 { 10.96.0.53 . udp . 53 }'));
  assert.doesNotMatch(lines.join('\n'), /flush (map|set)/);
});

test('RANDOM picks backend i with probability w_i / W: the rule chain reproduces the weights', () => {
  // Walk the rendered rules the way the kernel does, with every random draw enumerated.
  const rules = renderTable([web]).split('\n').filter((l) => l.startsWith(`add rule inet netkeep ${serviceChain(web)} `));
  const probability = new Map<string, number>();
  let reach = 1;
  for (const r of rules) {
    const m = /numgen random mod (\d+) < (\d+) goto (\S+)$/.exec(r) ?? /goto (\S+)$/.exec(r)!;
    const [p, chain] = m.length === 4 ? [Number(m[2]) / Number(m[1]), m[3]!] : [1, m[1]!];
    probability.set(chain, reach * p);
    reach *= 1 - p;
  }
  const want = web.backends.map((b) => b.weight / 5);
  assert.deepEqual(web.backends.map((b) => Number(probability.get(backendChain(web, b))!.toFixed(6))), want);
});

test('tableObjects names exactly the chains and sets a full rendering declares', () => {
  const sorted = (o: { chains: readonly string[]; sets: readonly string[] }) => ({ chains: [...o.chains].sort(), sets: [...o.sets].sort() });
  assert.deepEqual(sorted(tableObjects(services)), sorted(objectNames(expectedObjects(renderTable(services)).keys())));
});

test('expectedObjects: an object changes digest only when what is written to it changes', () => {
  const before = expectedObjects(renderTable(services));
  const moved = services.map((s) => (s.name === 'web' ? { ...s, backends: s.backends.slice(1) } : s));
  const after = expectedObjects(renderTable(moved));
  const changed = [...before.keys()].filter((k) => after.get(k) !== before.get(k)).sort();
  // web's chain, its dropped backend's chain (gone), and nothing of the other load balancers.
  assert.deepEqual(changed, [`chain ${backendChain(web, web.backends[0]!)}`, `chain ${serviceChain(web)}`]);
});

/** A listing as `nft -s list table inet netkeep` (nft 1.0.6) prints it. */
const LISTING = [
  'table inet netkeep {',
  '\tmap service-ips-v4 {',
  '\t\ttype ipv4_addr . inet_proto . inet_service : verdict',
  '\t\telements = { 10.96.0.53 . udp . 53 : goto svc-dns-udp-53,',
  '\t\t\t     10.96.0.10 . tcp . 80 : goto svc-web-tcp-80 }',
  '\t}',
  '',
  '\tset aff-sticky-tcp-80-1c62d738 {',
  '\t\ttype ipv4_addr',
  '\t\tsize 65535',
  '\t\tflags dynamic,timeout',
  '\t\ttimeout 10m',
  '\t\telements = { 10.0.0.5 timeout 10m expires 9m58s }',
  '\t}',
  '',
  '\tchain svc-web-tcp-80 {',
  '\t\tnumgen random mod 2 < 1 goto be-web-tcp-80-0fda80c3',
  '\t\tgoto be-web-tcp-80-31c62b67',
  '\t}',
  '}',
  '',
].join('\n');

test('parseListing: one digest per object; element order and affinity entries do not count, rules do', () => {
  const base = parseListing(LISTING);
  assert.deepEqual([...base.keys()], ['set service-ips-v4', 'set aff-sticky-tcp-80-1c62d738', 'chain svc-web-tcp-80']);
  const reordered = LISTING.replace(
    '{ 10.96.0.53 . udp . 53 : goto svc-dns-udp-53,\n\t\t\t     10.96.0.10 . tcp . 80 : goto svc-web-tcp-80 }',
    '{ 10.96.0.10 . tcp . 80 : goto svc-web-tcp-80,\n\t\t\t     10.96.0.53 . udp . 53 : goto svc-dns-udp-53 }',
  );
  assert.notEqual(reordered, LISTING);
  assert.deepEqual(parseListing(reordered), base);
  assert.deepEqual(parseListing(LISTING.replace('elements = { 10.0.0.5 timeout 10m expires 9m58s }', 'elements = { 10.0.0.7 }')), base);
  const edited = parseListing(LISTING.replace('\t\tgoto be-web-tcp-80-31c62b67\n', ''));
  assert.notEqual(edited.get('chain svc-web-tcp-80'), base.get('chain svc-web-tcp-80'));
  const lostElement = parseListing(LISTING.replace('10.96.0.53 . udp . 53 : goto svc-dns-udp-53,\n\t\t\t     ', ''));
  assert.notEqual(lostElement.get('set service-ips-v4'), base.get('set service-ips-v4'));
});

test('ROUND_ROBIN slices are the weights over their greatest common divisor: equal weights alternate', () => {
  const rr: DesiredServicePort = { ...web, algorithm: 'ROUND_ROBIN', backends: web.backends.map((b, i) => ({ ...b, weight: [4, 4, 8][i]! })) };
  const rule = renderTable([rr]).split('\n').find((l) => l.includes('numgen inc'))!;
  const [a, b, c] = rr.backends.map((x) => backendChain(rr, x));
  assert.equal(rule, `add rule inet netkeep ${serviceChain(rr)} numgen inc mod 4 vmap { 0 : goto ${a}, 1 : goto ${b}, 2-3 : goto ${c} }`);
});

test('nftDuration writes seconds as nft lists a timeout', () => {
  assert.deepEqual([600, 10800, 86400, 90, 90061, 1].map(nftDuration), ['10m', '3h', '1d', '1m30s', '1d1h1m1s', '1s']);
});

test('parseListing keeps only netkeep\'s table of a listing with several', () => {
  const other = ['table inet mine {', '\tmap service-ips-v4 {', '\t\ttype ipv4_addr . inet_proto . inet_service : verdict', '\t}', '}', ''].join('\n');
  assert.deepEqual(parseListing(other + LISTING), parseListing(LISTING));
});

test('intervals writes sourceRanges as nft lists an interval set: sorted, merged, prefixes where they are', () => {
  assert.deepEqual(intervals(4, ['10.60.0.0/16', '10.50.0.128/25', '10.50.0.0/25']), ['10.50.0.0/24', '10.60.0.0/16']);
  assert.deepEqual(intervals(4, ['10.50.2.0/24', '10.50.1.0/24', '10.50.1.128/25']), ['10.50.1.0-10.50.2.255']);
  assert.deepEqual(intervals(6, ['fd00:60::/48', 'fd00:50::/64']), ['fd00:50::/64', 'fd00:60::/48']);
  assert.deepEqual(intervals(4, ['0.0.0.0/0', '10.0.0.0/8']), ['0.0.0.0/0']);
  assert.deepEqual(intervals(4, ['10.50.0.11/32', '10.50.0.10/32', '10.50.0.12/32']), ['10.50.0.10-10.50.0.12']);
  assert.deepEqual(intervals(4, ['10.50.0.11/32', '10.50.0.10/32']), ['10.50.0.10/31']);
  assert.deepEqual(intervals(6, ['fd00:50::11/128']), ['fd00:50::11']);
});
