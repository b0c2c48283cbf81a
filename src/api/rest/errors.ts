/**
 * The one error → `application/problem+json` mapping of the REST transport
 * (DESIGN.md §2, Errors). Every failure of a request ends here: typed
 * `NetkeepError`s from the service, request-validation errors from
 * express-openapi-validator, body-parser errors (malformed JSON), unknown
 * routes. Anything else is a bug: INTERNAL, a generic detail, and the stack in
 * the log.
 */
import { STATUS_CODES, type IncomingHttpHeaders } from 'node:http';
import type { ErrorRequestHandler, Response } from 'express';
import * as OpenApiValidator from 'express-openapi-validator';
import type pino from 'pino';
import { NetkeepError, type ErrorCode, type FieldViolation } from '../../domain/errors.js';
import { RESOURCE_NAME_RE } from '../../domain/validate.js';

/** The domain's wording of the resource-name rule (`checkResourceName()`), for the schema's pattern. */
const RESOURCE_NAME_RULE = 'must be 1-63 lowercase letters, digits or "-", starting and ending with a letter or digit';

/** The problem details body (RFC 9457) plus netkeep's `code` and `violations`. */
export interface Problem {
  /** Always `about:blank`: `code` tells failures apart. */
  type: string;
  /** The HTTP status phrase. */
  title: string;
  status: number;
  detail: string;
  /** gRPC status code name. */
  code: string;
  violations: FieldViolation[];
}

/** HTTP status of every code the domain raises (DESIGN.md §2 table). */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: 400,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  FAILED_PRECONDITION: 409,
  RESOURCE_EXHAUSTED: 409,
  ABORTED: 412,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  UNAVAILABLE: 503,
  INTERNAL: 500,
};

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** Shown instead of the real message of an unexpected error. */
const INTERNAL_DETAIL = 'internal error; the daemon log has the details';

/** A problem for `code`, with the status the table gives it unless `status` overrides it. */
export function problem(code: string, detail: string, violations: FieldViolation[] = [], status?: number): Problem {
  const httpStatus = status ?? HTTP_STATUS[code as ErrorCode] ?? 500;
  return {
    type: 'about:blank',
    title: STATUS_CODES[httpStatus] ?? 'Error',
    status: httpStatus,
    detail,
    code,
    violations,
  };
}

export function sendProblem(res: Response, p: Problem, headers: Record<string, string> = {}): void {
  res.status(p.status).set(headers).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(p));
}

/** A validator error item: `path` is a JSON pointer into `{body, query, headers, params}`. */
interface ValidatorItem {
  path?: string;
  message?: string;
  errorCode?: string;
}

/**
 * Turns a validator JSON pointer into the field path the domain uses:
 * `/body/a/addresses/0` → `a.addresses[0]`, `/query/pageSize` → `pageSize`,
 * `/headers/if-match` → `If-Match`, `/body` → "" (the body as a whole);
 * undefined when `pointer` does not point into the request.
 * A segment is written `[i]` only when it indexes an array of the request
 * body, so a label key "0" stays `labels.0`.
 */
export function fieldFromPointer(pointer: string, body: unknown): string | undefined {
  const parts = pointer
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  const where = parts.shift();
  // Anything else is not a pointer but a request path (a malformed URL, say).
  if (!['body', 'query', 'headers', 'params', 'path', 'cookies'].includes(where ?? '')) return undefined;
  if (where === 'headers') return (parts[0] ?? '').replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase());
  if (where !== 'body') return parts.join('.');
  let field = '';
  let node: unknown = body;
  for (const part of parts) {
    if (Array.isArray(node) && /^(0|[1-9][0-9]*)$/.test(part)) {
      field += `[${part}]`;
      node = node[Number(part)];
    } else {
      field += field === '' ? part : `.${part}`;
      node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[part] : undefined;
    }
  }
  return field;
}

/** Rewords ajv's messages into the domain's wording where the two say the same thing. */
function describe(item: ValidatorItem, field: string): string {
  const keyword = item.errorCode?.replace(/\.openapi\.validation$/, '');
  if (keyword === 'additionalProperties' || /^Unknown query parameter/.test(item.message ?? '')) {
    return 'is not a known field';
  }
  if (keyword === 'required') return field === '' ? 'is required: send a JSON object' : 'is required';
  if (keyword === 'pattern' && item.message?.includes(RESOURCE_NAME_RE.source)) return RESOURCE_NAME_RULE;
  return item.message ?? 'is invalid';
}

function validatorViolations(items: ValidatorItem[], body: unknown): FieldViolation[] {
  const seen = new Set<string>();
  const out: FieldViolation[] = [];
  for (const item of items) {
    const field = fieldFromPointer(item.path ?? '', body);
    if (field === undefined) continue;
    const description = describe(item, field);
    const key = `${field}\u0000${description}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ field, description });
  }
  return out;
}

function detailOf(violations: FieldViolation[]): string {
  return violations.map((v) => (v.field === '' ? v.description : `${v.field}: ${v.description}`)).join('; ');
}

/** body-parser's errors carry `type` and `status` (body-parser 2, used by express 5). */
interface BodyParserError {
  type: string;
  status: number;
  message: string;
}

function isBodyParserError(err: unknown): err is BodyParserError {
  return (
    err instanceof Error &&
    typeof (err as Partial<BodyParserError>).type === 'string' &&
    typeof (err as Partial<BodyParserError>).status === 'number'
  );
}

/** The result of mapping one error: the body, extra headers, and whether it was a bug. */
export interface MappedError {
  problem: Problem;
  headers: Record<string, string>;
  internal: boolean;
}

/** What the mapping needs to know of the request. */
export interface RequestContext {
  /** The parsed body, used to spell array indexes in violation fields. */
  body?: unknown;
  headers?: IncomingHttpHeaders;
}

/** True when the request came with no body and no content type at all. */
function sentNoBody(headers: IncomingHttpHeaders | undefined): boolean {
  if (!headers) return false;
  return (
    headers['content-type'] === undefined &&
    headers['transfer-encoding'] === undefined &&
    Number(headers['content-length'] ?? 0) === 0
  );
}

/** Maps any error thrown while serving a request to its problem. */
export function toProblem(err: unknown, req: RequestContext = {}): MappedError {
  const body = req.body;
  const ok = (p: Problem, headers: Record<string, string> = {}): MappedError => ({ problem: p, headers, internal: false });
  const E = OpenApiValidator.error;

  if (err instanceof NetkeepError) {
    const headers: Record<string, string> = err.code === 'UNAVAILABLE' ? { 'Retry-After': '1' } : {};
    return ok(problem(err.code, err.message, err.violations), headers);
  }
  if (err instanceof E.BadRequest) {
    const violations = validatorViolations(err.errors, body);
    return ok(problem('INVALID_ARGUMENT', detailOf(violations) || `bad request: ${err.message}`, violations));
  }
  if (err instanceof E.UnsupportedMediaType) {
    // The validator says 415 when there is no body at all; the caller forgot the body.
    if (sentNoBody(req.headers)) {
      const violations = [{ field: '', description: 'is required: send a JSON object' }];
      return ok(problem('INVALID_ARGUMENT', 'request body is required: send a JSON object', violations));
    }
    return ok(problem('INVALID_ARGUMENT', `unsupported content type: ${err.message}`, [], 415));
  }
  if (err instanceof E.RequestEntityTooLarge) {
    return ok(problem('INVALID_ARGUMENT', 'request body is too large', [], 413));
  }
  if (err instanceof E.NotFound) {
    return ok(problem('NOT_FOUND', `no such route: ${err.path ?? ''}`));
  }
  if (err instanceof E.MethodNotAllowed) {
    return ok(problem('UNIMPLEMENTED', `${err.message}`, [], 405), { ...(err.headers ?? {}) } as Record<string, string>);
  }
  if (isBodyParserError(err) && err.status < 500) {
    switch (err.type) {
      case 'entity.parse.failed':
        return ok(
          problem('INVALID_ARGUMENT', `request body is not valid JSON: ${err.message}`, [
            { field: '', description: `is not valid JSON: ${err.message}` },
          ]),
        );
      case 'entity.too.large':
        return ok(problem('INVALID_ARGUMENT', 'request body is too large', [], 413));
      case 'encoding.unsupported':
      case 'charset.unsupported':
        return ok(problem('INVALID_ARGUMENT', err.message, [], 415));
      default:
        return ok(problem('INVALID_ARGUMENT', err.message, [], 400));
    }
  }
  // Other client errors of the body reader (a corrupt gzip body: zlib's error
  // with status 400 and no `type`) are the caller's, not a bug.
  const status = (err as { status?: unknown } | null)?.status;
  if (err instanceof Error && typeof status === 'number' && status >= 400 && status < 500) {
    return ok(problem('INVALID_ARGUMENT', `request body could not be read: ${err.message}`, [], 400));
  }
  return { problem: problem('INTERNAL', INTERNAL_DETAIL), headers: {}, internal: true };
}

/** The error-handling middleware: maps, logs bugs with their stack, answers. */
export function problemHandler(logger: pino.Logger): ErrorRequestHandler {
  return (err, req, res, next) => {
    if (res.headersSent) {
      next(err);
      return;
    }
    const mapped = toProblem(err, { body: req.body, headers: req.headers });
    if (mapped.internal) {
      logger.error({ err, method: req.method, path: req.path }, 'request failed with an internal error');
    } else {
      logger.debug({ method: req.method, path: req.path, code: mapped.problem.code }, 'request rejected');
    }
    sendProblem(res, mapped.problem, mapped.headers);
  };
}
