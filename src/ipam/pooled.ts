/**
 * The addresses bridges and veth ends take from their `addressPools`, read
 * from the store: what the reconciler configures and what their `status`
 * shows. Written by service/pooled.ts in the resource's own transaction.
 */
import { vethEndOwner, type IpPool } from '../domain/ipam.js';
import type { BridgeSpec, PooledAddress, VethEnd } from '../domain/types.js';
import type { AllocationStore } from '../store/allocations.js';

/** `address` as an interface address of `pool`: `10.50.0.7/24`. */
export function poolAddress(pool: IpPool, address: string): PooledAddress {
  return { pool: pool.name, address: `${address}/${pool.spec.cidr.slice(pool.spec.cidr.indexOf('/') + 1)}` };
}

/** A bridge's pool addresses: the gateway of each pool it names, with the pool's prefix length. */
export function bridgePoolAddresses(repo: AllocationStore, spec: BridgeSpec): PooledAddress[] {
  return spec.addressPools.flatMap((name) => {
    const pool = repo.getPool(name);
    return pool && pool.spec.gateway !== '' ? [poolAddress(pool, pool.spec.gateway)] : [];
  });
}

/** A veth end's pool addresses: the allocation `veths/<name>/<end>` holds in each pool it names. */
export function vethEndPoolAddresses(repo: AllocationStore, name: string, end: 'a' | 'b', spec: VethEnd): PooledAddress[] {
  const owner = vethEndOwner(name, end);
  return spec.addressPools.flatMap((poolName) => {
    const pool = repo.getPool(poolName);
    const held = pool && repo.byOwner(poolName, owner);
    return pool && held ? [poolAddress(pool, held.address)] : [];
  });
}
