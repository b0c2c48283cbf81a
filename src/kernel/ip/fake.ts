/**
 * FakeIpClient: an in-memory model of network namespaces, links, addresses
 * and main-table routes that EXECUTES the `ip -batch` lines the reconciler
 * writes, so tests compare state (observe(), dump()), not call lists.
 *
 * It follows what Linux 6.x + iproute2 6.1 do (checked against the real
 * kernel by test/kernel/ip-client.test.ts), including the parts that surprise:
 * - ifindexes increase per namespace and are never reused; a veth's peer is
 *   registered first, so it gets its index before the local end.
 * - Deleting a veth end deletes its peer; deleting a namespace deletes its
 *   links and the peers of its veths elsewhere (the kernel does this
 *   asynchronously after `ip netns del` returns; the fake at once).
 * - A bridge whose MTU was not set with `link set … mtu` (an `mtu` given to
 *   `link add` does not count) takes the smallest MTU of its ports, or 1500
 *   without ports, whenever a port joins, leaves or changes MTU
 *   (br_mtu_auto_adjust()).
 * - A bridge whose MAC was not set explicitly takes the smallest MAC of its
 *   ports, and 00:00:00:00:00:00 when its last port leaves.
 * - An IPv4 address adds its connected route (proto kernel, scope link) only
 *   while the link is up; an IPv6 address its prefix route (metric 256).
 *   Setting a link down deletes every route through it and its IPv6
 *   addresses (keep_addr_on_down=0); IPv4 addresses stay. Deleting a primary
 *   IPv4 address deletes its secondaries (promote_secondaries=0); deleting
 *   the last one deletes every IPv4 route through the link.
 * - `lo` of a new namespace is down and has no address; setting it up adds
 *   127.0.0.1/8 and ::1/128. Its routes live in the local table (not modeled).
 * - IPv4 addresses list primaries in insertion order, then secondaries;
 *   IPv6 addresses list the newest global one first.
 * - A gateway must be reachable through a direct route on an up link
 *   ("Error: Nexthop has invalid gateway."); for IPv6 without `dev` the link
 *   also needs carrier ("RTNETLINK answers: No route to host"). A veth has
 *   carrier when both ends are up, a bridge when it is up and has no port or
 *   a port with carrier.
 * - Lines iproute2 cannot parse (a `netns` or `master` that does not exist, a
 *   malformed prefix, mtu or protocol) end the whole batch, as `ip` exits;
 *   the fake reports them like IprouteClient does (parse.ts abortFailures()).
 *
 * Not modeled (a line using them throws an Error, which is a test bug):
 * other tables and route types, multipath, `link set … name/netns`, link
 * kinds other than bridge and veth (use addForeignLink()), IPv6 link-local
 * addresses and their fe80::/64 routes, DAD, operstate, random MACs (the
 * fake's generated MACs are deterministic: 02:fa:ce:xx:xx:xx).
 *
 * Route order in observe() is deterministic (family, destination, metric),
 * not necessarily the kernel's.
 */
import ipaddr from 'ipaddr.js';
import { NetnsNotFoundError } from '../errors.js';
import { renderBatch } from './client.js';
import { abortFailures } from './parse.js';
import type { BatchFailure, BatchLine, IpClient, ObservedAddress, ObservedLink, ObservedNetns, ObservedRoute } from './types.js';

/** A batch line that failed; iproute2 prints the message and goes on (-force). */
class LineFailed extends Error {}
/** A batch line iproute2 cannot parse: `ip` prints the message and exits. */
class LineAborted extends Error {}

const failed = (message: string): never => {
  throw new LineFailed(message);
};
const aborted = (message: string): never => {
  throw new LineAborted(message);
};
const notModeled = (what: string): never => {
  throw new Error(`FakeIpClient does not model ${what}`);
};

const ETH_DATA_LEN = 1500;
const LO_MTU = 65536;
const MIN_MTU = 68;
const MAX_MTU = 65535;
const ZERO_MAC = '00:00:00:00:00:00';
/** IFNAMSIZ - 1 (include/uapi/linux/if.h). */
const MAX_IFNAME = 15;

/** /etc/iproute2/rt_protos of iproute2 6.1: number → the name ip prints. */
const RT_PROTOS: ReadonlyMap<number, string> = new Map([
  [0, 'unspec'], [1, 'redirect'], [2, 'kernel'], [3, 'boot'], [4, 'static'], [8, 'gated'], [9, 'ra'],
  [10, 'mrt'], [11, 'zebra'], [12, 'bird'], [13, 'dnrouted'], [14, 'xorp'], [15, 'ntk'], [16, 'dhcp'],
  [18, 'keepalived'], [42, 'babel'], [99, 'openr'], [186, 'bgp'], [187, 'isis'], [188, 'ospf'],
  [189, 'rip'], [192, 'eigrp'],
]);
const RT_PROTO_NAMES = new Set(RT_PROTOS.values());

interface Addr {
  family: 4 | 6;
  address: string;
  prefixLength: number;
  scope: string;
  /** IFA_F_SECONDARY: an IPv4 address in the subnet of an earlier one. */
  secondary: boolean;
}

interface Link {
  ifindex: number;
  ifname: string;
  kind: string;
  alias: string;
  mtu: number;
  mac: string;
  up: boolean;
  /** ifindex of the master bridge in the same namespace, 0 when none. */
  master: number;
  /** A veth's other end. */
  peer?: { netns: string; ifindex: number };
  vlanFiltering: boolean;
  /** Bridge ports: hairpin mode (BR_HAIRPIN_MODE); cleared when the port leaves its bridge. */
  hairpin: boolean;
  /** addr_assign_type == NET_ADDR_SET: a bridge keeps its MAC. */
  macSet: boolean;
  /** BROPT_MTU_SET_BY_USER: a bridge keeps its MTU. */
  mtuSetByUser: boolean;
  addrs4: Addr[];
  /** Kernel order: by scope, newest first within a scope. */
  addrs6: Addr[];
}

interface Route {
  family: 4 | 6;
  /** Network address, canonical. */
  network: string;
  prefixLength: number;
  via: string;
  dev: number;
  metric: number;
  protocol: string;
  /** Creation order, to keep sorting stable. */
  seq: number;
}

interface Netns {
  name: string;
  nextIfindex: number;
  links: Map<number, Link>;
  routes: Route[];
}

/** A link made by hand (not through a batch), for drift tests. */
export interface ForeignLinkSpec {
  ifname: string;
  /** `linkinfo.info_kind`, e.g. "dummy", "macvlan", "bridge"; default "dummy". */
  kind?: string;
  mtu?: number;
  mac?: string;
  up?: boolean;
  alias?: string;
}

export interface FakeIpClientOptions {
  /**
   * Whether bridges accept `vlan_filtering` (CONFIG_BRIDGE_VLAN_FILTERING).
   * Default true; false answers like a kernel without it:
   * "RTNETLINK answers: Operation not supported", even for `vlan_filtering 0`.
   */
  vlanFilteringSupported?: boolean;
}

/** Keywords iproute2 matches by prefix before taking a word as an ifname (matches() in ip/iplink.c). */
const LINK_PREFIX_KEYWORDS = [
  'address', 'broadcast', 'txqueuelen', 'multicast', 'allmulticast', 'promisc', 'trailers', 'arp',
  'dynamic', 'alias', 'numtxqueues', 'numrxqueues', 'group', 'mode', 'state', 'protodown',
];
const LINK_KEYWORDS = new Set(['up', 'down', 'name', 'dev', 'mtu', 'netns', 'type', 'master', 'nomaster', 'peer', 'link', 'index']);

/** In-memory {@link IpClient}; see the file header for what it models. */
export class FakeIpClient implements IpClient {
  /** Number of batch() calls that had at least one line. */
  writes = 0;

  private readonly namespaces = new Map<string, Netns>();
  private readonly vlanFilteringSupported: boolean;
  private macCounter = 0;
  private routeSeq = 0;

  /** Starts with the host namespace ("") holding `lo`, up, as the sandbox has it. */
  constructor(options: FakeIpClientOptions = {}) {
    this.vlanFilteringSupported = options.vlanFilteringSupported ?? true;
    const host = this.newNetns('');
    this.setUp(host, this.link(host, 'lo'));
  }

  async listNetns(): Promise<string[]> {
    return [...this.namespaces.keys()].filter((n) => n !== '').sort();
  }

  /** @throws NetnsNotFoundError when the namespace does not exist. */
  async observe(netns: string): Promise<ObservedNetns> {
    return this.snapshot(this.requireNetns(netns));
  }

  /**
   * Executes the lines in order with `-force` semantics and returns the
   * failures, like IprouteClient.batch().
   *
   * @throws BatchArgError before executing, for an argument IprouteClient
   *   could not write into a script either.
   * @throws NetnsNotFoundError when the namespace does not exist.
   * @throws Error for a command the fake does not model.
   */
  async batch(netns: string, lines: BatchLine[]): Promise<BatchFailure[]> {
    if (lines.length === 0) return [];
    renderBatch(lines);
    const ns = this.requireNetns(netns);
    this.writes++;
    return this.execute(ns, lines);
  }

  checkLine(line: BatchLine): void {
    renderBatch([line]);
  }

  async apply(netns: string, lines: BatchLine[]): Promise<{ failures: BatchFailure[]; observed?: ObservedNetns }> {
    const failures = await this.batch(netns, lines);
    if (failures.some((f) => f.message.startsWith('not run')) || (netns !== '' && !this.namespaces.has(netns))) {
      return { failures };
    }
    return { failures, observed: await this.observe(netns) };
  }

  // ---- test helpers: state ------------------------------------------------

  /**
   * The whole state as deterministic text, one namespace after the other
   * (host first, then by name), in a form close to `ip addr` / `ip route`:
   *
   * ```
   * netns ""
   *   1: lo up mtu 65536 mac 00:00:00:00:00:00
   *       inet 127.0.0.1/8 scope host
   *   route 10.0.0.0/24 dev br0 proto kernel metric 0
   * ```
   */
  dump(): string {
    const out: string[] = [];
    const names = [...this.namespaces.keys()].sort();
    for (const name of names) {
      const snap = this.snapshot(this.requireNetns(name));
      out.push(`netns ${JSON.stringify(name)}`);
      for (const l of snap.links) {
        const parts = [`  ${l.ifindex}: ${l.ifname}`];
        if (l.kind !== '') parts.push(l.kind);
        parts.push(l.up ? 'up' : 'down', `mtu ${l.mtu}`, `mac ${l.mac}`);
        if (l.master !== '') parts.push(`master ${l.master}`);
        if (l.kind === 'veth') parts.push(`peer ${this.peerLabel(name, l.ifindex)}`);
        if (l.kind === 'bridge') parts.push(`vlan_filtering ${l.vlanFiltering ? 1 : 0}`);
        if (l.hairpin) parts.push('hairpin on');
        if (l.alias !== '') parts.push(`alias ${JSON.stringify(l.alias)}`);
        out.push(parts.join(' '));
        for (const a of l.addresses) {
          out.push(`      ${a.family === 4 ? 'inet' : 'inet6'} ${a.address}/${a.prefixLength} scope ${a.scope}`);
        }
      }
      for (const r of snap.routes) {
        const parts = [`  route ${r.destination}`];
        if (r.via !== '') parts.push(`via ${r.via}`);
        if (r.device !== '') parts.push(`dev ${r.device}`);
        parts.push(`proto ${r.protocol}`, `metric ${r.metric}`);
        out.push(parts.join(' '));
      }
    }
    return `${out.join('\n')}\n`;
  }

  // ---- test helpers: drift made by hand (not counted in `writes`) ----------

  /**
   * Runs one ip command as an admin would by hand, e.g.
   * `byHand('', ['link', 'set', 'dev', 'br0', 'down'])`. Not counted in `writes`.
   * @throws Error with iproute2's message when the command fails.
   */
  byHand(netns: string, args: string[]): void {
    const [failure] = this.execute(this.requireNetns(netns), [{ args, owner: 'by-hand' }]);
    if (failure !== undefined) throw new Error(`by hand: ip ${args.join(' ')}: ${failure.message}`);
  }

  /** Equivalent to: ip [-n NETNS] link del dev IFNAME (by hand). */
  deleteLinkByHand(netns: string, ifname: string): void {
    this.byHand(netns, ['link', 'del', 'dev', ifname]);
  }

  /** Equivalent to: ip [-n NETNS] link set dev IFNAME down (by hand). */
  setDownByHand(netns: string, ifname: string): void {
    this.byHand(netns, ['link', 'set', 'dev', ifname, 'down']);
  }

  /** Equivalent to: ip [-n NETNS] link set dev IFNAME nomaster (by hand). */
  setNomasterByHand(netns: string, ifname: string): void {
    this.byHand(netns, ['link', 'set', 'dev', ifname, 'nomaster']);
  }

  /** Equivalent to: ip [-n NETNS] addr del CIDR dev IFNAME (by hand). */
  deleteAddressByHand(netns: string, ifname: string, cidr: string): void {
    this.byHand(netns, ['addr', 'del', cidr, 'dev', ifname]);
  }

  /** Equivalent to: ip [-n NETNS] route del DESTINATION [via VIA] (by hand). */
  deleteRouteByHand(netns: string, destination: string, via?: string): void {
    this.byHand(netns, ['route', 'del', destination, ...(via === undefined ? [] : ['via', via])]);
  }

  /** Equivalent to: ip netns del NAME (by hand). */
  deleteNetnsByHand(name: string): void {
    this.byHand('', ['netns', 'del', name]);
  }

  /**
   * Adds a link netkeep did not make (no alias unless given), of any kind,
   * e.g. a foreign `eth0` or a `dummy` squatting on a name.
   * @returns its ifindex.
   * @throws NetnsNotFoundError, or Error when the ifname is taken.
   */
  addForeignLink(netns: string, spec: ForeignLinkSpec): number {
    const ns = this.requireNetns(netns);
    if (this.findLink(ns, spec.ifname) !== undefined) throw new Error(`addForeignLink: ${spec.ifname} exists`);
    const link = this.newLink(ns, spec.ifname, spec.kind ?? 'dummy', spec.mtu ?? ETH_DATA_LEN, spec.mac);
    link.alias = spec.alias ?? '';
    if (spec.up === true) this.setUp(ns, link);
    return link.ifindex;
  }

  // ---- execution -----------------------------------------------------------

  private execute(ns: Netns, lines: readonly BatchLine[]): BatchFailure[] {
    const failures: BatchFailure[] = [];
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i] as BatchLine;
      try {
        this.command(ns, new Words(line.args));
      } catch (err) {
        if (err instanceof LineFailed) {
          failures.push({ index: i, owner: line.owner, message: err.message });
        } else if (err instanceof LineAborted) {
          failures.push(...abortFailures(lines, i, err.message));
          break;
        } else {
          throw err;
        }
      }
    }
    return failures;
  }

  private command(ns: Netns, w: Words): void {
    const object = w.next();
    const verb = w.next();
    switch (object) {
      case 'netns':
        return this.netnsCommand(verb, w);
      case 'link':
        if (verb === 'add') return this.linkAdd(ns, w);
        if (verb === 'set') return this.linkSet(ns, w);
        if (verb === 'del' || verb === 'delete') return this.linkDel(ns, w);
        return notModeled(`ip link ${verb}`);
      case 'addr':
      case 'address':
        if (verb === 'add' || verb === 'del' || verb === 'delete') return this.addrCommand(ns, verb, w);
        return notModeled(`ip addr ${verb}`);
      case 'route':
        if (verb === 'add' || verb === 'replace' || verb === 'del' || verb === 'delete') return this.routeCommand(ns, verb, w);
        return notModeled(`ip route ${verb}`);
      default:
        return notModeled(`ip ${object}`);
    }
  }

  /** `netns add NAME`, `netns del NAME`. */
  private netnsCommand(verb: string, w: Words): void {
    const name = w.next();
    w.end();
    if (name === '' || name === '.' || name === '..' || name.includes('/')) aborted(`Invalid netns name "${name}"`);
    if (verb === 'add') {
      if (this.namespaces.has(name)) failed(`Cannot create namespace file "/run/netns/${name}": File exists`);
      this.newNetns(name);
      return;
    }
    if (verb === 'del' || verb === 'delete') {
      const ns = this.namespaces.get(name);
      if (ns === undefined || name === '') {
        return failed(`Cannot remove namespace file "/run/netns/${name}": No such file or directory`);
      }
      for (const link of [...ns.links.values()]) this.removeLink(ns, link);
      this.namespaces.delete(name);
      return;
    }
    notModeled(`ip netns ${verb}`);
  }

  /**
   * `link add [name] NAME [mtu N] [address MAC] [alias TEXT] [master BR] [up]
   *  type bridge [vlan_filtering 0|1]` or
   * `… type veth [peer [name] PEER [netns NS] [mtu N] [address MAC]]`.
   */
  private linkAdd(ns: Netns, w: Words): void {
    const opts = this.linkOptions(ns, w, 'name');
    if (w.peek() === undefined) failed('Not enough information: "type" argument is required');
    w.next(); // type
    const kind = w.next();
    let vlanFiltering: boolean | undefined;
    let peer: LinkOptions | undefined;
    if (kind === 'bridge') {
      vlanFiltering = this.bridgeOptions(w);
    } else if (kind === 'veth') {
      if (w.peek() === 'peer') {
        w.next();
        peer = this.linkOptions(ns, w, 'name');
      }
    }
    w.end();
    if (kind !== 'bridge' && kind !== 'veth') failed('Error: Unknown device type.');
    const name = opts.name ?? notModeled('link add without a name');
    this.checkNewIfname(ns, name);
    if (kind === 'veth') {
      const peerName = peer?.name ?? notModeled('a veth without "peer name"');
      const peerNs = peer?.netns === undefined ? ns : this.requireNetns(peer.netns);
      this.checkNewIfname(peerNs, peerName);
      if (peerNs === ns && peerName === name) failed('RTNETLINK answers: File exists');
      for (const o of [opts, peer]) this.checkMtuAndMac(o);
      const peerLink = this.newLink(peerNs, peerName, 'veth', peer?.mtu ?? ETH_DATA_LEN, peer?.address);
      const link = this.newLink(ns, name, 'veth', opts.mtu ?? ETH_DATA_LEN, opts.address);
      link.peer = { netns: peerNs.name, ifindex: peerLink.ifindex };
      peerLink.peer = { netns: ns.name, ifindex: link.ifindex };
      this.applyCommon(ns, link, opts);
      return;
    }
    if (vlanFiltering !== undefined && !this.vlanFilteringSupported) failed('RTNETLINK answers: Operation not supported');
    this.checkMtuAndMac(opts);
    const link = this.newLink(ns, name, 'bridge', opts.mtu ?? ETH_DATA_LEN, opts.address);
    link.macSet = opts.address !== undefined;
    link.vlanFiltering = vlanFiltering ?? false;
    this.applyCommon(ns, link, opts);
  }

  /** alias, master and up/down of a new link (mtu and address are set at creation). */
  private applyCommon(ns: Netns, link: Link, opts: LinkOptions): void {
    if (opts.alias !== undefined) link.alias = opts.alias;
    if (opts.master !== undefined) this.setMaster(ns, link, opts.master);
    if (opts.up === true) this.setUp(ns, link);
  }

  /**
   * `link set [dev] DEV [up|down] [mtu N] [address MAC] [alias TEXT]
   *  [master BR | nomaster] [type bridge vlan_filtering 0|1]`.
   * Applied in the kernel's order: vlan_filtering, address, mtu, alias,
   * master, up/down; a failure leaves the earlier changes applied.
   */
  private linkSet(ns: Netns, w: Words): void {
    const opts = this.linkOptions(ns, w, 'dev');
    let vlanFiltering: boolean | undefined;
    let hairpin: boolean | undefined;
    if (w.peek() === 'type') {
      w.next();
      const type = w.next();
      if (type === 'bridge') vlanFiltering = this.bridgeOptions(w);
      else if (type === 'bridge_slave') hairpin = this.bridgePortOptions(w);
      else notModeled('link set … type other than bridge or bridge_slave');
    }
    w.end();
    const link = this.findLink(ns, opts.name ?? notModeled('link set without a device')) ?? failed(`Cannot find device "${opts.name}"`);
    if (hairpin !== undefined) {
      // iproute2 sends bridge_slave options to a link that is no bridge port: the kernel refuses.
      if (link.master === 0) failed('RTNETLINK answers: Operation not supported');
      link.hairpin = hairpin;
    }
    if (opts.netns !== undefined) notModeled('link set … netns');
    if (vlanFiltering !== undefined) {
      if (link.kind !== 'bridge' || !this.vlanFilteringSupported) failed('RTNETLINK answers: Operation not supported');
      link.vlanFiltering = vlanFiltering;
    }
    if (opts.address !== undefined) {
      this.checkMtuAndMac({ address: opts.address });
      link.mac = opts.address;
      if (link.kind === 'bridge') link.macSet = true;
      this.adjustMasterOf(ns, link);
    }
    if (opts.mtu !== undefined) this.setMtu(ns, link, opts.mtu);
    if (opts.alias !== undefined) link.alias = opts.alias;
    if (opts.master !== undefined) this.setMaster(ns, link, opts.master);
    if (opts.nomaster === true) this.setNomaster(ns, link);
    if (opts.up === true) this.setUp(ns, link);
    if (opts.up === false) this.setDown(ns, link);
  }

  /** `link del [dev] DEV`. */
  private linkDel(ns: Netns, w: Words): void {
    const opts = this.linkOptions(ns, w, 'dev');
    w.end();
    const link = this.findLink(ns, opts.name ?? notModeled('link del without a device')) ?? failed(`Cannot find device "${opts.name}"`);
    if (link.ifname === 'lo') failed('RTNETLINK answers: Operation not supported');
    this.removeLink(ns, link);
  }

  /**
   * Reads link options up to `type` (or the end). `master` and `netns` are
   * resolved here, as iproute2 does while parsing: a missing one ends the batch.
   */
  private linkOptions(ns: Netns, w: Words, nameKeyword: 'name' | 'dev'): LinkOptions {
    const o: LinkOptions = {};
    while (w.peek() !== undefined && w.peek() !== 'type') {
      const word = w.next();
      switch (word) {
        case 'name':
        case 'dev':
          o.name = w.value();
          break;
        case 'up':
          o.up = true;
          break;
        case 'down':
          o.up = false;
          break;
        case 'mtu': {
          const v = w.value();
          if (!/^\d+$/.test(v)) aborted(`Error: argument "${v}" is wrong: Invalid "mtu" value`);
          o.mtu = Number(v);
          break;
        }
        case 'address': {
          const v = w.value();
          if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(v)) failed(`"${v}" is invalid lladdr.`);
          o.address = v.toLowerCase();
          break;
        }
        case 'alias':
          o.alias = w.value();
          break;
        case 'master': {
          const v = w.value();
          if (this.findLink(ns, v) === undefined) aborted(`Error: argument "${v}" is wrong: Device does not exist`);
          o.master = v;
          break;
        }
        case 'nomaster':
          o.nomaster = true;
          break;
        case 'netns': {
          const v = w.value();
          if (!this.namespaces.has(v) || v === '') aborted(`Error: argument "${v}" is wrong: Invalid "netns" value`);
          o.netns = v;
          break;
        }
        default:
          if (o.name !== undefined) aborted(`Error: either "${nameKeyword}" is duplicate, or "${word}" is a garbage.`);
          if (LINK_KEYWORDS.has(word) || LINK_PREFIX_KEYWORDS.some((k) => k.startsWith(word))) {
            notModeled(`the positional ifname "${word}": iproute2 reads it as a keyword; write "${nameKeyword} ${word}"`);
          }
          if (nameKeyword === 'name' && word.includes('/')) aborted(`Error: argument "${word}" is wrong: "name" not a valid ifname`);
          o.name = word;
      }
    }
    return o;
  }

  /** `hairpin on|off` after `type bridge_slave`. */
  private bridgePortOptions(w: Words): boolean | undefined {
    let hairpin: boolean | undefined;
    while (w.peek() !== undefined) {
      const word = w.next();
      if (word !== 'hairpin') return notModeled(`bridge_slave option "${word}"`);
      const v = w.value();
      if (v !== 'on' && v !== 'off') aborted(`Error: argument "${v}" is wrong: hairpin`);
      hairpin = v === 'on';
    }
    return hairpin;
  }

  /** `[vlan_filtering 0|1]` after `type bridge`; undefined when not given. */
  private bridgeOptions(w: Words): boolean | undefined {
    let vlanFiltering: boolean | undefined;
    while (w.peek() !== undefined) {
      const word = w.next();
      if (word !== 'vlan_filtering') return notModeled(`bridge option "${word}"`);
      const v = w.value();
      if (v !== '0' && v !== '1') aborted(`Error: argument "${v}" is wrong: Invalid vlan_filtering`);
      vlanFiltering = v === '1';
    }
    return vlanFiltering;
  }

  /** dev_valid_name() and EEXIST, as the kernel answers them. */
  private checkNewIfname(ns: Netns, name: string): void {
    if (name.includes('/')) aborted(`Error: argument "${name}" is wrong: "name" not a valid ifname`);
    if (name.length > MAX_IFNAME) failed('Error: Attribute failed policy validation.');
    if (name === '' || name === '.' || name === '..' || /[:\s]/.test(name)) failed('RTNETLINK answers: Invalid argument');
    if (this.findLink(ns, name) !== undefined) failed('RTNETLINK answers: File exists');
  }

  private checkMtuAndMac(o: { mtu?: number; address?: string } | undefined): void {
    if (o?.mtu !== undefined) checkMtu(o.mtu, MAX_MTU);
    // eth_validate_addr(): a multicast or all-zero MAC is EADDRNOTAVAIL.
    if (o?.address !== undefined && (parseInt(o.address.slice(0, 2), 16) & 1 || o.address === ZERO_MAC)) {
      failed('RTNETLINK answers: Cannot assign requested address');
    }
  }

  // ---- link state ----------------------------------------------------------

  private setUp(ns: Netns, link: Link): void {
    if (link.up) return;
    link.up = true;
    if (link.ifname === 'lo') {
      if (!link.addrs4.some((a) => a.address === '127.0.0.1' && a.prefixLength === 8)) {
        this.insertAddr4(link, { family: 4, address: '127.0.0.1', prefixLength: 8, scope: 'host', secondary: false });
      }
      if (!link.addrs6.some((a) => a.address === '::1')) {
        this.insertAddr6(link, { family: 6, address: '::1', prefixLength: 128, scope: 'host', secondary: false });
      }
      return;
    }
    for (const a of link.addrs4) this.addConnectedRoute(ns, link, a);
    for (const a of link.addrs6) this.addConnectedRoute(ns, link, a);
  }

  private setDown(ns: Netns, link: Link): void {
    if (!link.up) return;
    link.up = false;
    ns.routes = ns.routes.filter((r) => r.dev !== link.ifindex);
    link.addrs6 = [];
  }

  private setMtu(ns: Netns, link: Link, mtu: number): void {
    checkMtu(mtu, link.ifname === 'lo' ? Number.MAX_SAFE_INTEGER : MAX_MTU);
    if (mtu === link.mtu) return; // dev_set_mtu() does nothing, sets no flag
    link.mtu = mtu;
    if (link.kind === 'bridge') link.mtuSetByUser = true;
    this.adjustMasterOf(ns, link);
  }

  private setMaster(ns: Netns, link: Link, masterName: string): void {
    const master = this.findLink(ns, masterName) as Link;
    if (link.kind === 'bridge') failed('Error: Can not enslave a bridge to a bridge.');
    if (master.kind !== 'bridge') failed('RTNETLINK answers: Operation not supported');
    if (link.ifname === 'lo') failed('RTNETLINK answers: Invalid argument');
    if (link.master === master.ifindex) return;
    this.setNomaster(ns, link);
    link.master = master.ifindex;
    this.adjustBridge(ns, master);
  }

  private setNomaster(ns: Netns, link: Link): void {
    if (link.master === 0) return;
    const bridge = ns.links.get(link.master);
    link.master = 0;
    link.hairpin = false;
    if (bridge !== undefined) this.adjustBridge(ns, bridge);
  }

  /** br_mtu_auto_adjust() and br_stp_recalculate_bridge_id() after a port change. */
  private adjustBridge(ns: Netns, bridge: Link): void {
    const ports = [...ns.links.values()].filter((l) => l.master === bridge.ifindex);
    if (!bridge.mtuSetByUser) {
      bridge.mtu = ports.length === 0 ? ETH_DATA_LEN : Math.min(...ports.map((p) => p.mtu));
    }
    if (!bridge.macSet) {
      bridge.mac = ports.length === 0 ? ZERO_MAC : ports.map((p) => p.mac).sort()[0] as string;
    }
  }

  private adjustMasterOf(ns: Netns, link: Link): void {
    const bridge = link.master === 0 ? undefined : ns.links.get(link.master);
    if (bridge !== undefined) this.adjustBridge(ns, bridge);
  }

  /** Removes a link with its routes, frees its ports, and removes its veth peer. */
  private removeLink(ns: Netns, link: Link): void {
    if (!ns.links.has(link.ifindex)) return;
    ns.links.delete(link.ifindex);
    ns.routes = ns.routes.filter((r) => r.dev !== link.ifindex);
    for (const port of ns.links.values()) if (port.master === link.ifindex) port.master = 0;
    this.adjustMasterOf(ns, link);
    if (link.peer !== undefined) {
      const peerNs = this.namespaces.get(link.peer.netns);
      const peer = peerNs?.links.get(link.peer.ifindex);
      if (peerNs !== undefined && peer !== undefined) this.removeLink(peerNs, peer);
    }
  }

  /** Carrier (LOWER_UP) as the kernel derives it; see the file header. */
  private carrier(ns: Netns, link: Link): boolean {
    if (!link.up) return false;
    if (link.kind === 'veth') {
      const peer = link.peer === undefined ? undefined : this.namespaces.get(link.peer.netns)?.links.get(link.peer.ifindex);
      return peer?.up === true;
    }
    if (link.kind === 'bridge') {
      const ports = [...ns.links.values()].filter((l) => l.master === link.ifindex);
      return ports.length === 0 || ports.some((p) => this.carrier(ns, p));
    }
    return true;
  }

  // ---- addresses -----------------------------------------------------------

  /** `addr add|del CIDR dev DEV`. */
  private addrCommand(ns: Netns, verb: string, w: Words): void {
    let cidr: string | undefined;
    let devName: string | undefined;
    while (w.peek() !== undefined) {
      const word = w.next();
      if (word === 'dev') devName = w.value();
      else if (word === 'local') cidr = w.value();
      else if (cidr === undefined) cidr = word;
      else notModeled(`addr option "${word}"`);
    }
    if (cidr === undefined) return aborted('Command line is not complete. Try option "help"');
    const prefix = parsePrefix(cidr) ?? aborted(`Error: any valid prefix is expected rather than "${cidr}".`);
    if (!cidr.includes('/') && verb !== 'add') notModeled('addr del without a prefix length (wildcard deletion)');
    if (devName === undefined) failed('Not enough information: "dev" argument is required.');
    const link = this.findLink(ns, devName as string) ?? failed(`Cannot find device "${devName}"`);
    if (verb === 'add') this.addrAdd(ns, link, prefix);
    else this.addrDel(ns, link, prefix);
  }

  private addrAdd(ns: Netns, link: Link, p: Prefix): void {
    if (p.family === 4) {
      if (link.addrs4.some((a) => a.address === p.address && a.prefixLength === p.prefixLength)) {
        failed('Error: ipv4: Address already assigned.');
      }
      const network = networkOf(p);
      const secondary = link.addrs4.some((a) => !a.secondary && a.prefixLength === p.prefixLength && networkOf(a) === network);
      const scope = ipaddr.parse(p.address).range() === 'loopback' ? 'host' : 'global';
      const addr: Addr = { family: 4, address: p.address, prefixLength: p.prefixLength, scope, secondary };
      this.insertAddr4(link, addr);
      if (link.up && link.ifname !== 'lo') this.addConnectedRoute(ns, link, addr);
      return;
    }
    if (link.addrs6.some((a) => a.address === p.address)) failed('Error: ipv6: address already assigned.');
    const range = ipaddr.parse(p.address).range();
    const scope = range === 'linkLocal' ? 'link' : range === 'loopback' ? 'host' : 'global';
    const addr: Addr = { family: 6, address: p.address, prefixLength: p.prefixLength, scope, secondary: false };
    this.insertAddr6(link, addr);
    if (link.up && link.ifname !== 'lo') this.addConnectedRoute(ns, link, addr);
  }

  private addrDel(ns: Netns, link: Link, p: Prefix): void {
    const list = p.family === 4 ? link.addrs4 : link.addrs6;
    const addr = list.find((a) => a.address === p.address && a.prefixLength === p.prefixLength);
    if (addr === undefined) {
      return failed(p.family === 4 ? 'Error: ipv4: Address not found.' : 'Error: ipv6: address not found.');
    }
    const network = networkOf(addr);
    if (p.family === 6) {
      link.addrs6 = list.filter((a) => a !== addr);
      if (!link.addrs6.some((a) => a.prefixLength === addr.prefixLength && networkOf(a) === network)) {
        this.removeConnectedRoute(ns, link, addr);
      }
      return;
    }
    // promote_secondaries=0: a primary takes its secondaries with it.
    const sameSubnet = (a: Addr) => a.prefixLength === addr.prefixLength && networkOf(a) === network;
    link.addrs4 = list.filter((a) => a !== addr && !(addr.secondary === false && a.secondary && sameSubnet(a)));
    if (!addr.secondary) this.removeConnectedRoute(ns, link, addr);
    if (link.addrs4.length === 0) ns.routes = ns.routes.filter((r) => !(r.family === 4 && r.dev === link.ifindex));
  }

  /** inet_insert_ifa(): a primary after the last primary, a secondary at the end. */
  private insertAddr4(link: Link, addr: Addr): void {
    if (addr.secondary) {
      link.addrs4.push(addr);
      return;
    }
    let at = 0;
    link.addrs4.forEach((a, i) => {
      if (!a.secondary) at = i + 1;
    });
    link.addrs4.splice(at, 0, addr);
  }

  /** ipv6_link_dev_addr(): before the first address of the same or a narrower scope. */
  private insertAddr6(link: Link, addr: Addr): void {
    const rank = scopeRank(addr.scope);
    const at = link.addrs6.findIndex((a) => scopeRank(a.scope) <= rank);
    link.addrs6.splice(at < 0 ? link.addrs6.length : at, 0, addr);
  }

  private addConnectedRoute(ns: Netns, link: Link, a: Addr): void {
    if (a.secondary || (a.family === 4 && a.prefixLength === 32)) return;
    const network = networkOf(a);
    const metric = a.family === 4 ? 0 : 256;
    const exists = ns.routes.some(
      (r) => r.protocol === 'kernel' && r.dev === link.ifindex && r.network === network && r.prefixLength === a.prefixLength && r.metric === metric,
    );
    if (!exists) {
      ns.routes.push({ family: a.family, network, prefixLength: a.prefixLength, via: '', dev: link.ifindex, metric, protocol: 'kernel', seq: this.routeSeq++ });
    }
  }

  private removeConnectedRoute(ns: Netns, link: Link, a: Addr): void {
    const network = networkOf(a);
    ns.routes = ns.routes.filter(
      (r) => !(r.protocol === 'kernel' && r.dev === link.ifindex && r.network === network && r.prefixLength === a.prefixLength),
    );
  }

  // ---- routes --------------------------------------------------------------

  /** `route add|replace|del DST [via GW] [dev DEV] [metric N] [proto P]`. */
  private routeCommand(ns: Netns, verb: string, w: Words): void {
    let dstText: string | undefined;
    let viaText: string | undefined;
    let devName: string | undefined;
    let metric: number | undefined;
    let protocol: string | undefined;
    while (w.peek() !== undefined) {
      const word = w.next();
      switch (word) {
        case 'to':
          dstText = w.value();
          break;
        case 'via':
          viaText = w.value();
          break;
        case 'dev':
        case 'oif':
          devName = w.value();
          break;
        case 'metric':
        case 'priority':
        case 'preference': {
          const v = w.value();
          if (!/^\d+$/.test(v) || Number(v) > 0xffffffff) aborted(`Error: argument "${v}" is wrong: "metric" value is invalid`);
          metric = Number(v);
          break;
        }
        case 'proto':
        case 'protocol':
          protocol = parseProtocol(w.value());
          break;
        case 'table': {
          const v = w.value();
          if (v !== 'main' && v !== '254') notModeled(`route table ${v}`);
          break;
        }
        default:
          if (dstText !== undefined) aborted(`Error: either "to" is duplicate, or "${word}" is a garbage.`);
          if (['unicast', 'blackhole', 'unreachable', 'prohibit', 'local', 'broadcast', 'throw', 'nat', 'anycast', 'multicast'].includes(word)) {
            if (word !== 'unicast') notModeled(`route type ${word}`);
            break;
          }
          if (['src', 'scope', 'onlink', 'nexthop', 'encap', 'mtu', 'tos', 'realm'].includes(word)) notModeled(`route option "${word}"`);
          dstText = word;
      }
    }
    if (dstText === undefined) return aborted('Command line is not complete. Try option "help"');
    const viaFamily = viaText === undefined ? undefined : familyOfText(viaText);
    let dst: Prefix;
    if (dstText === 'default' || dstText === 'all' || dstText === 'any') {
      const family = viaFamily ?? 4;
      dst = { family, address: family === 4 ? '0.0.0.0' : '::', prefixLength: 0 };
    } else {
      dst = parsePrefix(dstText) ?? aborted(`Error: any valid prefix is expected rather than "${dstText}".`);
    }
    let via = '';
    if (viaText !== undefined) {
      if (!isAddress(viaText, dst.family)) aborted(`Error: ${dst.family === 4 ? 'inet' : 'inet6'} address is expected rather than "${viaText}".`);
      via = canonical(viaText);
    }
    const dev = devName === undefined ? undefined : (this.findLink(ns, devName) ?? failed(`Cannot find device "${devName}"`));
    const network = networkOf(dst);
    if (dst.family === 4 && network !== dst.address) failed('Error: Invalid prefix for given prefix length.');
    const same = (r: Route) => r.family === dst.family && r.network === network && r.prefixLength === dst.prefixLength;

    if (verb === 'del' || verb === 'delete') {
      const victim = sortRoutes(ns.routes.filter(same)).find(
        (r) =>
          (metric === undefined || r.metric === metric) &&
          (via === '' || r.via === via) &&
          (dev === undefined || r.dev === dev.ifindex) &&
          (protocol === undefined || r.protocol === protocol),
      );
      if (victim === undefined) failed('RTNETLINK answers: No such process');
      ns.routes = ns.routes.filter((r) => r !== victim);
      return;
    }
    const outDev = this.resolveNexthop(ns, dst.family, via, dev);
    const route: Route = {
      family: dst.family,
      network,
      prefixLength: dst.prefixLength,
      via,
      dev: outDev,
      metric: metric ?? (dst.family === 4 ? 0 : 1024),
      protocol: protocol ?? 'boot',
      seq: this.routeSeq++,
    };
    const existing = ns.routes.find((r) => same(r) && r.metric === route.metric);
    if (existing !== undefined) {
      if (verb === 'add') failed('RTNETLINK answers: File exists');
      ns.routes = ns.routes.map((r) => (r === existing ? { ...route, seq: existing.seq } : r));
      return;
    }
    ns.routes.push(route);
  }

  /**
   * The output device of a new route, checked as fib_check_nh() (IPv4) and
   * ip6_validate_gw() (IPv6) do; see the file header.
   */
  private resolveNexthop(ns: Netns, family: 4 | 6, via: string, dev: Link | undefined): number {
    if (via === '') {
      if (dev === undefined) return failed('RTNETLINK answers: No such device');
      if (!dev.up) failed(family === 4 ? 'Error: Device for nexthop is not up.' : 'Error: Nexthop device is not up.');
      return dev.ifindex;
    }
    const gw = ipaddr.parse(via);
    const usable = (r: Route): boolean => {
      if (r.family !== family || r.via !== '' || (dev !== undefined && r.dev !== dev.ifindex)) return false;
      const link = ns.links.get(r.dev);
      if (link === undefined || !link.up) return false;
      if (family === 6 && dev === undefined && !this.carrier(ns, link)) return false;
      return gw.match(ipaddr.parse(r.network), r.prefixLength);
    };
    const best = ns.routes.filter(usable).sort((a, b) => b.prefixLength - a.prefixLength)[0];
    if (best === undefined) {
      return failed(family === 4 ? 'Error: Nexthop has invalid gateway.' : 'RTNETLINK answers: No route to host');
    }
    return best.dev;
  }

  // ---- model plumbing ------------------------------------------------------

  private newNetns(name: string): Netns {
    const ns: Netns = { name, nextIfindex: 1, links: new Map(), routes: [] };
    this.namespaces.set(name, ns);
    const lo = this.newLink(ns, 'lo', '', LO_MTU, ZERO_MAC);
    lo.macSet = true;
    return ns;
  }

  private newLink(ns: Netns, ifname: string, kind: string, mtu: number, mac?: string): Link {
    const link: Link = {
      ifindex: ns.nextIfindex++,
      ifname,
      kind,
      alias: '',
      mtu,
      mac: mac ?? this.nextMac(),
      up: false,
      master: 0,
      vlanFiltering: false,
      hairpin: false,
      macSet: mac !== undefined,
      mtuSetByUser: false,
      addrs4: [],
      addrs6: [],
    };
    ns.links.set(link.ifindex, link);
    return link;
  }

  /** Deterministic locally administered unicast MACs: 02:fa:ce:00:00:01, … */
  private nextMac(): string {
    const n = ++this.macCounter;
    const bytes = [0x02, 0xfa, 0xce, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
    return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
  }

  private requireNetns(name: string): Netns {
    const ns = this.namespaces.get(name);
    if (ns === undefined) throw new NetnsNotFoundError(name);
    return ns;
  }

  private findLink(ns: Netns, ifname: string): Link | undefined {
    for (const link of ns.links.values()) if (link.ifname === ifname) return link;
    return undefined;
  }

  private link(ns: Netns, ifname: string): Link {
    return this.findLink(ns, ifname) as Link;
  }

  private peerLabel(netns: string, ifindex: number): string {
    const peer = this.namespaces.get(netns)?.links.get(ifindex)?.peer;
    if (peer === undefined) return '-';
    const name = this.namespaces.get(peer.netns)?.links.get(peer.ifindex)?.ifname ?? '?';
    return `${JSON.stringify(peer.netns)}/${name}`;
  }

  private snapshot(ns: Netns): ObservedNetns {
    const links: ObservedLink[] = [...ns.links.values()]
      .sort((a, b) => a.ifindex - b.ifindex)
      .map((l) => ({
        ifindex: l.ifindex,
        ifname: l.ifname,
        kind: l.kind,
        alias: l.alias,
        mtu: l.mtu,
        mac: l.mac,
        up: l.up,
        master: l.master === 0 ? '' : (ns.links.get(l.master)?.ifname ?? ''),
        peerIfindex: l.peer?.ifindex ?? 0,
        vlanFiltering: l.vlanFiltering,
        hairpin: l.hairpin,
        addresses: [...l.addrs4, ...l.addrs6].map(
          (a): ObservedAddress => ({ family: a.family, address: a.address, prefixLength: a.prefixLength, scope: a.scope }),
        ),
      }));
    const routes: ObservedRoute[] = sortRoutes(ns.routes).map((r) => ({
      family: r.family,
      destination: r.prefixLength === 0 ? 'default' : `${r.network}/${r.prefixLength}`,
      via: r.via,
      device: ns.links.get(r.dev)?.ifname ?? '',
      metric: r.metric,
      protocol: r.protocol,
    }));
    return { netns: ns.name, links, routes };
  }
}

interface LinkOptions {
  name?: string;
  up?: boolean;
  mtu?: number;
  address?: string;
  alias?: string;
  master?: string;
  nomaster?: boolean;
  netns?: string;
}

/** A cursor over one line's words, with iproute2's answers for missing ones. */
class Words {
  private i = 0;
  constructor(private readonly words: readonly string[]) {}

  peek(): string | undefined {
    return this.words[this.i];
  }

  /** The next word; a missing one ends the batch like iproute2's incomplete_command(). */
  next(): string {
    const word = this.words[this.i++];
    return word ?? aborted('Command line is not complete. Try option "help"');
  }

  /** The value after a keyword. */
  value(): string {
    return this.next();
  }

  end(): void {
    const extra = this.words[this.i];
    if (extra !== undefined) notModeled(`the argument "${extra}" here`);
  }
}

interface Prefix {
  family: 4 | 6;
  /** Canonical address text. */
  address: string;
  prefixLength: number;
}

function isAddress(text: string, family?: 4 | 6): boolean {
  const v4 = ipaddr.IPv4.isValidFourPartDecimal(text);
  const v6 = !v4 && ipaddr.IPv6.isValid(text) && !text.includes('%');
  return family === undefined ? v4 || v6 : family === 4 ? v4 : v6;
}

function familyOfText(text: string): 4 | 6 {
  return text.includes(':') ? 6 : 4;
}

function canonical(text: string): string {
  const a = ipaddr.parse(text);
  return a.kind() === 'ipv6' ? (a as ipaddr.IPv6).toRFC5952String() : a.toString();
}

/** "10.1.0.1/24" or "fd00::1" (a host: /32, /128); undefined when invalid. */
function parsePrefix(text: string): Prefix | undefined {
  const slash = text.indexOf('/');
  const addressText = slash < 0 ? text : text.slice(0, slash);
  if (!isAddress(addressText)) return undefined;
  const family = familyOfText(addressText);
  const max = family === 4 ? 32 : 128;
  const lengthText = slash < 0 ? String(max) : text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lengthText) || Number(lengthText) > max) return undefined;
  return { family, address: canonical(addressText), prefixLength: Number(lengthText) };
}

/** The network address (host bits cleared) of an address with a prefix length. */
function networkOf(p: { family: 4 | 6; address: string; prefixLength: number }): string {
  const cidr = `${p.address}/${p.prefixLength}`;
  return p.family === 4
    ? ipaddr.IPv4.networkAddressFromCIDR(cidr).toString()
    : ipaddr.IPv6.networkAddressFromCIDR(cidr).toRFC5952String();
}

/** ipv6_addr_src_scope(): global 0x0e, link 0x02, host (loopback) 0x01. */
function scopeRank(scope: string): number {
  return scope === 'global' ? 0x0e : scope === 'link' ? 0x02 : 0x01;
}

function checkMtu(mtu: number, max: number): void {
  if (mtu > max) failed('Error: mtu greater than device maximum.');
  if (mtu < MIN_MTU) failed('Error: mtu less than device minimum.');
}

/** A `proto` value as ip prints it: the rt_protos name, else the number. */
function parseProtocol(text: string): string {
  if (RT_PROTO_NAMES.has(text)) return text;
  if (/^\d+$/.test(text) && Number(text) <= 255) return RT_PROTOS.get(Number(text)) ?? String(Number(text));
  return aborted(`Error: argument "${text}" is wrong: "protocol" value is invalid`);
}

/** Family, then destination (numerically, shorter prefix first), then metric. */
function sortRoutes(routes: readonly Route[]): Route[] {
  const key = (r: Route) => ipaddr.parse(r.network).toByteArray();
  return [...routes].sort((a, b) => {
    if (a.family !== b.family) return a.family - b.family;
    const ka = key(a);
    const kb = key(b);
    for (let i = 0; i < ka.length; i++) {
      const d = (ka[i] as number) - (kb[i] as number);
      if (d !== 0) return d;
    }
    return a.prefixLength - b.prefixLength || a.metric - b.metric || a.seq - b.seq;
  });
}
