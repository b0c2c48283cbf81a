/**
 * Typed errors of netkeep. Every failure a caller can cause has one class
 * here; each transport maps them to a status in exactly one place
 * (`api/grpc/errors.ts`, `api/rest/errors.ts`). Anything that is not a
 * `NetkeepError` is a bug and is reported as INTERNAL.
 */

/** gRPC status code names (grpc/status.proto), used as `code` on both transports. */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'FAILED_PRECONDITION'
  | 'RESOURCE_EXHAUSTED'
  | 'ABORTED'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'UNAVAILABLE'
  | 'INTERNAL';

/** One offending field: `field` is a JSON path such as `a.addresses[1]`. */
export interface FieldViolation {
  field: string;
  description: string;
}

/** Base class: a failure the caller can understand and act on. */
export abstract class NetkeepError extends Error {
  abstract readonly code: ErrorCode;
  /** Per-field details; empty when the error is not about a field. */
  readonly violations: FieldViolation[];

  constructor(message: string, violations: FieldViolation[] = []) {
    super(message);
    this.name = new.target.name;
    this.violations = violations;
  }
}

/** Thrown when one or more request fields break a rule; names each field. */
export class InvalidArgumentError extends NetkeepError {
  readonly code = 'INVALID_ARGUMENT';

  constructor(violations: FieldViolation[], message?: string) {
    super(message ?? violations.map((v) => `${v.field}: ${v.description}`).join('; '), violations);
  }

  /** Shorthand for a single bad field. */
  static field(field: string, description: string): InvalidArgumentError {
    return new InvalidArgumentError([{ field, description }]);
  }
}

/** Thrown when the resource, or one it refers to (`field` says which), does not exist. */
export class NotFoundError extends NetkeepError {
  readonly code = 'NOT_FOUND';

  constructor(
    readonly kind: string,
    readonly resourceName: string,
    field?: string,
  ) {
    super(
      field ? `${field}: ${kind}/${resourceName} not found` : `${kind}/${resourceName} not found`,
      field ? [{ field, description: `${kind}/${resourceName} not found` }] : [],
    );
  }
}

/** Thrown when a name, an ifname in a namespace or an address is already held by another resource. */
export class AlreadyExistsError extends NetkeepError {
  readonly code = 'ALREADY_EXISTS';
}

/**
 * Thrown when the request is well-formed but the system is not in a state
 * that allows it: a resource is still referenced (`dependents` lists them),
 * or a foreign kernel object holds a name.
 */
export class FailedPreconditionError extends NetkeepError {
  readonly code = 'FAILED_PRECONDITION';

  constructor(
    message: string,
    readonly dependents: string[] = [],
    violations: FieldViolation[] = [],
  ) {
    super(message, violations);
  }
}

/** Thrown when a pool has no free address. */
export class ResourceExhaustedError extends NetkeepError {
  readonly code = 'RESOURCE_EXHAUSTED';
}

/** Thrown when `If-Match` / `etag` does not match the stored resource. */
export class AbortedError extends NetkeepError {
  readonly code = 'ABORTED';
}

/** Thrown while the daemon is starting or draining. */
export class UnavailableError extends NetkeepError {
  readonly code = 'UNAVAILABLE';
}
