/**
 * Resource → REST JSON (the proto3 JSON mapping of `netkeep.v1`, DESIGN.md §2):
 * the flat form of `domain/present.ts`, with the int64 fields `generation`
 * and `status.observedGeneration` as decimal strings and
 * `status.lastReconcileTime` left out until the first reconcile.
 */
import type { Allocation, IpPool } from '../../domain/ipam.js';
import { flatten } from '../../domain/present.js';
import type { Kind, Resource } from '../../domain/types.js';

export type ResourceJson = Record<string, unknown>;

/** The int64 and optional fields of the flat form in their JSON spelling. */
function presentFlat(flat: Record<string, unknown> & { generation: number; status: Record<string, unknown> }): ResourceJson {
  const status: Record<string, unknown> = { ...flat.status };
  status.observedGeneration = String(status.observedGeneration ?? 0);
  if (status.lastReconcileTime === '' || status.lastReconcileTime === undefined) delete status.lastReconcileTime;
  return { ...flat, generation: String(flat.generation), status };
}

export function presentResource<K extends Kind>(r: Resource<K>): ResourceJson {
  return presentFlat(flatten(r));
}

/**
 * IpPool → REST JSON: the same flat form as every resource
 * (`{name, labels, cidr, gateway, ranges, reserved, ...metadata, status}`);
 * the counts of `status` are already decimal strings.
 */
export function presentPool(p: IpPool): ResourceJson {
  return presentFlat({
    name: p.name,
    labels: { ...p.labels },
    ...structuredClone(p.spec),
    generation: p.generation,
    etag: p.etag,
    createTime: p.createTime,
    updateTime: p.updateTime,
    status: { ...p.status },
  });
}

/** Allocation → REST JSON `{pool, address, owner, labels, createTime}`. */
export function presentAllocation(a: Allocation): ResourceJson {
  return { pool: a.pool, address: a.address, owner: a.owner, labels: { ...a.labels }, createTime: a.createTime };
}

export function presentList<R>(
  page: { items: R[]; nextPageToken: string },
  present: (r: R) => ResourceJson,
): {
  items: ResourceJson[];
  nextPageToken: string;
} {
  return { items: page.items.map((r) => present(r)), nextPageToken: page.nextPageToken };
}

/** The `ETag` header for a resource: its `etag` field as a strong entity tag. */
export function entityTag(r: { etag: string }): string {
  return `"${r.etag}"`;
}
