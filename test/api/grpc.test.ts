/**
 * The gRPC API end to end: a server on a unix socket over a real Services
 * (in-memory store), called with the generated clients.
 */
import { call, fails, violations, type Method } from '../support/grpc.js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { after, before, describe, test } from 'node:test';
import { BinaryReader } from '@bufbuild/protobuf/wire';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { pino } from 'pino';
import { STATUS_DETAILS_METADATA_KEY, toServiceError } from '../../src/api/grpc/errors.js';
import { toProto } from '../../src/api/grpc/convert.js';
import { SERVICE_NAMES, bindGrpc, createGrpcServer } from '../../src/api/grpc/server.js';
import { InvalidArgumentError } from '../../src/domain/errors.js';
import { flatten } from '../../src/domain/present.js';
import { Bridge, BridgeServiceClient } from '../../src/gen/netkeep/v1/bridge.js';
import { Namespace, NamespaceServiceClient } from '../../src/gen/netkeep/v1/namespace.js';
import { ResourceStatus_State } from '../../src/gen/netkeep/v1/resource.js';
import { Route, RouteServiceClient } from '../../src/gen/netkeep/v1/route.js';
import { VethPair, VethServiceClient } from '../../src/gen/netkeep/v1/veth.js';
import { createServices, type Services } from '../../src/service/index.js';
import { openStore, type Store } from '../../src/store/index.js';

/** Decodes google.rpc.Status from `grpc-status-details-bin`: code, message and the type URLs of its details. */
function statusDetails(err: grpc.ServiceError): { code: number; message: string; details: { type: string; value: Uint8Array }[] } {
  const [raw] = err.metadata.get(STATUS_DETAILS_METADATA_KEY);
  assert.ok(raw instanceof Buffer, 'grpc-status-details-bin is set');
  const r = new BinaryReader(raw);
  const out = { code: 0, message: '', details: [] as { type: string; value: Uint8Array }[] };
  while (r.pos < r.len) {
    const [field] = r.tag();
    if (field === 1) out.code = r.int32();
    else if (field === 2) out.message = r.string();
    else {
      const any = new BinaryReader(r.bytes());
      any.tag();
      const type = any.string();
      any.tag();
      out.details.push({ type, value: any.bytes() });
    }
  }
  return out;
}

const dir = mkdtempSync(join(tmpdir(), 'netkeep-grpc-'));
const socket = join(dir, 'grpc.sock');
const address = `unix:${socket}`;
const creds = grpc.credentials.createInsecure();
let store: Store;
let services: Services;
let ready = true;
let grpcServer: ReturnType<typeof createGrpcServer>;
let namespaces: NamespaceServiceClient;
let bridges: BridgeServiceClient;
let veths: VethServiceClient;
let routes: RouteServiceClient;

before(async () => {
  store = openStore(':memory:');
  services = createServices(store, { onChange() {}, ready: () => ready });
  grpcServer = createGrpcServer(services, pino({ level: 'silent' }));
  await bindGrpc(grpcServer.server, address);
  namespaces = new NamespaceServiceClient(address, creds);
  bridges = new BridgeServiceClient(address, creds);
  veths = new VethServiceClient(address, creds);
  routes = new RouteServiceClient(address, creds);
});

after(async () => {
  for (const c of [namespaces, bridges, veths, routes]) c.close();
  await new Promise<void>((done) => grpcServer.server.tryShutdown(() => done()));
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('transport', () => {
  test('the unix socket is mode 0660', () => {
    assert.equal(statSync(socket).mode & 0o777, 0o660);
  });

  test('a stale socket file is replaced; a live one or a plain file is refused', async () => {
    const second = createGrpcServer(services, pino({ level: 'silent' }));
    await assert.rejects(bindGrpc(second.server, address), /in use/);
    const stale = join(dir, 'stale.sock');
    // A process killed while listening leaves its socket file behind.
    const script = `require('node:net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`;
    spawnSync(process.execPath, ['-e', script]);
    assert.ok(statSync(stale).isSocket());
    await bindGrpc(second.server, `unix:${stale}`);
    const client = new NamespaceServiceClient(`unix:${stale}`, creds);
    await call(client.listNamespaces.bind(client), { pageSize: 0, pageToken: '' });
    client.close();
    second.server.forceShutdown();
    const plain = join(dir, 'plain');
    writeFileSync(plain, '');
    await assert.rejects(bindGrpc(createGrpcServer(services, pino({ level: 'silent' })).server, `unix:${plain}`), /not a socket/);
  });

  test('health: NOT_SERVING until setServing(true), for "" and every service', async () => {
    const pkg = protoLoader.loadSync(healthProtoPath, { enums: String });
    const Health = (grpc.loadPackageDefinition(pkg) as any).grpc.health.v1.Health as typeof grpc.Client;
    const health = new Health(address, creds) as grpc.Client & { check: Method<{ service: string }, { status: string }> };
    const check = (service: string) => call(health.check.bind(health), { service });
    assert.equal((await check('')).status, 'NOT_SERVING');
    grpcServer.setServing(true);
    for (const name of ['', ...SERVICE_NAMES]) assert.equal((await check(name)).status, 'SERVING', name);
    assert.deepEqual(SERVICE_NAMES, [
      'netkeep.v1.NamespaceService',
      'netkeep.v1.BridgeService',
      'netkeep.v1.VethService',
      'netkeep.v1.RouteService',
      'netkeep.v1.LoadBalancerService',
      'netkeep.v1.IpamService',
    ]);
    health.close();
  });

  test('reflection lists the services and serves their descriptors', async () => {
    const require = createRequire(import.meta.url);
    const reflectionDir = resolve(dirname(require.resolve('@grpc/reflection')), '../proto');
    const pkg = protoLoader.loadSync('grpc/reflection/v1/reflection.proto', { includeDirs: [reflectionDir], keepCase: true });
    const Reflection = (grpc.loadPackageDefinition(pkg) as any).grpc.reflection.v1.ServerReflection as typeof grpc.Client;
    const client = new Reflection(address, creds) as any;
    const ask = (request: object) =>
      new Promise<any>((resolve, reject) => {
        const stream = client.ServerReflectionInfo();
        stream.on('data', (res: unknown) => {
          resolve(res);
          stream.end();
        });
        stream.on('error', reject);
        stream.write(request);
      });
    const listed = await ask({ list_services: '' });
    const names = listed.list_services_response.service.map((s: { name: string }) => s.name);
    for (const n of [...SERVICE_NAMES, 'grpc.health.v1.Health']) assert.ok(names.includes(n), `${n} in ${names}`);
    const file = await ask({ file_containing_symbol: 'netkeep.v1.VethPair' });
    assert.ok(file.file_descriptor_response.file_descriptor_proto.length > 0);
    client.close();
  });

  test('UNAVAILABLE while services are not ready', async () => {
    ready = false;
    try {
      await fails(call(namespaces.getNamespace.bind(namespaces), { name: 'x' }), grpc.status.UNAVAILABLE, /not ready/);
    } finally {
      ready = true;
    }
  });

  test('unknown errors: INTERNAL "internal error", stack logged at error level', () => {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(s) });
    const err = toServiceError(new TypeError('secret detail'), logger, '/netkeep.v1.BridgeService/GetBridge');
    assert.equal(err.code, grpc.status.INTERNAL);
    assert.equal(err.details, 'internal error');
    assert.equal(lines.length, 1);
    const log = JSON.parse(lines[0]!) as { level: number; msg: string; method: string; err: { stack: string } };
    assert.equal(log.level, 50);
    assert.equal(log.method, '/netkeep.v1.BridgeService/GetBridge');
    assert.match(log.err.stack, /TypeError: secret detail/);
  });

  test('violations: in the details, as JSON and as google.rpc.BadRequest', () => {
    const err = toServiceError(new InvalidArgumentError([{ field: 'mtu', description: 'too big' }], 'bad bridge'), pino({ level: 'silent' }));
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(err.details, 'bad bridge; mtu: too big');
    assert.deepEqual(violations(err), [{ field: 'mtu', description: 'too big' }]);
    const status = statusDetails(err);
    assert.equal(status.code, grpc.status.INVALID_ARGUMENT);
    assert.deepEqual(
      status.details.map((d) => d.type),
      ['type.googleapis.com/google.rpc.ErrorInfo', 'type.googleapis.com/google.rpc.BadRequest'],
    );
    const bad = new BinaryReader(status.details[1]!.value);
    bad.tag();
    const fv = new BinaryReader(bad.bytes());
    fv.tag();
    assert.equal(fv.string(), 'mtu');
    fv.tag();
    assert.equal(fv.string(), 'too big');
  });
});

describe('NamespaceService', () => {
  test('create, validate_only, get, list pages, ALREADY_EXISTS, NOT_FOUND', async () => {
    const create = namespaces.createNamespace.bind(namespaces);
    const dry = await call(create, { namespace: Namespace.fromPartial({ name: 'ns1', labels: { team: 'a' } }), validateOnly: true });
    assert.equal(dry.name, 'ns1');
    await fails(call(namespaces.getNamespace.bind(namespaces), { name: 'ns1' }), grpc.status.NOT_FOUND, /ns1/);

    const ns1 = await call(create, { namespace: Namespace.fromPartial({ name: 'ns1', labels: { team: 'a' } }), validateOnly: false });
    assert.equal(ns1.generation, 1);
    assert.notEqual(ns1.etag, '');
    assert.match(ns1.createTime ?? '', /^\d{4}-\d\d-\d\dT/);
    assert.equal(ns1.status?.state, ResourceStatus_State.PENDING);
    assert.equal(ns1.status?.lastReconcileTime, undefined);
    await call(create, { namespace: Namespace.fromPartial({ name: 'ns2' }), validateOnly: false });
    await fails(call(create, { namespace: Namespace.fromPartial({ name: 'ns1' }), validateOnly: false }), grpc.status.ALREADY_EXISTS);
    const bad = await fails(call(create, { namespace: Namespace.fromPartial({ name: 'Bad_Name' }), validateOnly: false }), grpc.status.INVALID_ARGUMENT);
    assert.deepEqual(violations(bad).map((v) => v.field), ['name']);
    await fails(call(create, { namespace: undefined, validateOnly: false }), grpc.status.INVALID_ARGUMENT, /namespace: is required/);

    assert.deepEqual((await call(namespaces.getNamespace.bind(namespaces), { name: 'ns1' })).labels, { team: 'a' });
    const list = namespaces.listNamespaces.bind(namespaces);
    const p1 = await call(list, { pageSize: 1, pageToken: '' });
    assert.deepEqual(p1.namespaces.map((n) => n.name), ['ns1']);
    assert.notEqual(p1.nextPageToken, '');
    const p2 = await call(list, { pageSize: 1, pageToken: p1.nextPageToken });
    assert.deepEqual(p2.namespaces.map((n) => n.name), ['ns2']);
    assert.equal(p2.nextPageToken, '');
    await fails(call(list, { pageSize: 1, pageToken: 'garbage' }), grpc.status.INVALID_ARGUMENT);
  });

  test('update labels with a mask replaces the map; unknown path; etag', async () => {
    const update = namespaces.updateNamespace.bind(namespaces);
    const current = await call(namespaces.getNamespace.bind(namespaces), { name: 'ns1' });
    const updated = await call(update, {
      namespace: { ...current, labels: { env: 'prod' } },
      updateMask: ['labels'],
      validateOnly: false,
    });
    assert.deepEqual(updated.labels, { env: 'prod' });
    assert.notEqual(updated.etag, current.etag);
    const one = await call(update, { namespace: Namespace.fromPartial({ name: 'ns1', labels: { tier: 'db' } }), updateMask: ['labels.tier'], validateOnly: false });
    assert.deepEqual(one.labels, { env: 'prod', tier: 'db' });

    const err = await fails(call(update, { namespace: Namespace.fromPartial({ name: 'ns1' }), updateMask: ['colour'], validateOnly: false }), grpc.status.INVALID_ARGUMENT);
    assert.deepEqual(violations(err).map((v) => v.field), ['update_mask']);
    await fails(
      call(update, { namespace: { ...current, labels: {} }, updateMask: ['labels'], validateOnly: false }),
      grpc.status.ABORTED,
    );
    await fails(call(update, { namespace: Namespace.fromPartial({ name: 'nope' }), updateMask: ['labels'], validateOnly: false }), grpc.status.NOT_FOUND);
  });
});

describe('BridgeService', () => {
  test('create, get, list, update with mask, immutable field, validate_only', async () => {
    const create = bridges.createBridge.bind(bridges);
    const update = bridges.updateBridge.bind(bridges);
    const br = await call(create, {
      bridge: Bridge.fromPartial({ name: 'br0', namespace: 'ns1', mtu: 1500, addresses: ['10.50.0.1/24'], vlanFiltering: true }),
      validateOnly: false,
    });
    assert.equal(br.ifname, 'br0');
    assert.match(br.mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    assert.equal(br.status?.ifindex, 0);
    await call(create, { bridge: Bridge.fromPartial({ name: 'br1', namespace: 'ns2' }), validateOnly: false });
    await fails(call(create, { bridge: Bridge.fromPartial({ name: 'br2', namespace: 'ghost' }), validateOnly: false }), grpc.status.NOT_FOUND, /ghost/);
    await fails(
      call(create, { bridge: Bridge.fromPartial({ name: 'br3', namespace: 'ns1', ifname: 'br0' }), validateOnly: false }),
      grpc.status.ALREADY_EXISTS,
    );

    const p1 = await call(bridges.listBridges.bind(bridges), { pageSize: 1, pageToken: '' });
    assert.deepEqual(p1.bridges.map((b) => b.name), ['br0']);
    const p2 = await call(bridges.listBridges.bind(bridges), { pageSize: 1, pageToken: p1.nextPageToken });
    assert.deepEqual(p2.bridges.map((b) => b.name), ['br1']);

    const mtu = await call(update, { bridge: Bridge.fromPartial({ name: 'br0', mtu: 9000 }), updateMask: ['mtu'], validateOnly: false });
    assert.equal(mtu.mtu, 9000);
    assert.deepEqual(mtu.addresses, ['10.50.0.1/24'], 'fields outside the mask are kept');
    assert.equal(mtu.vlanFiltering, true);
    assert.equal(mtu.generation, 2);
    const off = await call(update, { bridge: Bridge.fromPartial({ name: 'br0' }), updateMask: ['vlan_filtering'], validateOnly: false });
    assert.equal(off.vlanFiltering, false);

    const imm = await fails(
      call(update, { bridge: Bridge.fromPartial({ name: 'br0', namespace: 'ns2' }), updateMask: ['namespace'], validateOnly: false }),
      grpc.status.INVALID_ARGUMENT,
      /namespace: is immutable/,
    );
    assert.deepEqual(violations(imm).map((v) => v.field), ['namespace']);

    const dry = await call(update, { bridge: Bridge.fromPartial({ name: 'br0', mtu: 1400 }), updateMask: ['mtu'], validateOnly: true });
    assert.equal(dry.mtu, 1400);
    assert.equal((await call(bridges.getBridge.bind(bridges), { name: 'br0' })).mtu, 9000);

    // An empty mask replaces every mutable field (namespace and ifname are left alone).
    const full = await call(update, { bridge: Bridge.fromPartial({ name: 'br1', mtu: 1450, labels: { a: 'b' } }), updateMask: undefined, validateOnly: false });
    assert.equal(full.mtu, 1450);
    assert.equal(full.namespace, 'ns2');
    assert.deepEqual(full.labels, { a: 'b' });
  });

});

describe('VethService', () => {
  test('create, list pages, update a.addresses and mtu, immutable a.ifname', async () => {
    const create = veths.createVethPair.bind(veths);
    const update = veths.updateVethPair.bind(veths);
    const v1 = await call(create, {
      vethPair: VethPair.fromPartial({
        name: 'v1',
        mtu: 1500,
        a: { ifname: 'v1a', namespace: 'ns1', bridge: 'br0', addresses: [], mac: '' },
        b: { ifname: 'eth0', namespace: 'ns2', bridge: '', addresses: ['10.50.0.2/24'], mac: '' },
      }),
      validateOnly: false,
    });
    assert.equal(v1.a?.bridge, 'br0');
    assert.equal(v1.status?.a?.ifindex, 0);
    await call(create, {
      vethPair: VethPair.fromPartial({ name: 'v2', a: { ifname: 'v2a' }, b: { ifname: 'v2b', namespace: 'ns1' } }),
      validateOnly: false,
    });
    const missing = await fails(call(create, { vethPair: VethPair.fromPartial({ name: 'v3', a: { ifname: 'v3a' } }), validateOnly: false }), grpc.status.INVALID_ARGUMENT);
    assert.ok(violations(missing).some((v) => v.field.startsWith('b')), JSON.stringify(violations(missing)));

    const p1 = await call(veths.listVethPairs.bind(veths), { pageSize: 1, pageToken: '' });
    assert.deepEqual(p1.vethPairs.map((v) => v.name), ['v1']);
    const p2 = await call(veths.listVethPairs.bind(veths), { pageSize: 1, pageToken: p1.nextPageToken });
    assert.deepEqual(p2.vethPairs.map((v) => v.name), ['v2']);
    assert.equal(p2.nextPageToken, '');

    const addr = await call(update, {
      vethPair: VethPair.fromPartial({ name: 'v1', a: { addresses: ['10.50.0.3/24'] } }),
      updateMask: ['a.addresses', 'mtu'],
      validateOnly: false,
    });
    assert.deepEqual(addr.a?.addresses, ['10.50.0.3/24']);
    assert.equal(addr.a?.bridge, 'br0', 'other fields of a are kept');
    assert.equal(addr.a?.ifname, 'v1a');
    assert.deepEqual(addr.b?.addresses, ['10.50.0.2/24']);
    assert.equal(addr.mtu, 0, 'mtu in the mask but unset in the message resets it');

    await fails(
      call(update, { vethPair: VethPair.fromPartial({ name: 'v1', a: { ifname: 'other' } }), updateMask: ['a.ifname'], validateOnly: false }),
      grpc.status.INVALID_ARGUMENT,
      /a\.ifname: is immutable/,
    );
    const unknown = await fails(
      call(update, { vethPair: VethPair.fromPartial({ name: 'v1' }), updateMask: ['a.colour', 'c'], validateOnly: false }),
      grpc.status.INVALID_ARGUMENT,
    );
    assert.equal(violations(unknown).length, 2);

    const ref = await fails(call(bridges.deleteBridge.bind(bridges), { name: 'br0', etag: '' }), grpc.status.FAILED_PRECONDITION, /veths\/v1/);
    assert.ok(statusDetails(ref).details.some((d) => d.type.endsWith('google.rpc.PreconditionFailure')));
  });

  test('delete with etag: ABORTED on mismatch, then gone', async () => {
    const del = veths.deleteVethPair.bind(veths);
    await fails(call(del, { name: 'v2', etag: 'stale' }), grpc.status.ABORTED);
    const current = await call(veths.getVethPair.bind(veths), { name: 'v2' });
    await call(del, { name: 'v2', etag: current.etag });
    await call(del, { name: 'v1', etag: '' });
    await fails(call(veths.getVethPair.bind(veths), { name: 'v1' }), grpc.status.NOT_FOUND);
    await fails(call(del, { name: 'v1', etag: '' }), grpc.status.NOT_FOUND);
  });
});

describe('RouteService', () => {
  test('create, get, list, update metric, immutable destination, delete', async () => {
    const create = routes.createRoute.bind(routes);
    const update = routes.updateRoute.bind(routes);
    const r1 = await call(create, {
      route: Route.fromPartial({ name: 'r1', namespace: 'ns1', destination: '10.60.0.0/16', via: '10.50.0.254' }),
      validateOnly: false,
    });
    assert.equal(r1.metric, 0);
    await call(create, { route: Route.fromPartial({ name: 'r2', namespace: 'ns1', destination: 'default', device: 'br0' }), validateOnly: false });
    const host = await fails(
      call(create, { route: Route.fromPartial({ name: 'r3', destination: '10.60.0.1/16', via: '10.0.0.1' }), validateOnly: false }),
      grpc.status.INVALID_ARGUMENT,
    );
    assert.deepEqual(violations(host).map((v) => v.field), ['destination']);

    const p1 = await call(routes.listRoutes.bind(routes), { pageSize: 1, pageToken: '' });
    assert.deepEqual(p1.routes.map((r) => r.name), ['r1']);
    const p2 = await call(routes.listRoutes.bind(routes), { pageSize: 1, pageToken: p1.nextPageToken });
    assert.deepEqual(p2.routes.map((r) => r.name), ['r2']);

    const m = await call(update, { route: Route.fromPartial({ name: 'r1', metric: 100 }), updateMask: ['metric'], validateOnly: false });
    assert.equal(m.metric, 100);
    assert.equal(m.via, '10.50.0.254');
    await fails(
      call(update, { route: Route.fromPartial({ name: 'r1', destination: '10.70.0.0/16' }), updateMask: ['destination'], validateOnly: false }),
      grpc.status.INVALID_ARGUMENT,
      /destination: is immutable/,
    );
    await fails(call(update, { route: { ...m, metric: 5, etag: r1.etag }, updateMask: ['metric'], validateOnly: false }), grpc.status.ABORTED);

    for (const name of ['r1', 'r2']) await call(routes.deleteRoute.bind(routes), { name, etag: '' });
    await fails(call(routes.getRoute.bind(routes), { name: 'r1' }), grpc.status.NOT_FOUND);
  });
});

describe('convert', () => {
  test('every field of the flat form reaches the proto message', () => {
    const mem = openStore(':memory:');
    const svc = createServices(mem, { onChange() {}, ready: () => true });
    const resources = [
      svc.namespaces.create({ name: 'n', labels: { k: 'v' } }),
      svc.bridges.create({ name: 'b', namespace: 'n', addresses: ['10.1.0.1/24'] }),
      svc.veths.create({ name: 'v', a: { ifname: 'va', namespace: 'n', bridge: 'b' }, b: { ifname: 'vb' } }),
      svc.routes.create({ name: 'r', destination: 'default', device: 'vb' }),
    ];
    const missing = (flat: Record<string, unknown>, msg: Record<string, unknown>, at: string): string[] =>
      Object.entries(flat).flatMap(([key, value]) => {
        if (!(key in msg)) return [`${at}${key}`];
        const inner = msg[key];
        return value !== null && typeof value === 'object' && !Array.isArray(value) && key !== 'labels'
          ? missing(value as Record<string, unknown>, inner as Record<string, unknown>, `${at}${key}.`)
          : [];
      });
    for (const r of resources) {
      const flat = flatten(r);
      delete flat.status.lastReconcileTime; // "" is sent as unset
      assert.deepEqual(missing(flat, toProto(r) as unknown as Record<string, unknown>, ''), [], r.kind);
    }
    mem.close();
  });
});

describe('referenced resources', () => {
  test('deleting a namespace still used is FAILED_PRECONDITION naming the dependent; then it works', async () => {
    await fails(call(namespaces.deleteNamespace.bind(namespaces), { name: 'ns1', etag: '' }), grpc.status.FAILED_PRECONDITION, /bridges\/br0/);
    for (const name of ['br0', 'br1']) await call(bridges.deleteBridge.bind(bridges), { name, etag: '' });
    for (const name of ['ns1', 'ns2']) await call(namespaces.deleteNamespace.bind(namespaces), { name, etag: '' });
    const left = await call(namespaces.listNamespaces.bind(namespaces), { pageSize: 0, pageToken: '' });
    assert.deepEqual(left, { namespaces: [], nextPageToken: '' });
  });
});
