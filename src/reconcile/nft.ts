/**
 * The `inet netkeep` table of one namespace, rendered from its load
 * balancers (issue 4). Pure: desired services in, one `nft -f` script out.
 *
 * Data plane, after kube-proxy's nftables mode:
 * - `service-ips-v4`/`-v6`: a verdict map keyed on destination address,
 *   protocol and port (`ip daddr . meta l4proto . th dport`) that sends a new
 *   connection to its service chain, from prerouting (other namespaces on a
 *   bridge, routed clients) and from output (processes where the rules live).
 *   A packet costs one lookup however many services there are.
 * - `svc-<lb>-<proto>-<port>`: `sourceRanges` first (others `return`
 *   undisturbed), then client-IP affinity (a dynamic set per backend, with a
 *   timeout), then the pick: RANDOM is a run of `numgen random mod <weight
 *   left> < <weight> goto <backend>` rules (backend i is taken with
 *   probability w_i / (w_i + … + w_n), which is w_i / W overall), with no set
 *   to create; ROUND_ROBIN is one `numgen inc mod <W> vmap` over slices the
 *   size of the weights (one counter must see every connection).
 * - `be-<lb>-<proto>-<port>-<hash>`: marks the hairpin case (a backend
 *   connecting to its own VIP) for masquerade, records affinity, DNATs.
 * - `refuse`, hooked at prerouting and output after DNAT: a packet still
 *   addressed to a VIP:port was not DNATed (no backends, or a client outside
 *   `sourceRanges`) and is rejected at once (TCP reset, ICMP port
 *   unreachable), never dropped silently nor routed elsewhere.
 *
 * A pass declares the table, its maps and base chains (an existing object is
 * left as it is, so affinity entries survive), declares, flushes and fills
 * the chains of every service port that changed since `previous`, adds and
 * deletes the map elements that changed since then (without `previous`:
 * every chain, and the maps flushed and filled whole), and deletes the
 * chains and sets no load balancer needs any more, all in one atomic
 * transaction: repeated passes never duplicate a rule or an element, and
 * one changed load balancer costs in proportion to its own rules.
 */
import { createHash } from 'node:crypto';
import type { Algorithm, Protocol } from '../domain/loadbalancer.js';
import { BITS, formatAddress, parseNetwork } from '../ipam/arith.js';
import { elementsOfLine, objectDigest, objectKey } from '../kernel/nft/listing.js';
import { NFT_TABLE } from '../kernel/nft/types.js';
import type { OwnerRef } from './desired.js';

/** The meta mark bit that asks nat-postrouting to masquerade (kube-proxy's 0x4000). */
export const MASQUERADE_MARK = '0x00004000';

export interface DesiredBackend {
  address: string;
  /** The port on the backend for this service port. */
  port: number;
  weight: number;
}

/** One VIP:port/protocol of a load balancer, with what it spreads over. */
export interface DesiredServicePort {
  owner: OwnerRef;
  /** The load balancer's name. */
  name: string;
  family: 4 | 6;
  vip: string;
  protocol: Protocol;
  port: number;
  backends: DesiredBackend[];
  algorithm: Algorithm;
  /** Client-IP affinity timeout in seconds; 0 for none. */
  affinitySeconds: number;
  sourceRanges: string[];
}

/** What exists in the table now, so that what is no longer wanted can be deleted. */
export interface ExistingObjects {
  chains: readonly string[];
  sets: readonly string[];
}

const STATIC_SETS = ['service-ips-v4', 'service-ips-v6', 'service-ports-v4', 'service-ports-v6'];

function short(...parts: (string | number)[]): string {
  return createHash('sha256').update(parts.join('\0')).digest('hex').slice(0, 8);
}

export function serviceChain(s: DesiredServicePort): string {
  return `svc-${s.name}-${s.protocol.toLowerCase()}-${s.port}`;
}

/** A backend's chain: named by a hash of its address and port, so reordering backends renames nothing. */
export function backendChain(s: DesiredServicePort, b: DesiredBackend): string {
  return `be-${s.name}-${s.protocol.toLowerCase()}-${s.port}-${short(b.address, b.port)}`;
}

/** A backend's affinity set; the timeout is part of the name, since a set's timeout cannot change in place. */
export function affinitySet(s: DesiredServicePort, b: DesiredBackend): string {
  return `aff-${s.name}-${s.protocol.toLowerCase()}-${s.port}-${short(b.address, b.port, s.affinitySeconds)}`;
}

/** Seconds as nft writes a duration: 600 → `10m`, 10800 → `3h`, 90061 → `1d1h1m1s`. */
export function nftDuration(seconds: number): string {
  const parts: Array<[number, string]> = [
    [Math.floor(seconds / 86_400), 'd'],
    [Math.floor((seconds % 86_400) / 3600), 'h'],
    [Math.floor((seconds % 3600) / 60), 'm'],
    [seconds % 60, 's'],
  ];
  return parts.filter(([n]) => n > 0).map(([n, unit]) => `${n}${unit}`).join('') || '0s';
}

/**
 * CIDRs as nft lists them in an interval set: sorted, overlapping and
 * adjacent ones merged, each as a prefix where it is one (a host without
 * `/32` or `/128`), else `a-b`.
 */
export function intervals(family: 4 | 6, cidrs: readonly string[]): string[] {
  const sorted = cidrs.map((c) => parseNetwork(c)!).sort((a, b) => (a.first < b.first ? -1 : a.first > b.first ? 1 : 0));
  const merged: Array<{ first: bigint; last: bigint }> = [];
  for (const n of sorted) {
    const top = merged.at(-1);
    if (top && n.first <= top.last + 1n) top.last = n.last > top.last ? n.last : top.last;
    else merged.push({ first: n.first, last: n.last });
  }
  return merged.map(({ first, last }) => {
    const size = last - first + 1n;
    const aligned = (size & (size - 1n)) === 0n && first % size === 0n;
    if (!aligned) return `${formatAddress(family, first)}-${formatAddress(family, last)}`;
    const prefix = BITS[family] - (size.toString(2).length - 1);
    return prefix === BITS[family] ? formatAddress(family, first) : `${formatAddress(family, first)}/${prefix}`;
  });
}

/** An anonymous set as nft lists it: one element bare, more in braces. */
function anonymousSet(elements: readonly string[]): string {
  return elements.length === 1 ? elements[0]! : `{ ${elements.join(', ')} }`;
}

function ipKeyword(family: 4 | 6): 'ip' | 'ip6' {
  return family === 4 ? 'ip' : 'ip6';
}

function hostport(family: 4 | 6, address: string, port: number): string {
  return family === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

/** The pick of a backend among `s.backends` (not empty), as rules of the service chain. */
function pickRules(s: DesiredServicePort): string[] {
  if (s.backends.length === 1) return [`goto ${backendChain(s, s.backends[0]!)}`];
  if (s.algorithm === 'ROUND_ROBIN') {
    const { total, entries } = slices(s);
    return [`numgen inc mod ${total} vmap { ${entries.join(', ')} }`];
  }
  let left = s.backends.reduce((n, b) => n + b.weight, 0);
  return s.backends.map((b, i) => {
    const rule = i === s.backends.length - 1 ? `goto ${backendChain(s, b)}` : `numgen random mod ${left} < ${b.weight} goto ${backendChain(s, b)}`;
    left -= b.weight;
    return rule;
  });
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/**
 * The `numgen … vmap` slices: backend i owns weight_i / g consecutive
 * values, g the weights' greatest common divisor, so that equal weights
 * alternate (2:2 is 1:1) rather than come in runs.
 */
function slices(s: DesiredServicePort): { total: number; entries: string[] } {
  const g = s.backends.reduce((d, b) => gcd(d, b.weight), 0);
  let next = 0;
  const entries = s.backends.map((b) => {
    const from = next;
    const size = b.weight / g;
    next += size;
    const range = size === 1 ? `${from}` : `${from}-${next - 1}`;
    return `${range} : goto ${backendChain(s, b)}`;
  });
  return { total: next, entries };
}

/** Every chain a set of service ports needs, by name. */
function wanted(services: readonly DesiredServicePort[]): { chains: string[] } {
  return { chains: services.flatMap((s) => [serviceChain(s), ...s.backends.map((b) => backendChain(s, b))]) };
}

/** Service ports in a stable order (name, protocol, port): sorted input renders byte-identical output. */
export function sortServices(services: readonly DesiredServicePort[]): DesiredServicePort[] {
  return [...services].sort((a, b) =>
    a.name !== b.name ? (a.name < b.name ? -1 : 1) : a.protocol !== b.protocol ? (a.protocol < b.protocol ? -1 : 1) : a.port - b.port,
  );
}

const BASE_CHAINS: Array<[string, string]> = [
  ['nat-prerouting', 'type nat hook prerouting priority dstnat; policy accept;'],
  // nft 1.0.6 knows no `dstnat` keyword for the output hook: -100 is NF_IP_PRI_NAT_DST.
  ['nat-output', 'type nat hook output priority -100; policy accept;'],
  ['nat-postrouting', 'type nat hook postrouting priority srcnat; policy accept;'],
  // Right after DNAT (dstnat = -100), before routing: a refused packet never reaches the
  // forward path, where a client on the VIP's own link would also be sent an
  // ICMP redirect, which spends the per-host ICMP rate limit (inet_peer)
  // that the port unreachable then hits.
  ['filter-prerouting', 'type filter hook prerouting priority dstnat + 10; policy accept;'],
  ['filter-output', 'type filter hook output priority filter; policy accept;'],
];
const HELPER_CHAINS = ['refuse', 'reject-service'];

/**
 * The whole-table transaction for the service ports of one namespace.
 * Sorted input gives byte-identical output. `existing` names what the table
 * holds now; chains and sets in it that are no longer wanted are deleted.
 */
export function renderTable(
  services: readonly DesiredServicePort[],
  existing: ExistingObjects = { chains: [], sets: [] },
  previous: readonly DesiredServicePort[] = [],
): string {
  const sorted = sortServices(services);
  const { chains } = wanted(sorted);
  const existingChains = new Set(existing.chains);
  const before = new Set(previous.map((p) => JSON.stringify(p)));
  // A service port whose chains are in the table as `previous` wrote them is left alone.
  const changed = sorted.filter(
    (s) => !before.has(JSON.stringify(s)) || ![serviceChain(s), ...s.backends.map((b) => backendChain(s, b))].every((c) => existingChains.has(c)),
  );
  const affinitySets = sorted
    .filter((s) => s.affinitySeconds > 0)
    .flatMap((s) => s.backends.map((b) => ({ s, b, name: affinitySet(s, b) })));
  const changedSets = changed
    .filter((s) => s.affinitySeconds > 0)
    .flatMap((s) => s.backends.map((b) => ({ s, b, name: affinitySet(s, b) })));
  const changedChains = wanted(changed).chains;
  const out: string[] = [];

  // 1. Declare everything (a no-op for what exists).
  out.push(`table ${NFT_TABLE} {`);
  out.push('\tmap service-ips-v4 {', '\t\ttype ipv4_addr . inet_proto . inet_service : verdict', '\t}');
  out.push('\tmap service-ips-v6 {', '\t\ttype ipv6_addr . inet_proto . inet_service : verdict', '\t}');
  out.push('\tset service-ports-v4 {', '\t\ttype ipv4_addr . inet_proto . inet_service', '\t}');
  out.push('\tset service-ports-v6 {', '\t\ttype ipv6_addr . inet_proto . inet_service', '\t}');
  for (const { s, name } of changedSets) {
    // As nft lists it: the size it gives a dynamic set anyway, the timeout in its d/h/m/s form.
    out.push(`\tset ${name} {`, `\t\ttype ${s.family === 4 ? 'ipv4_addr' : 'ipv6_addr'}`, '\t\tsize 65535', '\t\tflags dynamic,timeout', `\t\ttimeout ${nftDuration(s.affinitySeconds)}`, '\t}');
  }
  for (const [name, hook] of BASE_CHAINS) out.push(`\tchain ${name} {`, `\t\t${hook}`, '\t}');
  for (const name of [...HELPER_CHAINS, ...changedChains]) out.push(`\tchain ${name} {`, '\t}');
  out.push('}');

  // 2. Empty the chains to rewrite (and, without `previous`, the maps), then fill them again.
  const incremental = previous.length > 0;
  if (!incremental) for (const name of STATIC_SETS) out.push(`flush ${name.startsWith('service-ips') ? 'map' : 'set'} ${NFT_TABLE} ${name}`);
  const keep = new Set([...chains, ...HELPER_CHAINS, ...BASE_CHAINS.map(([n]) => n)]);
  const stale = existing.chains.filter((c) => !keep.has(c));
  for (const name of [...BASE_CHAINS.map(([n]) => n), ...HELPER_CHAINS, ...changedChains, ...stale]) out.push(`flush chain ${NFT_TABLE} ${name}`);

  const rule = (chain: string, text: string) => out.push(`add rule ${NFT_TABLE} ${chain} ${text}`);
  for (const chain of ['nat-prerouting', 'nat-output']) {
    rule(chain, 'ip daddr . meta l4proto . th dport vmap @service-ips-v4');
    rule(chain, 'ip6 daddr . meta l4proto . th dport vmap @service-ips-v6');
  }
  rule('nat-postrouting', `meta mark & ${MASQUERADE_MARK} == ${MASQUERADE_MARK} meta mark set meta mark ^ ${MASQUERADE_MARK} masquerade`);
  rule('refuse', 'ip daddr . meta l4proto . th dport @service-ports-v4 goto reject-service');
  rule('refuse', 'ip6 daddr . meta l4proto . th dport @service-ports-v6 goto reject-service');
  rule('reject-service', 'meta l4proto tcp reject with tcp reset');
  // `reject` in an inet table is ICMP(v6) port unreachable, and nft lists it so.
  rule('reject-service', 'reject');
  for (const chain of ['filter-prerouting', 'filter-output']) rule(chain, 'jump refuse');

  for (const s of changed) {
    const ip = ipKeyword(s.family);
    const proto = s.protocol.toLowerCase();
    const svc = serviceChain(s);
    if (s.sourceRanges.length > 0) rule(svc, `${ip} saddr != ${anonymousSet(intervals(s.family, s.sourceRanges))} return`);
    if (s.affinitySeconds > 0) for (const b of s.backends) rule(svc, `${ip} saddr @${affinitySet(s, b)} goto ${backendChain(s, b)}`);
    if (s.backends.length > 0) for (const r of pickRules(s)) rule(svc, r);
    for (const b of s.backends) {
      const be = backendChain(s, b);
      // Hairpin: a backend reaching its own VIP must see the reply come from the VIP, so its source is masqueraded.
      rule(be, `${ip} saddr ${b.address} meta mark set meta mark | ${MASQUERADE_MARK}`);
      if (s.affinitySeconds > 0) rule(be, `update @${affinitySet(s, b)} { ${ip} saddr }`);
      rule(be, `meta l4proto ${proto} dnat ${ip} to ${hostport(s.family, b.address, b.port)}`);
    }
  }

  // The maps: all elements after a flush; else only those that changed since `previous`, as kube-proxy does.
  const key = (s: DesiredServicePort) => `${s.vip} . ${s.protocol.toLowerCase()} . ${s.port}`;
  const elements = (list: readonly DesiredServicePort[], family: 4 | 6) =>
    new Map(list.filter((s) => s.family === family).map((s) => [key(s), serviceChain(s)]));
  const writeElements = (verb: 'add' | 'delete', set: string, items: string[]) => {
    if (items.length > 0) out.push(`${verb} element ${NFT_TABLE} ${set} { ${items.join(', ')} }`);
  };
  for (const family of [4, 6] as const) {
    const was = elements(previous, family);
    const is = elements(sorted, family);
    const moved = [...was].filter(([k, chain]) => is.has(k) && is.get(k) !== chain).map(([k]) => k);
    const gone = [...was.keys()].filter((k) => !is.has(k));
    const added = [...is].filter(([k, chain]) => was.get(k) !== chain);
    writeElements('delete', `service-ips-v${family}`, [...gone, ...moved]);
    writeElements('delete', `service-ports-v${family}`, gone);
    writeElements('add', `service-ips-v${family}`, added.map(([k, chain]) => `${k} : goto ${chain}`));
    writeElements('add', `service-ports-v${family}`, added.map(([k]) => k).filter((k) => !was.has(k)));
  }

  // 3. Delete what no load balancer needs any more (emptied above, so nothing refers to it).
  for (const name of stale) out.push(`delete chain ${NFT_TABLE} ${name}`);
  const wantedSets = new Set([...STATIC_SETS, ...affinitySets.map((a) => a.name)]);
  for (const name of existing.sets.filter((n) => !wantedSets.has(n))) out.push(`delete set ${NFT_TABLE} ${name}`);
  return out.join('\n') + '\n';
}

/** The transaction that removes the table when a namespace has no load balancer left. */
export function renderDeleteTable(): string {
  return `delete table ${NFT_TABLE}\n`;
}

/**
 * What the kernel lists for each object a full rendering (no `previous`)
 * of a table declares, as listing.ts digests: `objectKey()` →
 * `objectDigest()`. The renderer writes nft's listing syntax, so this is
 * what `nft -s list table inet netkeep` shows when nothing was changed by
 * hand (NftClient.observe()).
 */
export function expectedObjects(script: string): Map<string, string> {
  const parts = new Map<string, { keyword: string; lines: string[]; elements: string[] }>();
  const writeRe = new RegExp(`^add (rule|element) ${NFT_TABLE} (\\S+) (.*)$`);
  const part = (keyword: string, name: string) => {
    const key = objectKey(keyword, name);
    if (!parts.has(key)) parts.set(key, { keyword, lines: [], elements: [] });
    return parts.get(key)!;
  };
  let block: { keyword: string; lines: string[] } | undefined;
  for (const line of script.split('\n')) {
    const open = /^\t(chain|set|map) (\S+) \{$/.exec(line);
    const write = writeRe.exec(line);
    if (open) block = part(open[1]!, open[2]!);
    else if (block && line === '\t}') block = undefined;
    else if (block) block.lines.push(line.trim());
    else if (write?.[1] === 'rule') part('chain', write[2]!).lines.push(write[3]!);
    else if (write) parts.get(objectKey('set', write[2]!))!.elements.push(...elementsOfLine(write[3]!));
  }
  return new Map([...parts].map(([key, p]) => [key, objectDigest(p.keyword, p.lines, p.elements)]));
}

/** Every chain and set a full rendering of `services` declares, by name, without rendering it. */
export function tableObjects(services: readonly DesiredServicePort[]): ExistingObjects {
  return {
    chains: [...BASE_CHAINS.map(([n]) => n), ...HELPER_CHAINS, ...wanted(services).chains],
    sets: [...STATIC_SETS, ...services.filter((s) => s.affinitySeconds > 0).flatMap((s) => s.backends.map((b) => affinitySet(s, b)))],
  };
}

/** The chain and set names among `expectedObjects()` or `ObservedTable.objects` keys. */
export function objectNames(keys: Iterable<string>): ExistingObjects {
  const chains: string[] = [];
  const sets: string[] = [];
  for (const key of keys) {
    const [kind, name] = key.split(' ') as [string, string];
    (kind === 'chain' ? chains : sets).push(name);
  }
  return { chains, sets };
}
