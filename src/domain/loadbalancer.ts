/**
 * L4 load balancers (issue 4): a VIP:port spread over backends, like a
 * Kubernetes Service. The spec, its normalization with the kernel-strict
 * parsers of validate.ts, and the claims that keep one VIP:port to one
 * load balancer per namespace.
 */
import ipaddr from 'ipaddr.js';
import type { BaseStatus } from './types.js';
import {
  IPV4_MAPPED_MESSAGE,
  RESOURCE_NAME_RE,
  Violations,
  checkObject,
  checkUnknownFields,
  optString,
  parseCidr,
  parseIp,
} from './validate.js';

export const PROTOCOLS = ['TCP', 'UDP', 'SCTP'] as const;
export type Protocol = (typeof PROTOCOLS)[number];
export const ALGORITHMS = ['RANDOM', 'ROUND_ROBIN'] as const;
export type Algorithm = (typeof ALGORITHMS)[number];

/** Client-IP affinity: a client keeps its backend for `timeoutSeconds` after its last new connection. */
export const AFFINITY_TIMEOUT_DEFAULT = 10_800;
export const AFFINITY_TIMEOUT_MAX = 86_400;
export const WEIGHT_MAX = 100;
/** Most ports, backends and source ranges one load balancer may have. */
export const LB_LIST_MAX = 1000;
/**
 * Most backend chains one load balancer may need: one per port and backend
 * (ports × backends). 1000 × 1000 would be a million chains, which nft
 * cannot write in any reasonable time or memory.
 */
export const LB_BACKEND_CHAINS_MAX = 10_000;

export interface LoadBalancerPort {
  /** "" or a DNS label, unique within the load balancer. */
  name: string;
  protocol: Protocol;
  /** The VIP's port, 1–65535. */
  port: number;
  /** The backends' port, 1–65535; `port` when not given. */
  targetPort: number;
}

export interface Backend {
  /** An address of the VIP's family, canonical. */
  address: string;
  /** 0: each port's `targetPort`; else the port used for every port of the load balancer. */
  port: number;
  /** 1–100, relative to the other backends. */
  weight: number;
}

export interface SessionAffinity {
  /** Present when client-IP affinity is on. */
  clientIp?: { timeoutSeconds: number };
}

export interface LoadBalancerSpec {
  /** Network namespace the rules live in; "" is the host. Immutable. */
  namespace: string;
  /** The VIP, canonical; "" when it comes from `vipPool`. */
  vip: string;
  /** An IpPool to allocate the VIP from (owner `loadbalancers/<name>`); "" for none. */
  vipPool: string;
  ports: LoadBalancerPort[];
  backends: Backend[];
  algorithm: Algorithm;
  sessionAffinity: SessionAffinity;
  /** When not empty, the only clients let in (CIDRs of the VIP's family); others are refused. */
  sourceRanges: string[];
}

export interface LoadBalancerStatus extends BaseStatus {
  /** The VIP in use ("" while none: a vipPool allocation always exists once stored). */
  vip: string;
  /** The backends programmed in the kernel, `address:port` (`[fd00::2]:8080` for IPv6), sorted. */
  backends: string[];
}

/** `address:port`, with brackets for IPv6 (RFC 3986 §3.2.2). */
export function endpoint(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** The port a backend receives `p` on. */
export function backendPort(b: Backend, p: LoadBalancerPort): number {
  return b.port === 0 ? p.targetPort : b.port;
}

function checkPort(v: Violations, field: string, value: unknown, required: boolean): number {
  if (value === undefined || value === null || value === 0) {
    if (required) v.add(field, 'is required: a port from 1 to 65535');
    return 0;
  }
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
    v.add(field, `${typeof value === 'number' ? String(value) : JSON.stringify(value)} is not a port: it must be an integer from 1 to 65535`);
    return 0;
  }
  return value;
}

function checkEnum<T extends string>(v: Violations, field: string, value: unknown, allowed: readonly T[], fallback: T): T {
  if (value === undefined || value === null || value === '') return fallback;
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  v.add(field, `${JSON.stringify(value)} is not one of ${allowed.join(', ')}`);
  return fallback;
}

function checkList(v: Violations, field: string, value: unknown): unknown[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) {
    v.add(field, 'must be a list');
    return [];
  }
  if (value.length > LB_LIST_MAX) {
    v.add(field, `may have at most ${LB_LIST_MAX} entries`);
    return [];
  }
  return value;
}

/**
 * Address ranges that are no VIP and no backend, as ipaddr.js names them.
 * Loopback: DNAT to 127/8 is dropped as a martian unless route_localnet is
 * set, and a loopback VIP answers only inside its namespace. Unspecified,
 * multicast and the limited broadcast are not unicast destinations (the
 * kernel's ip_route_input_slow() and nf_nat do not route them to one host).
 * Link-local: an IPv6 one is ambiguous without a zone, and Kubernetes
 * rejects both families for endpoints (validateNonSpecialIP).
 */
const NOT_UNICAST: Record<string, string> = {
  unspecified: 'the unspecified address',
  loopback: 'a loopback address',
  multicast: 'a multicast address',
  broadcast: 'the limited broadcast address',
  linkLocal: 'a link-local address',
};

/** An address (not a network, not IPv4-mapped, unicast and routable); returns canonical text or undefined. */
function checkAddress(v: Violations, field: string, value: unknown): { text: string; family: 4 | 6 } | undefined {
  const text = optString(v, field, value);
  if (text === '') return undefined;
  const ip = parseIp(text);
  if (!ip) {
    v.add(field, `"${text}" is not an IP address`);
    return undefined;
  }
  if (ip.ipv4Mapped) {
    v.add(field, `${text} ${IPV4_MAPPED_MESSAGE}`);
    return undefined;
  }
  const special = NOT_UNICAST[ipaddr.parse(ip.address).range()];
  if (special) {
    v.add(field, `${ip.address} is ${special}: a VIP or backend must be a unicast address other hosts can reach`);
    return undefined;
  }
  return { text: ip.address, family: ip.family };
}

/**
 * Normalizes the spec fields of a load balancer request, recording a
 * violation per bad field (`ports[1].port`, `backends[0].weight`, ...).
 *
 * Rules: `vip` is an address, or empty with `vipPool` naming a pool (both:
 * the VIP is that address of the pool); at least one port; ports 1–65535;
 * protocol TCP, UDP or SCTP (default TCP); (protocol, port) pairs unique;
 * `targetPort` defaults to `port`; backends are addresses of the VIP's
 * family, (address, port) unique, `weight` 1–100 (default 1); affinity
 * timeout 1–86400 s (default 10800, as Kubernetes); `sourceRanges` are
 * networks of the VIP's family. A family that is only known once the
 * `vipPool` allocation is made is checked then (service/pooled.ts).
 */
export function normalizeLoadBalancerSpec(
  v: Violations,
  input: Record<string, unknown>,
  namespace: string,
): LoadBalancerSpec {
  const vipGiven = input.vip !== undefined && input.vip !== null && input.vip !== '';
  const vip = checkAddress(v, 'vip', input.vip);
  const vipPool = optString(v, 'vipPool', input.vipPool);
  if (vipPool !== '' && !RESOURCE_NAME_RE.test(vipPool)) v.add('vipPool', `"${vipPool}" is not a pool name`);
  if (!vipGiven && vipPool === '') v.add('vip', 'is required: an address, or a pool in vipPool to allocate one from');

  const ports: LoadBalancerPort[] = [];
  const rawPorts = checkList(v, 'ports', input.ports);
  if (rawPorts.length === 0 && (input.ports === undefined || input.ports === null || (Array.isArray(input.ports) && input.ports.length === 0))) {
    v.add('ports', 'is required: at least one {protocol, port}');
  }
  const seenPorts = new Map<string, number>();
  const seenNames = new Map<string, number>();
  rawPorts.forEach((raw, i) => {
    const f = `ports[${i}]`;
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      v.add(f, 'must be an object {name, protocol, port, targetPort}');
      return;
    }
    const obj = checkObject(v, f, raw);
    checkUnknownFields(v, f, obj, ['name', 'protocol', 'port', 'targetPort']);
    const name = optString(v, `${f}.name`, obj.name);
    if (name !== '' && !RESOURCE_NAME_RE.test(name)) v.add(`${f}.name`, `"${name}" is not a DNS label (1-63 lowercase letters, digits, "-")`);
    if (name !== '' && seenNames.has(name)) v.add(`${f}.name`, `"${name}" is also the name of ports[${seenNames.get(name)}]`);
    seenNames.set(name, i);
    const protocol = checkEnum(v, `${f}.protocol`, obj.protocol, PROTOCOLS, 'TCP');
    const port = checkPort(v, `${f}.port`, obj.port, true);
    const targetPort = checkPort(v, `${f}.targetPort`, obj.targetPort, false) || port;
    const key = `${protocol}/${port}`;
    if (port !== 0 && seenPorts.has(key)) v.add(`${f}.port`, `${protocol} port ${port} is also ports[${seenPorts.get(key)}]`);
    seenPorts.set(key, i);
    ports.push({ name, protocol, port, targetPort });
  });

  const backends: Backend[] = [];
  const seenBackends = new Map<string, number>();
  checkList(v, 'backends', input.backends).forEach((raw, i) => {
    const f = `backends[${i}]`;
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      v.add(f, 'must be an object {address, port, weight}');
      return;
    }
    const obj = checkObject(v, f, raw);
    checkUnknownFields(v, f, obj, ['address', 'port', 'weight']);
    if (obj.address === undefined || obj.address === null || obj.address === '') {
      v.add(`${f}.address`, 'is required');
      return;
    }
    const address = checkAddress(v, `${f}.address`, obj.address);
    if (!address) return;
    const port = checkPort(v, `${f}.port`, obj.port, false);
    let weight = 1;
    if (obj.weight !== undefined && obj.weight !== null && obj.weight !== 0) {
      if (typeof obj.weight !== 'number' || !Number.isInteger(obj.weight) || obj.weight < 1 || obj.weight > WEIGHT_MAX) {
        v.add(`${f}.weight`, `${JSON.stringify(obj.weight)} is out of range: a weight is an integer from 1 to ${WEIGHT_MAX}`);
      } else weight = obj.weight;
    }
    const key = `${address.text}/${port}`;
    if (seenBackends.has(key)) v.add(`${f}.address`, `${address.text}${port ? ` port ${port}` : ''} is also backends[${seenBackends.get(key)}]`);
    seenBackends.set(key, i);
    backends.push({ address: address.text, port, weight });
  });

  if (ports.length * backends.length > LB_BACKEND_CHAINS_MAX) {
    v.add(
      'backends',
      `${ports.length} ports × ${backends.length} backends is ${ports.length * backends.length} backend chains; a load balancer may have at most ${LB_BACKEND_CHAINS_MAX}`,
    );
  }

  const algorithm = checkEnum(v, 'algorithm', input.algorithm, ALGORITHMS, 'RANDOM');

  const sessionAffinity: SessionAffinity = {};
  if (input.sessionAffinity !== undefined && input.sessionAffinity !== null) {
    const sa = checkObject(v, 'sessionAffinity', input.sessionAffinity);
    checkUnknownFields(v, 'sessionAffinity', sa, ['clientIp']);
    if (sa.clientIp !== undefined && sa.clientIp !== null) {
      const ci = checkObject(v, 'sessionAffinity.clientIp', sa.clientIp);
      checkUnknownFields(v, 'sessionAffinity.clientIp', ci, ['timeoutSeconds']);
      let timeoutSeconds = AFFINITY_TIMEOUT_DEFAULT;
      const t = ci.timeoutSeconds;
      if (t !== undefined && t !== null && t !== 0) {
        if (typeof t !== 'number' || !Number.isInteger(t) || t < 1 || t > AFFINITY_TIMEOUT_MAX) {
          v.add('sessionAffinity.clientIp.timeoutSeconds', `must be an integer from 1 to ${AFFINITY_TIMEOUT_MAX} seconds`);
        } else timeoutSeconds = t;
      }
      sessionAffinity.clientIp = { timeoutSeconds };
    }
  }

  const sourceRanges: string[] = [];
  checkList(v, 'sourceRanges', input.sourceRanges).forEach((raw, i) => {
    const f = `sourceRanges[${i}]`;
    const c = typeof raw === 'string' ? parseCidr(raw) : undefined;
    if (!c) v.add(f, `${JSON.stringify(raw)} is not a network in CIDR form, like 10.0.0.0/8`);
    else if (c.ipv4Mapped) v.add(f, `${String(raw)} ${IPV4_MAPPED_MESSAGE}`);
    else if (!c.isNetwork) v.add(f, `${String(raw)} has host bits set; the network is written with them clear`);
    else if (sourceRanges.includes(c.text)) v.add(f, `${c.text} is listed twice`);
    else sourceRanges.push(c.text);
  });

  const spec = { namespace, vip: vip?.text ?? '', vipPool, ports, backends, algorithm, sessionAffinity, sourceRanges };
  if (vip) checkAgainstVip(v, spec, vip.text);
  return spec;
}

/** The family of an address's text. */
export function familyOf(address: string): 4 | 6 {
  return address.includes(':') ? 6 : 4;
}

/**
 * The checks that need the VIP, made once it is known (at normalization for
 * a static `vip`, after the allocation for `vipPool`): backends and
 * sourceRanges of the other family; a backend that is the VIP itself (its
 * DNAT would loop back into the service); and two backends that are one
 * endpoint for some port (`{X}` with targetPort 80 and `{X, port: 80}`),
 * which would be one backend counted twice. Throws nothing; records
 * violations.
 */
export function checkAgainstVip(v: Violations, spec: LoadBalancerSpec, vip: string): void {
  const family = familyOf(vip);
  // A static vip was checked by checkAddress; one from a pool only now.
  const special = NOT_UNICAST[ipaddr.parse(vip).range()];
  if (special) v.add('vipPool', `gave ${vip}, ${special}: a VIP must be a unicast address other hosts can reach`);
  spec.backends.forEach((b, i) => {
    const f = `backends[${i}].address`;
    if (familyOf(b.address) !== family) v.add(f, `is IPv${familyOf(b.address)} but the VIP ${vip} is IPv${family}`);
    else if (b.address === vip) v.add(f, `${vip} is the VIP itself: a backend must be another address`);
  });
  const reported = new Set<number>();
  for (const p of spec.ports) {
    const seen = new Map<string, number>();
    spec.backends.forEach((b, i) => {
      const at = endpoint(b.address, backendPort(b, p));
      const first = seen.get(at);
      if (first === undefined) seen.set(at, i);
      // The same address and port is reported by normalization already.
      else if (spec.backends[first]!.port !== b.port && !reported.has(i)) {
        v.add(`backends[${i}].port`, `${at} is also backends[${first}] for ${p.protocol} port ${p.port}`);
        reported.add(i);
      }
    });
  }
  spec.sourceRanges.forEach((r, i) => {
    if (familyOf(r) !== family) v.add(`sourceRanges[${i}]`, `is IPv${familyOf(r)} but the VIP ${vip} is IPv${family}`);
  });
}
