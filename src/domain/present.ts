/**
 * The flat JSON form of a resource shared by both transports:
 * `{name, labels, ...spec, generation, etag, createTime, updateTime, status}`.
 */
import type { Kind, Resource } from './types.js';

export type FlatResource = Record<string, unknown> & {
  name: string;
  labels: Record<string, string>;
  generation: number;
  etag: string;
  createTime: string;
  updateTime: string;
  status: Record<string, unknown>;
};

export function flatten<K extends Kind>(r: Resource<K>): FlatResource {
  return {
    name: r.name,
    labels: { ...r.labels },
    ...structuredClone(r.spec as Record<string, unknown>),
    generation: r.generation,
    etag: r.etag,
    createTime: r.createTime,
    updateTime: r.updateTime,
    status: structuredClone(r.status as unknown as Record<string, unknown>),
  };
}
