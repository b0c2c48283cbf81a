/**
 * Validation primitives with the kernel's own rules. Each parser either
 * returns the normalized value or records a violation; callers collect all
 * violations of a request and throw one InvalidArgumentError.
 */
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import { InvalidArgumentError, type FieldViolation } from './errors.js';

/** Collects field violations while a request is normalized. */
export class Violations {
  readonly list: FieldViolation[] = [];

  add(field: string, description: string): void {
    this.list.push({ field, description });
  }

  /** Throws InvalidArgumentError when anything was recorded. */
  throwIfAny(): void {
    if (this.list.length > 0) throw new InvalidArgumentError(this.list);
  }
}

/** Resource names (DESIGN.md §2): an RFC 1123 label, 1–63 characters. */
export const RESOURCE_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Label keys and values: at most 63 characters for keys (Kubernetes-like), 256 for values. */
const LABEL_KEY_RE = /^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE_MAX = 256;

/** Kernel IFNAMSIZ is 16 including the terminating NUL. */
export const IFNAME_MAX_BYTES = 15;

export function checkResourceName(v: Violations, field: string, value: unknown): string {
  if (typeof value !== 'string' || value === '') {
    v.add(field, 'is required');
    return '';
  }
  if (!RESOURCE_NAME_RE.test(value)) {
    v.add(field, 'must be 1-63 lowercase letters, digits or "-", starting and ending with a letter or digit');
  }
  return value;
}

/**
 * Interface names, as the kernel's dev_valid_name() (net/core/dev.c) accepts
 * them: 1–15 bytes, not "." or "..", no "/", ":" or whitespace; and, because
 * netkeep writes them through `ip -batch`, no "#", backslash or quote.
 */
export function checkIfname(v: Violations, field: string, value: unknown): string {
  if (typeof value !== 'string' || value === '') {
    v.add(field, 'is required');
    return '';
  }
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > IFNAME_MAX_BYTES) {
    v.add(field, `is ${bytes} bytes; an interface name is at most ${IFNAME_MAX_BYTES} bytes (IFNAMSIZ)`);
  } else if (value === '.' || value === '..') {
    v.add(field, 'may not be "." or ".."');
  } else if (/[/:\s]/u.test(value)) {
    v.add(field, 'may not contain "/", ":" or whitespace');
  } else if (/[\x00-\x1f\x7f]/.test(value)) {
    v.add(field, 'may not contain control characters');
  } else if (/^if[0-9]+$/.test(value)) {
    // iproute2 reads an unknown "if<N>" as ifindex N (ll_name_to_index()): it could name another device.
    v.add(field, 'may not be "if" followed by digits: iproute2 reads that as an interface index');
  } else if (/[#\\'"]/.test(value)) {
    // The kernel takes these, but iproute2's batch tokenizer (makeargs()) cannot carry them.
    v.add(field, 'may not contain "#", "\\" or quotes (netkeep writes names through ip -batch)');
  }
  return value;
}

export function checkLabels(v: Violations, field: string, value: unknown): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    v.add(field, 'must be a map of strings');
    return {};
  }
  const out: Record<string, string> = {};
  for (const key of Object.keys(value).sort()) {
    const val = (value as Record<string, unknown>)[key];
    if (!LABEL_KEY_RE.test(key)) {
      v.add(`${field}.${key}`, 'label keys are 1-63 letters, digits, ".", "_", "/" or "-", starting and ending with a letter or digit');
    }
    if (typeof val !== 'string') v.add(`${field}.${key}`, 'must be a string');
    else if (val.length > LABEL_VALUE_MAX) v.add(`${field}.${key}`, `must be at most ${LABEL_VALUE_MAX} characters`);
    else out[key] = val;
  }
  return out;
}

/** MTU in bytes: 0 (kernel default) or 68–65535 (RFC 791 minimum; ETH_MAX_MTU). */
export function checkMtu(v: Violations, field: string, value: unknown): number {
  if (value === undefined || value === null) return 0;
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    v.add(field, 'must be an integer');
    return 0;
  }
  if (value !== 0 && (value < 68 || value > 65535)) {
    v.add(field, 'must be between 68 and 65535 bytes (0 for the kernel default)');
  }
  return value;
}

export function checkUint32(v: Violations, field: string, value: unknown): number {
  if (value === undefined || value === null) return 0;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    v.add(field, 'must be an integer between 0 and 4294967295');
    return 0;
  }
  return value;
}

export function checkBool(v: Violations, field: string, value: unknown): boolean {
  if (value === undefined || value === null) return false;
  if (typeof value !== 'boolean') {
    v.add(field, 'must be true or false');
    return false;
  }
  return value;
}

export function optString(v: Violations, field: string, value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string') {
    v.add(field, 'must be a string');
    return '';
  }
  return value;
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/**
 * An Ethernet MAC address for an interface: six colon-separated hex octets,
 * unicast (I/G bit clear) and not all zeros, as eth_validate_addr() requires.
 * Returned lowercase.
 */
export function checkMac(v: Violations, field: string, value: unknown): string {
  const s = optString(v, field, value);
  if (s === '') return '';
  if (!MAC_RE.test(s)) {
    v.add(field, 'must be six colon-separated hex octets, like 02:00:00:00:00:01');
    return s;
  }
  const octets = s.toLowerCase().split(':').map((o) => parseInt(o, 16));
  if ((octets[0]! & 1) === 1) v.add(field, 'must be a unicast MAC (the lowest bit of the first octet clear)');
  else if (octets.every((o) => o === 0)) v.add(field, 'may not be all zeros');
  return s.toLowerCase();
}

/**
 * A stable locally administered unicast MAC derived from `seed`, so that a
 * bridge's MAC does not follow its lowest-numbered port (the kernel's default,
 * br_stp_recalculate_bridge_id()).
 */
export function derivedMac(seed: string): string {
  const h = createHash('sha256').update(seed).digest();
  h[0] = (h[0]! & 0xfe) | 0x02;
  return [...h.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** A parsed address: `family` 4 or 6, `address` in canonical text (RFC 5952 for IPv6). */
export interface ParsedIp {
  family: 4 | 6;
  address: string;
  bytes: number[];
  /** An IPv4-mapped IPv6 address (`::ffff:0:0/96`, RFC 4291 §2.5.5.2): an IPv4 address in IPv6 clothes. */
  ipv4Mapped: boolean;
}

/** The violation text for an IPv4-mapped IPv6 address where an interface address or a network belongs. */
export const IPV4_MAPPED_MESSAGE = 'is an IPv4-mapped IPv6 address (::ffff:0:0/96, RFC 4291 §2.5.5.2); write the IPv4 address instead';

/** Four bytes as two 16-bit groups. */
function pairs(b: number[]): [number, number] {
  return [(b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!];
}

/**
 * Parses one IP address strictly: no whitespace, no leading zeros in IPv4
 * octets, no octet above 255, no IPv6 zone index. Text and bytes are what
 * inet_pton(3) reads.
 */
export function parseIp(text: string): ParsedIp | undefined {
  if (text.includes('%')) return undefined;
  const family = isIP(text);
  if (family === 0) return undefined;
  // ipaddr.js reads `::a.b.c.d` (IPv4-compatible, RFC 4291 §2.5.5.1) as
  // ::ffff:a.b.c.d; inet_pton(3), and so the kernel, reads ::a.b.c.d.
  const compatible = /^::(\d{1,3}(?:\.\d{1,3}){3})$/.exec(text);
  const addr = compatible
    ? new ipaddr.IPv6([0, 0, 0, 0, 0, 0, ...pairs(ipaddr.IPv4.parse(compatible[1]!).toByteArray())])
    : ipaddr.parse(text);
  if (family === 4) {
    return { family: 4, address: addr.toString(), bytes: addr.toByteArray(), ipv4Mapped: false };
  }
  const v6 = addr as ipaddr.IPv6;
  return { family: 6, address: v6.toRFC5952String(), bytes: v6.toByteArray(), ipv4Mapped: v6.isIPv4MappedAddress() };
}

/** A parsed `address/prefixLength`. */
export interface ParsedCidr extends ParsedIp {
  prefixLength: number;
  /** True when every bit after the prefix is zero. */
  isNetwork: boolean;
  /** `address/prefixLength` in canonical text. */
  text: string;
}

/** Parses `address/prefixLength` strictly; the prefix is 0–32 (IPv4) or 0–128 (IPv6), decimal, no leading zeros. */
export function parseCidr(text: string): ParsedCidr | undefined {
  const slash = text.indexOf('/');
  if (slash < 0 || slash !== text.lastIndexOf('/')) return undefined;
  const ip = parseIp(text.slice(0, slash));
  const prefixText = text.slice(slash + 1);
  if (!ip || !/^(0|[1-9][0-9]{0,2})$/.test(prefixText)) return undefined;
  const prefixLength = Number(prefixText);
  if (prefixLength > (ip.family === 4 ? 32 : 128)) return undefined;
  let isNetwork = true;
  ip.bytes.forEach((b, i) => {
    const keep = Math.max(0, Math.min(8, prefixLength - i * 8));
    const mask = keep === 0 ? 0 : (0xff << (8 - keep)) & 0xff;
    if ((b & ~mask & 0xff) !== 0) isNetwork = false;
  });
  return { ...ip, prefixLength, isNetwork, text: `${ip.address}/${prefixLength}` };
}

/** An interface address list (`10.50.0.2/24`), normalized, without duplicates. */
export function checkInterfaceAddresses(v: Violations, field: string, value: unknown): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) {
    v.add(field, 'must be a list of addresses like 10.50.0.2/24');
    return [];
  }
  const out: string[] = [];
  const seen = new Set<string>();
  value.forEach((item, i) => {
    const f = `${field}[${i}]`;
    const parsed = typeof item === 'string' ? parseCidr(item) : undefined;
    if (!parsed) {
      v.add(f, `"${String(item)}" is not an address with a prefix length, like 10.50.0.2/24 or fd00::2/64`);
      return;
    }
    if (parsed.ipv4Mapped) {
      v.add(f, `${String(item)} ${IPV4_MAPPED_MESSAGE}`);
      return;
    }
    if (seen.has(parsed.address)) {
      v.add(f, `${parsed.address} is listed twice`);
      return;
    }
    seen.add(parsed.address);
    out.push(parsed.text);
  });
  return out;
}

/**
 * `addressPools`: a list of IpPool names (resource names), each at most once.
 * Absent or null is []. Whether the pools exist is checked in the write
 * transaction, not here.
 */
export function checkPoolNames(v: Violations, field: string, value: unknown): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) {
    v.add(field, 'must be a list of pool names');
    return [];
  }
  const out: string[] = [];
  value.forEach((item, i) => {
    const f = `${field}[${i}]`;
    if (typeof item !== 'string' || item === '') {
      v.add(f, 'must be the name of a pool');
      return;
    }
    if (out.includes(item)) {
      v.add(f, `pool ${item} is listed twice`);
      return;
    }
    if (!RESOURCE_NAME_RE.test(item)) {
      checkResourceName(v, f, item);
      return;
    }
    out.push(item);
  });
  return out;
}

/** The bare IP of an interface address (`10.50.0.2/24` → `10.50.0.2`). */
export function addressIp(cidr: string): string {
  return cidr.slice(0, cidr.indexOf('/'));
}

/** Reads an object-typed field; records a violation and returns {} otherwise. */
export function checkObject(v: Violations, field: string, value: unknown): Record<string, unknown> {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    v.add(field, 'must be an object');
    return {};
  }
  return value as Record<string, unknown>;
}

/** Records a violation for every key of `input` that is not in `known`. */
export function checkUnknownFields(v: Violations, prefix: string, input: Record<string, unknown>, known: readonly string[]): void {
  for (const key of Object.keys(input)) {
    if (!known.includes(key)) v.add(prefix ? `${prefix}.${key}` : key, 'is not a known field');
  }
}
