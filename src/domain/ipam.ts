/**
 * IP address pools (issue 3): the IpPool spec, its normalization with the
 * kernel-strict parsers of validate.ts, and the Allocation record.
 *
 * Pools are stored in the `resources` table under the kind `pools`, but
 * `pools` is not in `KINDS` (domain/types.ts): that list drives the generic
 * CRUD service and the reconciler, and a pool has its own service
 * (service/ipam.ts) and nothing in the kernel.
 *
 * Domain imports nothing outside domain/, so the few bigint comparisons the
 * validation needs are done here on the parsed bytes; the interval
 * arithmetic proper lives in ipam/arith.ts.
 */
import type { BaseStatus } from './types.js';
import { IPV4_MAPPED_MESSAGE, Violations, checkObject, optString, parseCidr, parseIp } from './validate.js';

/** The stored kind of pools in the `resources` table. Not a member of `Kind` (see above). */
export const POOL_KIND = 'pools';
export type PoolKind = typeof POOL_KIND;

/** An inclusive address range; both ends canonical text of the pool's family. */
export interface AddressRange {
  start: string;
  end: string;
}

/** A reserved entry: one address, or an inclusive range. */
export type ReservedEntry = string | AddressRange;

/** The normalized spec of an IpPool. Every address is canonical (RFC 5952 for IPv6). */
export interface IpPoolSpec {
  /** The pool's network, `address/prefixLength`, host bits clear. Immutable after create. */
  cidr: string;
  /** An address inside `cidr` that is never handed out; "" for none. No implicit ".1". */
  gateway: string;
  /** Limits automatic allocation; empty means every host address of `cidr`. */
  ranges: AddressRange[];
  /** Addresses never handed out, automatically or on request. */
  reserved: ReservedEntry[];
}

/**
 * A pool has nothing in the kernel: it is READY once stored. The counts are
 * computed on every read, as decimal strings (an IPv6 pool's size does not
 * fit a JS number):
 * - `total`: addresses of the allocatable space (ranges or all host
 *   addresses, minus gateway and reserved);
 * - `allocated`: every allocation of the pool (including ones requested by
 *   address outside `ranges`);
 * - `free`: addresses of the allocatable space not allocated.
 */
export interface IpPoolStatus extends BaseStatus {
  total: string;
  allocated: string;
  free: string;
}

/** A stored pool; same metadata as every resource (DESIGN.md §2). */
export interface IpPool {
  kind: PoolKind;
  name: string;
  labels: Record<string, string>;
  spec: IpPoolSpec;
  generation: number;
  etag: string;
  createTime: string;
  updateTime: string;
  status: IpPoolStatus;
}

/** One address handed out from a pool, identified by (pool, address). */
export interface Allocation {
  /** The pool's name. */
  pool: string;
  /** Canonical address text, without prefix length. */
  address: string;
  /** Free-form reference to the holder (e.g. `veths/web/b`); "" for none. One allocation per owner per pool. */
  owner: string;
  labels: Record<string, string>;
  /** RFC 3339, UTC. */
  createTime: string;
}

/** Spec fields accepted at the top level of a pool request, besides name and labels. */
export const POOL_FIELDS = ['cidr', 'gateway', 'ranges', 'reserved'] as const;
/** Fields that may not change after create: changing the network would strand every allocation. */
export const POOL_IMMUTABLE = ['cidr'] as const;

/** Maximum owner length in UTF-8 bytes (a reference like `veths/<name>/b` is short). */
export const OWNER_MAX = 253;
/** Most entries `ranges` and `reserved` may each have: every read of a pool works over them. */
export const POOL_LIST_MAX = 256;

function value(bytes: number[]): bigint {
  let x = 0n;
  for (const b of bytes) x = (x << 8n) | BigInt(b);
  return x;
}

interface Net {
  family: 4 | 6;
  prefixLength: number;
  first: bigint;
  last: bigint;
}

/** Parses one address of the pool's family inside the pool; records a violation and returns undefined otherwise. */
function checkPoolAddress(v: Violations, field: string, input: unknown, net: Net | undefined): { text: string; value: bigint } | undefined {
  if (typeof input !== 'string' || input === '') {
    v.add(field, 'must be an IP address');
    return undefined;
  }
  const ip = parseIp(input);
  if (!ip) {
    v.add(field, `"${input}" is not an IP address`);
    return undefined;
  }
  const x = value(ip.bytes);
  if (net) {
    if (ip.family !== net.family) {
      v.add(field, `is IPv${ip.family} but cidr is IPv${net.family}`);
      return undefined;
    }
    if (x < net.first || x > net.last) {
      v.add(field, `${ip.address} is outside the pool's cidr`);
      return undefined;
    }
  }
  return { text: ip.address, value: x };
}

function checkRange(v: Violations, field: string, input: unknown, net: Net | undefined): AddressRange | undefined {
  const obj = checkObject(v, field, input);
  if (input === undefined || input === null) {
    v.add(field, 'must be an object {start, end}');
    return undefined;
  }
  for (const key of Object.keys(obj)) if (key !== 'start' && key !== 'end') v.add(`${field}.${key}`, 'is not a known field');
  const start = checkPoolAddress(v, `${field}.start`, obj.start, net);
  const end = checkPoolAddress(v, `${field}.end`, obj.end, net);
  if (!start || !end) return undefined;
  if (start.value > end.value) {
    v.add(`${field}.start`, `${start.text} is after end ${end.text}`);
    return undefined;
  }
  return { start: start.text, end: end.text };
}

/**
 * Normalizes the spec fields of a pool request (`{cidr, gateway, ranges, reserved}`),
 * recording a violation per bad field (`cidr`, `gateway`, `ranges[1].start`,
 * `reserved[0]`, ...). The caller throws InvalidArgumentError via `v.throwIfAny()`.
 *
 * Rules: `cidr` is a network with host bits clear; `gateway` is "" or an
 * address inside `cidr` (for IPv4 below /31 not the network or broadcast
 * address, RFC 3021); range ends and reserved entries are addresses of the
 * pool's family inside `cidr`, `start <= end`. Parts of `ranges` that are not
 * host addresses (the IPv4 network/broadcast, the IPv6 subnet-router anycast
 * address) are simply never allocated (see ipam/arith.ts).
 */
export function normalizePoolSpec(v: Violations, input: Record<string, unknown>): IpPoolSpec {
  const cidrText = optString(v, 'cidr', input.cidr);
  let cidr = cidrText;
  let net: Net | undefined;
  if (cidrText === '') {
    v.add('cidr', 'is required: a network like 10.50.0.0/24 or fd00:50::/64');
  } else {
    const c = parseCidr(cidrText);
    if (!c) v.add('cidr', `"${cidrText}" is not a network in CIDR form, like 10.50.0.0/24`);
    else if (c.ipv4Mapped) v.add('cidr', `${cidrText} ${IPV4_MAPPED_MESSAGE}`);
    else if (!c.isNetwork) v.add('cidr', `${cidrText} has host bits set; the network is written with them clear`);
    else {
      cidr = c.text;
      const first = value(c.bytes);
      const bits = c.family === 4 ? 32 : 128;
      net = { family: c.family, prefixLength: c.prefixLength, first, last: first + (1n << BigInt(bits - c.prefixLength)) - 1n };
    }
  }

  let gateway = optString(v, 'gateway', input.gateway);
  if (gateway !== '') {
    const gw = checkPoolAddress(v, 'gateway', gateway, net);
    if (gw) {
      gateway = gw.text;
      if (net && net.family === 4 && net.prefixLength < 31 && (gw.value === net.first || gw.value === net.last)) {
        v.add('gateway', `${gw.text} is the ${gw.value === net.first ? 'network' : 'broadcast'} address of ${cidr}`);
      }
      if (net && net.family === 6 && net.prefixLength < 127 && gw.value === net.first) {
        v.add('gateway', `${gw.text} is the subnet-router anycast address of ${cidr} (RFC 4291 §2.6.1), not a host address`);
      }
    }
  }

  const ranges: AddressRange[] = [];
  if (input.ranges !== undefined && input.ranges !== null) {
    if (!Array.isArray(input.ranges)) v.add('ranges', 'must be a list of {start, end}');
    else if (input.ranges.length > POOL_LIST_MAX) v.add('ranges', `may have at most ${POOL_LIST_MAX} entries`);
    else
      input.ranges.forEach((r, i) => {
        const range = checkRange(v, `ranges[${i}]`, r, net);
        if (range) ranges.push(range);
      });
  }

  const reserved: ReservedEntry[] = [];
  if (input.reserved !== undefined && input.reserved !== null) {
    if (!Array.isArray(input.reserved)) v.add('reserved', 'must be a list of addresses or {start, end}');
    else if (input.reserved.length > POOL_LIST_MAX) v.add('reserved', `may have at most ${POOL_LIST_MAX} entries`);
    else
      input.reserved.forEach((r, i) => {
        const field = `reserved[${i}]`;
        if (typeof r === 'string') {
          const a = checkPoolAddress(v, field, r, net);
          if (a) reserved.push(a.text);
        } else if (r !== null && typeof r === 'object' && !Array.isArray(r)) {
          const range = checkRange(v, field, r, net);
          if (range) reserved.push(range);
        } else {
          v.add(field, 'must be an address or {start, end}');
        }
      });
  }
  return { cidr, gateway, ranges, reserved };
}

/**
 * An allocation's owner: a free-form reference, "" for none, at most
 * OWNER_MAX bytes of UTF-8, no control characters (C0, C1) nor line or
 * paragraph separators.
 */
export function checkOwner(v: Violations, field: string, input: unknown): string {
  const owner = optString(v, field, input);
  if (Buffer.byteLength(owner) > OWNER_MAX) v.add(field, `must be at most ${OWNER_MAX} bytes (UTF-8)`);
  else if (/[\p{Cc}\u2028\u2029]/u.test(owner)) v.add(field, 'may not contain control characters or line breaks');
  return owner;
}

/**
 * The owner of the allocation a veth end holds from each of its
 * `addressPools`: `veths/<name>/<end>`.
 */
export function vethEndOwner(name: string, end: 'a' | 'b'): string {
  return `veths/${name}/${end}`;
}

/** The owner of a load balancer's VIP allocation: `loadbalancers/<name>`. */
export function loadBalancerOwner(name: string): string {
  return `loadbalancers/${name}`;
}

/**
 * The netkeep resource an owner names, when it has the form of one
 * (`<kind>/<name>` or `<kind>/<name>/<a|b>`, kind one of `kinds`); undefined for
 * any other free-form owner. Start-up removes allocations whose owner names a
 * resource that does not exist.
 */
export function resourceOfOwner<K extends string>(
  owner: string,
  kinds: readonly K[],
): { kind: K; name: string; end?: 'a' | 'b' } | undefined {
  const m = /^([a-z]+)\/([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(?:\/(a|b))?$/.exec(owner);
  if (!m || !kinds.includes(m[1] as K)) return undefined;
  return { kind: m[1] as K, name: m[2]!, ...(m[4] ? { end: m[4] as 'a' | 'b' } : {}) };
}
