/**
 * The netkeep quickstart over gRPC with the generated ts-proto clients
 * (src/gen/): the same topology as examples/quickstart.sh.
 *
 *   npx tsx examples/quickstart-grpc.ts up     create, wait for READY, ping blue → red
 *   npx tsx examples/quickstart-grpc.ts down   delete everything again
 *
 * NETKEEP_GRPC_SOCKET: the daemon's gRPC socket (default var/grpc.sock).
 */
import { credentials, status, type ServiceError } from '@grpc/grpc-js';
import { execa } from 'execa';
import { resolve } from 'node:path';
import { BridgeServiceClient, CreateBridgeRequest } from '../src/gen/netkeep/v1/bridge.js';
import { CreateNamespaceRequest, NamespaceServiceClient } from '../src/gen/netkeep/v1/namespace.js';
import { CreateRouteRequest, RouteServiceClient } from '../src/gen/netkeep/v1/route.js';
import { CreateVethPairRequest, VethServiceClient } from '../src/gen/netkeep/v1/veth.js';

const target = `unix:${resolve(process.env.NETKEEP_GRPC_SOCKET ?? 'var/grpc.sock')}`;
const creds = credentials.createInsecure();
const clients = {
  namespaces: new NamespaceServiceClient(target, creds),
  bridges: new BridgeServiceClient(target, creds),
  veths: new VethServiceClient(target, creds),
  routes: new RouteServiceClient(target, creds),
};

/** Calls a unary grpc-js client method and resolves with its response. */
function unary<Req, Res>(
  client: object,
  method: (req: Req, cb: (err: ServiceError | null, res: Res) => void) => unknown,
  request: Req,
): Promise<Res> {
  return new Promise((done, fail) => method.call(client, request, (err, res) => (err ? fail(err) : done(res))));
}

type WithStatus = { status?: { state: string; message: string } | undefined };

async function waitReady(get: () => Promise<WithStatus>, what: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = await get();
    if (r.status?.state === 'READY') return console.log(`${what} READY`);
    if (r.status?.state === 'FAILED') throw new Error(`${what} FAILED: ${r.status.message}`);
    await new Promise((d) => setTimeout(d, 100));
  }
  throw new Error(`${what} is not READY after 10 s`);
}

const namespaces = ['blue', 'red'] as const;
const hostAddress = { blue: '10.50.0.2/24', red: '10.50.0.3/24' };
const { namespaces: nsc, bridges: brc, veths: vc, routes: rc } = clients;

async function up(): Promise<void> {
  for (const name of namespaces) {
    await unary(nsc, nsc.createNamespace, CreateNamespaceRequest.fromPartial({ namespace: { name } }));
  }
  await unary(brc, brc.createBridge, CreateBridgeRequest.fromPartial({ bridge: { name: 'br0', addresses: ['10.50.0.1/24'] } }));
  for (const ns of namespaces) {
    await unary(
      vc,
      vc.createVethPair,
      CreateVethPairRequest.fromPartial({
        vethPair: {
          name: ns,
          a: { ifname: `vh-${ns}`, bridge: 'br0' },
          b: { ifname: 'eth0', namespace: ns, addresses: [hostAddress[ns]] },
        },
      }),
    );
    await unary(
      rc,
      rc.createRoute,
      CreateRouteRequest.fromPartial({ route: { name: `${ns}-default`, namespace: ns, destination: 'default', via: '10.50.0.1' } }),
    );
  }
  for (const name of namespaces) {
    await waitReady(() => unary(nsc, nsc.getNamespace, { name }), `namespaces/${name}`);
    await waitReady(() => unary(vc, vc.getVethPair, { name }), `veths/${name}`);
    await waitReady(() => unary(rc, rc.getRoute, { name: `${name}-default` }), `routes/${name}-default`);
  }
  await waitReady(() => unary(brc, brc.getBridge, { name: 'br0' }), 'bridges/br0');
  await execa('ip', ['netns', 'exec', 'blue', 'ping', '-c', '1', '-W', '2', '10.50.0.3']);
  console.log('ping blue → red (10.50.0.3) across br0: ok');
}

/** A delete, where NOT_FOUND (already gone) is fine: a half-finished down can be run again. */
async function removed(call: Promise<unknown>): Promise<void> {
  await call.catch((err: ServiceError) => {
    if (err.code !== status.NOT_FOUND) throw err;
  });
}

async function down(): Promise<void> {
  for (const ns of namespaces) {
    await removed(unary(rc, rc.deleteRoute, { name: `${ns}-default`, etag: '' }));
    await removed(unary(vc, vc.deleteVethPair, { name: ns, etag: '' }));
  }
  await removed(unary(brc, brc.deleteBridge, { name: 'br0', etag: '' }));
  for (const name of namespaces) await removed(unary(nsc, nsc.deleteNamespace, { name, etag: '' }));
  console.log('deleted everything');
}

const command = process.argv[2];
try {
  if (command === 'up') await up();
  else if (command === 'down') await down();
  else {
    console.error('usage: quickstart-grpc.ts up|down');
    process.exitCode = 2;
  }
} catch (err) {
  // A gRPC status (code and details) or a failed ping: a message, not a stack trace.
  console.error(`quickstart-grpc.ts ${command}: ${(err as Error).message}`);
  process.exitCode = 1;
} finally {
  for (const c of Object.values(clients)) c.close();
}
