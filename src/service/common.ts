/**
 * What every use case shares: read-only fields, etags, pages, merge patch.
 */
import { AbortedError, InvalidArgumentError } from '../domain/errors.js';
import type { ListOptions } from './types.js';

/** Fields of the API form that the server maintains; accepted on input and ignored. */
export const READ_ONLY_FIELDS = ['generation', 'etag', 'createTime', 'updateTime', 'status'];

/** Thrown inside a dry run's transaction or savepoint to roll it back. */
const DRY_RUN = Symbol('dry run');

/**
 * validateOnly: runs `work` inside `transaction` (a transaction, or a
 * savepoint when already in one) and rolls it back, returning what `work`
 * returned. The dry run does the very work of the real request, so it
 * answers exactly what the real request would.
 */
export function dryRun<T>(transaction: (fn: () => void) => void, work: () => T): T {
  let result: T | undefined;
  try {
    transaction(() => {
      result = work();
      throw DRY_RUN;
    });
  } catch (err) {
    if (err !== DRY_RUN) throw err;
  }
  return result as T;
}

const DEFAULT_PAGE_SIZE = 100;
const MAX_PAGE_SIZE = 1000;

/** The page size to read: 1–1000, 0 or absent meaning 100. Throws InvalidArgumentError on `pageSize` otherwise. */
export function pageLimit(opts: ListOptions): number {
  const size = opts.pageSize ?? 0;
  if (!Number.isInteger(size) || size < 0 || size > MAX_PAGE_SIZE) {
    throw InvalidArgumentError.field('pageSize', `must be between 0 and ${MAX_PAGE_SIZE}`);
  }
  return size === 0 ? DEFAULT_PAGE_SIZE : size;
}

/** Etags are opaque: the store revision of the last write, in base 36. */
export function etagOf(revision: number): string {
  return revision.toString(36);
}

/** Throws AbortedError when `etag` is given and is not the stored one (`what` names the resource, e.g. "bridges/br0"). */
export function checkEtag(what: string, current: { etag: string }, etag: string | undefined): void {
  if (etag !== undefined && etag !== '' && etag !== current.etag) {
    throw new AbortedError(`${what} has etag ${current.etag}, not ${etag}: it changed since it was read`);
  }
}

/** RFC 7396 JSON merge patch: objects merge key by key, `null` deletes, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> =
    target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as object) } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}

/*
 * Page tokens: opaque to callers, base64url of `{k: scope, a: last name}`,
 * valid only for the list (`scope`) that handed them out.
 */

export function encodePageToken(scope: string, after: string): string {
  return Buffer.from(JSON.stringify({ k: scope, a: after })).toString('base64url');
}

/** The name a page starts after. Throws InvalidArgumentError (field `pageToken`) for a token of another list or none at all. */
export function decodePageToken(scope: string, token: string): string {
  try {
    const parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { k?: unknown; a?: unknown };
    if (parsed.k === scope && typeof parsed.a === 'string') return parsed.a;
  } catch {
    /* fall through */
  }
  throw InvalidArgumentError.field('pageToken', 'is not a token from a previous page of this list');
}
