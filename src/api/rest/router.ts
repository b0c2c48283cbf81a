/**
 * The `/v1` routes: HTTP only. Each handler reads the request (already
 * validated against `openapi/netkeep.v1.yaml`), calls the service, and
 * answers; errors propagate to `errors.ts` (express 5 forwards thrown errors).
 */
import { AbortedError, InvalidArgumentError } from '../../domain/errors.js';
import express, { type Request, type Response } from 'express';
import { POOL_KIND, type IpPool } from '../../domain/ipam.js';
import { KINDS, type Kind } from '../../domain/types.js';
import type { AllocateRequest, IpamService } from '../../service/ipam.js';
import type { ListOptions, ResourceService, Services, WriteOptions } from '../../service/types.js';
import {
  entityTag,
  presentAllocation,
  presentList,
  presentPool,
  presentResource,
  type ResourceJson,
} from './present.js';

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

/** What the CRUD routes of a collection need of its service (`ResourceService`, or pools of `IpamService`). */
interface CrudService<R extends { name: string; etag: string }> {
  create(input: Record<string, unknown>, opts: WriteOptions): R;
  get(name: string): R;
  list(opts: ListOptions): { items: R[]; nextPageToken: string };
  update(name: string, patch: Record<string, unknown>, opts: WriteOptions): R;
  delete(name: string, opts: WriteOptions): void;
}

function pageOptions(req: Request): ListOptions {
  const pageSize = req.query.pageSize === undefined ? undefined : Number(req.query.pageSize);
  const pageToken = typeof req.query.pageToken === 'string' ? req.query.pageToken : undefined;
  return { pageSize, pageToken };
}

function crudRoutes<R extends { name: string; etag: string }>(
  router: express.Router,
  collectionName: string,
  service: CrudService<R>,
  present: (r: R) => ResourceJson,
): void {
  const collection = `/v1/${collectionName}`;
  const item = `/v1/${collectionName}/:name`;

  const sendResource = (res: Response, status: number, r: R, opts: { etag: boolean }): void => {
    if (opts.etag) res.set('ETag', entityTag(r));
    res.status(status).json(present(r));
  };

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
    res.json(presentList(service.list(pageOptions(req)), present));
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

/** A path parameter (express 5 has already percent-decoded it: `fd00%3A%3A5` is `fd00::5`). */
function param(req: Request, key: string): string {
  const v = req.params[key];
  return typeof v === 'string' ? v : '';
}

/** IpPools (`/v1/pools`, the same CRUD as every kind) and their allocations (issue 3). */
function ipamRoutes(router: express.Router, ipam: IpamService): void {
  crudRoutes<IpPool>(
    router,
    POOL_KIND,
    {
      create: (input, opts) => ipam.createPool(input, opts),
      get: (name) => ipam.getPool(name),
      list: (opts) => ipam.listPools(opts),
      update: (name, patch, opts) => ipam.updatePool(name, patch, opts),
      delete: (name, opts) => ipam.deletePool(name, opts),
    },
    presentPool,
  );

  const collection = `/v1/${POOL_KIND}/:pool/allocations`;
  const item = `${collection}/:address`;

  router.post(collection, (req, res) => {
    const pool = param(req, 'pool');
    const dryRun = validateOnly(req);
    const a = ipam.allocate(pool, req.body as AllocateRequest, { validateOnly: dryRun });
    if (dryRun) {
      res.status(200).json(presentAllocation(a));
      return;
    }
    res.location(`/v1/${POOL_KIND}/${encodeURIComponent(a.pool)}/allocations/${encodeURIComponent(a.address)}`);
    res.status(201).json(presentAllocation(a));
  });

  router.get(collection, (req, res) => {
    res.json(presentList(ipam.listAllocations(param(req, 'pool'), pageOptions(req)), presentAllocation));
  });

  router.get(item, (req, res) => {
    res.json(presentAllocation(ipam.getAllocation(param(req, 'pool'), param(req, 'address'))));
  });

  router.delete(item, (req, res) => {
    ipam.release(param(req, 'pool'), param(req, 'address'));
    res.status(204).end();
  });
}

/** The routes of every kind under `/v1`. */
export function createRouter(services: Services): express.Router {
  const router = express.Router();
  for (const kind of KINDS) {
    crudRoutes(router, kind, services[kind] as ResourceService<Kind>, presentResource);
  }
  ipamRoutes(router, services.ipam);
  return router;
}
