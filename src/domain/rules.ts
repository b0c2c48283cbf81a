/**
 * Per-kind rules: how a request body becomes a normalized spec, which fields
 * may not change after create, and which names and addresses a spec claims
 * (so the store can enforce uniqueness and references).
 *
 * Normalization happens once, here; the store keeps the normalized form and
 * the reconciler uses it as is.
 */
import {
  HOST_NAMESPACE,
  type BridgeSpec,
  type Kind,
  type RouteSpec,
  type SpecOf,
  type VethEnd,
  type VethSpec,
} from './types.js';
import { POOL_KIND, type PoolKind } from './ipam.js';
import { normalizeLoadBalancerSpec, type LoadBalancerSpec } from './loadbalancer.js';
import {
  Violations,
  addressIp,
  checkBool,
  checkIfname,
  checkInterfaceAddresses,
  checkMac,
  checkMtu,
  checkObject,
  checkPoolNames,
  checkResourceName,
  checkUint32,
  checkUnknownFields,
  derivedMac,
  optString,
  parseCidr,
  parseIp,
} from './validate.js';

/** A reference from one resource's field to another resource (or pool). */
export interface Reference {
  kind: Kind | PoolKind;
  name: string;
  field: string;
}

/**
 * The addresses a spec's links take from pools, found in the write
 * transaction: by the field that names the pools (`addressPools`,
 * `a.addressPools`, `b.addressPools`), one `address/prefixLength` per pool in
 * the order given. They are claimed like the addresses typed in.
 */
export type Pooled = Partial<Record<string, string[]>>;

/**
 * Something a spec holds that no other resource may hold in the same scope:
 * `ifname:<netns>` (an interface name), `ip:<netns>` (an address in a
 * namespace), `l2:<bridge>` (an address on a bridge's segment: the bridge, its
 * ports and their veth peers), `route:<netns>` (a route's kernel key: family,
 * destination and metric, as fib_table_insert() compares them).
 */
export interface Claim {
  scope: string;
  key: string;
  field: string;
  /** What is claimed, for messages: "interface name eth0 in namespace blue". */
  what: string;
}

export interface KindRules<K extends Kind> {
  /** Spec fields accepted at the top level of a request, besides name and labels. */
  readonly fields: readonly string[];
  /** Dotted paths of fields that may not change after create. */
  readonly immutable: readonly string[];
  normalize(v: Violations, name: string, input: Record<string, unknown>): SpecOf[K];
  references(spec: SpecOf[K]): Reference[];
  /** The names and addresses the spec holds; `name` is the resource's own, `pooled` its pool addresses. */
  claims(spec: SpecOf[K], name: string, pooled: Pooled): Claim[];
}

/** An ifname for a link netkeep creates: any valid one but `lo`, which every namespace already has. */
function checkLinkIfname(v: Violations, field: string, value: unknown): string {
  const ifname = checkIfname(v, field, value);
  if (ifname === 'lo') v.add(field, 'lo is the loopback device every namespace already has');
  return ifname;
}

function namespaceRef(namespace: string, field: string): Reference[] {
  return namespace === HOST_NAMESPACE ? [] : [{ kind: 'namespaces', name: namespace, field }];
}

function checkNamespaceField(v: Violations, field: string, value: unknown): string {
  const ns = optString(v, field, value);
  if (ns !== HOST_NAMESPACE) checkResourceName(v, field, ns);
  return ns;
}

/** "the host namespace" or "namespace blue", for messages. */
export function describeNamespace(ns: string): string {
  return ns === HOST_NAMESPACE ? 'the host namespace' : `namespace ${ns}`;
}

function ifnameClaim(namespace: string, ifname: string, field: string): Claim {
  return { scope: `ifname:${namespace}`, key: ifname, field, what: `interface name ${ifname} in ${describeNamespace(namespace)}` };
}

/** One interface address of a spec and the field it comes from (`addresses[0]`, `a.addressPools[1]`). */
interface FieldAddress {
  address: string;
  field: string;
}

/** A link's addresses: those typed in `<prefix>addresses`, then those from `<prefix>addressPools`. */
function linkAddresses(addresses: string[], pooled: Pooled, prefix: string): FieldAddress[] {
  return [
    ...addresses.map((address, i) => ({ address, field: `${prefix}addresses[${i}]` })),
    ...(pooled[`${prefix}addressPools`] ?? []).map((address, i) => ({ address, field: `${prefix}addressPools[${i}]` })),
  ];
}

function poolRefs(pools: string[], prefix: string): Reference[] {
  return pools.map((name, i) => ({ kind: POOL_KIND, name, field: `${prefix}addressPools[${i}]` }));
}

function addressClaims(addresses: FieldAddress[], namespace: string, segments: string[]): Claim[] {
  return addresses.flatMap(({ address, field: f }) => {
    const ip = addressIp(address);
    return [
      { scope: `ip:${namespace}`, key: ip, field: f, what: `${ip} in ${describeNamespace(namespace)}` },
      ...[...new Set(segments.filter((s) => s !== ''))].map((bridge) => ({
        scope: `l2:${bridge}`,
        key: ip,
        field: f,
        what: `${ip} on the segment of bridge ${bridge}`,
      })),
    ];
  });
}

const namespaceRules: KindRules<'namespaces'> = {
  fields: [],
  immutable: [],
  normalize: () => ({}),
  references: () => [],
  claims: () => [],
};

const bridgeRules: KindRules<'bridges'> = {
  fields: ['namespace', 'ifname', 'mtu', 'mac', 'addresses', 'vlanFiltering', 'addressPools'],
  immutable: ['namespace', 'ifname'],
  normalize(v, name, input): BridgeSpec {
    const namespace = checkNamespaceField(v, 'namespace', input.namespace);
    const given = optString(v, 'ifname', input.ifname);
    let ifname = given;
    if (given === '') {
      ifname = name;
      if (Buffer.byteLength(name) > 15) {
        v.add('ifname', `defaults to the name "${name}", which is longer than 15 bytes; set ifname`);
      }
    } else {
      checkLinkIfname(v, 'ifname', given);
    }
    const mac = checkMac(v, 'mac', input.mac);
    return {
      namespace,
      ifname,
      mtu: checkMtu(v, 'mtu', input.mtu),
      mac: mac === '' ? derivedMac(`netkeep:bridges/${name}`) : mac,
      addresses: checkInterfaceAddresses(v, 'addresses', input.addresses),
      vlanFiltering: checkBool(v, 'vlanFiltering', input.vlanFiltering),
      addressPools: checkPoolNames(v, 'addressPools', input.addressPools),
    };
  },
  references: (s) => [...namespaceRef(s.namespace, 'namespace'), ...poolRefs(s.addressPools, '')],
  claims: (s, name, pooled) => [
    ifnameClaim(s.namespace, s.ifname, 'ifname'),
    // A pool is one subnet: its gateway is the address of one bridge. (Checked
    // before the addresses, so that a second bridge hears that, not of the address.)
    ...s.addressPools.map((pool, i) => ({
      scope: 'gateway:',
      key: pool,
      field: `addressPools[${i}]`,
      what: `the gateway of pool ${pool}`,
    })),
    ...addressClaims(linkAddresses(s.addresses, pooled, ''), s.namespace, [name]),
  ],
};

const VETH_END_FIELDS = ['ifname', 'namespace', 'bridge', 'addresses', 'mac', 'addressPools'] as const;

function normalizeVethEnd(v: Violations, field: string, value: unknown): VethEnd {
  if (value === undefined || value === null) {
    v.add(field, 'is required');
  }
  const input = checkObject(v, field, value);
  checkUnknownFields(v, field, input, VETH_END_FIELDS);
  const bridge = optString(v, `${field}.bridge`, input.bridge);
  if (bridge !== '') checkResourceName(v, `${field}.bridge`, bridge);
  return {
    ifname: checkLinkIfname(v, `${field}.ifname`, input.ifname),
    namespace: checkNamespaceField(v, `${field}.namespace`, input.namespace),
    bridge,
    addresses: checkInterfaceAddresses(v, `${field}.addresses`, input.addresses),
    mac: checkMac(v, `${field}.mac`, input.mac),
    addressPools: checkPoolNames(v, `${field}.addressPools`, input.addressPools),
  };
}

const vethRules: KindRules<'veths'> = {
  fields: ['mtu', 'a', 'b'],
  immutable: ['a.ifname', 'a.namespace', 'b.ifname', 'b.namespace'],
  normalize(v, _name, input): VethSpec {
    const spec: VethSpec = {
      mtu: checkMtu(v, 'mtu', input.mtu),
      a: normalizeVethEnd(v, 'a', input.a),
      b: normalizeVethEnd(v, 'b', input.b),
    };
    if (spec.a.ifname !== '' && spec.a.namespace === spec.b.namespace && spec.a.ifname === spec.b.ifname) {
      v.add('b.ifname', `both ends are named "${spec.a.ifname}" in the same namespace`);
    }
    return spec;
  },
  references: (s) =>
    (['a', 'b'] as const).flatMap((end) => [
      ...namespaceRef(s[end].namespace, `${end}.namespace`),
      ...(s[end].bridge === '' ? [] : [{ kind: 'bridges' as const, name: s[end].bridge, field: `${end}.bridge` }]),
      ...poolRefs(s[end].addressPools, `${end}.`),
    ]),
  claims: (s, name, pooled) =>
    (['a', 'b'] as const).flatMap((end) => {
      const addresses = linkAddresses(s[end].addresses, pooled, `${end}.`);
      return [
        ifnameClaim(s[end].namespace, s[end].ifname, `${end}.ifname`),
        // The two ends are one link layer even without a bridge: an address once per pair.
        ...addresses.map(({ address, field }) => ({
          scope: `pair:${name}`,
          key: addressIp(address),
          field,
          what: `${addressIp(address)} on veth pair ${name}`,
        })),
        // Both ends of a pair are on the segment of any bridge either end is a port of.
        ...addressClaims(addresses, s[end].namespace, [s.a.bridge, s.b.bridge]),
      ];
    }),
};

const routeRules: KindRules<'routes'> = {
  fields: ['namespace', 'destination', 'via', 'device', 'metric'],
  immutable: ['namespace', 'destination'],
  normalize(v, _name, input): RouteSpec {
    const namespace = checkNamespaceField(v, 'namespace', input.namespace);
    const destText = optString(v, 'destination', input.destination);
    let destination = destText;
    let family: 4 | 6 | 0 = 0;
    if (destText === '') {
      v.add('destination', 'is required: a network like 10.60.0.0/16, or "default"');
    } else if (destText !== 'default') {
      const dst = parseCidr(destText);
      if (!dst) {
        v.add('destination', `"${destText}" is not a network in CIDR form, like 10.60.0.0/16, or "default"`);
      } else if (!dst.isNetwork) {
        v.add('destination', `${destText} has host bits set; the network is written with them clear`);
      } else {
        // A zero-length prefix is the default route: the kernel reports it as "default"
        // (IPv6 keeps ::/0, so that a device-only route knows its family).
        destination = dst.prefixLength === 0 && dst.family === 4 ? 'default' : dst.text;
        family = dst.family;
      }
    }
    const viaText = optString(v, 'via', input.via);
    let via = viaText;
    if (viaText !== '') {
      const gw = parseIp(viaText);
      if (!gw) v.add('via', `"${viaText}" is not an IP address`);
      else if (family !== 0 && gw.family !== family) v.add('via', `is IPv${gw.family} but destination is IPv${family}`);
      else via = gw.address;
    }
    const deviceText = optString(v, 'device', input.device);
    if (deviceText !== '') checkIfname(v, 'device', deviceText);
    if (viaText === '' && deviceText === '') v.add('via', 'a route needs a gateway (via), a device, or both');
    return { namespace, destination, via, device: deviceText, metric: checkUint32(v, 'metric', input.metric) };
  },
  references: (s) => namespaceRef(s.namespace, 'namespace'),
  claims: (s) => {
    const family = routeFamily(s);
    // The kernel stores IPv6 metric 0 as 1024 (IP6_RT_PRIO_USER): the same route.
    const metric = s.metric === 0 && family === 6 ? 1024 : s.metric;
    const dst = s.destination === '::/0' ? 'default' : s.destination;
    return [
      {
        scope: `route:${s.namespace}`,
        key: `${family} ${dst} ${metric}`,
        field: 'destination',
        what: `the route to ${s.destination} with metric ${metric} in ${describeNamespace(s.namespace)}`,
      },
    ];
  },
};

/** The VIP a load balancer uses: its own, or the one allocated from `vipPool`. */
export function effectiveVip(s: LoadBalancerSpec, pooled: Pooled): string {
  const fromPool = pooled.vipPool?.[0];
  return s.vip !== '' ? s.vip : fromPool ? addressIp(fromPool) : '';
}

const loadBalancerRules: KindRules<'loadbalancers'> = {
  fields: ['namespace', 'vip', 'vipPool', 'ports', 'backends', 'algorithm', 'sessionAffinity', 'sourceRanges'],
  immutable: ['namespace'],
  normalize: (v, _name, input) => normalizeLoadBalancerSpec(v, input, checkNamespaceField(v, 'namespace', input.namespace)),
  references: (s) => [
    ...namespaceRef(s.namespace, 'namespace'),
    ...(s.vipPool === '' ? [] : [{ kind: POOL_KIND as PoolKind, name: s.vipPool, field: 'vipPool' }]),
  ],
  // One VIP:port/protocol is one service in a namespace: its packets can go one way only.
  claims: (s, _name, pooled) => {
    const vip = effectiveVip(s, pooled);
    return s.ports.map((p, i) => ({
      scope: `vip:${s.namespace}`,
      key: `${vip} ${p.protocol} ${p.port}`,
      field: `ports[${i}].port`,
      what: `${p.protocol} ${vip.includes(':') ? `[${vip}]` : vip}:${p.port} in ${describeNamespace(s.namespace)}`,
    }));
  },
};

/** The rules of every kind. */
export const RULES: { [K in Kind]: KindRules<K> } = {
  namespaces: namespaceRules,
  bridges: bridgeRules,
  veths: vethRules,
  routes: routeRules,
  loadbalancers: loadBalancerRules,
};

/**
 * The family of a route: 6 for an IPv6 destination or gateway, else 4.
 * `default` takes the gateway's family (a default route with only a device is IPv4).
 */
export function routeFamily(spec: RouteSpec): 4 | 6 {
  if (spec.destination !== 'default') return spec.destination.includes(':') ? 6 : 4;
  return spec.via.includes(':') ? 6 : 4;
}
