/**
 * The observed state of one network namespace as iproute2 reports it
 * (`ip -j -d addr show`, `ip -j route show table all`), reduced to what the
 * reconciler compares, and the interface of the iproute2 client.
 */

/** One interface address. `scope` is iproute2's text ("global", "link", "host"). */
export interface ObservedAddress {
  family: 4 | 6;
  /** Canonical address text (RFC 5952 for IPv6). */
  address: string;
  prefixLength: number;
  scope: string;
}

export interface ObservedLink {
  ifindex: number;
  ifname: string;
  /** `linkinfo.info_kind`: "bridge", "veth", ...; "" for devices without one (lo). */
  kind: string;
  /** IFLA_IFALIAS, "" when unset. Ours carry `netkeep:<kind>/<name>`. */
  alias: string;
  mtu: number;
  /** Lowercase MAC. */
  mac: string;
  /** Administratively up (IFF_UP in `flags`). */
  up: boolean;
  /** ifname of the master device (a bridge port's bridge), "" when none. */
  master: string;
  /** For a veth: the peer's ifindex in its namespace (`link_index`), 0 when unknown. */
  peerIfindex: number;
  /** For a bridge: `linkinfo.info_data.vlan_filtering`. */
  vlanFiltering: boolean;
  /** For a bridge port: hairpin mode (`linkinfo.info_slave_data.hairpin`), frames may leave by the port they came in. */
  hairpin: boolean;
  addresses: ObservedAddress[];
}

/** A unicast route of the main table. */
export interface ObservedRoute {
  family: 4 | 6;
  /** CIDR, or "default". */
  destination: string;
  /** "" when direct. */
  via: string;
  /** Output interface name, "" when none. */
  device: string;
  metric: number;
  /** iproute2's protocol text: "kernel", "boot", "static", or a number like "77". */
  protocol: string;
}

export interface ObservedNetns {
  /** "" is the host namespace. */
  netns: string;
  links: ObservedLink[];
  routes: ObservedRoute[];
}

/** One line of an `ip -batch` script with the resource it works for. */
export interface BatchLine {
  /** The argv of one ip command without the leading `ip`, e.g. ['link', 'set', 'br0', 'up']. */
  args: string[];
  /** `<kind>/<name>` of the resource the line works for, to attribute failures. */
  owner: string;
}

export interface BatchFailure {
  /** 0-based index into the lines passed to `batch`. */
  index: number;
  owner: string;
  /**
   * iproute2's error text for that line, e.g. "RTNETLINK answers: File exists".
   * Lines that never ran because `ip` exited at an earlier line it could not
   * parse read "not run: ip -batch exited at line N". Read its meaning with
   * classifyStderr() from src/kernel/errors.ts (exists, not-found, not-run, …).
   */
  message: string;
}

/** The iproute2 client the reconciler uses; the real one spawns `ip`, the fake is in memory. */
export interface IpClient {
  /** Names of the namespaces under /run/netns. Equivalent to `ip netns list`. */
  listNetns(): Promise<string[]>;
  /**
   * Links with their addresses, and the main table's unicast routes, of one
   * namespace ("" = host), read in one process. Throws NetnsNotFoundError when
   * the namespace does not exist.
   */
  observe(netns: string): Promise<ObservedNetns>;
  /**
   * Runs every line in one `ip [-n <netns>] -force -batch -` process and
   * returns the lines that failed (empty when all succeeded). Lines keep going
   * after a failure (-force). An empty list spawns nothing.
   */
  batch(netns: string, lines: BatchLine[]): Promise<BatchFailure[]>;
  /**
   * Like `batch`, then reads the namespace back in the same process, so a
   * pass costs one process per namespace for its writes and their check:
   * `ip [-n <netns>] -j -d -force -batch -` with `addr show` and
   * `route show table all` after the lines. `observed` is undefined when ip
   * stopped before the reads (an aborting line) or the namespace is gone.
   */
  apply(netns: string, lines: BatchLine[]): Promise<{ failures: BatchFailure[]; observed?: ObservedNetns }>;
  /** Throws BatchArgError when `line` cannot be written into an `ip -batch` script (batch would refuse it). */
  checkLine(line: BatchLine): void;
}

/** The route protocol number netkeep marks its routes with (`ip route add … proto 77`). */
export const ROUTE_PROTOCOL = 77;
