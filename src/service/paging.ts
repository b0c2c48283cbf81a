/**
 * Page tokens: opaque to callers, base64url of `{k: scope, a: last name}`,
 * valid only for the list (`scope`) that handed them out.
 */
import { InvalidArgumentError } from '../domain/errors.js';

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
