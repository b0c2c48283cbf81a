/**
 * The `/v1` routes: HTTP only. Each handler reads the request (already
 * validated against `openapi/netkeep.v1.yaml`), calls the service, and
 * answers; errors propagate to `errors.ts` (express 5 forwards thrown errors).
 */
import { AbortedError, InvalidArgumentError } from '../../domain/errors.js';
import express, { type Request, type Response } from 'express';
import { KINDS, type Kind, type Resource } from '../../domain/types.js';
import type { ResourceService, Services } from '../../service/types.js';
import { entityTag, presentList, presentResource } from './present.js';

/** `?validateOnly=true`. The validator has already rejected anything but "true"/"false". */
function validateOnly(req: Request): boolean {
  const v: unknown = req.query.validateOnly;
  return v === true || v === 'true';
}

/**
 * The etag to pass to the service from an `If-Match` header, or undefined for
 * "no condition". Accepts `"<etag>"`, `W/"<etag>"` (compared like the strong
 * form, leniently), a bare `<etag>`, `*`, or a list of those; for a list, the
 * entry equal to the current etag is passed when there is one, so the
 * service's single-etag check means "any of these".
 */
export function etagFromIfMatch(header: string | undefined, currentEtag: () => string): string | undefined {
  if (header === undefined || header.trim() === '') return undefined;
  const tags: string[] = [];
  for (const m of header.matchAll(/\s*(?:(?:W\/)?"([^"]*)"|([^,\s]+))\s*(?:,|$)/g)) {
    tags.push(m[1] ?? m[2] ?? '');
  }
  if (tags.length === 0) throw InvalidArgumentError.field('If-Match', 'is not an entity tag or a list of them (RFC 9110 §13.1.1)');
  if (tags.includes('*')) return undefined;
  // An empty entity tag names nothing that exists: the condition can never hold (RFC 9110 §13.1.1).
  if (tags.every((t) => t === '')) throw new AbortedError('If-Match names an empty entity tag, which matches no resource');
  if (tags.length === 1) return tags[0];
  const current = currentEtag();
  return tags.find((t) => t === current) ?? tags[0];
}

/** The `{name}` path parameter (express 5 has already percent-decoded it). */
function nameParam(req: Request): string {
  const name = req.params.name;
  return typeof name === 'string' ? name : '';
}

function sendResource(res: Response, status: number, r: Resource, opts: { etag: boolean }): void {
  if (opts.etag) res.set('ETag', entityTag(r));
  res.status(status).json(presentResource(r));
}

function kindRoutes<K extends Kind>(router: express.Router, kind: K, service: ResourceService<K>): void {
  const collection = `/v1/${kind}`;
  const item = `/v1/${kind}/:name`;

  router.post(collection, (req, res) => {
    const dryRun = validateOnly(req);
    const created = service.create(req.body as Record<string, unknown>, { validateOnly: dryRun });
    if (dryRun) {
      sendResource(res, 200, created, { etag: false });
      return;
    }
    res.location(`${collection}/${encodeURIComponent(created.name)}`);
    sendResource(res, 201, created, { etag: true });
  });

  router.get(collection, (req, res) => {
    const pageSize = req.query.pageSize === undefined ? undefined : Number(req.query.pageSize);
    const pageToken = typeof req.query.pageToken === 'string' ? req.query.pageToken : undefined;
    res.json(presentList(service.list({ pageSize, pageToken })));
  });

  router.get(item, (req, res) => {
    sendResource(res, 200, service.get(nameParam(req)), { etag: true });
  });

  router.patch(item, (req, res) => {
    const name = nameParam(req);
    const dryRun = validateOnly(req);
    const etag = etagFromIfMatch(req.get('If-Match'), () => service.get(name).etag);
    const updated = service.update(name, req.body as Record<string, unknown>, { validateOnly: dryRun, etag });
    sendResource(res, 200, updated, { etag: !dryRun });
  });

  router.delete(item, (req, res) => {
    const name = nameParam(req);
    const etag = etagFromIfMatch(req.get('If-Match'), () => service.get(name).etag);
    service.delete(name, { etag });
    res.status(204).end();
  });
}

/** The routes of every kind under `/v1`. */
export function createRouter(services: Services): express.Router {
  const router = express.Router();
  for (const kind of KINDS) {
    kindRoutes(router, kind, services[kind] as ResourceService<Kind>);
  }
  return router;
}
