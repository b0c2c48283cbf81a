/**
 * IPAM use cases (issue 3): IpPool CRUD and allocations. Validate → one
 * IMMEDIATE store transaction → return. Bridges and veth ends allocate
 * through allocateOwned() inside their own transactions (service/pooled.ts).
 *
 * Rules (each tested in test/unit/ipam-service.test.ts):
 * - Pools may not overlap one another (IPv4 and IPv6), checked inside the
 *   write transaction: AlreadyExistsError on `cidr`.
 * - Next-free moves forward from the persisted cursor (the last address it
 *   handed out) and wraps, like CNI host-local.
 * - The gateway and reserved addresses are never handed out; IPv4 network
 *   and broadcast addresses only in /31 and /32 (RFC 3021); the IPv6
 *   subnet-router anycast address (RFC 4291 §2.6.1) never, /127 and /128
 *   excepted (RFC 6164). See ipam/arith.ts.
 * - `ranges` limit automatic allocation only: an address requested
 *   explicitly may be any host address of the cidr that is not the gateway
 *   or reserved.
 * - Cost follows the allocations, never the pool size: next-free reads the
 *   allocations lazily from the cursor, counts are COUNTs over index ranges.
 */
import { READ_ONLY_FIELDS, dryRun, checkEtag, decodePageToken, encodePageToken, etagOf, mergePatch, pageLimit } from './common.js';
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  ResourceExhaustedError,
} from '../domain/errors.js';
import type { LoadBalancerSpec } from '../domain/loadbalancer.js';
import {
  loadBalancerOwner,
  POOL_FIELDS,
  POOL_IMMUTABLE,
  POOL_KIND,
  checkOwner,
  normalizePoolSpec,
  resourceOfOwner,
  type Allocation,
  type IpPool,
  type IpPoolSpec,
  type IpPoolStatus,
} from '../domain/ipam.js';
import { Violations, checkLabels, checkResourceName, checkUnknownFields, optString } from '../domain/validate.js';
import {
  addressValue,
  allocatable,
  contains,
  countIntervals,
  formatAddress,
  fromSortKey,
  hostInterval,
  nextFree,
  overlaps,
  parseNetwork,
  sortKey,
  subtractIntervals,
  type Interval,
  type Network,
} from '../ipam/arith.js';
import { KINDS } from '../domain/types.js';
import type { StoredAllocation } from '../store/allocations.js';
import type { Store } from '../store/store.js';
import type { ListOptions, WriteOptions } from './types.js';

const ALLOCATION_FIELDS = ['address', 'owner', 'labels', 'pool', 'createTime'];
/** How many owners an error message names before "and N more". */
const NAMED_OWNERS = 20;

export interface IpamHooks {
  /** Called after every committed pool write (not after allocations: their owners trigger). */
  onChange?(): void;
}

/** The body of an Allocate request. All fields optional. */
export interface AllocateRequest {
  /** Take exactly this address; absent or "" takes the next free one. */
  address?: string;
  /** Free-form holder reference; the same owner again returns its allocation. */
  owner?: string;
  labels?: Record<string, string>;
}

export interface PoolList {
  items: IpPool[];
  nextPageToken: string;
}

export interface AllocationList {
  items: Allocation[];
  nextPageToken: string;
}

/** A pool's spec as intervals. */
interface Space {
  network: Network;
  /** The addresses that may ever be handed out (hostInterval). */
  hosts: Interval;
  /** Gateway and reserved, as intervals (not normalized). */
  excluded: Interval[];
  /** Ranges (or all hosts) clipped to hosts, before exclusions. */
  base: Interval[];
  /** The automatic allocation space: base minus excluded. */
  space: Interval[];
}

function spaceOf(spec: IpPoolSpec): Space {
  const network = parseNetwork(spec.cidr)!;
  const v = (t: string) => addressValue(t)!.value;
  const ranges = spec.ranges.map((r) => ({ start: v(r.start), end: v(r.end) }));
  const excluded = [
    ...(spec.gateway === '' ? [] : [{ start: v(spec.gateway), end: v(spec.gateway) }]),
    ...spec.reserved.map((r) => (typeof r === 'string' ? { start: v(r), end: v(r) } : { start: v(r.start), end: v(r.end) })),
  ];
  return {
    network,
    hosts: hostInterval(network)!,
    excluded,
    base: allocatable(network, ranges, []),
    space: allocatable(network, ranges, excluded),
  };
}

function poolRef(name: string): string {
  return `pools/${name}`;
}


function publicAllocation(a: StoredAllocation): Allocation {
  return { pool: a.pool, address: a.address, owner: a.owner, labels: a.labels, createTime: a.createTime };
}

/** "veths/a/b, 10.0.0.7 (no owner) and 3 more", for messages. */
function describeHolders(list: StoredAllocation[], more: number): string {
  const names = list.map((a) => (a.owner === '' ? `${a.address} (no owner)` : `${a.owner} (${a.address})`));
  return names.join(', ') + (more > 0 ? ` and ${more} more` : '');
}

export class IpamService {
  constructor(
    private readonly store: Store,
    private readonly hooks: IpamHooks = {},
  ) {}

  private get repo() {
    return this.store.ipam;
  }

  // --- pools -----------------------------------------------------------------

  /**
   * Creates a pool from `{name, labels, cidr, gateway, ranges, reserved}`.
   * Throws InvalidArgumentError (a violation per bad field), AlreadyExistsError
   * (the name is taken, or `cidr` overlaps another pool's).
   */
  createPool(input: Record<string, unknown>, opts: WriteOptions = {}): IpPool {
    if (input === null || typeof input !== 'object' || Array.isArray(input)) {
      throw InvalidArgumentError.field('pool', 'must be an object');
    }
    const v = new Violations();
    checkUnknownFields(v, '', input, ['name', 'labels', ...READ_ONLY_FIELDS, ...POOL_FIELDS]);
    const name = checkResourceName(v, 'name', input.name);
    const labels = checkLabels(v, 'labels', input.labels);
    const spec = normalizePoolSpec(v, input);
    v.throwIfAny();

    const now = new Date().toISOString();
    const create = () => {
      if (this.repo.getPool(name)) {
        throw new AlreadyExistsError(`${poolRef(name)} already exists`, [
          { field: 'name', description: `${poolRef(name)} already exists` },
        ]);
      }
      this.checkOverlap(name, spec);
      const etag = opts.validateOnly ? '' : etagOf(this.store.bumpRevision());
      const p: IpPool = {
        kind: POOL_KIND,
        name,
        labels,
        spec,
        generation: 1,
        etag,
        createTime: now,
        updateTime: now,
        status: { state: 'READY', message: '', observedGeneration: 1, lastReconcileTime: '', total: '0', allocated: '0', free: '0' },
      };
      this.repo.insertPool(p);
      this.adoptStaticVips(p);
      return this.withCounts(p);
    };
    // validateOnly does the same work, adoption included, and rolls it back.
    if (opts.validateOnly) return dryRun((fn) => this.store.transaction(fn), create);
    const pool = this.store.transaction(create);
    this.hooks.onChange?.();
    return pool;
  }

  /**
   * Inside createPool's transaction: a load balancer's static `vip` inside
   * the new pool's cidr becomes its allocation (owner `loadbalancers/<name>`),
   * as if the pool had existed when it was made, so the pool never hands it
   * to anything else. A VIP the pool could not give (its gateway, a reserved,
   * network or broadcast address), or one that two load balancers in
   * different namespaces share, refuses the pool: FailedPreconditionError
   * on `cidr` naming the load balancers.
   */
  private adoptStaticVips(p: IpPool): void {
    const sp = spaceOf(p.spec);
    for (const lb of this.store.all('loadbalancers')) {
      const { vip, vipPool } = lb.spec;
      const a = vip === '' || vipPool !== '' ? undefined : addressValue(vip);
      if (!a || a.family !== sp.network.family || a.value < sp.network.first || a.value > sp.network.last) continue;
      const user = loadBalancerOwner(lb.name);
      let value: bigint;
      try {
        value = this.checkRequested(p, sp, vip, 'cidr');
      } catch (err) {
        const description = `${vip} is the VIP of ${user}, which ${poolRef(p.name)} could not allocate to it: ${(err as Error).message.replace(/^cidr: /, '')}`;
        throw new FailedPreconditionError(`cidr: ${description}`, [user], [{ field: 'cidr', description }]);
      }
      const held = this.repo.get(p.name, sortKey(sp.network.family, value));
      if (held) {
        // VIPs are per namespace: two load balancers may share one, but a pool allocates it once.
        const description = `${vip} is the VIP of ${held.owner} and of ${user} (in other namespaces); ${poolRef(p.name)} can allocate it to one of them only`;
        throw new FailedPreconditionError(`cidr: ${description}`, [held.owner, user], [{ field: 'cidr', description }]);
      }
      this.take(p, user, {}, value, { field: 'cidr' });
    }
  }

  /** Throws NotFoundError. */
  getPool(name: string): IpPool {
    return this.withCounts(this.mustGetPool(name));
  }

  /** Pools by name, `{items, nextPageToken}`. Throws InvalidArgumentError on a bad pageSize/pageToken. */
  listPools(opts: ListOptions = {}): PoolList {
    const limit = pageLimit(opts);
    const after = opts.pageToken ? decodePageToken(POOL_KIND, opts.pageToken) : '';
    const rows = this.repo.pagePools(after, limit + 1);
    const items = rows.slice(0, limit).map((p) => this.withCounts(p));
    return { items, nextPageToken: rows.length > limit ? encodePageToken(POOL_KIND, items[items.length - 1]!.name) : '' };
  }

  /**
   * Applies a JSON merge patch (RFC 7396) to `{labels, cidr, gateway, ranges, reserved}`.
   * Throws InvalidArgumentError (bad field; `cidr` is immutable), NotFoundError,
   * AbortedError (etag), FailedPreconditionError naming the owners when the
   * change would strand allocations (the gateway or a reserved entry over an
   * allocated address, or a range that no longer covers one it used to).
   */
  updatePool(name: string, patch: Record<string, unknown>, opts: WriteOptions = {}): IpPool {
    if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) {
      throw InvalidArgumentError.field('pool', 'a patch must be a JSON object');
    }
    const result = this.store.transaction(() => {
      const current = this.mustGetPool(name);
      checkEtag(poolRef(current.name), current, opts.etag);
      const v = new Violations();
      checkUnknownFields(v, '', patch, ['name', 'labels', ...READ_ONLY_FIELDS, ...POOL_FIELDS]);
      if ('name' in patch && patch.name !== name) v.add('name', 'is immutable: it is the resource id');
      const editable = Object.fromEntries(Object.entries(patch).filter(([k]) => k !== 'name' && !READ_ONLY_FIELDS.includes(k)));
      const merged = mergePatch({ labels: current.labels, ...structuredClone(current.spec) }, editable) as Record<string, unknown>;
      // A changed cidr is the one error to report: every other field would be judged against the wrong network.
      for (const f of POOL_IMMUTABLE) {
        if (f in editable && normalizePoolSpec(new Violations(), { [f]: editable[f] })[f] !== current.spec[f]) {
          throw InvalidArgumentError.field(f, 'is immutable: delete and re-create the pool to change it');
        }
      }
      const labels = checkLabels(v, 'labels', merged.labels);
      const spec = normalizePoolSpec(v, merged);
      v.throwIfAny();

      const specChanged = JSON.stringify(spec) !== JSON.stringify(current.spec);
      const labelsChanged = JSON.stringify(labels) !== JSON.stringify(current.labels);
      if (!specChanged && !labelsChanged) return { pool: current, changed: false };
      if (specChanged) this.checkStranded(current, spec);
      if (spec.gateway !== current.spec.gateway) this.checkGatewayUnused(current);
      const generation = specChanged ? current.generation + 1 : current.generation;
      const next: IpPool = {
        ...current,
        labels,
        spec,
        generation,
        etag: opts.validateOnly ? '' : etagOf(this.store.bumpRevision()),
        updateTime: new Date().toISOString(),
        status: { ...current.status, observedGeneration: generation },
      };
      if (!opts.validateOnly) this.repo.replacePool(next);
      return { pool: next, changed: !opts.validateOnly };
    });
    if (result.changed) this.hooks.onChange?.();
    return this.withCounts(result.pool);
  }

  /** Throws NotFoundError, AbortedError, FailedPreconditionError naming the owners while the pool has allocations. */
  deletePool(name: string, opts: WriteOptions = {}): void {
    this.store.transaction(() => {
      const current = this.mustGetPool(name);
      checkEtag(poolRef(current.name), current, opts.etag);
      const users = this.store.dependents(POOL_KIND, name);
      const n = this.repo.count(name);
      if (users.length > 0 || n > 0) {
        const used = users.map((d) => `${d.kind}/${d.name} (${d.field})`).join(', ');
        const shown = this.repo.page(name, '', NAMED_OWNERS);
        const held = n === 0 ? '' : `${n} allocation${n === 1 ? '' : 's'}: ${describeHolders(shown, n - shown.length)}`;
        throw new FailedPreconditionError(
          `${poolRef(name)} ${[used && `is still used by ${used}`, held && `still has ${held}`].filter(Boolean).join(' and ')}; ` +
            'take it out of those resources and release the other allocations first',
          [...new Set([...users.map((d) => `${d.kind}/${d.name}`), ...this.repo.owners(name, NAMED_OWNERS)])],
        );
      }
      if (opts.validateOnly) return;
      this.repo.deletePool(name);
      this.store.bumpRevision();
    });
    if (!opts.validateOnly) this.hooks.onChange?.();
  }

  // --- allocations -----------------------------------------------------------

  /**
   * Allocates one address of `pool`: exactly `req.address` when given, else
   * the next free one after the pool's cursor (wrapping). The same non-empty
   * owner again returns its existing allocation unchanged (idempotent retry).
   *
   * Throws NotFoundError (pool), InvalidArgumentError (malformed address,
   * other family, outside the cidr, not a host address: IPv4 network or
   * broadcast below /31, IPv6 subnet-router anycast below /127),
   * FailedPreconditionError (the gateway or a reserved address),
   * AlreadyExistsError (address taken; or the owner already holds another
   * address in this pool), ResourceExhaustedError (no free address).
   */
  allocate(pool: string, req: AllocateRequest = {}, opts: WriteOptions = {}): Allocation {
    if (req === null || typeof req !== 'object' || Array.isArray(req)) {
      throw InvalidArgumentError.field('allocation', 'must be an object');
    }
    const v = new Violations();
    checkUnknownFields(v, '', req as Record<string, unknown>, ALLOCATION_FIELDS);
    const addressText = optString(v, 'address', req.address);
    const owner = checkOwner(v, 'owner', req.owner);
    const labels = checkLabels(v, 'labels', req.labels);
    v.throwIfAny();

    return this.store.transaction(() => {
      const p = this.mustGetPool(pool);
      const requested = addressText === '' ? undefined : this.checkRequested(p, spaceOf(p.spec), addressText);
      return publicAllocation(this.take(p, owner, labels, requested, { validateOnly: opts.validateOnly }));
    });
  }

  /**
   * For a resource's pool addresses (service/pooled.ts), inside the caller's
   * write transaction: the allocation `owner` holds in `pool`, or else
   * `opts.address` exactly, or else the next free address, skipping those
   * `opts.avoid` says are in use on the link's segment. `field` names the
   * request field in errors, `opts.addressField` (default `field`) the one
   * of errors about `opts.address`.
   *
   * Throws NotFoundError (pool, on `field`), ResourceExhaustedError, and for
   * `opts.address` the errors of allocate() (InvalidArgumentError,
   * FailedPreconditionError, AlreadyExistsError).
   */
  allocateOwned(
    pool: string,
    owner: string,
    field: string,
    opts: { avoid?: (address: string) => boolean; address?: string; addressField?: string } = {},
  ): StoredAllocation {
    const p = this.repo.getPool(pool);
    if (!p) throw new NotFoundError(POOL_KIND, pool, field);
    const addressField = opts.addressField ?? field;
    const requested = opts.address === undefined ? undefined : this.checkRequested(p, spaceOf(p.spec), opts.address, addressField);
    try {
      return this.take(p, owner, {}, requested, { avoid: opts.avoid, field: addressField });
    } catch (err) {
      if (err instanceof ResourceExhaustedError) throw new ResourceExhaustedError(`${field}: ${err.message}`, [{ field, description: err.message }]);
      throw err;
    }
  }

  /** The pool a load balancer's VIP is allocated from: its `vipPool`, or the pool holding its static `vip`; undefined for none. */
  vipPoolOf(spec: Pick<LoadBalancerSpec, 'vip' | 'vipPool'>): string | undefined {
    if (spec.vipPool !== '') return spec.vipPool;
    return spec.vip === '' ? undefined : this.poolContaining(spec.vip)?.name;
  }

  /** The pool whose cidr holds `address`, if any (pools do not overlap, so at most one). */
  poolContaining(address: string): IpPool | undefined {
    const a = addressValue(address);
    if (!a) return undefined;
    return this.repo.allPools().find((p) => {
      const n = parseNetwork(p.spec.cidr)!;
      return n.family === a.family && a.value >= n.first && a.value <= n.last;
    });
  }

  /** Inside the caller's transaction: releases what `owner` holds in `pool`, if anything. */
  releaseOwned(pool: string, owner: string): void {
    const held = this.repo.byOwner(pool, owner);
    if (held) this.repo.delete(pool, held.sortKey);
  }

  /**
   * The allocation step of allocate() and allocateOwned(): the owner's
   * existing allocation, else `requested`, else the next free address.
   */
  private take(
    p: IpPool,
    owner: string,
    labels: Record<string, string>,
    requested: bigint | undefined,
    opts: { validateOnly?: boolean; avoid?: (address: string) => boolean; field?: string },
  ): StoredAllocation {
    const pool = p.name;
    const sp = spaceOf(p.spec);
    const family = sp.network.family;
    const mine = this.repo.byOwner(pool, owner);
    if (mine) {
      if (requested !== undefined && requested !== fromSortKey(mine.sortKey)) {
        const description = `${owner} already holds ${mine.address} in ${poolRef(pool)}`;
        throw new AlreadyExistsError(`owner: ${description}`, [{ field: 'owner', description }]);
      }
      return mine;
    }

    let value: bigint;
    if (requested !== undefined) {
      const held = this.repo.get(pool, sortKey(family, requested));
      if (held) {
        const description = `${held.address} is already allocated${held.owner === '' ? '' : ` to ${held.owner}`}`;
        const field = opts.field ?? 'address';
        throw new AlreadyExistsError(`${field}: ${description}`, [{ field, description }]);
      }
      value = requested;
    } else {
      const avoid = opts.avoid;
      const found = this.nextFree(pool, sp, avoid && ((x) => avoid(formatAddress(family, x))));
      if (found === undefined) {
        throw new ResourceExhaustedError(`${poolRef(pool)} (${p.spec.cidr}) has no free address`);
      }
      value = found;
    }
    const a: StoredAllocation = {
      pool,
      address: formatAddress(family, value),
      owner,
      labels,
      createTime: new Date().toISOString(),
      sortKey: sortKey(family, value),
    };
    if (!opts.validateOnly) {
      this.repo.insert(a);
      if (requested === undefined) this.repo.setCursor(pool, a.sortKey);
      this.store.bumpRevision();
    }
    return a;
  }

  /** Throws NotFoundError (pool or allocation), InvalidArgumentError (malformed address). */
  getAllocation(pool: string, address: string): Allocation {
    const p = this.mustGetPool(pool);
    const key = this.keyOf(p, address);
    const a = key === undefined ? undefined : this.repo.get(pool, key);
    if (!a) throw new NotFoundError(`${poolRef(pool)}/allocations`, address);
    return publicAllocation(a);
  }

  /** A pool's allocations in address order, `{items, nextPageToken}`. Throws NotFoundError, InvalidArgumentError. */
  listAllocations(pool: string, opts: ListOptions = {}): AllocationList {
    const limit = pageLimit(opts);
    this.mustGetPool(pool);
    const scope = `${poolRef(pool)}/allocations`;
    const after = opts.pageToken ? decodePageToken(scope, opts.pageToken) : '';
    const rows = this.repo.page(pool, after, limit + 1);
    const items = rows.slice(0, limit);
    return {
      items: items.map(publicAllocation),
      nextPageToken: rows.length > limit ? encodePageToken(scope, items[items.length - 1]!.sortKey) : '',
    };
  }

  /** Every allocation `owner` holds, in any pool, by pool and address. */
  allocationsOf(owner: string): Allocation[] {
    return owner === '' ? [] : this.repo.ofOwner(owner).map(publicAllocation);
  }

  /** Releases one allocation. The cursor stays, so the address is not reused at once. Throws NotFoundError, InvalidArgumentError. */
  release(pool: string, address: string, opts: WriteOptions = {}): void {
    this.store.transaction(() => {
      const p = this.mustGetPool(pool);
      const key = this.keyOf(p, address);
      const held = key === undefined ? undefined : this.repo.get(pool, key);
      if (!held) throw new NotFoundError(`${poolRef(pool)}/allocations`, address);
      const user = this.resourceUsing(pool, held.owner);
      if (user) {
        throw new FailedPreconditionError(
          `${held.address} is the address ${user} takes from ${poolRef(pool)}; change or delete ${user} to release it`,
          [user],
        );
      }
      if (opts.validateOnly) return;
      this.repo.delete(pool, held.sortKey);
      this.store.bumpRevision();
    });
  }

  /**
   * The start-up sweep: in one transaction, removes every allocation whose
   * owner names a netkeep resource (`veths/<name>/<end>`, `bridges/<name>`,
   * … see domain/ipam.ts resourceOfOwner) that does not exist. Allocations
   * with any other owner, or none, are the caller's and are left alone.
   * Returns the owners removed.
   */
  sweepOrphans(): string[] {
    return this.store.transaction(() => {
      const removed: string[] = [];
      for (const owner of this.repo.allOwners()) {
        const of = resourceOfOwner(owner, KINDS);
        if (!of || this.store.get(of.kind, of.name)) continue;
        this.repo.deleteOwner(owner);
        removed.push(owner);
      }
      if (removed.length > 0) this.store.bumpRevision();
      return removed;
    });
  }

  // --- internals -------------------------------------------------------------

  private mustGetPool(name: string): IpPool {
    const p = this.repo.getPool(name);
    if (!p) throw new NotFoundError('pools', name);
    return p;
  }

  /** The sort key of `address` in `p`, or undefined when it cannot be in the pool. Throws InvalidArgumentError when malformed. */
  private keyOf(p: IpPool, address: string): string | undefined {
    const a = typeof address === 'string' ? addressValue(address) : undefined;
    if (!a) throw InvalidArgumentError.field('address', `"${String(address)}" is not an IP address`);
    const n = parseNetwork(p.spec.cidr)!;
    if (a.family !== n.family || a.value < n.first || a.value > n.last) return undefined;
    return sortKey(a.family, a.value);
  }

  /** Checks an explicitly requested address against the pool; returns its value. */
  private checkRequested(p: IpPool, sp: Space, text: string, field = 'address'): bigint {
    const a = addressValue(text);
    if (!a) throw InvalidArgumentError.field(field, `"${text}" is not an IP address`);
    const n = sp.network;
    if (a.family !== n.family) {
      throw InvalidArgumentError.field(field, `${formatAddress(a.family, a.value)} is IPv${a.family} but ${poolRef(p.name)} is IPv${n.family}`);
    }
    const shown = formatAddress(a.family, a.value);
    if (a.value < n.first || a.value > n.last) {
      throw InvalidArgumentError.field(field, `${shown} is outside ${poolRef(p.name)} (${p.spec.cidr})`);
    }
    if (!contains(sp.hosts, a.value)) {
      const what =
        n.family === 6 ? 'the subnet-router anycast address (RFC 4291 §2.6.1)' : a.value === n.first ? 'the network address' : 'the broadcast address';
      throw InvalidArgumentError.field(field, `${shown} is ${what} of ${p.spec.cidr}, not a host address`);
    }
    const gw = p.spec.gateway === '' ? undefined : addressValue(p.spec.gateway)!.value;
    if (gw === a.value) {
      throw new FailedPreconditionError(`${field}: ${shown} is the gateway of ${poolRef(p.name)}`, [], [
        { field, description: `${shown} is the pool's gateway` },
      ]);
    }
    if (sp.excluded.some((i) => contains(i, a.value))) {
      throw new FailedPreconditionError(`${field}: ${shown} is reserved in ${poolRef(p.name)}`, [], [
        { field, description: `${shown} is reserved in the pool` },
      ]);
    }
    return a.value;
  }

  /**
   * arith.nextFree over the persisted cursor, reading allocations lazily from
   * the store. Every iterator it opens is closed before returning, since an
   * open better-sqlite3 iterator keeps the connection busy.
   */
  private nextFree(pool: string, sp: Space, avoid?: (x: bigint) => boolean): bigint | undefined {
    const family = sp.network.family;
    const cursorKey = this.repo.cursor(pool);
    const open: Iterator<string>[] = [];
    const from = (x: bigint): Iterable<bigint> => {
      // nextFree reads one pass at a time: close the last pass's iterator (same statement) first.
      for (const o of open.splice(0)) o.return?.();
      const it = this.repo.allocatedFrom(pool, sortKey(family, x));
      open.push(it);
      return (function* () {
        for (const k of it) yield fromSortKey(k);
      })();
    };
    try {
      return nextFree(sp.space, cursorKey === undefined ? undefined : fromSortKey(cursorKey), from, avoid);
    } finally {
      for (const it of open) it.return?.();
    }
  }

  /**
   * The resource an allocation is the pool address of, while it is: a veth
   * end whose addressPools still names `pool` (`veths/<name>`), or a load
   * balancer whose VIP comes from `pool` (`loadbalancers/<name>`).
   */
  private resourceUsing(pool: string, owner: string): string | undefined {
    const of = resourceOfOwner(owner, ['veths', 'loadbalancers'] as const);
    if (!of) return undefined;
    if (of.kind === 'loadbalancers') {
      const lb = of.end ? undefined : this.store.get('loadbalancers', of.name);
      return lb && this.vipPoolOf(lb.spec) === pool ? owner : undefined;
    }
    if (!of.end) return undefined;
    const veth = this.store.get('veths', of.name);
    return veth?.spec[of.end].addressPools.includes(pool) ? `veths/${of.name}` : undefined;
  }

  /** A bridge configures the gateway of each pool it names: that gateway may not move under it. */
  private checkGatewayUnused(p: IpPool): void {
    const bridges = this.store.dependents(POOL_KIND, p.name).filter((d) => d.kind === 'bridges');
    if (bridges.length === 0) return;
    const names = [...new Set(bridges.map((d) => `${d.kind}/${d.name}`))];
    throw new FailedPreconditionError(
      `the gateway of ${poolRef(p.name)} is the address of ${names.join(', ')}; remove the pool from their addressPools to change it`,
      names,
      [{ field: 'gateway', description: `is the address of ${names.join(', ')}` }],
    );
  }

  /** Refuses a cidr that shares any address with another pool's (same family). */
  private checkOverlap(name: string, spec: IpPoolSpec): void {
    const mine = parseNetwork(spec.cidr)!;
    for (const other of this.repo.allPools()) {
      if (other.name === name) continue;
      const theirs = parseNetwork(other.spec.cidr)!;
      if (theirs.family !== mine.family) continue;
      if (overlaps({ start: mine.first, end: mine.last }, { start: theirs.first, end: theirs.last })) {
        const description = `${spec.cidr} overlaps ${other.spec.cidr} of ${poolRef(other.name)}`;
        throw new AlreadyExistsError(description, [{ field: 'cidr', description }]);
      }
    }
  }

  /** Refuses a new spec that would leave allocations on the gateway, a reserved entry, or outside ranges they were in. */
  private checkStranded(current: IpPool, spec: IpPoolSpec): void {
    const before = spaceOf(current.spec);
    const after = spaceOf(spec);
    const lost = [...after.excluded, ...subtractIntervals(before.base, after.base)];
    const found = new Map<string, StoredAllocation>();
    for (const i of lost) {
      const fam = after.network.family;
      const lo = sortKey(fam, i.start);
      const hi = sortKey(fam, i.end);
      for (const a of this.repo.between(current.name, lo, hi, NAMED_OWNERS)) found.set(a.sortKey, a);
      if (found.size >= NAMED_OWNERS) break;
    }
    if (found.size === 0) return;
    const list = [...found.values()].sort((x, y) => (x.sortKey < y.sortKey ? -1 : 1));
    throw new FailedPreconditionError(
      `the change to ${poolRef(current.name)} would strand allocations: ${describeHolders(list, 0)}${
        found.size >= NAMED_OWNERS ? ' and possibly more' : ''
      }; release them first (an address a veth holds through addressPools is released by removing the pool from its addressPools)`,
      [...new Set(list.map((a) => a.owner).filter((o) => o !== ''))],
    );
  }

  /** The pool with its counts: COUNTs over the allocatable intervals, no enumeration. */
  private withCounts(p: IpPool): IpPool {
    const sp = spaceOf(p.spec);
    const total = countIntervals(sp.space);
    let inSpace = 0n;
    for (const i of sp.space) {
      inSpace += BigInt(this.repo.countBetween(p.name, sortKey(sp.network.family, i.start), sortKey(sp.network.family, i.end)));
    }
    const status: IpPoolStatus = {
      ...p.status,
      total: total.toString(),
      allocated: String(this.repo.count(p.name)),
      free: (total - inSpace).toString(),
    };
    return { ...p, status };
  }
}
