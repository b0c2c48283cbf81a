import type { LoadBalancerSpec, LoadBalancerStatus } from './loadbalancer.js';

/**
 * Resource types: the desired state a caller declares (spec), the metadata
 * netkeep maintains, and the observed state the reconciler reports (status).
 * Field names are the API contract (DESIGN.md §2) in lowerCamelCase.
 */

/** REST collection names, also the `kind` stored with every resource. */
export const KINDS = ['namespaces', 'bridges', 'veths', 'routes', 'loadbalancers'] as const;
export type Kind = (typeof KINDS)[number];

/** The host network namespace is written as the empty string. */
export const HOST_NAMESPACE = '';

export type State = 'PENDING' | 'READY' | 'FAILED';

/** Status fields every resource has. Times are RFC 3339 strings in UTC. */
export interface BaseStatus {
  state: State;
  /** Why the resource is not READY, in words a human can act on; "" when READY. */
  message: string;
  /** The `generation` the kernel was last reconciled to; 0 before the first pass. */
  observedGeneration: number;
  /** When the reconciler last looked at this resource; "" before the first pass. */
  lastReconcileTime: string;
}

/** Observed state of one link. `ifindex` is 0 while the link does not exist. */
export interface LinkStatus {
  ifindex: number;
  mac: string;
}

export interface NamespaceSpec {
  /* A namespace has no spec fields besides its name and labels. */
}
export type NamespaceStatus = BaseStatus;

export interface BridgeSpec {
  /** Network namespace the bridge lives in; "" is the host. */
  namespace: string;
  /** Kernel interface name (dev_valid_name()); defaults to the resource name. */
  ifname: string;
  /** Bytes; 0 leaves the kernel default (1500). */
  mtu: number;
  /** Lowercase colon-separated unicast MAC; always set (derived from the name when not given). */
  mac: string;
  /** Interface addresses, `address/prefixLength`, normalized (RFC 5952 for IPv6). */
  addresses: string[];
  /** 802.1Q VLAN filtering (`ip link set … type bridge vlan_filtering 1`). */
  vlanFiltering: boolean;
  /**
   * IpPool names; the bridge takes each pool's gateway with the pool's prefix
   * length (`10.50.0.1/24`), besides `addresses`. A pool serves one bridge.
   */
  addressPools: string[];
}

/** An interface address that came from a pool: `address` is `ip/prefixLength`. */
export interface PooledAddress {
  pool: string;
  address: string;
}

/** The addresses a resource's link holds from its `addressPools`, in that order (filled on read). */
export interface PooledStatus {
  poolAddresses: PooledAddress[];
}
export type BridgeStatus = BaseStatus & LinkStatus & PooledStatus;

export interface VethEnd {
  ifname: string;
  namespace: string;
  /** Name of a Bridge in the same namespace to enslave this end to; "" for none. */
  bridge: string;
  addresses: string[];
  /** "" lets the kernel choose a random MAC. */
  mac: string;
  /**
   * IpPool names; this end holds one allocation from each (owner
   * `veths/<name>/<end>`, made and released with the veth), configured with
   * the pool's prefix length.
   */
  addressPools: string[];
}

export interface VethSpec {
  /** Bytes, applied to both ends; 0 leaves the kernel default (1500). */
  mtu: number;
  a: VethEnd;
  b: VethEnd;
}
export type VethStatus = BaseStatus & { a: LinkStatus & PooledStatus; b: LinkStatus & PooledStatus };

export interface RouteSpec {
  namespace: string;
  /** A network in CIDR form (host bits clear) or "default". */
  destination: string;
  /** Gateway address of the destination's family; "" for a direct route. */
  via: string;
  /** Output interface name; "" lets the kernel choose from `via`. */
  device: string;
  /** Route priority; 0 is the kernel default (0 for IPv4, 1024 for IPv6). */
  metric: number;
}
export type RouteStatus = BaseStatus;

export interface SpecOf {
  namespaces: NamespaceSpec;
  bridges: BridgeSpec;
  veths: VethSpec;
  routes: RouteSpec;
  loadbalancers: LoadBalancerSpec;
}

export interface StatusOf {
  namespaces: NamespaceStatus;
  bridges: BridgeStatus;
  veths: VethStatus;
  routes: RouteStatus;
  loadbalancers: LoadBalancerStatus;
}

/** A stored resource. The API flattens `spec` into the top level. */
export interface Resource<K extends Kind = Kind> {
  kind: K;
  name: string;
  labels: Record<string, string>;
  spec: SpecOf[K];
  /** Bumped on every spec or label change; starts at 1. */
  generation: number;
  /** Opaque; changes whenever the spec or labels change. */
  etag: string;
  createTime: string;
  updateTime: string;
  status: StatusOf[K];
}

export type Namespace = Resource<'namespaces'>;
export type Bridge = Resource<'bridges'>;
export type VethPair = Resource<'veths'>;
export type Route = Resource<'routes'>;
export type LoadBalancer = Resource<'loadbalancers'>;

/** The singular, human name of each kind, for messages and the ownership alias. */
export const KIND_SINGULAR: Record<Kind, string> = {
  namespaces: 'namespace',
  bridges: 'bridge',
  veths: 'veth',
  routes: 'route',
  loadbalancers: 'load balancer',
};

/** Status of a resource that the reconciler has not looked at yet. */
export function pendingStatus<K extends Kind>(kind: K): StatusOf[K] {
  const base: BaseStatus = { state: 'PENDING', message: '', observedGeneration: 0, lastReconcileTime: '' };
  const link: LinkStatus = { ifindex: 0, mac: '' };
  switch (kind) {
    case 'bridges':
      return { ...base, ...link, poolAddresses: [] } as BridgeStatus as StatusOf[K];
    case 'veths':
      return { ...base, a: { ...link, poolAddresses: [] }, b: { ...link, poolAddresses: [] } } as VethStatus as StatusOf[K];
    case 'loadbalancers':
      return { ...base, vip: '', backends: [] } as LoadBalancerStatus as StatusOf[K];
    default:
      return base as unknown as StatusOf[K];
  }
}

/**
 * The alias netkeep writes on every link it creates (`ip link set … alias`),
 * and the only proof of ownership it trusts (DESIGN.md §3).
 */
export function ownerAlias(kind: Kind, name: string): string {
  return `netkeep:${kind}/${name}`;
}
