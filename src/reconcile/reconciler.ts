/**
 * One reconcile pass: desired (store) → observed (kernel reads) → plan (pure
 * diff) → apply (one `ip -batch` per namespace) → status per resource.
 */
import type { Logger } from 'pino';
import {
  HOST_NAMESPACE,
  KINDS,
  ownerAlias,
  type Kind,
  type LinkStatus,
  type PooledAddress,
  type Resource,
  type State,
  type StatusOf,
} from '../domain/types.js';
import { bridgePoolAddresses, vethEndPoolAddresses } from '../ipam/pooled.js';
import { loadBalancerOwner } from '../domain/ipam.js';
import type { BatchFailure, IpClient, ObservedLink, ObservedNetns } from '../kernel/ip/types.js';
import { NftCliClient } from '../kernel/nft/client.js';
import type { NftClient } from '../kernel/nft/types.js';
import type { Store } from '../store/index.js';
import { buildDesired, ownerRef, pooledKey, sortNetns, type DesiredState, type OwnerRef } from './desired.js';
import { LoadBalancerSync, type LoadBalancerOutcome } from './loadbalancers.js';
import { plan, type Batch, type ObservedState, type Plan, type PlannedLine } from './plan.js';

/** What one pass did. */
export interface PassResult {
  /** Lines written to the kernel (0 for a pass that found nothing to change). */
  lines: number;
  /** nft transactions written (one per namespace whose table changed). */
  nftWrites: number;
  failures: number;
  /** Resources not READY after the pass. */
  notReady: number;
  durationMs: number;
}

/** How many namespaces are read at once. */
const OBSERVE_CONCURRENCY = 8;
/** How many namespaces' batches are written at once. */
const APPLY_CONCURRENCY = 8;

type Snapshot = { [K in Kind]: Resource<K>[] };
type Failure = BatchFailure & { netns: string; args: string[] };

export class Reconciler {
  private observed: ObservedState | undefined;
  private readonly loadBalancers: LoadBalancerSync;

  constructor(
    private readonly store: Store,
    private readonly ip: IpClient,
    private readonly log: Logger,
    nft: NftClient = new NftCliClient(),
    opts: { nftCheckMs?: number } = {},
  ) {
    this.loadBalancers = new LoadBalancerSync(store, nft, log, { fullCheckMs: opts.nftCheckMs });
  }

  /**
   * Who holds `ifname` in `netns` in the last observed state, when it is not
   * netkeep: lets the API refuse a name a foreign link holds (DESIGN.md §3).
   * Returns a description, or undefined when the name is free or ours.
   */
  foreignLink(netns: string, ifname: string): string | undefined {
    const link = this.observed?.byNetns.get(netns)?.links.find((l) => l.ifname === ifname);
    if (!link || link.alias.startsWith('netkeep:')) return undefined;
    return `a ${link.kind || 'network'} interface ${ifname} that netkeep did not create exists there (ifindex ${link.ifindex})`;
  }

  /** True when /run/netns/<name> exists and netkeep did not create it. */
  foreignNetns(name: string): boolean {
    if (!this.observed?.netns.has(name)) return false;
    const lo = this.observed.byNetns.get(name)?.links.find((l) => l.ifname === 'lo');
    return lo?.alias !== `netkeep:namespaces/${name}`;
  }

  async pass(): Promise<PassResult> {
    const started = performance.now();
    const { snapshot, pooled, vips } = this.store.transaction(() => {
      const snapshot = Object.fromEntries(KINDS.map((k) => [k, this.store.all(k)])) as unknown as Snapshot;
      return { snapshot, pooled: this.readPooled(snapshot), vips: this.readVips(snapshot) };
    });
    const desired = buildDesired(
      snapshot,
      new Map([...pooled].map(([key, list]) => [key, list.map((p) => p.address)])),
      new Set(snapshot.loadbalancers.flatMap((lb) => lb.spec.backends.map((b) => b.address))),
    );
    const before = await this.observe(desired);
    const first = plan(desired, before);

    const failures: Failure[] = [];
    let check: Plan = first;
    let after = before;
    if (first.batches.length > 0) {
      const applied = await this.apply(first);
      failures.push(...applied.failures);
      after = await this.afterApply(desired, before, applied.readBack);
      check = plan(desired, after);
    }
    this.observed = after;

    // Netfilter after links and routes (DESIGN.md §3 order): backends are reachable before traffic is sent to them.
    const lb = await this.loadBalancers.sync(snapshot.loadbalancers, vips, (netns) => after.netns.has(netns));
    const notReady = this.writeStatuses(snapshot, pooled, vips, lb.outcomes, after, check, failures);
    const written = first.batches.flatMap((b) => [...b.create, ...b.lines]);
    const lines = written.length;
    const durationMs = Math.round(performance.now() - started);
    if (lines > 0) {
      this.log.info(
        {
          lines,
          resources: [...new Set(written.map((l) => l.owner))].slice(0, 20),
          namespaces: [...new Set(first.batches.map((b) => b.netns || 'host'))].slice(0, 20),
          failures: failures.length,
          notReady,
          durationMs,
        },
        'reconcile pass changed the kernel',
      );
    }
    for (const f of failures) {
      this.log.warn(
        { resource: f.owner, netns: f.netns || 'host', command: `ip ${f.args.join(' ')}`, error: f.message },
        'kernel write failed',
      );
    }
    return { lines, nftWrites: lb.writes, failures: failures.length, notReady, durationMs };
  }

  /**
   * Runs the plan's batches: the host's first, then the namespaces' (up to
   * APPLY_CONCURRENCY at once, each after the batches it depends on), then
   * the `netns del` batch. Returns the lines that failed.
   */
  private async apply(p: Plan): Promise<{ failures: Failure[]; readBack: Map<string, ObservedNetns | undefined> }> {
    const failures: Failure[] = [];
    const readBack = new Map<string, ObservedNetns | undefined>();
    /** Keys of `link add` / `netns add` lines that failed: what needs them must not run. */
    const notCreated = new Set<string>();
    const record = (netns: string, lines: PlannedLine[], failed: BatchFailure[]) => {
      for (const f of failed) {
        const line = lines[f.index]!;
        failures.push({ ...f, netns, args: line.args });
        if (line.creates) notCreated.add(line.creates);
      }
    };
    const run = async (batch: Batch) => {
      if (batch.create.length > 0) record(batch.netns, batch.create, await this.runLines(batch.netns, batch.create));
      const lines: PlannedLine[] = [];
      for (const line of batch.lines) {
        const missing = line.requires?.find((k) => notCreated.has(k));
        if (missing === undefined) lines.push(line);
        else failures.push({ index: -1, owner: line.owner, message: `not run: ${missing} could not be created`, netns: batch.netns, args: line.args });
      }
      const res = await this.applyLines(batch.netns, lines);
      record(batch.netns, lines, res.failures);
      readBack.set(batch.netns, res.observed);
    };
    const [head, ...rest] = p.batches;
    const cleanup = rest.length > 0 && rest[rest.length - 1]!.netns === HOST_NAMESPACE ? rest.pop() : undefined;
    if (head) await run(head);
    const done = new Set<string>();
    let waiting = rest;
    while (waiting.length > 0) {
      let ready = waiting.filter((b) => b.after.every((n) => done.has(n) || !waiting.some((w) => w.netns === n)));
      // Creators always sort before their peers' namespaces, so there is no cycle; never spin if there were.
      if (ready.length === 0) ready = waiting;
      waiting = waiting.filter((b) => !ready.includes(b));
      for (let i = 0; i < ready.length; i += APPLY_CONCURRENCY) {
        await Promise.all(ready.slice(i, i + APPLY_CONCURRENCY).map(run));
      }
      for (const b of ready) done.add(b.netns);
    }
    if (cleanup) await run(cleanup);
    return { failures, readBack };
  }

  /**
   * `ip.batch`, but a line the client refuses to render (BatchArgError: it
   * cannot be carried by `ip -batch`) fails alone instead of the whole batch.
   */
  private async runLines(netns: string, lines: PlannedLine[]): Promise<BatchFailure[]> {
    const { lines: ok, refused } = this.renderable(netns, lines);
    return [...refused, ...(await this.ip.batch(netns, ok.map((l) => l.line))).map((f) => ({ ...f, index: ok[f.index]!.index }))];
  }

  /** `ip.apply` (write, then read back), with the same treatment of unrenderable lines. */
  private async applyLines(netns: string, lines: PlannedLine[]): Promise<{ failures: BatchFailure[]; observed?: ObservedNetns }> {
    const { lines: ok, refused } = this.renderable(netns, lines);
    const res = await this.ip.apply(netns, ok.map((l) => l.line));
    return { observed: res.observed, failures: [...refused, ...res.failures.map((f) => ({ ...f, index: ok[f.index]!.index }))] };
  }

  /** Splits `lines` into those the client can render and failures for the rest. */
  private renderable(netns: string, lines: PlannedLine[]): { lines: { line: PlannedLine; index: number }[]; refused: BatchFailure[] } {
    const refused: BatchFailure[] = [];
    const ok: { line: PlannedLine; index: number }[] = [];
    lines.forEach((line, index) => {
      try {
        this.ip.checkLine(line);
        ok.push({ line, index });
      } catch (err) {
        refused.push({ index, owner: line.owner, message: (err as Error).message });
      }
    });
    if (refused.length > 0) this.log.warn({ netns, refused }, 'batch lines netkeep cannot render');
    return { lines: ok, refused };
  }

  /**
   * The observed state after apply: the read-backs of the batches that ran
   * (namespaces' batches never change the host, so the host's read-back
   * stays true), the earlier reads of namespaces no batch touched, and a
   * fresh read of any namespace whose read-back is missing.
   */
  private async afterApply(
    desired: DesiredState,
    before: ObservedState,
    readBack: Map<string, ObservedNetns | undefined>,
  ): Promise<ObservedState> {
    const netns = new Set(await this.ip.listNetns());
    const byNetns = new Map<string, ObservedNetns>();
    const reread: string[] = [];
    for (const name of sortNetns([HOST_NAMESPACE, ...netns])) {
      const fresh = readBack.get(name);
      if (fresh) byNetns.set(name, fresh);
      else if (!readBack.has(name) && before.byNetns.has(name)) byNetns.set(name, before.byNetns.get(name)!);
      else reread.push(name);
    }
    const again = await this.observe(desired, reread);
    for (const [name, state] of again.byNetns) byNetns.set(name, state);
    return { netns, byNetns };
  }

  /** Reads /run/netns and the namespaces in it (or only those named), a bounded number at a time. */
  private async observe(desired: DesiredState, only?: string[]): Promise<ObservedState> {
    const netns = new Set(await this.ip.listNetns());
    const byNetns = new Map<string, ObservedNetns>();
    const wanted = only ?? sortNetns([HOST_NAMESPACE, ...netns]);
    let next = 0;
    const worker = async () => {
      while (next < wanted.length) {
        const name = wanted[next++]!;
        try {
          byNetns.set(name, await this.ip.observe(name));
        } catch (err) {
          // A namespace deleted between the listing and the read is simply absent.
          if (name === HOST_NAMESPACE) throw err;
          if (!desired.namespaces.has(name)) continue;
          this.log.warn({ netns: name, err }, 'cannot read network namespace');
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(OBSERVE_CONCURRENCY, wanted.length) }, worker));
    return { netns, byNetns };
  }

  /** The pool addresses of every bridge and veth end of the snapshot, by pooledKey(). */
  private readPooled(snapshot: Snapshot): Map<string, PooledAddress[]> {
    const pooled = new Map<string, PooledAddress[]>();
    for (const b of snapshot.bridges) {
      if (b.spec.addressPools.length > 0) pooled.set(pooledKey('bridges', b.name), bridgePoolAddresses(this.store.ipam, b.spec));
    }
    for (const v of snapshot.veths) {
      for (const end of ['a', 'b'] as const) {
        if (v.spec[end].addressPools.length === 0) continue;
        pooled.set(pooledKey('veths', v.name, end), vethEndPoolAddresses(this.store.ipam, v.name, end, v.spec[end]));
      }
    }
    return pooled;
  }

  /** Each load balancer's VIP: its own, or what it holds from its vipPool. */
  private readVips(snapshot: Snapshot): Map<string, string> {
    const vips = new Map<string, string>();
    for (const lb of snapshot.loadbalancers) {
      // The allocation in its vipPool; one with the same owner in another pool is a reservation, not its VIP.
      const vip = lb.spec.vip !== '' ? lb.spec.vip : (this.store.ipam.byOwner(lb.spec.vipPool, loadBalancerOwner(lb.name))?.address ?? '');
      if (vip !== '') vips.set(lb.name, vip);
    }
    return vips;
  }

  /** Writes every resource's status in one transaction; returns how many are not READY. */
  private writeStatuses(
    snapshot: Snapshot,
    pooled: ReadonlyMap<string, PooledAddress[]>,
    vips: ReadonlyMap<string, string>,
    lbOutcomes: ReadonlyMap<string, LoadBalancerOutcome>,
    observed: ObservedState,
    remaining: Plan,
    failures: Failure[],
  ): number {
    const now = new Date().toISOString();
    const pending = new Map<OwnerRef, string[]>();
    for (const b of remaining.batches) {
      for (const l of [...b.create, ...b.lines]) {
        const list = pending.get(l.owner as OwnerRef) ?? [];
        list.push(`ip ${b.netns ? `-n ${b.netns} ` : ''}${l.args.join(' ')}`);
        pending.set(l.owner as OwnerRef, list);
      }
    }
    const failed = new Map<string, string>();
    for (const f of failures) {
      if (!failed.has(f.owner)) failed.set(f.owner, `ip ${f.args.join(' ')}: ${f.message}`);
    }
    const findLink = (netns: string, ifname: string): ObservedLink | undefined =>
      observed.byNetns.get(netns)?.links.find((l) => l.ifname === ifname);
    /** The observed link, only when it carries the resource's mark (never a foreign holder's). */
    const linkStatus = (netns: string, ifname: string, alias: string): LinkStatus => {
      const l = findLink(netns, ifname);
      return l?.alias === alias ? { ifindex: l.ifindex, mac: l.mac } : { ifindex: 0, mac: '' };
    };

    let notReady = 0;
    this.store.transaction(() => {
      for (const kind of KINDS) {
        for (const r of snapshot[kind] as Resource[]) {
          // Changed (or deleted and re-created) while the pass ran: what this
          // pass saw is not that resource any more. The change triggered the
          // next pass, which will write its status.
          const stored = this.store.get(kind, r.name);
          if (!stored || stored.generation !== r.generation || stored.createTime !== r.createTime) continue;
          const owner = ownerRef(kind, r.name);
          let state: State = 'READY';
          let message = '';
          const blockedWhy = remaining.blocked.get(owner);
          const failedWhy = failed.get(owner);
          const waiting = pending.get(owner);
          if (blockedWhy) [state, message] = ['FAILED', blockedWhy];
          else if (failedWhy && waiting) [state, message] = ['FAILED', failedWhy];
          else if (waiting) [state, message] = ['PENDING', `waiting for: ${waiting[0]}`];
          const lbOutcome = kind === 'loadbalancers' ? lbOutcomes.get(r.name) : undefined;
          if (lbOutcome) [state, message] = [lbOutcome.state, lbOutcome.message];
          if (state !== 'READY') notReady++;
          const base = { state, message, observedGeneration: r.generation, lastReconcileTime: now };
          let status: StatusOf[Kind] = base;
          if (kind === 'loadbalancers') {
            status = { ...base, vip: vips.get(r.name) ?? '', backends: lbOutcome?.backends ?? [] };
          } else if (kind === 'bridges') {
            const b = r as Resource<'bridges'>;
            status = {
              ...base,
              ...linkStatus(b.spec.namespace, b.spec.ifname, ownerAlias(kind, b.name)),
              poolAddresses: pooled.get(pooledKey('bridges', b.name)) ?? [],
            };
          } else if (kind === 'veths') {
            const v = r as Resource<'veths'>;
            status = {
              ...base,
              a: {
                ...linkStatus(v.spec.a.namespace, v.spec.a.ifname, ownerAlias(kind, v.name)),
                poolAddresses: pooled.get(pooledKey('veths', v.name, 'a')) ?? [],
              },
              b: {
                ...linkStatus(v.spec.b.namespace, v.spec.b.ifname, ownerAlias(kind, v.name)),
                poolAddresses: pooled.get(pooledKey('veths', v.name, 'b')) ?? [],
              },
            };
          }
          if (state === 'FAILED' && (r.status.state !== 'FAILED' || r.status.message !== message)) {
            this.log.warn({ resource: owner, reason: message }, 'resource failed to reconcile');
          }
          this.store.setStatus(kind, r.name, status);
        }
      }
    });
    return notReady;
  }
}
