/** Helpers for tests that drive the gRPC API with the generated clients. */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { VIOLATIONS_METADATA_KEY } from '../../src/api/grpc/errors.js';
import type { FieldViolation } from '../../src/domain/errors.js';

type Callback<Res> = (err: grpc.ServiceError | null, res: Res) => void;
/** A unary method of a generated grpc-js client, with metadata and options. */
export type Method<Req, Res> = (req: Req, md: grpc.Metadata, opts: Partial<grpc.CallOptions>, cb: Callback<Res>) => unknown;

/** Calls a unary method of a generated client: `call(client.getBridge.bind(client), {name})`. */
export function call<Req, Res>(method: Method<Req, Res>, request: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    method(request, new grpc.Metadata(), {}, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** Awaits a call that must fail with `code`; returns the error. */
export async function fails(p: Promise<unknown>, code: grpc.status, details?: RegExp): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (err) {
    const e = err as grpc.ServiceError;
    assert.equal(grpc.status[e.code], grpc.status[code], e.details);
    if (details) assert.match(e.details, details);
    return e;
  }
  assert.fail(`expected ${grpc.status[code]}`);
}

/** The violations of an error, from the `netkeep-violations-bin` trailer. */
export function violations(err: grpc.ServiceError): FieldViolation[] {
  const [raw] = err.metadata.get(VIOLATIONS_METADATA_KEY);
  return raw === undefined ? [] : (JSON.parse(raw.toString()) as FieldViolation[]);
}
