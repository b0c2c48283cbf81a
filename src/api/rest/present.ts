/**
 * Resource → REST JSON (the proto3 JSON mapping of `netkeep.v1`, DESIGN.md §2):
 * the flat form of `domain/present.ts`, with the int64 fields `generation`
 * and `status.observedGeneration` as decimal strings and
 * `status.lastReconcileTime` left out until the first reconcile.
 */
import { flatten } from '../../domain/present.js';
import type { Kind, Resource } from '../../domain/types.js';

export type ResourceJson = Record<string, unknown>;

export function presentResource<K extends Kind>(r: Resource<K>): ResourceJson {
  const flat = flatten(r);
  const status: Record<string, unknown> = { ...flat.status };
  status.observedGeneration = String(status.observedGeneration ?? 0);
  if (status.lastReconcileTime === '' || status.lastReconcileTime === undefined) delete status.lastReconcileTime;
  return { ...flat, generation: String(flat.generation), status };
}

export function presentList<K extends Kind>(page: { items: Resource<K>[]; nextPageToken: string }): {
  items: ResourceJson[];
  nextPageToken: string;
} {
  return { items: page.items.map(presentResource), nextPageToken: page.nextPageToken };
}

/** The `ETag` header for a resource: its `etag` field as a strong entity tag. */
export function entityTag(r: Resource): string {
  return `"${r.etag}"`;
}
