/**
 * A small typed client for the netkeep REST API, on openapi-fetch, with the
 * types generated from `openapi/netkeep.v1.yaml` (`npm run gen`).
 *
 *   const nk = createNetkeepClient({ socketPath: '/var/lib/netkeep/rest.sock' });
 *   const { data, error } = await nk.POST('/v1/bridges', { body: { name: 'br0', mtu: 9000 } });
 *   if (error) console.error(error.code, error.violations);
 *   await nk.close();
 *
 * Over a unix socket the requests go through an undici `Agent` whose
 * `connect.socketPath` is the socket (the URL's host is then only the `Host`
 * header, `localhost`); with `baseUrl` they go over TCP.
 */
import createClient, { type Client } from 'openapi-fetch';
import { Agent, fetch as undiciFetch, type Dispatcher } from 'undici';
import type { components, paths } from './generated/netkeep.v1.js';

export type { components, paths } from './generated/netkeep.v1.js';

/** The problem+json body of every error answer. */
export type Problem = components['schemas']['Problem'];
export type Namespace = components['schemas']['Namespace'];
export type Bridge = components['schemas']['Bridge'];
export type VethPair = components['schemas']['VethPair'];
export type Route = components['schemas']['Route'];
export type IpPool = components['schemas']['IpPool'];
export type Allocation = components['schemas']['Allocation'];

export type NetkeepClientOptions = { socketPath: string } | { baseUrl: string };

/** The openapi-fetch client of `paths`, plus `close()` to release its connections. */
export type NetkeepClient = Client<paths> & {
  /** Closes the keep-alive connections of this client. */
  close(): Promise<void>;
};

/** The `Host` a unix-socket client sends. */
const UNIX_BASE_URL = 'http://localhost';

/** `fetch` over `dispatcher` for openapi-fetch, which hands it a global `Request`. */
function fetchVia(dispatcher: Dispatcher): (req: Request) => Promise<Response> {
  return async (req) => {
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
    const res = await undiciFetch(req.url, {
      method: req.method,
      headers: [...req.headers],
      body: hasBody ? await req.arrayBuffer() : undefined,
      signal: req.signal,
      redirect: 'manual',
      dispatcher,
    });
    // undici's Response is the class Node's global fetch is built from.
    return res as unknown as Response;
  };
}

/**
 * A typed client talking to netkeepd over its unix socket (`socketPath`) or
 * over TCP (`baseUrl`, like `http://127.0.0.1:8080`).
 */
export function createNetkeepClient(opts: NetkeepClientOptions): NetkeepClient {
  const unix = 'socketPath' in opts;
  const agent = new Agent(unix ? { connect: { socketPath: opts.socketPath } } : {});
  const client = createClient<paths>({
    baseUrl: unix ? UNIX_BASE_URL : opts.baseUrl,
    fetch: fetchVia(agent),
  });
  return Object.assign(client, { close: () => agent.close() });
}

/** True when `value` is a netkeep problem+json body. */
export function isProblem(value: unknown): value is Problem {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Problem).code === 'string' &&
    typeof (value as Problem).status === 'number' &&
    Array.isArray((value as Problem).violations)
  );
}

/**
 * The problem of an openapi-fetch result, or undefined when it succeeded:
 * `problem(await nk.GET('/v1/bridges/{name}', …))?.code === 'NOT_FOUND'`.
 */
export function problem(result: { error?: unknown; response: Response }): Problem | undefined {
  if (result.response.ok) return undefined;
  if (isProblem(result.error)) return result.error;
  const status = result.response.status;
  return { type: 'about:blank', title: result.response.statusText, status, detail: String(result.error ?? ''), code: 'UNKNOWN', violations: [] };
}

/** Thrown by `unwrap` for an error answer; carries the problem. */
export class NetkeepApiError extends Error {
  constructor(readonly problem: Problem) {
    super(`${problem.code} (${problem.status}): ${problem.detail}`);
    this.name = 'NetkeepApiError';
  }
}

/** The data of a successful openapi-fetch result; throws NetkeepApiError otherwise. */
export function unwrap<T>(result: { data?: T; error?: unknown; response: Response }): T {
  const p = problem(result);
  if (p) throw new NetkeepApiError(p);
  return result.data as T;
}
