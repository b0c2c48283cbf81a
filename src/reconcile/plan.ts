/**
 * The plan: a pure diff of desired against observed state, rendered as the
 * `ip -batch` lines that make the kernel match, one batch per network
 * namespace, in the order DESIGN.md §3 gives (namespaces → bridges → veths →
 * addresses → routes; deletes in reverse).
 *
 * Ownership (DESIGN.md §3): a link is ours only when its alias says so, a
 * route only when its protocol is ROUTE_PROTOCOL, a netns only when its `lo`
 * carries our alias. Anything else that holds a name we want blocks that
 * resource (it ends FAILED) and is never changed.
 */
import { HOST_NAMESPACE, ownerAlias } from '../domain/types.js';
import {
  ROUTE_PROTOCOL,
  type BatchLine,
  type ObservedLink,
  type ObservedNetns,
  type ObservedRoute,
} from '../kernel/ip/types.js';
import { sortNetns, type DesiredLink, type DesiredRoute, type DesiredState, type OwnerRef } from './desired.js';

export interface ObservedState {
  /** Names under /run/netns. */
  netns: Set<string>;
  /** Links and routes of the host ("") and of every netns that could be read. */
  byNetns: Map<string, ObservedNetns>;
}

/**
 * A batch line with what it depends on. A `link add` or `netns add` that
 * fails with "File exists" means someone else holds the name: the lines
 * that would configure what it makes must then not run, or they would change
 * the foreign object (the alias, the master, the addresses).
 */
export interface PlannedLine extends BatchLine {
  /** Set on `link add` and `netns add`: the key of what the line makes. */
  creates?: string;
  /** Keys of objects this pass creates that the line acts on: it runs only if they were made. */
  requires?: string[];
}

export interface Batch {
  netns: string;
  /**
   * The lines up to and including every `link add` / `netns add`, run first
   * in a process of their own so that their failures are known before
   * `lines` run. Empty when the batch creates nothing (the steady state).
   */
  create: PlannedLine[];
  /** The rest; run after `create`, with the namespace read back. */
  lines: PlannedLine[];
  /**
   * Namespaces whose batches must finish before this one: those that create
   * a veth whose peer lands here. The host's batch always runs first and the
   * `netns del` batch last, so neither is listed.
   */
  after: string[];
}

/** The key of a link for `creates` / `requires`. */
export function linkKey(netns: string, ifname: string): string {
  return `link:${netns}/${ifname}`;
}

/** The key of a network namespace for `creates` / `requires`. */
export function netnsKey(netns: string): string {
  return `netns:${netns}`;
}

export interface Plan {
  /**
   * In a valid run order: the host, then namespaces by name, then (if any)
   * the host's `netns del` batch. Namespace batches may run concurrently
   * once the host's is done and their `after` batches are.
   */
  batches: Batch[];
  /** Resources that cannot be reconciled, with the reason (a foreign object holds a name). */
  blocked: Map<OwnerRef, string>;
}

const ALIAS_PREFIX = 'netkeep:';
const PROTO = String(ROUTE_PROTOCOL);

/** Steps inside one namespace's batch, in the order they run. */
enum Step {
  NetnsAdd,
  RouteDel,
  LinkDel,
  BridgeAdd,
  VethAdd,
  /** Marks come before every other setting, so a line that fails or stops ip cannot leave a link of ours unmarked. */
  LinkAlias,
  LinkSet,
  AddrDel,
  AddrAdd,
  RouteAdd,
}

class BatchBuilder {
  private readonly lines: { step: Step; seq: number; line: PlannedLine }[] = [];

  /** @param requires keys every line of this batch needs (a namespace made this pass). */
  constructor(private readonly requires: string[] = []) {}

  add(step: Step, owner: OwnerRef, args: (string | number)[], deps: { creates?: string; requires?: string[] } = {}): void {
    const requires = [...this.requires, ...(deps.requires ?? [])];
    const line: PlannedLine = { owner, args: args.map(String) };
    if (deps.creates) line.creates = deps.creates;
    if (requires.length > 0) line.requires = requires;
    this.lines.push({ step, seq: this.lines.length, line });
  }

  /** The lines in step order, split after the last create when there is one. */
  build(): { create: PlannedLine[]; lines: PlannedLine[] } {
    const sorted = this.lines.sort((x, y) => x.step - y.step || x.seq - y.seq).map((l) => l.line);
    const split = sorted.findLastIndex((l) => l.creates !== undefined) + 1;
    return { create: sorted.slice(0, split), lines: sorted.slice(split) };
  }
}

function describeNetns(netns: string): string {
  return netns === HOST_NAMESPACE ? 'the host namespace' : `namespace ${netns}`;
}

/** The end of a veth pair that creates it: the one whose netns runs first (end a when both share one). */
function isCreator(link: DesiredLink): boolean {
  const peer = link.peer!;
  if (peer.netns === link.netns) return link.end === 'a';
  return sortNetns([link.netns, peer.netns])[0] === link.netns;
}

/** Route destination as `ip route` takes it: an IPv6 "default" is written ::/0 (a batch line cannot say -6). */
function routeDst(family: 4 | 6, destination: string): string {
  return destination === 'default' && family === 6 ? '::/0' : destination;
}

function routeArgs(r: { family: 4 | 6; destination: string; via: string; device: string; metric: number }): string[] {
  const args = [routeDst(r.family, r.destination)];
  if (r.via !== '') args.push('via', r.via);
  if (r.device !== '') args.push('dev', r.device);
  args.push('metric', String(r.metric), 'proto', PROTO);
  return args;
}

function ownerFromAlias(alias: string): OwnerRef {
  return alias.slice(ALIAS_PREFIX.length) as OwnerRef;
}

/** Addresses the kernel adds by itself (IPv6 link-local) are never ours to remove. */
function isManagedAddressScope(scope: string): boolean {
  return scope !== 'link' && scope !== 'host';
}

/**
 * Computes the batches that turn `observed` into `desired`. Pure: the same
 * inputs give the same plan, and a converged kernel gives no lines at all.
 */
export function plan(desired: DesiredState, observed: ObservedState): Plan {
  const blocked = new Map<OwnerRef, string>();
  const builders = new Map<string, BatchBuilder>();
  const builder = (netns: string, requires?: string[]) => {
    let b = builders.get(netns);
    if (!b) builders.set(netns, (b = new BatchBuilder(requires)));
    return b;
  };
  const host = builder(HOST_NAMESPACE);
  const cleanup = new BatchBuilder();
  const after = new Map<string, Set<string>>();
  let cleanupLines = 0;

  // Namespaces. `writable` holds every netns we may write into this pass.
  const writable = new Set<string>([HOST_NAMESPACE]);
  for (const [netns, owner] of desired.namespaces) {
    const alias = ownerAlias('namespaces', netns);
    const state = observed.byNetns.get(netns);
    if (!observed.netns.has(netns) || !state) {
      if (observed.netns.has(netns)) {
        blocked.set(owner, `/run/netns/${netns} exists but cannot be read; netkeep leaves it alone`);
        continue;
      }
      // Every line in a namespace made this pass needs the `netns add` to have succeeded.
      host.add(Step.NetnsAdd, owner, ['netns', 'add', netns], { creates: netnsKey(netns) });
      builder(netns, [netnsKey(netns)]).add(Step.LinkAlias, owner, ['link', 'set', 'dev', 'lo', 'alias', alias, 'up']);
      writable.add(netns);
      continue;
    }
    const lo = state.links.find((l) => l.ifname === 'lo');
    if (lo?.alias !== alias) {
      blocked.set(
        owner,
        `a network namespace named ${netns} that netkeep did not create exists (/run/netns/${netns}); netkeep leaves it alone`,
      );
      continue;
    }
    writable.add(netns);
    if (!lo.up) builder(netns).add(Step.LinkSet, owner, ['link', 'set', 'dev', 'lo', 'up']);
  }
  // Our namespaces that are no longer wanted: deleted last, after every other batch.
  for (const netns of [...observed.netns].sort()) {
    if (desired.namespaces.has(netns)) continue;
    const lo = observed.byNetns.get(netns)?.links.find((l) => l.ifname === 'lo');
    if (lo?.alias === ownerAlias('namespaces', netns)) {
      cleanup.add(Step.NetnsAdd, ownerFromAlias(lo.alias), ['netns', 'del', netns]);
      cleanupLines++;
    }
  }

  // Links.
  const blockNetns = (owner: OwnerRef, netns: string) =>
    blocked.set(owner, `${describeNetns(netns)} is not ready: it is not a namespace netkeep manages`);
  for (const link of desired.links) {
    if (!writable.has(link.netns)) {
      blockNetns(link.owner, link.netns);
      continue;
    }
    if (link.peer && !writable.has(link.peer.netns)) {
      blockNetns(link.owner, link.peer.netns);
      continue;
    }
    if (link.masterOwner && blocked.has(link.masterOwner)) {
      blocked.set(link.owner, `${link.masterOwner} is not ready: ${blocked.get(link.masterOwner)}`);
      continue;
    }
    const obs = observed.byNetns.get(link.netns)?.links.find((l) => l.ifname === link.ifname);
    if (obs && obs.alias === link.alias && obs.kind !== link.type) {
      blocked.set(link.owner, `${describeNetns(link.netns)} has ${link.ifname} marked as netkeep's, but it is a ${obs.kind || 'device'}, not a ${link.type}; it is left alone`);
      continue;
    }
    if (obs && obs.alias !== link.alias) {
      const what = obs.alias === '' ? 'no netkeep alias' : `alias "${obs.alias}"`;
      blocked.set(
        link.owner,
        `${describeNetns(link.netns)} already has an interface ${link.ifname} (${obs.kind || 'device'}, ${what}) that netkeep did not create; it is left alone`,
      );
    }
  }
  // Bridges this pass creates (desired.links lists bridges first): a port's
  // `master` line waits for its bridge's `link add`, or it would enslave the
  // port to whatever took the name (or make ip stop at a missing master).
  const creating = new Set<string>();
  const masterRequires = (link: DesiredLink): string[] => {
    const key = linkKey(link.netns, link.master);
    return link.master !== '' && creating.has(key) ? [key] : [];
  };
  for (const link of desired.links) {
    if (blocked.has(link.owner)) continue;
    const b = builder(link.netns);
    const obs = observed.byNetns.get(link.netns)?.links.find((l) => l.ifname === link.ifname);
    const peerObs = link.peer
      ? observed.byNetns.get(link.peer.netns)?.links.find((l) => l.ifname === link.peer!.ifname)
      : undefined;
    const needsCreate = !obs || (link.type === 'veth' && !peerObs);
    if (needsCreate) {
      let key = linkKey(link.netns, link.ifname);
      if (link.type === 'bridge') {
        // The MTU is set by `link set` below: given to `link add` it does not
        // pin a bridge's MTU, which then follows its smallest port. vlan_filtering
        // is only written when wanted: some kernels refuse even `vlan_filtering 0`.
        const args: (string | number)[] = ['link', 'add', 'name', link.ifname];
        if (link.mac) args.push('address', link.mac);
        args.push('type', 'bridge');
        if (link.vlanFiltering) args.push('vlan_filtering', 1);
        b.add(Step.BridgeAdd, link.owner, args, { creates: key });
      } else if (isCreator(link)) {
        // A half-present pair (one end moved or renamed by hand): remove what is left of ours first.
        if (obs) b.add(Step.LinkDel, link.owner, ['link', 'del', 'dev', link.ifname]);
        const peer = link.peer!;
        const args: (string | number)[] = ['link', 'add', 'name', link.ifname];
        if (link.mac) args.push('address', link.mac);
        args.push('mtu', link.mtu, 'type', 'veth', 'peer', 'name', peer.ifname);
        if (peer.netns !== link.netns) args.push('netns', peer.netns);
        args.push('mtu', link.mtu);
        if (peer.mac) args.push('address', peer.mac);
        b.add(Step.VethAdd, link.owner, args, { creates: key });
        if (link.netns !== HOST_NAMESPACE && peer.netns !== link.netns) {
          after.set(peer.netns, (after.get(peer.netns) ?? new Set()).add(link.netns));
        }
      } else {
        key = linkKey(link.peer!.netns, link.peer!.ifname);
      }
      const requires = [key];
      // The mark first, on a line of its own: if a later setting fails (a
      // master that is not there yet), the link is still known to be ours.
      b.add(Step.LinkAlias, link.owner, ['link', 'set', 'dev', link.ifname, 'alias', link.alias], { requires });
      const set: (string | number)[] = ['link', 'set', 'dev', link.ifname];
      if (link.type === 'bridge' && link.mtu) set.push('mtu', link.mtu);
      if (link.master) set.push('master', link.master);
      set.push('up');
      b.add(Step.LinkSet, link.owner, set, { requires: [...requires, ...masterRequires(link)] });
      if (link.hairpin) b.add(Step.LinkSet, link.owner, hairpinLine(link), { requires: [...requires, ...masterRequires(link)] });
      if (link.type === 'bridge') creating.add(key);
      for (const a of link.addresses) b.add(Step.AddrAdd, link.owner, ['addr', 'add', a, 'dev', link.ifname], { requires });
      continue;
    }
    diffLink(b, link, obs, masterRequires(link));
  }

  // Our links that are no longer wanted. A veth pair goes with one `link del`.
  const wanted = new Set(desired.links.map((l) => `${l.netns}\0${l.ifname}\0${l.alias}`));
  const deletedAliases = new Set<string>();
  for (const netns of sortNetns([...writable])) {
    for (const l of observed.byNetns.get(netns)?.links ?? []) {
      if (!l.alias.startsWith(ALIAS_PREFIX) || l.ifname === 'lo') continue;
      if (wanted.has(`${netns}\0${l.ifname}\0${l.alias}`)) continue;
      if (l.kind === 'veth' && deletedAliases.has(l.alias)) continue;
      deletedAliases.add(l.alias);
      builder(netns).add(Step.LinkDel, ownerFromAlias(l.alias), ['link', 'del', 'dev', l.ifname]);
    }
  }

  // Routes.
  for (const r of desired.routes) {
    if (!writable.has(r.netns)) {
      blockNetns(r.owner, r.netns);
      continue;
    }
    const obs = observed.byNetns.get(r.netns)?.routes.find((o) => sameRouteKey(o, r));
    if (obs && obs.protocol !== PROTO) {
      blocked.set(
        r.owner,
        `${describeNetns(r.netns)} already has a route to ${r.destination} (metric ${r.metric}, proto ${obs.protocol}) that netkeep did not make; it is left alone`,
      );
      continue;
    }
    if (!obs) builder(r.netns).add(Step.RouteAdd, r.owner, ['route', 'add', ...routeArgs(r)]);
    else if (obs.via !== r.via || (r.device !== '' && obs.device !== r.device)) {
      builder(r.netns).add(Step.RouteAdd, r.owner, ['route', 'replace', ...routeArgs(r)]);
    }
  }
  // Links that go away this pass, with the peers that go with them: their routes go too.
  const vanishing = new Set<string>();
  for (const netns of writable) {
    for (const l of observed.byNetns.get(netns)?.links ?? []) {
      if (deletedAliases.has(l.alias) && !wanted.has(`${netns}\0${l.ifname}\0${l.alias}`)) vanishing.add(`${netns}\0${l.ifname}`);
    }
  }
  for (const netns of writable) {
    for (const o of observed.byNetns.get(netns)?.routes ?? []) {
      if (o.protocol !== PROTO) continue;
      if (desired.routes.some((r) => r.netns === netns && sameRouteKey(o, r))) continue;
      if (o.device !== '' && vanishing.has(`${netns}\0${o.device}`)) continue;
      builder(netns).add(Step.RouteDel, 'routes/unknown' as OwnerRef, ['route', 'del', ...routeArgs(o)]);
    }
  }

  const batches: Batch[] = [];
  for (const netns of sortNetns([...builders.keys()])) {
    const { create, lines } = builders.get(netns)!.build();
    if (create.length + lines.length > 0) batches.push({ netns, create, lines, after: [...(after.get(netns) ?? [])].sort() });
  }
  if (cleanupLines > 0) batches.push({ netns: HOST_NAMESPACE, create: [], lines: cleanup.build().lines, after: [] });
  return { batches, blocked };
}

/** The kernel's key for a route in one table: family, destination and priority. */
function sameRouteKey(o: ObservedRoute, r: DesiredRoute): boolean {
  return o.family === r.family && o.destination === r.destination && o.metric === r.metric;
}

/** `ip link set dev <port> type bridge_slave hairpin on|off` (`bridge link set dev <port> hairpin on`). */
function hairpinLine(link: DesiredLink): (string | number)[] {
  return ['link', 'set', 'dev', link.ifname, 'type', 'bridge_slave', 'hairpin', link.hairpin ? 'on' : 'off'];
}

/** Lines that bring an existing link of ours to the desired settings. */
function diffLink(b: BatchBuilder, link: DesiredLink, obs: ObservedLink, masterRequires: string[]): void {
  const set: (string | number)[] = [];
  if (link.mtu && obs.mtu !== link.mtu) set.push('mtu', link.mtu);
  if (link.mac && obs.mac !== link.mac) set.push('address', link.mac);
  if (obs.master !== link.master) set.push(...(link.master ? ['master', link.master] : ['nomaster']));
  if (!obs.up) set.push('up');
  if (set.length > 0) {
    const requires = obs.master !== link.master ? masterRequires : [];
    b.add(Step.LinkSet, link.owner, ['link', 'set', 'dev', link.ifname, ...set], { requires });
  }
  // Joining a bridge starts with hairpin off; after the master line, in the same batch.
  if (link.master !== '' && (link.hairpin ? obs.master !== link.master || !obs.hairpin : obs.master === link.master && obs.hairpin)) {
    b.add(Step.LinkSet, link.owner, hairpinLine(link), { requires: obs.master !== link.master ? masterRequires : [] });
  }
  if (link.type === 'bridge' && obs.vlanFiltering !== link.vlanFiltering) {
    b.add(Step.LinkSet, link.owner, ['link', 'set', 'dev', link.ifname, 'type', 'bridge', 'vlan_filtering', link.vlanFiltering ? 1 : 0]);
  }
  const have = new Set(obs.addresses.map((a) => `${a.address}/${a.prefixLength}`));
  const want = new Set(link.addresses);
  for (const a of obs.addresses) {
    const text = `${a.address}/${a.prefixLength}`;
    if (!want.has(text) && isManagedAddressScope(a.scope)) {
      b.add(Step.AddrDel, link.owner, ['addr', 'del', text, 'dev', link.ifname]);
    }
  }
  for (const a of link.addresses) {
    if (!have.has(a)) b.add(Step.AddrAdd, link.owner, ['addr', 'add', a, 'dev', link.ifname]);
  }
}
