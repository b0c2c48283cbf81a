/**
 * IPAM arithmetic: exact 128-bit address math with bigint, over ranges and
 * sorted lists only, so a pool costs time in proportion to its allocations
 * and exclusions, never to its size (a /48 is as cheap as a /24).
 *
 * Rules (each from a standard):
 * - IPv4: the network and broadcast addresses are not host addresses, except
 *   in /31 and /32 pools, where every address is one (RFC 3021).
 * - IPv6: the subnet-router anycast address (the prefix itself, RFC 4291
 *   §2.6.1) is not handed out; /127 and /128 behave like /31 and /32
 *   (RFC 6164). IPv6 has no broadcast: the top address is a host address.
 */
import ipaddr from 'ipaddr.js';
import { parseCidr, parseIp } from '../domain/validate.js';

export type Family = 4 | 6;

/** An inclusive interval of addresses. */
export interface Interval {
  start: bigint;
  end: bigint;
}

export const BITS: Record<Family, number> = { 4: 32, 6: 128 };

/** Address text → number. Returns undefined when the text is not a strict IP address. */
export function addressValue(text: string): { family: Family; value: bigint } | undefined {
  const ip = parseIp(text);
  if (!ip) return undefined;
  let value = 0n;
  for (const b of ip.bytes) value = (value << 8n) | BigInt(b);
  return { family: ip.family, value };
}

/** Number → canonical address text (dotted quad, or RFC 5952 for IPv6). */
export function formatAddress(family: Family, value: bigint): string {
  const bytes: number[] = [];
  for (let i = BITS[family] / 8 - 1; i >= 0; i--) bytes.push(Number((value >> BigInt(i * 8)) & 0xffn));
  const addr = ipaddr.fromByteArray(bytes);
  return family === 6 ? (addr as ipaddr.IPv6).toRFC5952String() : addr.toString();
}

/**
 * Fixed-width lowercase hex of an address (8 digits for IPv4, 32 for IPv6),
 * so that text order is numeric order: the form allocations are stored in.
 */
export function sortKey(family: Family, value: bigint): string {
  return value.toString(16).padStart(BITS[family] / 4, '0');
}

export function fromSortKey(key: string): bigint {
  return BigInt(`0x${key}`);
}

/** A parsed pool network. */
export interface Network {
  family: Family;
  prefixLength: number;
  /** The first address of the network. */
  first: bigint;
  /** The last address of the network. */
  last: bigint;
}

/** Parses a network in CIDR form (host bits must be clear); undefined otherwise. */
export function parseNetwork(text: string): Network | undefined {
  const c = parseCidr(text);
  if (!c || !c.isNetwork) return undefined;
  const { value } = addressValue(c.address)!;
  const size = 1n << BigInt(BITS[c.family] - c.prefixLength);
  return { family: c.family, prefixLength: c.prefixLength, first: value, last: value + size - 1n };
}

/** The number of addresses in the network (2^(bits − prefix)). */
export function networkSize(n: Network): bigint {
  return n.last - n.first + 1n;
}

/** The addresses of `n` that may ever be handed out (see the file header for the rules). */
export function hostInterval(n: Network): Interval | undefined {
  const allHosts = n.family === 4 ? n.prefixLength >= 31 : n.prefixLength >= 127;
  if (allHosts) return { start: n.first, end: n.last };
  // IPv4 drops network and broadcast; IPv6 only the subnet-router anycast address.
  return { start: n.first + 1n, end: n.family === 4 ? n.last - 1n : n.last };
}

export function contains(i: Interval, v: bigint): boolean {
  return v >= i.start && v <= i.end;
}

export function overlaps(a: Interval, b: Interval): boolean {
  return a.start <= b.end && b.start <= a.end;
}

/** Sorts and merges intervals (touching ones too) into a disjoint ascending list. */
export function normalizeIntervals(list: readonly Interval[]): Interval[] {
  const sorted = [...list].sort((x, y) => (x.start < y.start ? -1 : x.start > y.start ? 1 : 0));
  const out: Interval[] = [];
  for (const i of sorted) {
    const last = out[out.length - 1];
    if (last && i.start <= last.end + 1n) {
      if (i.end > last.end) last.end = i.end;
    } else out.push({ ...i });
  }
  return out;
}

/** `list` with every interval of `cut` removed; both disjoint and ascending. */
export function subtractIntervals(list: readonly Interval[], cut: readonly Interval[]): Interval[] {
  const out: Interval[] = [];
  for (const i of list) {
    let start = i.start;
    for (const c of cut) {
      if (c.end < start || c.start > i.end) continue;
      if (c.start > start) out.push({ start, end: c.start - 1n });
      start = c.end + 1n;
      if (start > i.end) break;
    }
    if (start <= i.end) out.push({ start, end: i.end });
  }
  return out;
}

/** The number of addresses in disjoint intervals. */
export function countIntervals(list: readonly Interval[]): bigint {
  return list.reduce((n, i) => n + (i.end - i.start + 1n), 0n);
}

/**
 * The pool's allocatable space: its ranges (or all host addresses) minus the
 * gateway and reserved addresses, as disjoint ascending intervals.
 */
export function allocatable(n: Network, ranges: readonly Interval[], excluded: readonly Interval[]): Interval[] {
  const hosts = hostInterval(n);
  if (!hosts) return [];
  const base = ranges.length === 0 ? [hosts] : normalizeIntervals(ranges).flatMap((r) => {
    const start = r.start > hosts.start ? r.start : hosts.start;
    const end = r.end < hosts.end ? r.end : hosts.end;
    return start <= end ? [{ start, end }] : [];
  });
  return subtractIntervals(base, normalizeIntervals(excluded));
}

/**
 * The first free address after `cursor` in `space`, wrapping around once
 * (like CNI host-local), so a just-released address is not reused at once.
 *
 * `allocatedFrom(from)` yields the allocated addresses ≥ `from` in ascending
 * order; it is read lazily, so the cost is the allocations actually passed,
 * not the size of the space. `avoid`, when given, rules out addresses that
 * are free in the pool but in use elsewhere (an address typed in on the same
 * segment); it is asked only about free candidates. Returns undefined when
 * every address is taken or avoided.
 */
export function nextFree(
  space: readonly Interval[],
  cursor: bigint | undefined,
  allocatedFrom: (from: bigint) => Iterable<bigint>,
  avoid?: (address: bigint) => boolean,
): bigint | undefined {
  if (space.length === 0) return undefined;
  const begin = cursor === undefined ? space[0]!.start : cursor + 1n;
  // Pass 1: from `begin` to the end of the space (none when the cursor is at
  // its end, possibly the top of the address family); pass 2: from the start up to `begin`.
  if (begin <= space[space.length - 1]!.end) {
    const found = firstFreeIn(space, begin, undefined, allocatedFrom, avoid);
    if (found !== undefined) return found;
  }
  return firstFreeIn(space, space[0]!.start, begin, allocatedFrom, avoid);
}

function firstFreeIn(
  space: readonly Interval[],
  from: bigint,
  before: bigint | undefined,
  allocatedFrom: (from: bigint) => Iterable<bigint>,
  avoid: ((address: bigint) => boolean) | undefined,
): bigint | undefined {
  const taken = allocatedFrom(from)[Symbol.iterator]();
  let nextTaken = taken.next();
  for (const seg of space) {
    if (seg.end < from) continue;
    let candidate = seg.start > from ? seg.start : from;
    while (candidate <= seg.end) {
      if (before !== undefined && candidate >= before) return undefined;
      while (!nextTaken.done && nextTaken.value < candidate) nextTaken = taken.next();
      if ((nextTaken.done || nextTaken.value !== candidate) && !avoid?.(candidate)) return candidate;
      candidate++;
    }
  }
  return undefined;
}
