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
 */
import { InvalidArgumentError, type FieldViolation } from '../../domain/errors.js';
import { flatten } from '../../domain/present.js';
import { RULES } from '../../domain/rules.js';
import type { Kind, Resource } from '../../domain/types.js';
import { Bridge } from '../../gen/netkeep/v1/bridge.js';
import { Namespace } from '../../gen/netkeep/v1/namespace.js';
import { Route } from '../../gen/netkeep/v1/route.js';
import { VethEnd, VethPair } from '../../gen/netkeep/v1/veth.js';

/** The proto message of each kind. */
export interface ProtoOf {
  namespaces: Namespace;
  bridges: Bridge;
  veths: VethPair;
  routes: Route;
}

const MESSAGES: { [K in Kind]: { fromJSON(object: unknown): ProtoOf[K] } } = {
  namespaces: Namespace,
  bridges: Bridge,
  veths: VethPair,
  routes: Route,
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
  const m = message as unknown as Record<string, unknown>;
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
  const m = message as unknown as Record<string, unknown>;
  const nested: Record<string, Defaults> = NESTED[kind] ?? {};
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

  const paths = mask.length === 0 ? mutablePaths(kind) : mask;
  for (const path of paths) {
    if (path === '*') {
      setAllLabels();
      for (const f of RULES[kind].fields) setField(f);
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
    if (!RULES[kind].fields.includes(field) || rest.length > 0) {
      violations.push(unknownPath(kind, path));
    } else if (sub === undefined) {
      setField(field);
    } else if (nested[field] && sub in nested[field]) {
      setSubField(field, sub);
    } else {
      violations.push(unknownPath(kind, path));
    }
  }
  if (violations.length > 0) throw new InvalidArgumentError(violations);
  return patch;
}

/** The paths an empty mask stands for: labels and every mutable field, as snake_case mask paths. */
function mutablePaths(kind: Kind): string[] {
  const { fields, immutable } = RULES[kind];
  const nested: Record<string, Defaults> = NESTED[kind] ?? {};
  const paths = ['labels'];
  for (const f of fields) {
    if (immutable.includes(f)) continue;
    const subs = nested[f];
    if (subs === undefined) paths.push(f);
    else for (const s of Object.keys(subs)) if (!immutable.includes(`${f}.${s}`)) paths.push(`${f}.${s}`);
  }
  return paths.map(camelToSnake);
}

function unknownPath(kind: Kind, path: string): FieldViolation {
  const known = ['labels', ...RULES[kind].fields.map(camelToSnake)].join(', ');
  return { field: 'update_mask', description: `unknown field path "${path}"; fields that can be updated: ${known}` };
}

function snakeToCamel(s: string): string {
  return s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function camelToSnake(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
