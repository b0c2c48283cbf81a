/**
 * gRPC IpamService end to end: a server on a unix socket over a real
 * Services (in-memory store), called with the generated client.
 */
import { call, fails, violations, type Method } from '../support/grpc.js';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { pino } from 'pino';
import { SERVICE_NAMES, IPAM_SERVICE_NAME, bindGrpc, createGrpcServer } from '../../src/api/grpc/server.js';
import { Bridge, BridgeServiceClient } from '../../src/gen/netkeep/v1/bridge.js';
import { IpPool, IpamServiceClient, type AllocateRequest } from '../../src/gen/netkeep/v1/ipam.js';
import { VethPair, VethServiceClient } from '../../src/gen/netkeep/v1/veth.js';
import { ResourceStatus_State } from '../../src/gen/netkeep/v1/resource.js';
import { createServices, type Services } from '../../src/service/index.js';
import { openStore, type Store } from '../../src/store/index.js';

const dir = mkdtempSync(join(tmpdir(), 'netkeep-grpc-ipam-'));
const address = `unix:${join(dir, 'grpc.sock')}`;
const creds = grpc.credentials.createInsecure();
let store: Store;
let services: Services;
let grpcServer: ReturnType<typeof createGrpcServer>;
let ipam: IpamServiceClient;

before(async () => {
  store = openStore(':memory:');
  services = createServices(store, { onChange() {}, ready: () => true });
  grpcServer = createGrpcServer(services, pino({ level: 'silent' }));
  await bindGrpc(grpcServer.server, address);
  ipam = new IpamServiceClient(address, creds);
});

after(async () => {
  ipam.close();
  await new Promise<void>((done) => grpcServer.server.tryShutdown(() => done()));
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const createPool = (pool: Partial<IpPool>, validateOnly = false) =>
  call(ipam.createIpPool.bind(ipam), { ipPool: IpPool.fromPartial(pool), validateOnly });
const getPool = (name: string) => call(ipam.getIpPool.bind(ipam), { name });
const deletePool = (name: string, etag = '') => call(ipam.deleteIpPool.bind(ipam), { name, etag });
const allocate = (req: Partial<AllocateRequest> & { pool: string }) =>
  call(ipam.allocate.bind(ipam), { address: '', owner: '', labels: {}, validateOnly: false, ...req });
const release = (pool: string, addr: string) => call(ipam.release.bind(ipam), { pool, address: addr });

describe('registration', () => {
  test('health reports IpamService', async () => {
    assert.equal(IPAM_SERVICE_NAME, 'netkeep.v1.IpamService');
    assert.ok(SERVICE_NAMES.includes(IPAM_SERVICE_NAME));
    const pkg = protoLoader.loadSync(healthProtoPath, { enums: String });
    const Health = (grpc.loadPackageDefinition(pkg) as any).grpc.health.v1.Health as typeof grpc.Client;
    const health = new Health(address, creds) as grpc.Client & { check: Method<{ service: string }, { status: string }> };
    grpcServer.setServing(true);
    assert.equal((await call(health.check.bind(health), { service: IPAM_SERVICE_NAME })).status, 'SERVING');
    health.close();
  });

  test('reflection lists IpamService and serves its descriptor', async () => {
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
    assert.ok(names.includes(IPAM_SERVICE_NAME), `${IPAM_SERVICE_NAME} in ${names}`);
    const file = await ask({ file_containing_symbol: 'netkeep.v1.IpPool' });
    assert.ok(file.file_descriptor_response.file_descriptor_proto.length > 0);
    client.close();
  });
});

describe('pools', () => {
  test('create, get, list, update (mask), delete', async () => {
    const created = await createPool({
      name: 'crud',
      labels: { team: 'net' },
      cidr: '10.70.0.0/24',
      gateway: '10.70.0.1',
      ranges: [{ start: '10.70.0.10', end: '10.70.0.19' }],
      reserved: [{ address: '10.70.0.11' }, { range: { start: '10.70.0.15', end: '10.70.0.16' } }],
      generation: 42, // output only: ignored
    });
    assert.equal(created.name, 'crud');
    assert.equal(created.generation, 1);
    assert.notEqual(created.etag, '');
    // Decoded oneofs carry the unset member as `undefined`: compare the JSON form.
    assert.deepEqual((IpPool.toJSON(created) as { reserved: unknown }).reserved, [{ address: '10.70.0.11' }, { range: { start: '10.70.0.15', end: '10.70.0.16' } }]);
    assert.deepEqual(created.ranges, [{ start: '10.70.0.10', end: '10.70.0.19' }]);
    assert.equal(created.status?.state, ResourceStatus_State.READY);
    assert.equal(created.status?.lastReconcileTime, undefined);
    assert.deepEqual([created.status?.total, created.status?.allocated, created.status?.free], ['7', '0', '7']);
    assert.deepEqual(await getPool('crud'), created);

    const dry = await createPool({ name: 'dry', cidr: '10.71.0.0/24' }, true);
    assert.equal(dry.name, 'dry');
    await fails(getPool('dry'), grpc.status.NOT_FOUND);

    const list = await call(ipam.listIpPools.bind(ipam), { pageSize: 0, pageToken: '' });
    assert.ok(list.ipPools.some((p) => p.name === 'crud'));

    const updated = await call(ipam.updateIpPool.bind(ipam), {
      ipPool: IpPool.fromPartial({ name: 'crud', gateway: '10.70.0.254', labels: { env: 'test' }, etag: created.etag }),
      updateMask: ['gateway', 'labels.env', 'labels.team'],
      validateOnly: false,
    });
    assert.equal(updated.gateway, '10.70.0.254');
    assert.deepEqual(updated.labels, { env: 'test' });
    assert.equal(updated.generation, 2);
    assert.deepEqual(updated.reserved, created.reserved, 'fields outside the mask are kept');

    await fails(
      call(ipam.updateIpPool.bind(ipam), {
        ipPool: IpPool.fromPartial({ name: 'crud', gateway: '10.70.0.2', etag: created.etag }),
        updateMask: ['gateway'],
        validateOnly: false,
      }),
      grpc.status.ABORTED,
    );
    const immutable = await fails(
      call(ipam.updateIpPool.bind(ipam), {
        ipPool: IpPool.fromPartial({ name: 'crud', cidr: '10.70.0.0/16' }),
        updateMask: ['cidr'],
        validateOnly: false,
      }),
      grpc.status.INVALID_ARGUMENT,
    );
    assert.ok(violations(immutable).some((v) => v.field === 'cidr'));
    const unknown = await fails(
      call(ipam.updateIpPool.bind(ipam), {
        ipPool: IpPool.fromPartial({ name: 'crud' }),
        updateMask: ['mtu'],
        validateOnly: false,
      }),
      grpc.status.INVALID_ARGUMENT,
    );
    assert.equal(violations(unknown)[0]?.field, 'update_mask');

    await deletePool('crud');
    await fails(getPool('crud'), grpc.status.NOT_FOUND);
  });

  test('an overlapping pool is ALREADY_EXISTS on cidr', async () => {
    await createPool({ name: 'big', cidr: '10.80.0.0/16' });
    const err = await fails(createPool({ name: 'small', cidr: '10.80.5.0/24' }), grpc.status.ALREADY_EXISTS, /overlaps/);
    assert.equal(violations(err)[0]?.field, 'cidr');
    await deletePool('big');
  });

  test('a bad cidr is INVALID_ARGUMENT naming the field', async () => {
    const err = await fails(createPool({ name: 'bad', cidr: '10.90.0.1/24' }), grpc.status.INVALID_ARGUMENT, /cidr/);
    assert.deepEqual(
      violations(err).map((v) => v.field),
      ['cidr'],
    );
    const malformed = await fails(createPool({ name: 'bad', cidr: 'not-a-cidr' }), grpc.status.INVALID_ARGUMENT);
    assert.equal(violations(malformed)[0]?.field, 'cidr');
    const entry = await fails(createPool({ name: 'bad', cidr: '10.90.0.0/24', reserved: [{}] }), grpc.status.INVALID_ARGUMENT);
    assert.equal(violations(entry)[0]?.field, 'reserved[0]');
    await fails(call(ipam.createIpPool.bind(ipam), { ipPool: undefined, validateOnly: false }), grpc.status.INVALID_ARGUMENT, /ip_pool/);
  });
});

describe('allocations', () => {
  test('next free, then RESOURCE_EXHAUSTED on a /30', async () => {
    await createPool({ name: 'tiny', cidr: '10.100.0.0/30' });
    const a = await allocate({ pool: 'tiny' });
    const b = await allocate({ pool: 'tiny' });
    assert.deepEqual([a.address, b.address].sort(), ['10.100.0.1', '10.100.0.2']);
    assert.equal(a.pool, 'tiny');
    assert.ok(a.createTime);
    await fails(allocate({ pool: 'tiny' }), grpc.status.RESOURCE_EXHAUSTED, /no free address/);
    assert.deepEqual([(await getPool('tiny')).status?.allocated, (await getPool('tiny')).status?.free], ['2', '0']);
    await fails(allocate({ pool: 'tiny', address: '10.100.0.3' }), grpc.status.INVALID_ARGUMENT, /broadcast/);
  });

  test('an explicit address already taken is ALREADY_EXISTS; the gateway FAILED_PRECONDITION', async () => {
    await createPool({ name: 'explicit', cidr: '10.101.0.0/24', gateway: '10.101.0.1' });
    const a = await allocate({ pool: 'explicit', address: '10.101.0.7', owner: 'x', labels: { k: 'v' } });
    assert.deepEqual([a.address, a.owner, a.labels], ['10.101.0.7', 'x', { k: 'v' }]);
    const taken = await fails(allocate({ pool: 'explicit', address: '10.101.0.7' }), grpc.status.ALREADY_EXISTS);
    assert.equal(violations(taken)[0]?.field, 'address');
    const gw = await fails(allocate({ pool: 'explicit', address: '10.101.0.1' }), grpc.status.FAILED_PRECONDITION, /gateway/);
    assert.equal(violations(gw)[0]?.field, 'address');
    await fails(allocate({ pool: 'nope' }), grpc.status.NOT_FOUND);
  });

  test('the same owner again gets the same allocation', async () => {
    await createPool({ name: 'idem', cidr: '10.102.0.0/24' });
    const first = await allocate({ pool: 'idem', owner: 'veths/web/b' });
    const again = await allocate({ pool: 'idem', owner: 'veths/web/b' });
    assert.deepEqual(again, first);
    const list = await call(ipam.listAllocations.bind(ipam), { pool: 'idem', pageSize: 0, pageToken: '' });
    assert.deepEqual(list.allocations, [first]);
    assert.equal(list.nextPageToken, '');
  });

  test('IPv6: allocate, get, release', async () => {
    await createPool({ name: 'six', cidr: 'fd00:100::/64', gateway: 'fd00:100::1' });
    const pool = await getPool('six');
    assert.equal(pool.status?.total, String((1n << 64n) - 2n));
    const a = await allocate({ pool: 'six', owner: 'ns/a' });
    assert.equal(a.address, 'fd00:100::2');
    const explicit = await allocate({ pool: 'six', address: 'FD00:100:0:0::ABCD' });
    assert.equal(explicit.address, 'fd00:100::abcd');
    assert.deepEqual(await call(ipam.getAllocation.bind(ipam), { pool: 'six', address: 'fd00:100::2' }), a);
    assert.deepEqual(await release('six', 'fd00:100::2'), {});
    await fails(call(ipam.getAllocation.bind(ipam), { pool: 'six', address: 'fd00:100::2' }), grpc.status.NOT_FOUND);
    await fails(release('six', 'fd00:100::2'), grpc.status.NOT_FOUND);
    const next = await allocate({ pool: 'six' });
    assert.equal(next.address, 'fd00:100::3', 'a just-released address is not reused at once');
  });

  test('deleting a pool with allocations is FAILED_PRECONDITION naming the owners', async () => {
    await createPool({ name: 'busy', cidr: '10.103.0.0/24' });
    const a = await allocate({ pool: 'busy', owner: 'bridges/br0' });
    await fails(deletePool('busy'), grpc.status.FAILED_PRECONDITION, /bridges\/br0/);
    await release('busy', a.address);
    await deletePool('busy');
    await fails(getPool('busy'), grpc.status.NOT_FOUND);
  });
});

describe('address_pools on bridges and veth ends', () => {
  test('create, show in status, change with an update mask, release on delete', async () => {
    const bridges = new BridgeServiceClient(address, creds);
    const veths = new VethServiceClient(address, creds);
    try {
      await createPool({ name: 'g-use', cidr: '10.39.0.0/24', gateway: '10.39.0.1' });
      await createPool({ name: 'g-use6', cidr: 'fd00:39::/64', gateway: 'fd00:39::1' });
      const br = await call(bridges.createBridge.bind(bridges), {
        bridge: Bridge.fromPartial({ name: 'g-br', addressPools: ['g-use'] }),
        validateOnly: false,
      });
      assert.deepEqual(br.status?.poolAddresses, [{ pool: 'g-use', address: '10.39.0.1/24' }]);

      const v = await call(veths.createVethPair.bind(veths), {
        vethPair: VethPair.fromPartial({ name: 'g-pod', a: { ifname: 'vh-g-pod', bridge: 'g-br' }, b: { ifname: 'vg-pod', addressPools: ['g-use'] } }),
        validateOnly: false,
      });
      assert.deepEqual(v.b?.addressPools, ['g-use']);
      assert.deepEqual(v.status?.b?.poolAddresses, [{ pool: 'g-use', address: '10.39.0.2/24' }]);

      const updated = await call(veths.updateVethPair.bind(veths), {
        vethPair: VethPair.fromPartial({ name: 'g-pod', b: { addressPools: ['g-use', 'g-use6'] } }),
        updateMask: ['b.address_pools'],
        validateOnly: false,
      });
      assert.deepEqual(updated.status?.b?.poolAddresses, [
        { pool: 'g-use', address: '10.39.0.2/24' },
        { pool: 'g-use6', address: 'fd00:39::2/64' },
      ]);

      const stillUsed = await fails(release('g-use', '10.39.0.2'), grpc.status.FAILED_PRECONDITION, /veths\/g-pod/);
      assert.ok(stillUsed.details.includes('change or delete veths/g-pod'));
      await fails(
        call(bridges.createBridge.bind(bridges), { bridge: Bridge.fromPartial({ name: 'g-br2', addressPools: ['g-ghost'] }), validateOnly: false }),
        grpc.status.NOT_FOUND,
      );

      await call(veths.deleteVethPair.bind(veths), { name: 'g-pod', etag: '' });
      const left = await call(ipam.listAllocations.bind(ipam), { pool: 'g-use6', pageSize: 0, pageToken: '' });
      assert.deepEqual(left.allocations, []);
      await call(bridges.deleteBridge.bind(bridges), { name: 'g-br', etag: '' });
    } finally {
      bridges.close();
      veths.close();
    }
  });
});
