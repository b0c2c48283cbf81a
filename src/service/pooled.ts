/**
 * `addressPools` of bridges and veth ends (issue 3): the addresses a
 * resource takes from pools, found or allocated inside the resource's own
 * write transaction, so a resource and the allocations it owns are created,
 * changed and deleted together.
 *
 * - A bridge takes each pool's gateway with the pool's prefix length; the
 *   gateway is never an allocation (it is never handed out), and the pool
 *   must have one.
 * - A veth end holds one allocation from each pool it names, owned by
 *   `veths/<name>/<end>`. Next-free skips addresses already typed in on the
 *   end's segment (its namespace, its pair, the bridges either end is on).
 */
import { FailedPreconditionError, NotFoundError } from '../domain/errors.js';
import { POOL_KIND, loadBalancerOwner, vethEndOwner } from '../domain/ipam.js';
import { checkAgainstVip } from '../domain/loadbalancer.js';
import { effectiveVip, type Pooled } from '../domain/rules.js';
import type { Kind, PooledAddress, SpecOf, StatusOf } from '../domain/types.js';
import { Violations, addressIp } from '../domain/validate.js';
import { dryRun } from './common.js';
import { poolAddress } from '../ipam/pooled.js';
import type { Store } from '../store/store.js';
import type { IpamService } from './ipam.js';

/** A resource's pool addresses by the field naming the pools: `addressPools`, `a.addressPools`, `b.addressPools`. */
export type Assigned = Partial<Record<string, PooledAddress[]>>;

/** The pool addresses as the claim rules take them (domain/rules.ts `Pooled`). */
export function pooledOf(assigned: Assigned): Pooled {
  return Object.fromEntries(Object.entries(assigned).map(([field, list]) => [field, (list ?? []).map((p) => p.address)]));
}

/** `status` with the pool addresses of `assigned` filled in. */
export function withPoolAddresses<K extends Kind>(kind: K, status: StatusOf[K], assigned: Assigned, spec: SpecOf[K]): StatusOf[K] {
  if (kind === 'loadbalancers') {
    return { ...(status as StatusOf['loadbalancers']), vip: effectiveVip(spec as SpecOf['loadbalancers'], pooledOf(assigned)) } as StatusOf[K];
  }
  if (kind === 'bridges') return { ...(status as StatusOf['bridges']), poolAddresses: assigned.addressPools ?? [] } as StatusOf[K];
  if (kind === 'veths') {
    const s = status as StatusOf['veths'];
    return {
      ...s,
      a: { ...s.a, poolAddresses: assigned['a.addressPools'] ?? [] },
      b: { ...s.b, poolAddresses: assigned['b.addressPools'] ?? [] },
    } as StatusOf[K];
  }
  return status;
}

export class PoolUse {
  constructor(
    private readonly store: Store,
    private readonly ipam: IpamService,
  ) {}

  /**
   * Inside the write transaction: the pool addresses `spec` takes. For a
   * veth, allocates what is new and releases what `previous` (the stored
   * spec, on update) named but `spec` no longer does; with `validateOnly`
   * the same work is done in a savepoint and rolled back.
   *
   * Throws NotFoundError (a pool, on `addressPools[i]`), FailedPreconditionError
   * (a bridge's pool has no gateway), ResourceExhaustedError (a pool is full).
   */
  assign<K extends Kind>(kind: K, name: string, spec: SpecOf[K], previous: SpecOf[K] | undefined, validateOnly = false): Assigned {
    if (kind === 'bridges') return { addressPools: this.bridgeAddresses(spec as SpecOf['bridges']) };
    const work =
      kind === 'veths'
        ? () => this.assignVeth(name, spec as SpecOf['veths'], previous as SpecOf['veths'] | undefined)
        : kind === 'loadbalancers'
          ? () => this.assignVip(name, spec as SpecOf['loadbalancers'], previous as SpecOf['loadbalancers'] | undefined)
          : undefined;
    if (!work) return {};
    // Inside the caller's transaction: a dry run's releases and allocations go in a savepoint.
    return validateOnly ? dryRun((fn) => this.store.db.transaction(fn)(), work) : work();
  }

  /**
   * A load balancer's VIP allocation (owner `loadbalancers/<name>`): from
   * `vipPool` (exactly `vip` when given too), or of a static `vip` inside a
   * pool's cidr, so that the pool never hands it to anything else. What the
   * `previous` spec held and this one no longer needs is released first;
   * an allocation with that owner in another pool is a reservation, and
   * stays.
   */
  private assignVip(name: string, spec: SpecOf['loadbalancers'], previous: SpecOf['loadbalancers'] | undefined): Assigned {
    const owner = loadBalancerOwner(name);
    const pool = this.ipam.vipPoolOf(spec);
    const address = spec.vip === '' ? undefined : spec.vip;
    const before = previous && this.ipam.vipPoolOf(previous);
    if (before !== undefined) {
      const held = this.store.ipam.byOwner(before, owner);
      if (held && (before !== pool || (address !== undefined && held.address !== address))) this.ipam.releaseOwned(before, owner);
    }
    if (pool === undefined) return {};
    const field = spec.vipPool !== '' ? 'vipPool' : 'vip';
    // The next free address is never one of the backends (a backend cannot be the VIP).
    const backends = new Set(spec.backends.map((b) => b.address));
    const a = this.ipam.allocateOwned(pool, owner, field, address === undefined ? { avoid: (ip) => backends.has(ip) } : { address, addressField: 'vip' });
    const v = new Violations();
    checkAgainstVip(v, spec, a.address);
    v.throwIfAny();
    return { vipPool: [poolAddress(this.store.ipam.getPool(pool)!, a.address)] };
  }

  private assignVeth(name: string, veth: SpecOf['veths'], before: SpecOf['veths'] | undefined): Assigned {
    const typedIn = new Set([...veth.a.addresses, ...veth.b.addresses].map(addressIp));
    const chosen = new Set<string>();
    const assigned: Assigned = {};
    for (const end of ['a', 'b'] as const) {
      const owner = vethEndOwner(name, end);
      for (const pool of before?.[end].addressPools ?? []) {
        if (!veth[end].addressPools.includes(pool)) this.ipam.releaseOwned(pool, owner);
      }
      const scopes = [`ip:${veth[end].namespace}`, ...[veth.a.bridge, veth.b.bridge].filter((b) => b !== '').map((b) => `l2:${b}`)];
      const inUse = (ip: string) =>
        typedIn.has(ip) ||
        chosen.has(ip) ||
        scopes.some((scope) => {
          const holder = this.store.claimOwner(scope, ip);
          return holder !== undefined && !(holder.kind === 'veths' && holder.name === name);
        });
      assigned[`${end}.addressPools`] = veth[end].addressPools.map((pool, i) => {
        const a = this.ipam.allocateOwned(pool, owner, `${end}.addressPools[${i}]`, { avoid: inUse });
        chosen.add(a.address);
        return poolAddress(this.store.ipam.getPool(pool)!, a.address);
      });
    }
    return assigned;
  }

  /** Inside the delete transaction: releases every allocation the resource holds. */
  releaseAll(kind: Kind, name: string): void {
    if (kind === 'veths') for (const end of ['a', 'b'] as const) this.store.ipam.deleteOwner(vethEndOwner(name, end));
    if (kind === 'loadbalancers') this.store.ipam.deleteOwner(loadBalancerOwner(name));
  }

  private bridgeAddresses(spec: SpecOf['bridges']): PooledAddress[] {
    return spec.addressPools.map((name, i) => {
      const field = `addressPools[${i}]`;
      const pool = this.store.ipam.getPool(name);
      if (!pool) throw new NotFoundError(POOL_KIND, name, field);
      if (pool.spec.gateway === '') {
        const description = `pools/${name} has no gateway to give the bridge; set the pool's gateway`;
        throw new FailedPreconditionError(`${field}: ${description}`, [], [{ field, description }]);
      }
      return poolAddress(pool, pool.spec.gateway);
    });
  }
}
