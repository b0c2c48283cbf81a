/**
 * The one mapping from any error to a gRPC status (DESIGN.md §2, Errors).
 *
 * A NetkeepError becomes the status of its `code`, with its message as the
 * status details; each field violation the message does not already spell
 * out is appended as `field: description`. Violation field paths are the
 * lowerCamelCase JSON paths of the resource (`a.addresses[1]`), the same as
 * on REST, except `update_mask`.
 *
 * Machine-readable details travel in the trailing metadata, twice:
 * - `netkeep-violations-bin`: UTF-8 JSON `[{"field": …, "description": …}]`,
 *   only when there are violations; the easy one to read from any client
 *   (`JSON.parse(metadata.get('netkeep-violations-bin')[0].toString())`);
 * - `grpc-status-details-bin`: the standard rich error model (AIP-193), a
 *   `google.rpc.Status` whose details hold a `google.rpc.ErrorInfo`
 *   (reason = the code name, domain "netkeep"), a `google.rpc.BadRequest`
 *   with the field violations, and for a resource that is still referenced a
 *   `google.rpc.PreconditionFailure` naming each dependent (type
 *   "REFERENCED", subject `kind/name`). grpcurl and the Go/Java status
 *   helpers decode it.
 *
 * Anything else is a bug: INTERNAL with the details "internal error"; the
 * error and its stack go to the log, never to the caller.
 */
import * as grpc from '@grpc/grpc-js';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import type { Logger } from 'pino';
import { FailedPreconditionError, NetkeepError, type ErrorCode, type FieldViolation } from '../../domain/errors.js';

/** Trailing metadata key holding the violations as UTF-8 JSON. */
export const VIOLATIONS_METADATA_KEY = 'netkeep-violations-bin';
/** Trailing metadata key of the standard rich error model (google.rpc.Status). */
export const STATUS_DETAILS_METADATA_KEY = 'grpc-status-details-bin';
/** `ErrorInfo.domain` of every netkeep error. */
export const ERROR_DOMAIN = 'netkeep';

const STATUS: Record<ErrorCode, grpc.status> = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  NOT_FOUND: grpc.status.NOT_FOUND,
  ALREADY_EXISTS: grpc.status.ALREADY_EXISTS,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  RESOURCE_EXHAUSTED: grpc.status.RESOURCE_EXHAUSTED,
  ABORTED: grpc.status.ABORTED,
  UNAUTHENTICATED: grpc.status.UNAUTHENTICATED,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  INTERNAL: grpc.status.INTERNAL,
};

/**
 * Turns any error thrown by a handler into the ServiceError grpc-js sends.
 * `method` (the full RPC path) is only used for the log line of an INTERNAL.
 */
export function toServiceError(err: unknown, logger: Logger, method = ''): grpc.ServiceError {
  const metadata = new grpc.Metadata();
  if (!(err instanceof NetkeepError)) {
    logger.error({ err, method }, 'internal error');
    return serviceError(grpc.status.INTERNAL, 'internal error', metadata);
  }
  const code = STATUS[err.code];
  const missing = err.violations.map((v) => `${v.field}: ${v.description}`).filter((s) => !err.message.includes(s));
  const details = [err.message, ...missing].filter((s) => s !== '').join('; ');
  if (err.violations.length > 0) {
    metadata.set(VIOLATIONS_METADATA_KEY, Buffer.from(JSON.stringify(err.violations)));
  }
  const dependents = err instanceof FailedPreconditionError ? err.dependents : [];
  metadata.set(STATUS_DETAILS_METADATA_KEY, encodeStatus(code, details, err.code, err.violations, dependents));
  return serviceError(code, details, metadata);
}

function serviceError(code: grpc.status, details: string, metadata: grpc.Metadata): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata });
}

// google.rpc.Status and its detail messages (googleapis google/rpc/status.proto,
// error_details.proto), written with the wire writer of the generated code
// rather than generated from protos this repository does not vendor.

const TYPE_URL = 'type.googleapis.com/google.rpc.';
const { Varint, LengthDelimited: Len } = WireType;

function encodeStatus(
  code: grpc.status,
  message: string,
  reason: ErrorCode,
  violations: FieldViolation[],
  dependents: string[],
): Buffer {
  const details: Uint8Array[] = [any('ErrorInfo', errorInfo(reason))];
  if (violations.length > 0) details.push(any('BadRequest', badRequest(violations)));
  if (dependents.length > 0) details.push(any('PreconditionFailure', preconditionFailure(dependents)));
  // Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
  const w = new BinaryWriter().tag(1, Varint).int32(code).tag(2, Len).string(message);
  for (const d of details) w.tag(3, Len).bytes(d);
  return Buffer.from(w.finish());
}

/** google.protobuf.Any { string type_url = 1; bytes value = 2; } */
function any(type: string, value: Uint8Array): Uint8Array {
  return new BinaryWriter().tag(1, Len).string(TYPE_URL + type).tag(2, Len).bytes(value).finish();
}

/** ErrorInfo { string reason = 1; string domain = 2; } */
function errorInfo(reason: string): Uint8Array {
  return new BinaryWriter().tag(1, Len).string(reason).tag(2, Len).string(ERROR_DOMAIN).finish();
}

/** BadRequest { repeated FieldViolation field_violations = 1; }, FieldViolation { string field = 1; string description = 2; } */
function badRequest(violations: FieldViolation[]): Uint8Array {
  const w = new BinaryWriter();
  for (const v of violations) {
    w.tag(1, Len).fork().tag(1, Len).string(v.field).tag(2, Len).string(v.description).join();
  }
  return w.finish();
}

/** PreconditionFailure { repeated Violation violations = 1; }, Violation { string type = 1; string subject = 2; string description = 3; } */
function preconditionFailure(dependents: string[]): Uint8Array {
  const w = new BinaryWriter();
  for (const d of dependents) {
    w.tag(1, Len).fork().tag(1, Len).string('REFERENCED').tag(2, Len).string(d);
    w.tag(3, Len).string(`${d} still refers to it`).join();
  }
  return w.finish();
}
