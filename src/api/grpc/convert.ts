/**
 * Proto messages ↔ the flat JSON form of the service layer.
 *
 * The flat form (`flatten()` in domain/present.ts) is the proto3 JSON mapping
 * of the resource messages (DESIGN.md §2), and ts-proto (`snakeToCamel`)
 * gives decoded messages the same lowerCamelCase field names. So:
 * - a resource goes out through the generated `fromJSON` of its message;
 * - a request's resource goes in as its own fields, picked by the kind's
 *   spec fields (`RULES[kind].fields`);
 * - an `update_mask` becomes a JSON merge patch (RFC 7396) over the flat form.
 *
 * IpPools (issue 3) are not a `Kind` yet (domain/ipam.ts), so they have their
 * own small converters here; the mask → merge-patch conversion is the same
 * code, over the pool's fields (`POOL_FIELDS`, `POOL_IMMUTABLE`). The one
 * wire/flat difference is `reserved`: a `ReservedEntry` oneof on the wire, an
 * address string or `{start, end}` in the flat form.
 */
import { InvalidArgumentError, type FieldViolation } from '../../domain/errors.js';
import { flatten } from '../../domain/present.js';
import { POOL_FIELDS, POOL_IMMUTABLE, type Allocation, type IpPool, type ReservedEntry } from '../../domain/ipam.js';
import { RULES } from '../../domain/rules.js';
import type { Kind, Resource } from '../../domain/types.js';
import { Bridge } from '../../gen/netkeep/v1/bridge.js';
import {
  Allocation as AllocationMessage,
  IpPool as IpPoolMessage,
  type ReservedEntry as ReservedEntryMessage,
} from '../../gen/netkeep/v1/ipam.js';
import {
  LoadBalancer,
  loadBalancerPort_ProtocolToJSON,
  loadBalancer_AlgorithmToJSON,
  type LoadBalancerPort,
} from '../../gen/netkeep/v1/loadbalancer.js';
import { Namespace } from '../../gen/netkeep/v1/namespace.js';
import { Route } from '../../gen/netkeep/v1/route.js';
import { VethEnd, VethPair } from '../../gen/netkeep/v1/veth.js';

/** The proto message of each kind. */
export interface ProtoOf {
  namespaces: Namespace;
  bridges: Bridge;
  veths: VethPair;
  routes: Route;
  loadbalancers: LoadBalancer;
}

const MESSAGES: { [K in Kind]: { fromJSON(object: unknown): ProtoOf[K] } } = {
  namespaces: Namespace,
  bridges: Bridge,
  veths: VethPair,
  routes: Route,
  loadbalancers: LoadBalancer,
};

/**
 * Sub-message fields of a kind, and the fields an update mask may name
 * inside them (`a.addresses`). Taken from the generated defaults, so they
 * follow the proto.
 */
type Defaults = Record<string, unknown>;
const NESTED: Partial<Record<Kind, Record<string, Defaults>>> = {
  veths: { a: { ...VethEnd.fromPartial({}) }, b: { ...VethEnd.fromPartial({}) } },
};

/** A generated enum's JSON name as the flat form has it: "" for the unspecified default. */
function enumName(name: string): string {
  return name.endsWith('_UNSPECIFIED') ? '' : name;
}

/**
 * Where a decoded message differs from the flat form: enums are numbers in
 * the message and names in the flat form; an unset sub-message is undefined
 * in the message and null (the default) in a merge patch.
 */
const WIRE_TO_FLAT: Partial<{ [K in Kind]: (m: ProtoOf[K]) => ProtoOf[K] }> = {
  loadbalancers: (m) =>
    ({
      ...m,
      algorithm: enumName(loadBalancer_AlgorithmToJSON(m.algorithm)),
      ports: m.ports.map((p: LoadBalancerPort) => ({ ...p, protocol: enumName(loadBalancerPort_ProtocolToJSON(p.protocol)) })),
      sessionAffinity: m.sessionAffinity ?? null,
    }) as unknown as LoadBalancer,
};

function wireToFlat<K extends Kind>(kind: K, message: ProtoOf[K]): ProtoOf[K] {
  const fix = WIRE_TO_FLAT[kind] as ((m: ProtoOf[K]) => ProtoOf[K]) | undefined;
  return fix ? fix(message) : message;
}

/**
 * Mask paths that are accepted and ignored: the output-only fields
 * (AIP-203), and `name`, which says which resource to update.
 */
const IGNORED_PATHS = new Set(['name', 'generation', 'etag', 'create_time', 'update_time', 'status']);

/** The proto message of a stored resource. Times are RFC 3339; "" (not yet) becomes unset. */
export function toProto<K extends Kind>(resource: Resource<K>): ProtoOf[K] {
  const flat = flatten(resource);
  if (flat.status.lastReconcileTime === '') delete flat.status.lastReconcileTime;
  return MESSAGES[resource.kind].fromJSON(flat);
}

/**
 * The create input `{name, labels, ...spec}` of a request's resource.
 * Output-only fields are dropped (AIP-133). Throws InvalidArgumentError
 * naming `field` (the request field, such as `veth_pair`) when it is unset.
 */
export function toCreateInput<K extends Kind>(kind: K, message: ProtoOf[K] | undefined, field: string): Record<string, unknown> {
  if (message === undefined) throw InvalidArgumentError.field(field, 'is required');
  const m = wireToFlat(kind, message) as unknown as Record<string, unknown>;
  const input: Record<string, unknown> = { name: message.name, labels: { ...message.labels } };
  for (const f of RULES[kind].fields) input[f] = m[f];
  return input;
}

/**
 * The JSON merge patch (RFC 7396) over the flat form that an update with
 * `mask` (FieldMask paths, snake_case) asks for, with values from `message`:
 * - `mtu`, `vlan_filtering`, `a` …: the field's value in `message`; a field
 *   unset there (a sub-message) is reset to its default;
 * - `a.addresses` …: one field of a sub-message;
 * - `labels`: the whole map, replaced (keys of `currentLabels` not in
 *   `message.labels` become `null`, since a merge patch merges maps);
 * - `labels.<key>` (the key may be `backtick-quoted`): one label, removed
 *   when `message.labels` lacks it;
 * - empty mask: every mutable field plus labels, replaced (the immutable
 *   fields, `RULES[kind].immutable`, are left out); `*`: every field;
 * - output-only fields and `name`: ignored.
 * Throws InvalidArgumentError on field `update_mask` naming each unknown path.
 */
export function toUpdatePatch<K extends Kind>(
  kind: K,
  message: ProtoOf[K],
  mask: readonly string[],
  currentLabels: Record<string, string>,
): Record<string, unknown> {
  return maskToPatch({ ...RULES[kind], nested: NESTED[kind] ?? {} }, wireToFlat(kind, message), mask, currentLabels);
}

/** What the mask → patch conversion needs to know of a resource type. */
interface PatchRules {
  /** Spec fields, lowerCamelCase. */
  readonly fields: readonly string[];
  /** Dotted lowerCamelCase paths that may not change after create. */
  readonly immutable: readonly string[];
  /** Sub-message fields and their defaults (see NESTED). */
  readonly nested: Record<string, Defaults>;
}

function maskToPatch(
  rules: PatchRules,
  message: { labels: Record<string, string> },
  mask: readonly string[],
  currentLabels: Record<string, string>,
): Record<string, unknown> {
  const m = message as unknown as Record<string, unknown>;
  const { nested } = rules;
  const patch: Record<string, unknown> = {};
  const violations: FieldViolation[] = [];

  const setLabel = (key: string) => {
    const labels = (patch.labels ??= {}) as Record<string, unknown>;
    labels[key] = message.labels[key] ?? null;
  };
  const setField = (field: string) => {
    const defaults = nested[field];
    patch[field] = defaults ? { ...defaults, ...(m[field] as object | undefined) } : m[field];
  };
  const setSubField = (field: string, sub: string) => {
    const value = (m[field] as Record<string, unknown> | undefined)?.[sub] ?? nested[field]?.[sub];
    const end = (patch[field] ??= {}) as Record<string, unknown>;
    end[sub] = value;
  };
  const setAllLabels = () => {
    for (const key of Object.keys(currentLabels)) setLabel(key);
    for (const key of Object.keys(message.labels)) setLabel(key);
  };

  const paths = mask.length === 0 ? mutablePaths(rules) : mask;
  for (const path of paths) {
    if (path === '*') {
      setAllLabels();
      for (const f of rules.fields) setField(f);
      continue;
    }
    if (IGNORED_PATHS.has(path.split('.')[0] ?? '')) continue;
    if (path === 'labels') {
      setAllLabels();
      continue;
    }
    if (path.startsWith('labels.')) {
      setLabel(path.slice('labels.'.length).replace(/^`(.*)`$/, '$1'));
      continue;
    }
    const [field = '', sub, ...rest] = path.split('.').map(snakeToCamel);
    if (!rules.fields.includes(field) || rest.length > 0) {
      violations.push(unknownPath(rules, path));
    } else if (sub === undefined) {
      setField(field);
    } else if (nested[field] && sub in nested[field]) {
      setSubField(field, sub);
    } else {
      violations.push(unknownPath(rules, path));
    }
  }
  if (violations.length > 0) throw new InvalidArgumentError(violations);
  return patch;
}

/** The paths an empty mask stands for: labels and every mutable field, as snake_case mask paths. */
function mutablePaths({ fields, immutable, nested }: PatchRules): string[] {
  const paths = ['labels'];
  for (const f of fields) {
    if (immutable.includes(f)) continue;
    const subs = nested[f];
    if (subs === undefined) paths.push(f);
    else for (const s of Object.keys(subs)) if (!immutable.includes(`${f}.${s}`)) paths.push(`${f}.${s}`);
  }
  return paths.map(camelToSnake);
}

function unknownPath(rules: PatchRules, path: string): FieldViolation {
  const known = mutablePaths(rules).join(', ');
  return { field: 'update_mask', description: `unknown field path "${path}"; fields that can be updated: ${known}` };
}

// --- IpPools and Allocations (issue 3) ----------------------------------------

const POOL_RULES: PatchRules = { fields: POOL_FIELDS, immutable: POOL_IMMUTABLE, nested: {} };

/** The proto message of a stored pool, counts included. `lastReconcileTime` "" becomes unset. */
export function poolToProto(pool: IpPool): IpPoolMessage {
  const { lastReconcileTime, ...status } = pool.status;
  return IpPoolMessage.fromJSON({
    name: pool.name,
    labels: { ...pool.labels },
    cidr: pool.spec.cidr,
    gateway: pool.spec.gateway,
    ranges: pool.spec.ranges.map((r) => ({ ...r })),
    reserved: pool.spec.reserved.map(reservedToProto),
    generation: pool.generation,
    etag: pool.etag,
    createTime: pool.createTime,
    updateTime: pool.updateTime,
    status: lastReconcileTime === '' ? status : { ...status, lastReconcileTime },
  });
}

function reservedToProto(entry: ReservedEntry): ReservedEntryMessage {
  return typeof entry === 'string' ? { address: entry } : { range: { ...entry } };
}

/**
 * The flat form of one wire `ReservedEntry`: the address, the range, or
 * (neither set) `null`, which the service refuses naming `reserved[i]`.
 */
function reservedFromProto(entry: ReservedEntryMessage): ReservedEntry | null {
  if (entry.address !== undefined) return entry.address;
  if (entry.range !== undefined) return { start: entry.range.start, end: entry.range.end };
  return null;
}

/** A pool message's fields in the flat form: `{name, labels, cidr, gateway, ranges, reserved}`. */
function poolFields(message: IpPoolMessage): Record<string, unknown> & { labels: Record<string, string> } {
  return {
    name: message.name,
    labels: { ...message.labels },
    cidr: message.cidr,
    gateway: message.gateway,
    ranges: message.ranges.map((r) => ({ start: r.start, end: r.end })),
    reserved: message.reserved.map(reservedFromProto),
  };
}

/**
 * The create input of IpamService.createPool from a request's pool;
 * output-only fields are dropped. Throws InvalidArgumentError naming `field`
 * (the request field, `ip_pool`) when it is unset.
 */
export function toPoolInput(message: IpPoolMessage | undefined, field: string): Record<string, unknown> {
  if (message === undefined) throw InvalidArgumentError.field(field, 'is required');
  return poolFields(message);
}

/** The merge patch an UpdateIpPool with `mask` asks for; the same rules as `toUpdatePatch()`. */
export function toPoolUpdatePatch(
  message: IpPoolMessage,
  mask: readonly string[],
  currentLabels: Record<string, string>,
): Record<string, unknown> {
  return maskToPatch(POOL_RULES, poolFields(message), mask, currentLabels);
}

/** The proto message of an allocation. */
export function allocationToProto(a: Allocation): AllocationMessage {
  return AllocationMessage.fromJSON({ ...a, labels: { ...a.labels } });
}

function snakeToCamel(s: string): string {
  return s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function camelToSnake(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
