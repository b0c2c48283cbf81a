/**
 * The gRPC transport: the five resource services of `proto/netkeep/v1`,
 * IpamService (pools and allocations, issue 3), the standard health service
 * (grpc.health.v1) and server reflection.
 *
 * Handlers are plain async functions `(request) => response` that call the
 * service layer and throw its typed errors; `unary()` wraps each one once,
 * answers UNAVAILABLE while the daemon is not ready, and sends any error
 * through the one mapping in `errors.ts`.
 */
import { chmod, lstat, unlink } from 'node:fs/promises';
import { readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProtoPath, type ServingStatusMap } from 'grpc-health-check';
import type { Logger } from 'pino';
import { InvalidArgumentError, UnavailableError } from '../../domain/errors.js';
import type { Kind, Resource } from '../../domain/types.js';
import { BridgeServiceService } from '../../gen/netkeep/v1/bridge.js';
import { IpamServiceService } from '../../gen/netkeep/v1/ipam.js';
import { LoadBalancerServiceService } from '../../gen/netkeep/v1/loadbalancer.js';
import { NamespaceServiceService } from '../../gen/netkeep/v1/namespace.js';
import { RouteServiceService } from '../../gen/netkeep/v1/route.js';
import { VethServiceService } from '../../gen/netkeep/v1/veth.js';
import type { IpamService } from '../../service/ipam.js';
import type { ResourceService, Services } from '../../service/types.js';
import {
  allocationToProto,
  poolToProto,
  toCreateInput,
  toPoolInput,
  toPoolUpdatePatch,
  toProto,
  toUpdatePatch,
  type ProtoOf,
} from './convert.js';
import { toServiceError } from './errors.js';

/** `proto/` of the repository, found from this module's URL so that any cwd works. */
export const PROTO_DIR = fileURLToPath(new URL('../../../proto/', import.meta.url));

/** A plain async unary handler; it throws the typed errors of domain/errors.ts. */
export type Handler<Req, Res> = (request: Req) => Promise<Res>;

/** One handler per method of a generated service definition. */
export type Handlers<D> = {
  [M in keyof D]: D[M] extends grpc.MethodDefinition<infer Req, infer Res> ? Handler<Req, Res> : never;
};

const DEFINITIONS = [NamespaceServiceService, BridgeServiceService, VethServiceService, RouteServiceService, LoadBalancerServiceService];

/** The fully-qualified name of a generated service definition (`netkeep.v1.BridgeService`). */
function serviceName(definition: grpc.ServiceDefinition): string {
  const path = Object.values(definition)[0]!.path;
  return path.slice(1, path.lastIndexOf('/'));
}

/** Fully-qualified name of the IPAM service. */
export const IPAM_SERVICE_NAME = serviceName(IpamServiceService);

/** Fully-qualified names of every netkeep service (`netkeep.v1.BridgeService`), as health reports them. */
export const SERVICE_NAMES = [...DEFINITIONS.map(serviceName), IPAM_SERVICE_NAME];

export interface GrpcServer {
  server: grpc.Server;
  /**
   * Sets the health of the server ("") and of every resource service:
   * SERVING or NOT_SERVING. All are NOT_SERVING until the first call.
   */
  setServing(serving: boolean): void;
}

/**
 * Builds a grpc-js server with the resource services over `services`,
 * grpc.health.v1.Health and server reflection (v1 and v1alpha). It is not
 * bound yet: see `bindGrpc()`.
 */
export function createGrpcServer(services: Services, logger: Logger): GrpcServer {
  const server = new grpc.Server();
  const add = <D extends grpc.ServiceDefinition>(definition: D, handlers: Handlers<D>) => {
    server.addService(definition, implement(definition, handlers, services, logger));
  };
  add(NamespaceServiceService, namespaceHandlers(services.namespaces));
  add(BridgeServiceService, bridgeHandlers(services.bridges));
  add(VethServiceService, vethHandlers(services.veths));
  add(RouteServiceService, routeHandlers(services.routes));
  add(LoadBalancerServiceService, loadBalancerHandlers(services.loadbalancers));
  add(IpamServiceService, ipamHandlers(services.ipam));

  const names = ['', ...SERVICE_NAMES];
  const health = new HealthImplementation(
    Object.fromEntries(names.map((n) => [n, 'NOT_SERVING'])) as ServingStatusMap,
  );
  health.addToServer(server);
  new ReflectionService(loadProtos()).addToServer(server);

  return {
    server,
    setServing(serving) {
      for (const name of names) health.setStatus(name, serving ? 'SERVING' : 'NOT_SERVING');
    },
  };
}

/**
 * Binds `server` to `listen` and starts serving (grpc-js ≥ 1.10 starts on bind).
 * - `unix:<path>` (a relative path is resolved against the cwd): a stale
 *   socket file left by a previous run is removed first; a live one (some
 *   process accepts on it) or a non-socket file is an error. The socket is
 *   made mode 0660 after the bind.
 * - `host:port`: TCP with insecure credentials. TCP is opt-in by the caller.
 * Rejects with grpc-js's bind error (EADDRINUSE, EACCES …).
 */
export async function bindGrpc(server: grpc.Server, listen: string): Promise<void> {
  const creds = grpc.ServerCredentials.createInsecure();
  if (!listen.startsWith('unix:')) {
    await bindAsync(server, listen, creds);
    return;
  }
  const path = resolve(listen.slice('unix:'.length).replace(/^\/\/(?=\/)/, ''));
  await removeStaleSocket(path);
  await bindAsync(server, `unix:${path}`, creds);
  await chmod(path, 0o660);
}

function bindAsync(server: grpc.Server, address: string, creds: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, creds, (err, port) => (err ? reject(err) : resolve(port)));
  });
}

async function removeStaleSocket(path: string): Promise<void> {
  const stat = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (stat === undefined) return;
  if (!stat.isSocket()) throw new Error(`${path} exists and is not a socket; not removing it`);
  if (await socketAccepts(path)) throw new Error(`${path} is in use: another process accepts connections on it`);
  await unlink(path);
}

/** True when a process accepts on the unix socket at `path`; false when the file is stale (ECONNREFUSED). */
function socketAccepts(path: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve(false);
      else reject(err);
    });
  });
}

/** The .proto files the services come from, plus grpc.health.v1, for reflection. */
function loadProtos(): protoLoader.PackageDefinition {
  const ours = readdirSync(join(PROTO_DIR, 'netkeep/v1'))
    .filter((f) => f.endsWith('.proto'))
    .sort()
    .map((f) => `netkeep/v1/${f}`);
  const healthRoot = resolve(dirname(healthProtoPath), '../..');
  return protoLoader.loadSync([...ours, 'health/v1/health.proto'], { includeDirs: [PROTO_DIR, healthRoot] });
}

function implement<D extends grpc.ServiceDefinition>(
  definition: D,
  handlers: Handlers<D>,
  services: Services,
  logger: Logger,
): grpc.UntypedServiceImplementation {
  const impl: grpc.UntypedServiceImplementation = {};
  for (const [method, def] of Object.entries(definition)) {
    const handler = handlers[method as keyof D] as Handler<unknown, unknown>;
    impl[method] = unary(def.path, handler, services, logger);
  }
  return impl;
}

/** The one wrapper around every handler: readiness, then the handler, then the one error mapping. */
function unary<Req, Res>(
  path: string,
  handler: Handler<Req, Res>,
  services: Services,
  logger: Logger,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    Promise.resolve()
      .then(() => {
        if (!services.ready()) {
          throw new UnavailableError('netkeepd is not ready: the first reconcile pass has not finished, or it is shutting down');
        }
        return handler(call.request);
      })
      .then(
        (response) => callback(null, response),
        (err: unknown) => callback(toServiceError(err, logger, path)),
      );
  };
}

interface UpdateRequest {
  updateMask: string[] | undefined;
  validateOnly: boolean;
}

/** UpdateX: the mask becomes a merge patch; `etag` of the message, when set, must match (AIP-154). */
function update<K extends Kind>(
  service: ResourceService<K>,
  resource: ProtoOf[K] | undefined,
  field: string,
  request: UpdateRequest,
): Resource<K> {
  if (resource === undefined) throw InvalidArgumentError.field(field, 'is required');
  if (resource.name === '') throw InvalidArgumentError.field(`${field}.name`, 'is required: it says which resource to update');
  const current = service.get(resource.name);
  const patch = toUpdatePatch(service.kind, resource, request.updateMask ?? [], current.labels);
  return service.update(resource.name, patch, { etag: resource.etag || undefined, validateOnly: request.validateOnly });
}

function remove(service: ResourceService<Kind>, request: { name: string; etag: string }): Record<string, never> {
  service.delete(request.name, { etag: request.etag || undefined });
  return {};
}

function namespaceHandlers(s: ResourceService<'namespaces'>): Handlers<typeof NamespaceServiceService> {
  return {
    createNamespace: async (req) =>
      toProto(s.create(toCreateInput(s.kind, req.namespace, 'namespace'), { validateOnly: req.validateOnly })),
    getNamespace: async (req) => toProto(s.get(req.name)),
    listNamespaces: async (req) => {
      const page = s.list({ pageSize: req.pageSize, pageToken: req.pageToken });
      return { namespaces: page.items.map((r) => toProto(r)), nextPageToken: page.nextPageToken };
    },
    updateNamespace: async (req) => toProto(update(s, req.namespace, 'namespace', req)),
    deleteNamespace: async (req) => remove(s, req),
  };
}

function bridgeHandlers(s: ResourceService<'bridges'>): Handlers<typeof BridgeServiceService> {
  return {
    createBridge: async (req) =>
      toProto(s.create(toCreateInput(s.kind, req.bridge, 'bridge'), { validateOnly: req.validateOnly })),
    getBridge: async (req) => toProto(s.get(req.name)),
    listBridges: async (req) => {
      const page = s.list({ pageSize: req.pageSize, pageToken: req.pageToken });
      return { bridges: page.items.map((r) => toProto(r)), nextPageToken: page.nextPageToken };
    },
    updateBridge: async (req) => toProto(update(s, req.bridge, 'bridge', req)),
    deleteBridge: async (req) => remove(s, req),
  };
}

function vethHandlers(s: ResourceService<'veths'>): Handlers<typeof VethServiceService> {
  return {
    createVethPair: async (req) =>
      toProto(s.create(toCreateInput(s.kind, req.vethPair, 'veth_pair'), { validateOnly: req.validateOnly })),
    getVethPair: async (req) => toProto(s.get(req.name)),
    listVethPairs: async (req) => {
      const page = s.list({ pageSize: req.pageSize, pageToken: req.pageToken });
      return { vethPairs: page.items.map((r) => toProto(r)), nextPageToken: page.nextPageToken };
    },
    updateVethPair: async (req) => toProto(update(s, req.vethPair, 'veth_pair', req)),
    deleteVethPair: async (req) => remove(s, req),
  };
}

function routeHandlers(s: ResourceService<'routes'>): Handlers<typeof RouteServiceService> {
  return {
    createRoute: async (req) =>
      toProto(s.create(toCreateInput(s.kind, req.route, 'route'), { validateOnly: req.validateOnly })),
    getRoute: async (req) => toProto(s.get(req.name)),
    listRoutes: async (req) => {
      const page = s.list({ pageSize: req.pageSize, pageToken: req.pageToken });
      return { routes: page.items.map((r) => toProto(r)), nextPageToken: page.nextPageToken };
    },
    updateRoute: async (req) => toProto(update(s, req.route, 'route', req)),
    deleteRoute: async (req) => remove(s, req),
  };
}

function loadBalancerHandlers(s: ResourceService<'loadbalancers'>): Handlers<typeof LoadBalancerServiceService> {
  return {
    createLoadBalancer: async (req) =>
      toProto(s.create(toCreateInput(s.kind, req.loadBalancer, 'load_balancer'), { validateOnly: req.validateOnly })),
    getLoadBalancer: async (req) => toProto(s.get(req.name)),
    listLoadBalancers: async (req) => {
      const page = s.list({ pageSize: req.pageSize, pageToken: req.pageToken });
      return { loadBalancers: page.items.map((r) => toProto(r)), nextPageToken: page.nextPageToken };
    },
    updateLoadBalancer: async (req) => toProto(update(s, req.loadBalancer, 'load_balancer', req)),
    deleteLoadBalancer: async (req) => remove(s, req),
  };
}

function ipamHandlers(s: IpamService): Handlers<typeof IpamServiceService> {
  return {
    createIpPool: async (req) => poolToProto(s.createPool(toPoolInput(req.ipPool, 'ip_pool'), { validateOnly: req.validateOnly })),
    getIpPool: async (req) => poolToProto(s.getPool(req.name)),
    listIpPools: async (req) => {
      const page = s.listPools({ pageSize: req.pageSize, pageToken: req.pageToken });
      return { ipPools: page.items.map(poolToProto), nextPageToken: page.nextPageToken };
    },
    updateIpPool: async (req) => {
      const pool = req.ipPool;
      if (pool === undefined) throw InvalidArgumentError.field('ip_pool', 'is required');
      if (pool.name === '') throw InvalidArgumentError.field('ip_pool.name', 'is required: it says which pool to update');
      const current = s.getPool(pool.name);
      const patch = toPoolUpdatePatch(pool, req.updateMask ?? [], current.labels);
      return poolToProto(s.updatePool(pool.name, patch, { etag: pool.etag || undefined, validateOnly: req.validateOnly }));
    },
    deleteIpPool: async (req) => {
      s.deletePool(req.name, { etag: req.etag || undefined });
      return {};
    },
    allocate: async (req) =>
      allocationToProto(
        s.allocate(req.pool, { address: req.address, owner: req.owner, labels: { ...req.labels } }, { validateOnly: req.validateOnly }),
      ),
    getAllocation: async (req) => allocationToProto(s.getAllocation(req.pool, req.address)),
    listAllocations: async (req) => {
      const page = s.listAllocations(req.pool, { pageSize: req.pageSize, pageToken: req.pageToken });
      return { allocations: page.items.map(allocationToProto), nextPageToken: page.nextPageToken };
    },
    release: async (req) => {
      s.release(req.pool, req.address);
      return {};
    },
  };
}
