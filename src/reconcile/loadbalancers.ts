/**
 * The netfilter part of a reconcile pass (issue 4): per namespace with load
 * balancers, one atomic `nft -f` of its `inet netkeep` table when the desired
 * rules or the kernel's table changed, then the UDP conntrack entries the
 * change left pointing at removed backends, and IP forwarding.
 *
 * A pass with nothing changed, and a restart with unchanged intent, write
 * nothing: what was written last (the desired service ports, and the
 * digests of the verdict maps and nat-prerouting read back right after) is
 * kept in the store and compared with this pass's. Listing a whole table
 * costs seconds at thousands of load balancers (nft 1.0.6), so the whole
 * table is compared only at the first pass after start, and then every
 * `fullCheckMs` (at least 50 times its last duration), object by object,
 * with what the rendering of the last write says nft lists (the renderer
 * writes nft's listing syntax). A table flushed or deleted by hand is
 * written again at the next pass; a chain changed by hand, at the next
 * full check.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { backendPort, endpoint } from '../domain/loadbalancer.js';
import type { LoadBalancer } from '../domain/types.js';
import type { ConntrackFilter, NftClient, ObservedTable } from '../kernel/nft/types.js';
import type { Store } from '../store/store.js';
import { ownerRef } from './desired.js';
import { expectedObjects, objectNames, renderDeleteTable, renderTable, sortServices, tableObjects, type DesiredServicePort } from './nft.js';

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
 * `conntrack -D` filters for the UDP service ports a write changed: entries
 * whose reply comes from a backend no longer there (removed, replaced, or
 * its load balancer or port gone), entries made while there was no backend
 * (no NAT: the reply comes from the VIP) once there is one, and all of a
 * port's entries when its sourceRanges changed. TCP is left alone, as
 * kube-proxy does: a removed backend's connections fail on their own, new
 * ones are DNATed anew, and an established connection outlives a narrowed
 * sourceRanges.
 */
export function staleConntrack(before: readonly DesiredServicePort[], after: readonly DesiredServicePort[]): ConntrackFilter[] {
  const key = (s: DesiredServicePort) => `${s.name}/${s.protocol}/${s.port}/${s.vip}`;
  const filter = (s: DesiredServicePort, replySource: string): ConntrackFilter => ({ family: s.family, protocol: 'udp', vip: s.vip, port: s.port, replySource });
  const now = new Map(after.filter((s) => s.protocol === 'UDP').map((s) => [key(s), s]));
  const filters: ConntrackFilter[] = [];
  for (const prev of before.filter((s) => s.protocol === 'UDP')) {
    const s = now.get(key(prev));
    for (const b of prev.backends) {
      if (!s?.backends.some((n) => n.address === b.address && n.port === b.port)) filters.push(filter(prev, b.address));
    }
  }
  for (const s of now.values()) {
    const prev = before.find((p) => key(p) === key(s));
    if (s.backends.length > 0 && (!prev || prev.backends.length === 0)) filters.push(filter(s, s.vip));
    // Narrowed sourceRanges: a client now outside them must not keep its flow. All of the port's
    // entries go; a client still let in is DNATed anew by its next datagram.
    if (prev && s.sourceRanges.length > 0 && JSON.stringify(prev.sourceRanges) !== JSON.stringify(s.sourceRanges)) {
      filters.push({ family: s.family, protocol: 'udp', vip: s.vip, port: s.port });
    }
  }
  return filters;
}

/** Milliseconds between two comparisons of a whole table with what netkeep wrote, per namespace. */
export const FULL_CHECK_INTERVAL_MS = 600_000;
/** A whole-table comparison waits at least this many times its last duration (≤ 2% of the time). */
const FULL_CHECK_COST_FACTOR = 50;

export interface LoadBalancerSyncOptions {
  /** Default FULL_CHECK_INTERVAL_MS; 0 compares the whole table at every pass. */
  fullCheckMs?: number;
  /** Milliseconds, monotonic. Default performance.now. */
  clock?: () => number;
}

export class LoadBalancerSync {
  /** When each namespace's whole table was last compared (clock()), and how long that took; none yet: at the first pass. */
  private readonly fullChecked = new Map<string, { at: number; tookMs: number }>();
  private readonly fullCheckMs: number;
  private readonly clock: () => number;

  constructor(
    private readonly store: Store,
    private readonly nft: NftClient,
    private readonly log: Logger,
    opts: LoadBalancerSyncOptions = {},
  ) {
    this.fullCheckMs = opts.fullCheckMs ?? FULL_CHECK_INTERVAL_MS;
    this.clock = opts.clock ?? (() => performance.now());
  }

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

  /**
   * Whether the whole table of `netns` is due for a comparison: at the
   * first pass since start, then every `fullCheckMs`, stretched to 50 times
   * what the last one took, so that it costs at most 2% of the time
   * (seconds at thousands of load balancers). `fullCheckMs` 0: every pass.
   */
  private fullCheckDue(netns: string): boolean {
    const last = this.fullChecked.get(netns);
    if (!last || this.fullCheckMs === 0) return true;
    return this.clock() - last.at >= Math.max(this.fullCheckMs, FULL_CHECK_COST_FACTOR * last.tookMs);
  }

  private checked(netns: string, started: number): void {
    const now = this.clock();
    this.fullChecked.set(netns, { at: now, tookMs: now - started });
  }

  /** One namespace; returns whether it wrote the table. */
  private async syncNetns(netns: string, services: DesiredServicePort[]): Promise<boolean> {
    const recorded = this.store.nftTable(netns);
    if (services.length === 0) {
      this.store.deleteNftTable(netns);
      if ((await this.nft.summarize(netns)) === undefined) return false;
      await this.nft.apply(netns, renderDeleteTable());
      this.log.info({ netns: netns || 'host' }, 'nft table removed: no load balancer left');
      const stale = recorded ? staleConntrack(JSON.parse(recorded.services) as DesiredServicePort[], []) : [];
      if (stale.length > 0) await this.nft.deleteConntrack(netns, stale);
      return true;
    }
    const sorted = sortServices(services);
    const servicesJson = JSON.stringify(sorted);
    const desiredHash = createHash('sha256').update(servicesJson).digest('hex');
    // Parsed only when needed: at thousands of load balancers these are megabytes.
    let writtenCache: DesiredServicePort[] | undefined;
    const written = () => (writtenCache ??= recorded ? (JSON.parse(recorded.services) as DesiredServicePort[]) : []);

    // Every pass: the maps' and prerouting's digests (a flushed or deleted table shows there). Now and then: the whole table.
    const summary = await this.nft.summarize(netns);
    let touched = recorded === undefined || summary === undefined || summaryText(summary) !== recorded.summary;
    let observed: ObservedTable | undefined;
    if (touched || this.fullCheckDue(netns)) {
      const started = this.clock();
      observed = await this.nft.observe(netns);
      if (!observed) touched = true;
      else if (!touched) {
        // The renderer writes nft's listing syntax: what the last write should list as, object by object.
        const changed = differences(expectedObjects(renderTable(written())), observed.objects);
        if (changed.length > 0) {
          touched = true;
          this.log.warn({ netns: netns || 'host', objects: changed.slice(0, 10), count: changed.length }, 'nft table changed by hand: writing it whole again');
        }
      }
      this.checked(netns, started);
    }

    const converged = !touched && recorded!.desiredHash === desiredHash;
    if (!converged) {
      // Only what changed since the last write, unless the table was changed by hand: then all of it.
      const existing = touched ? objectNames(observed?.objects.keys() ?? []) : tableObjects(written());
      const script = renderTable(sorted, existing, touched ? [] : written());
      this.log.debug({ netns: netns || 'host', script }, 'nft transaction');
      await this.nft.apply(netns, script);
      this.log.info({ netns: netns || 'host', servicePorts: sorted.length, full: touched }, 'nft table written');
      const after = await this.nft.summarize(netns);
      this.store.setNftTable({ netns, desiredHash, services: servicesJson, summary: after ? summaryText(after) : '' });
      const stale = staleConntrack(written(), services);
      // After the commit, so that a client's next packet is DNATed by the new rules.
      if (stale.length > 0) await this.nft.deleteConntrack(netns, stale);
    }
    // Every pass (a read of /proc, or one sysctl elsewhere): forwarding turned off by hand would drop routed VIP traffic.
    const families = [...new Set(services.map((s) => s.family))].sort();
    const changed = await this.nft.ensureForwarding(netns, families);
    if (changed.length > 0) {
      this.log.warn({ netns: netns || 'host', sysctls: changed }, 'turned IP forwarding on: load balancers forward to their backends');
    }
    return !converged;
  }
}

/** A summary as stored: JSON of its entries in SUMMARY_OBJECTS order. */
function summaryText(summary: ReadonlyMap<string, string>): string {
  return JSON.stringify([...summary]);
}

/**
 * The objects whose listing differs from what `expected` says it should
 * be (keys of objects missing, extra, or listed differently), sorted.
 */
export function differences(expected: ReadonlyMap<string, string>, listed: ReadonlyMap<string, string>): string[] {
  const keys = new Set([...expected.keys(), ...listed.keys()]);
  return [...keys].filter((k) => expected.get(k) !== listed.get(k)).sort();
}

/** The backends of one load balancer as programmed, `address:port`, sorted and unique. */
function programmed(lb: LoadBalancer, services: DesiredServicePort[]): string[] {
  const mine = services.filter((s) => s.name === lb.name);
  return [...new Set(mine.flatMap((s) => s.backends.map((b) => endpoint(b.address, b.port))))].sort();
}
