/**
 * The use-case interface both API transports call. Transports convert their
 * wire form to the flat JSON form below and back; they never see the store
 * or the kernel.
 */
import type { Kind, Resource } from '../domain/types.js';
import type { IpamService } from './ipam.js';

export interface ListOptions {
  /** 1–1000; 0 or absent means 100. */
  pageSize?: number;
  /** Opaque token from a previous page's `nextPageToken`; "" or absent for the first page. */
  pageToken?: string;
}

export interface ListResult<K extends Kind> {
  items: Resource<K>[];
  /** "" on the last page. */
  nextPageToken: string;
}

export interface WriteOptions {
  /** Validate and answer as if written, but store nothing and trigger nothing. */
  validateOnly?: boolean;
  /** When set, the write happens only if the stored etag equals it (else AbortedError). */
  etag?: string;
}

/**
 * CRUD for one kind. Inputs are the flat JSON form of the API
 * (`{name, labels, ...spec fields}`, lowerCamelCase, DESIGN.md §2).
 *
 * Throws the typed errors of `domain/errors.ts`: InvalidArgumentError (with a
 * violation per bad field), NotFoundError, AlreadyExistsError,
 * FailedPreconditionError (still referenced: names the dependents),
 * AbortedError (etag mismatch).
 */
export interface ResourceService<K extends Kind> {
  readonly kind: K;
  create(input: Record<string, unknown>, opts?: WriteOptions): Resource<K>;
  get(name: string): Resource<K>;
  list(opts?: ListOptions): ListResult<K>;
  /**
   * Applies `patch` as a JSON merge patch (RFC 7396) to `{labels, ...spec}`:
   * `null` resets a field to its default. Changing an immutable field is an
   * InvalidArgumentError naming it.
   */
  update(name: string, patch: Record<string, unknown>, opts?: WriteOptions): Resource<K>;
  /** Deleting a missing resource is NotFoundError. */
  delete(name: string, opts?: WriteOptions): void;
}

export type Services = { [K in Kind]: ResourceService<K> } & {
  /** IpPools and their allocations (issue 3). */
  ipam: IpamService;
  /** True once the first reconcile pass is done and until shutdown begins. */
  ready(): boolean;
};
