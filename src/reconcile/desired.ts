/**
 * Desired state: the stored intent turned into the kernel objects it means,
 * grouped by network namespace. Pure; no kernel and no store access.
 */
import { routeFamily } from '../domain/rules.js';
import { HOST_NAMESPACE, ownerAlias, type Bridge, type Kind, type Namespace, type Route, type VethPair } from '../domain/types.js';

/** `<kind>/<name>`: the resource a kernel object belongs to. */
export type OwnerRef = `${Kind}/${string}`;

export function ownerRef(kind: Kind, name: string): OwnerRef {
  return `${kind}/${name}`;
}

export interface DesiredLink {
  owner: OwnerRef;
  netns: string;
  ifname: string;
  type: 'bridge' | 'veth';
  /** `netkeep:<kind>/<name>` (DESIGN.md §3). */
  alias: string;
  /** Bytes; 0 = not managed. */
  mtu: number;
  /** "" = not managed (the kernel's random MAC stays). */
  mac: string;
  /** Interface addresses `address/prefixLength`, canonical. */
  addresses: string[];
  /** ifname of the bridge this link is a port of, "" for none. */
  master: string;
  /** The Bridge resource behind `master`. */
  masterOwner?: OwnerRef;
  /** Bridges only. */
  vlanFiltering: boolean;
  /**
   * Bridge ports only: hairpin mode, for a port whose pair carries a
   * load-balancer backend. With br_netfilter, a backend's connection to its
   * own VIP is DNATed on the bridge and must leave by the port it came in.
   */
  hairpin: boolean;
  /** Veths only: the other end. */
  peer?: { netns: string; ifname: string; mac: string };
  /** Veths only: which end of the pair this is. */
  end?: 'a' | 'b';
}

export interface DesiredRoute {
  owner: OwnerRef;
  netns: string;
  family: 4 | 6;
  destination: string;
  via: string;
  device: string;
  /** The metric the kernel will report: 0 for IPv6 becomes 1024 (IP6_RT_PRIO_USER). */
  metric: number;
}

export interface DesiredState {
  /** Namespace resources by netns name. */
  namespaces: Map<string, OwnerRef>;
  links: DesiredLink[];
  routes: DesiredRoute[];
}

/** Default veth MTU when the spec leaves it at 0: the kernel's ETH_DATA_LEN. */
export const DEFAULT_VETH_MTU = 1500;

/**
 * The addresses links take from pools (issue 3), read from the store with
 * the snapshot: `bridges/<name>` and `veths/<name>/<end>` → `address/prefixLength`.
 */
export type PooledAddresses = ReadonlyMap<string, readonly string[]>;

/** The key of a link in PooledAddresses. */
export function pooledKey(kind: 'bridges' | 'veths', name: string, end?: 'a' | 'b'): string {
  return end ? `${kind}/${name}/${end}` : `${kind}/${name}`;
}

/** The desired kernel objects of the stored resources; `pooled` adds the pool addresses of their links. */
export function buildDesired(
  input: {
    namespaces: Namespace[];
    bridges: Bridge[];
    veths: VethPair[];
    routes: Route[];
  },
  pooled: PooledAddresses = new Map(),
  backendAddresses: ReadonlySet<string> = new Set(),
): DesiredState {
  const bridgeIfname = new Map(input.bridges.map((b) => [b.name, b.spec.ifname]));
  const namespaces = new Map(input.namespaces.map((n) => [n.name, ownerRef('namespaces', n.name)]));
  const links: DesiredLink[] = [];
  for (const b of input.bridges) {
    links.push({
      owner: ownerRef('bridges', b.name),
      netns: b.spec.namespace,
      ifname: b.spec.ifname,
      type: 'bridge',
      alias: ownerAlias('bridges', b.name),
      mtu: b.spec.mtu,
      mac: b.spec.mac,
      addresses: [...b.spec.addresses, ...(pooled.get(pooledKey('bridges', b.name)) ?? [])],
      master: '',
      vlanFiltering: b.spec.vlanFiltering,
      hairpin: false,
    });
  }
  for (const v of input.veths) {
    const carriesBackend = (['a', 'b'] as const).some((end) =>
      [...v.spec[end].addresses, ...(pooled.get(pooledKey('veths', v.name, end)) ?? [])].some((a) => backendAddresses.has(a.slice(0, a.indexOf('/')))),
    );
    for (const end of ['a', 'b'] as const) {
      const me = v.spec[end];
      const other = v.spec[end === 'a' ? 'b' : 'a'];
      links.push({
        owner: ownerRef('veths', v.name),
        netns: me.namespace,
        ifname: me.ifname,
        type: 'veth',
        alias: ownerAlias('veths', v.name),
        mtu: v.spec.mtu === 0 ? DEFAULT_VETH_MTU : v.spec.mtu,
        mac: me.mac,
        addresses: [...me.addresses, ...(pooled.get(pooledKey('veths', v.name, end)) ?? [])],
        master: me.bridge === '' ? '' : (bridgeIfname.get(me.bridge) ?? ''),
        ...(me.bridge === '' ? {} : { masterOwner: ownerRef('bridges', me.bridge) }),
        vlanFiltering: false,
        hairpin: me.bridge !== '' && carriesBackend,
        peer: { netns: other.namespace, ifname: other.ifname, mac: other.mac },
        end,
      });
    }
  }
  const routes: DesiredRoute[] = input.routes.map((r) => {
    const family = routeFamily(r.spec);
    return {
      owner: ownerRef('routes', r.name),
      netns: r.spec.namespace,
      family,
      // The kernel reports an IPv6 ::/0 as "default", like IPv4's.
      destination: r.spec.destination === '::/0' ? 'default' : r.spec.destination,
      via: r.spec.via,
      device: r.spec.device,
      metric: r.spec.metric === 0 && family === 6 ? 1024 : r.spec.metric,
    };
  });
  return { namespaces, links, routes };
}

/** Every netns the desired state puts something in, the host ("") first. */
export function desiredNetns(d: DesiredState): string[] {
  const set = new Set<string>([HOST_NAMESPACE, ...d.namespaces.keys()]);
  for (const l of d.links) set.add(l.netns);
  for (const r of d.routes) set.add(r.netns);
  return sortNetns([...set]);
}

/** The order batches run in: the host first, then namespaces by name. */
export function sortNetns(names: string[]): string[] {
  return [...new Set(names)].sort((a, b) => (a === b ? 0 : a === '' ? -1 : b === '' ? 1 : a < b ? -1 : 1));
}
