/**
 * The netfilter part of a reconcile pass (issue 4): per namespace with load
 * balancers, one atomic `nft -f` of its `inet netkeep` table when the desired
 * rules or the kernel's table changed, then the UDP conntrack entries the
 * change left pointing at removed backends, and IP forwarding.
 *
 * A pass with nothing changed, and a restart with unchanged intent, write
 * nothing: what was written last (its desired hash and the listing read back
 * right after) is kept in the store, and compared with the rendering and the
 * listing of this pass. A table flushed or deleted by hand lists differently
 * and is written again.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { backendPort, endpoint } from '../domain/loadbalancer.js';
import type { LoadBalancer } from '../domain/types.js';
import type { ConntrackFilter, NftClient, ObservedTable } from '../kernel/nft/types.js';
import type { Store } from '../store/store.js';
import { ownerRef } from './desired.js';
import { renderDeleteTable, renderTable, sortServices, type DesiredServicePort } from './nft.js';

/** What the pass did for one load balancer. */
export interface LoadBalancerOutcome {
  state: 'READY' | 'PENDING' | 'FAILED';
  message: string;
  /** Programmed backends, `address:port`, sorted; [] unless READY. */
  backends: string[];
}

export interface LoadBalancerSyncResult {
  outcomes: Map<string, LoadBalancerOutcome>;
  /** nft transactions written. */
  writes: number;
}

/** The service ports of one load balancer with its VIP. */
export function servicePorts(lb: LoadBalancer, vip: string): DesiredServicePort[] {
  const s = lb.spec;
  return s.ports.map((p) => ({
    owner: ownerRef('loadbalancers', lb.name),
    name: lb.name,
    family: vip.includes(':') ? 6 : 4,
    vip,
    protocol: p.protocol,
    port: p.port,
    backends: s.backends.map((b) => ({ address: b.address, port: backendPort(b, p), weight: b.weight })),
    algorithm: s.algorithm,
    affinitySeconds: s.sessionAffinity.clientIp?.timeoutSeconds ?? 0,
    sourceRanges: s.sourceRanges,
  }));
}

/**
 * `conntrack -D` filters for a UDP service port that changed: entries whose
 * reply comes from a backend no longer there, and entries made while there
 * was no backend (no NAT: the reply comes from the VIP). TCP needs none: a
 * removed backend's connections fail on their own, new ones are DNATed anew.
 */
export function staleConntrack(before: readonly DesiredServicePort[], after: readonly DesiredServicePort[]): ConntrackFilter[] {
  const filters: ConntrackFilter[] = [];
  for (const s of after) {
    if (s.protocol !== 'UDP' || s.backends.length === 0) continue;
    const prev = before.find((p) => p.name === s.name && p.protocol === s.protocol && p.port === s.port && p.vip === s.vip);
    const base = { family: s.family, protocol: 'udp' as const, vip: s.vip, port: s.port };
    if (!prev || prev.backends.length === 0) filters.push({ ...base, replySource: s.vip });
    for (const b of prev?.backends ?? []) {
      if (!s.backends.some((n) => n.address === b.address && n.port === b.port)) filters.push({ ...base, replySource: b.address });
    }
  }
  return filters;
}

export class LoadBalancerSync {
  /** Namespaces whose forwarding was checked since start. */
  private readonly forwardingChecked = new Set<string>();

  constructor(
    private readonly store: Store,
    private readonly nft: NftClient,
    private readonly log: Logger,
  ) {}

  /**
   * Brings the table of every namespace that has (or had) load balancers to
   * match `lbs`. `vips` gives each load balancer's VIP (its own, or its
   * vipPool allocation); `netnsExists` says whether a named namespace exists.
   */
  async sync(lbs: readonly LoadBalancer[], vips: ReadonlyMap<string, string>, netnsExists: (netns: string) => boolean): Promise<LoadBalancerSyncResult> {
    const outcomes = new Map<string, LoadBalancerOutcome>();
    let writes = 0;
    const byNetns = new Map<string, LoadBalancer[]>();
    for (const lb of lbs) byNetns.set(lb.spec.namespace, [...(byNetns.get(lb.spec.namespace) ?? []), lb]);
    const namespaces = [...new Set([...byNetns.keys(), ...this.store.nftNamespaces()])].sort();

    for (const netns of namespaces) {
      const all = byNetns.get(netns) ?? [];
      // Never expected (a vipPool allocation is made with its load balancer), but never rendered either.
      for (const lb of all.filter((l) => !vips.has(l.name))) outcomes.set(lb.name, { state: 'FAILED', message: 'no VIP: its vipPool allocation is missing', backends: [] });
      const here = all.filter((l) => vips.has(l.name));
      const services = here.flatMap((lb) => servicePorts(lb, vips.get(lb.name)!));
      const set = (state: LoadBalancerOutcome['state'], message: string) => {
        for (const lb of here) outcomes.set(lb.name, { state, message, backends: state === 'READY' ? programmed(lb, services) : [] });
      };
      if (netns !== '' && !netnsExists(netns)) {
        // The table went with its namespace; a new one starts from nothing.
        this.store.deleteNftTable(netns);
        set('PENDING', `waiting for network namespace ${netns}`);
        continue;
      }
      try {
        if (await this.syncNetns(netns, services)) writes++;
        set('READY', '');
      } catch (err) {
        const message = `nft in ${netns || 'the host namespace'}: ${(err as Error).message}`;
        this.log.warn({ netns: netns || 'host', error: (err as Error).message }, 'nft transaction failed');
        set('FAILED', message);
      }
    }
    return { outcomes, writes };
  }

  /** One namespace; returns whether it wrote the table. */
  private async syncNetns(netns: string, services: DesiredServicePort[]): Promise<boolean> {
    const observed = await this.nft.observe(netns);
    const recorded = this.store.nftTable(netns);
    if (services.length === 0) {
      this.store.deleteNftTable(netns);
      if (!observed) return false;
      await this.nft.apply(netns, renderDeleteTable());
      this.log.info({ netns: netns || 'host' }, 'nft table removed: no load balancer left');
      return true;
    }
    const sorted = sortServices(services);
    const desiredHash = createHash('sha256').update(JSON.stringify(sorted)).digest('hex');
    const untouched = observed !== undefined && recorded !== undefined && recorded.listing === observed.listing;
    const converged = untouched && recorded.desiredHash === desiredHash;
    if (!converged) {
      // Only what changed since the last write, unless the table was changed by hand: then all of it.
      const previous = untouched ? (JSON.parse(recorded.services) as DesiredServicePort[]) : [];
      const script = renderTable(sorted, observed ?? { chains: [], sets: [] }, previous);
      this.log.debug({ netns: netns || 'host', script }, 'nft transaction');
      await this.nft.apply(netns, script);
      this.log.info({ netns: netns || 'host', servicePorts: sorted.length, full: !untouched }, 'nft table written');
      const after: ObservedTable | undefined = await this.nft.observe(netns);
      this.store.setNftTable({ netns, desiredHash, listing: after?.listing ?? '', services: JSON.stringify(sorted) });
      const before = recorded ? (JSON.parse(recorded.services) as DesiredServicePort[]) : [];
      const stale = staleConntrack(before, services);
      // After the commit, so that a client's next packet is DNATed by the new rules.
      if (stale.length > 0) await this.nft.deleteConntrack(netns, stale);
    }
    if (!converged || !this.forwardingChecked.has(netns)) {
      const families = [...new Set(services.map((s) => s.family))].sort();
      const changed = await this.nft.ensureForwarding(netns, families);
      if (changed.length > 0) {
        this.log.warn({ netns: netns || 'host', sysctls: changed }, 'turned IP forwarding on: load balancers forward to their backends');
      }
      this.forwardingChecked.add(netns);
    }
    return !converged;
  }
}

/** The backends of one load balancer as programmed, `address:port`, sorted and unique. */
function programmed(lb: LoadBalancer, services: DesiredServicePort[]): string[] {
  const mine = services.filter((s) => s.name === lb.name);
  return [...new Set(mine.flatMap((s) => s.backends.map((b) => endpoint(b.address, b.port))))].sort();
}
