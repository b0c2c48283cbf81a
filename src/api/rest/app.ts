/**
 * The REST transport: an express 5 app serving `openapi/netkeep.v1.yaml`.
 *
 * Order of the middleware, and why:
 *   1. `/healthz`, `/readyz` — answer even while not ready.
 *   2. `/v1` readiness gate — 503 UNAVAILABLE before anything is parsed.
 *   3. JSON body parser (`application/json`, `application/merge-patch+json`).
 *   4. express-openapi-validator — shapes and simple types of the request;
 *      the domain checks the kernel's rules after it.
 *   5. the `/v1` router, then a 404 for anything else, then the one
 *      error → problem+json handler.
 */
import { chmod, lstat, unlink } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import express from 'express';
import * as OpenApiValidator from 'express-openapi-validator';
import type pino from 'pino';
import { parse as parseYaml } from 'yaml';
import type { Services } from '../../service/types.js';
import { problem, problemHandler, sendProblem } from './errors.js';
import { createRouter } from './router.js';

/** The OpenAPI document, found relative to this module so any cwd works. */
export const OPENAPI_PATH = fileURLToPath(new URL('../../../openapi/netkeep.v1.yaml', import.meta.url));

/** Request bodies above this are 413. Bytes. */
const BODY_LIMIT = '1mb';

/** Mode of the REST unix socket (DESIGN.md §4). */
const SOCKET_MODE = 0o660;

let cachedDocument: object | undefined;

/** The parsed OpenAPI document (parsed once; callers get their own copy). */
export function loadOpenApiDocument(): Record<string, unknown> {
  cachedDocument ??= parseYaml(readFileSync(OPENAPI_PATH, 'utf8')) as object;
  return structuredClone(cachedDocument) as Record<string, unknown>;
}

/**
 * Builds the app over `services`. Services are synchronous and throw the
 * typed errors of `domain/errors.ts`; `services.ready()` gates `/v1`.
 * `logger` gets one debug line per request and the stack of every INTERNAL.
 */
export function createRestApp(services: Services, logger: pino.Logger): express.Express {
  const app = express();
  app.disable('x-powered-by');
  // ETags are the resources' own (set by the router), never a hash of the body.
  app.set('etag', false);

  app.use((req, res, next) => {
    const start = process.hrtime.bigint();
    res.on('finish', () => {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      logger.debug({ method: req.method, url: req.originalUrl, status: res.statusCode, ms }, 'rest request');
    });
    next();
  });

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'SERVING' });
  });
  app.get('/readyz', (_req, res) => {
    if (services.ready()) {
      res.json({ status: 'SERVING' });
      return;
    }
    sendProblem(res, problem('UNAVAILABLE', 'netkeepd is not ready: the first reconcile pass has not finished'), {
      'Retry-After': '1',
    });
  });

  app.use('/v1', (_req, res, next) => {
    if (services.ready()) {
      next();
      return;
    }
    sendProblem(res, problem('UNAVAILABLE', 'netkeepd is not ready: starting up or shutting down; retry later'), {
      'Retry-After': '1',
    });
  });

  app.use(
    express.json({
      type: ['application/json', 'application/merge-patch+json'],
      limit: BODY_LIMIT,
      strict: true,
    }),
  );

  app.use(
    OpenApiValidator.middleware({
      // The validator mutates the document it is given (drops examples, resolves refs).
      apiSpec: loadOpenApiDocument() as never,
      validateApiSpec: true,
      validateRequests: { allErrors: true },
      validateResponses: false,
      ignoreUndocumented: false,
    }),
  );

  app.use(createRouter(services));

  app.use((req, res) => {
    sendProblem(res, problem('NOT_FOUND', `no such route: ${req.method} ${req.path}`));
  });
  app.use(problemHandler(logger));
  return app;
}

/** `unix:<path>` or `host:port` (DESIGN.md §4). */
export type ListenAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export function parseListen(listen: string): ListenAddress {
  if (listen.startsWith('unix:')) {
    const p = listen.slice('unix:'.length);
    if (p === '') throw new Error(`listen address "${listen}" has no socket path`);
    return { kind: 'unix', path: path.resolve(p) };
  }
  const m = /^(?:\[([^\]]+)\]|([^:]*)):([0-9]{1,5})$/.exec(listen);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`listen address "${listen}" is neither unix:<path> nor host:port`);
  return { kind: 'tcp', host: m[1] ?? m[2] ?? '', port };
}

/**
 * Removes a socket file left by a daemon that is gone. Refuses to touch
 * anything that is not a socket, or a socket someone still answers on.
 */
async function removeStaleSocket(socketPath: string): Promise<void> {
  let st;
  try {
    st = await lstat(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) throw new Error(`${socketPath} exists and is not a socket; not removing it`);
  const alive = await new Promise<boolean>((resolve) => {
    const c = net.connect(socketPath);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`${socketPath} is in use by another process`);
  await unlink(socketPath);
}

/**
 * Starts serving `app` on `listen` (`unix:<path>`: stale socket removed,
 * mode 0660 after bind; or `host:port`). Resolves once listening.
 */
export async function listenRest(app: express.Express, listen: string): Promise<http.Server> {
  const addr = parseListen(listen);
  if (addr.kind === 'unix') await removeStaleSocket(addr.path);
  const server = http.createServer(app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const ready = () => {
      server.off('error', reject);
      resolve();
    };
    if (addr.kind === 'unix') server.listen(addr.path, ready);
    else server.listen(addr.port, addr.host === '' ? undefined : addr.host, ready);
  });
  if (addr.kind === 'unix') await chmod(addr.path, SOCKET_MODE);
  return server;
}
