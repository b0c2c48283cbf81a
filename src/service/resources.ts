/**
 * The use cases of every kind: validate → one store transaction → trigger the
 * reconciler → return the resource. Knows nothing of HTTP, gRPC or the kernel.
 */
import { READ_ONLY_FIELDS, checkEtag, decodePageToken, encodePageToken, etagOf, mergePatch, pageLimit } from './common.js';
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
} from '../domain/errors.js';
import { POOL_KIND } from '../domain/ipam.js';
import { RULES, describeNamespace } from '../domain/rules.js';
import { KIND_SINGULAR, pendingStatus, type Kind, type Resource, type SpecOf } from '../domain/types.js';
import { Violations, checkLabels, checkResourceName, checkUnknownFields } from '../domain/validate.js';
import type { Claims, Store } from '../store/index.js';
import { pooledOf, withPoolAddresses, type Assigned, type PoolUse } from './pooled.js';
import type { ListOptions, ListResult, ResourceService, WriteOptions } from './types.js';

export interface ServiceHooks {
  /** Called after every committed write of intent; the reconciler coalesces these. */
  onChange(): void;
  /** Readiness of the daemon (first reconcile pass done, not draining). */
  ready(): boolean;
  /**
   * From the reconciler's last observation (no kernel call): a description of
   * the foreign link holding `ifname` in `netns`, or undefined.
   */
  foreignLink?(netns: string, ifname: string): string | undefined;
  /** From the last observation: true when /run/netns/<name> exists and is not netkeep's. */
  foreignNetns?(name: string): boolean;
}

function valueAt(obj: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], obj);
}

function ref(kind: Kind, name: string): string {
  return `${kind}/${name}`;
}


export class ResourceServiceImpl<K extends Kind> implements ResourceService<K> {
  constructor(
    readonly kind: K,
    private readonly store: Store,
    private readonly hooks: ServiceHooks,
    private readonly pools: PoolUse,
  ) {}

  private get rules() {
    return RULES[this.kind];
  }

  create(input: Record<string, unknown>, opts: WriteOptions = {}): Resource<K> {
    const v = new Violations();
    if (input === null || typeof input !== 'object' || Array.isArray(input)) {
      throw InvalidArgumentError.field(KIND_SINGULAR[this.kind], 'must be an object');
    }
    checkUnknownFields(v, '', input, ['name', 'labels', ...READ_ONLY_FIELDS, ...this.rules.fields]);
    const name = checkResourceName(v, 'name', input.name);
    const labels = checkLabels(v, 'labels', input.labels);
    const spec = this.rules.normalize(v, name, input);
    v.throwIfAny();

    const now = new Date().toISOString();
    const result = this.store.transaction(() => {
      if (this.store.get(this.kind, name)) {
        throw new AlreadyExistsError(`${ref(this.kind, name)} already exists`, [
          { field: 'name', description: `${ref(this.kind, name)} already exists` },
        ]);
      }
      if (this.kind === 'namespaces' && this.hooks.foreignNetns?.(name)) {
        throw new FailedPreconditionError(
          `a network namespace named ${name} that netkeep did not create exists (/run/netns/${name}); netkeep leaves it alone`,
          [],
          [{ field: 'name', description: `/run/netns/${name} exists and is not netkeep's` }],
        );
      }
      const assigned = this.pools.assign(this.kind, name, spec, undefined, opts.validateOnly);
      const claims = this.checkClaims(name, spec, assigned);
      // A validateOnly answer has no etag: nothing was stored that it could name.
      const etag = opts.validateOnly ? '' : etagOf(this.store.bumpRevision());
      const resource: Resource<K> = {
        kind: this.kind,
        name,
        labels,
        spec,
        generation: 1,
        etag,
        createTime: now,
        updateTime: now,
        status: withPoolAddresses(this.kind, pendingStatus(this.kind), assigned, spec),
      };
      if (!opts.validateOnly) this.store.insert(resource, claims);
      return resource;
    });
    if (!opts.validateOnly) this.hooks.onChange();
    return result;
  }

  get(name: string): Resource<K> {
    const r = this.store.get(this.kind, name);
    if (!r) throw new NotFoundError(this.kind, name);
    return r;
  }

  list(opts: ListOptions = {}): ListResult<K> {
    const limit = pageLimit(opts);
    const after = opts.pageToken ? decodePageToken(this.kind, opts.pageToken) : '';
    const rows = this.store.page(this.kind, after, limit + 1);
    const items = rows.slice(0, limit);
    const nextPageToken = rows.length > limit ? encodePageToken(this.kind, items[items.length - 1]!.name) : '';
    return { items, nextPageToken };
  }

  update(name: string, patch: Record<string, unknown>, opts: WriteOptions = {}): Resource<K> {
    if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) {
      throw InvalidArgumentError.field(KIND_SINGULAR[this.kind], 'a patch must be a JSON object');
    }
    const result = this.store.transaction(() => {
      const current = this.get(name);
      checkEtag(ref(this.kind, name), current, opts.etag);
      const v = new Violations();
      checkUnknownFields(v, '', patch, ['name', 'labels', ...READ_ONLY_FIELDS, ...this.rules.fields]);
      if ('name' in patch && patch.name !== name) v.add('name', 'is immutable: it is the resource id');
      const editable = Object.fromEntries(
        Object.entries(patch).filter(([k]) => k !== 'name' && !READ_ONLY_FIELDS.includes(k)),
      );
      const merged = mergePatch({ labels: current.labels, ...structuredClone(current.spec) }, editable) as Record<
        string,
        unknown
      >;
      const labels = checkLabels(v, 'labels', merged.labels);
      const spec = this.rules.normalize(v, name, merged);
      for (const path of this.rules.immutable) {
        if (JSON.stringify(valueAt(spec, path)) !== JSON.stringify(valueAt(current.spec, path))) {
          v.add(path, `is immutable: delete and re-create the ${KIND_SINGULAR[this.kind]} to change it`);
        }
      }
      v.throwIfAny();

      const specChanged = JSON.stringify(spec) !== JSON.stringify(current.spec);
      const labelsChanged = JSON.stringify(labels) !== JSON.stringify(current.labels);
      if (!specChanged && !labelsChanged) return { resource: current, changed: false };
      const assigned = this.pools.assign(this.kind, name, spec, current.spec, opts.validateOnly);
      const claims = this.checkClaims(name, spec, assigned);
      const etag = opts.validateOnly ? '' : etagOf(this.store.bumpRevision());
      const status = specChanged ? { ...current.status, state: 'PENDING' as const, message: '' } : current.status;
      const next: Resource<K> = {
        ...current,
        labels,
        spec,
        generation: specChanged ? current.generation + 1 : current.generation,
        etag,
        updateTime: new Date().toISOString(),
        status: withPoolAddresses(this.kind, status, assigned, spec),
      };
      if (!opts.validateOnly) this.store.replace(next, claims);
      return { resource: next, changed: !opts.validateOnly };
    });
    if (result.changed) this.hooks.onChange();
    return result.resource;
  }

  delete(name: string, opts: WriteOptions = {}): void {
    this.store.transaction(() => {
      const current = this.get(name);
      checkEtag(ref(this.kind, name), current, opts.etag);
      const dependents = this.store.dependents(this.kind, name);
      if (dependents.length > 0) {
        const names = [...new Set(dependents.map((d) => ref(d.kind, d.name)))];
        throw new FailedPreconditionError(
          `${ref(this.kind, name)} is still used by ${dependents.map((d) => `${ref(d.kind, d.name)} (${d.field})`).join(', ')}; delete those first`,
          names,
        );
      }
      if (opts.validateOnly) return;
      this.pools.releaseAll(this.kind, name);
      this.store.delete(this.kind, name);
      this.store.bumpRevision();
    });
    if (!opts.validateOnly) this.hooks.onChange();
  }

  /**
   * Checks, inside the write transaction, that every resource the spec refers
   * to exists, that the spec does not claim one thing twice, and that no other
   * resource (nor, as last observed, a foreign link) holds what it claims.
   */
  private checkClaims(name: string, spec: SpecOf[K], assigned: Assigned): Claims {
    const claims: Claims = { references: this.rules.references(spec), unique: this.rules.claims(spec, name, pooledOf(assigned)) };
    for (const r of claims.references) {
      // Pools were looked up when their addresses were assigned.
      if (r.kind === POOL_KIND) continue;
      const target = this.store.get(r.kind, r.name);
      if (!target) throw new NotFoundError(r.kind, r.name, r.field);
      if (r.kind === 'bridges') this.checkBridgeNamespace(r.field, spec, target as Resource<'bridges'>);
    }
    const seen = new Map<string, string>();
    for (const c of claims.unique) {
      const first = seen.get(`${c.scope}\0${c.key}`);
      if (first !== undefined && first !== c.field) {
        throw InvalidArgumentError.field(c.field, `${c.what} is also given in ${first}`);
      }
      seen.set(`${c.scope}\0${c.key}`, c.field);
      const owner = this.store.claimOwner(c.scope, c.key);
      if (owner && !(owner.kind === this.kind && owner.name === name)) {
        const description = `${c.what} is used by ${ref(owner.kind, owner.name)} (${owner.field})`;
        throw new AlreadyExistsError(`${c.field}: ${description}`, [{ field: c.field, description }]);
      }
      const namespace = c.scope.startsWith('ifname:') ? c.scope.slice('ifname:'.length) : undefined;
      const foreign = !owner && namespace !== undefined ? this.hooks.foreignLink?.(namespace, c.key) : undefined;
      if (foreign) {
        const description = `in ${describeNamespace(namespace!)}, ${foreign}`;
        throw new FailedPreconditionError(`${c.field}: ${description}`, [], [{ field: c.field, description }]);
      }
    }
    return claims;
  }

  /** A veth end may only join a bridge in its own namespace. */
  private checkBridgeNamespace(field: string, spec: SpecOf[K], bridge: Resource<'bridges'>): void {
    const end = (spec as SpecOf['veths'])[field.startsWith('a.') ? 'a' : 'b'];
    if (end.namespace !== bridge.spec.namespace) {
      throw InvalidArgumentError.field(
        field,
        `bridge ${bridge.name} is in ${describeNamespace(bridge.spec.namespace)}, but this end is in ${describeNamespace(end.namespace)}`,
      );
    }
  }
}
