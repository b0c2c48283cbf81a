/**
 * The netkeep quickstart with the typed REST client (clients/): the same
 * topology as examples/quickstart.sh.
 *
 *   npx tsx examples/quickstart-client.ts up     create, wait for READY, ping blue → red
 *   npx tsx examples/quickstart-client.ts down   delete everything again
 *
 * NETKEEP_REST_SOCKET: the daemon's REST socket (default var/rest.sock).
 */
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { createNetkeepClient, unwrap, type NetkeepClient } from '../clients/netkeep-client.js';

const socketPath = process.env.NETKEEP_REST_SOCKET ?? 'var/rest.sock';
if (!existsSync(socketPath)) {
  console.error(`no netkeepd socket at ${socketPath}: start the daemon (npm start), or set NETKEEP_REST_SOCKET`);
  process.exit(1);
}
const nk: NetkeepClient = createNetkeepClient({ socketPath });

const namespaces = ['blue', 'red'] as const;
const hostAddress = { blue: '10.50.0.2/24', red: '10.50.0.3/24' };

/** Polls a resource until its status is READY (10 s at most); throws with its message if FAILED. */
async function waitReady(get: () => Promise<{ status?: { state?: string; message?: string } }>, what: string) {
  for (let i = 0; i < 100; i++) {
    const r = await get();
    if (r.status?.state === 'READY') return console.log(`${what} READY`);
    if (r.status?.state === 'FAILED') throw new Error(`${what} FAILED: ${r.status.message}`);
    await new Promise((done) => setTimeout(done, 100));
  }
  throw new Error(`${what} is not READY after 10 s`);
}

async function up(): Promise<void> {
  for (const ns of namespaces) unwrap(await nk.POST('/v1/namespaces', { body: { name: ns } }));
  unwrap(await nk.POST('/v1/bridges', { body: { name: 'br0', addresses: ['10.50.0.1/24'] } }));
  for (const ns of namespaces) {
    unwrap(
      await nk.POST('/v1/veths', {
        body: {
          name: ns,
          a: { ifname: `vh-${ns}`, bridge: 'br0' },
          b: { ifname: 'eth0', namespace: ns, addresses: [hostAddress[ns]] },
        },
      }),
    );
    unwrap(await nk.POST('/v1/routes', { body: { name: `${ns}-default`, namespace: ns, destination: 'default', via: '10.50.0.1' } }));
  }
  for (const ns of namespaces) {
    await waitReady(async () => unwrap(await nk.GET('/v1/namespaces/{name}', { params: { path: { name: ns } } })), `namespaces/${ns}`);
    await waitReady(async () => unwrap(await nk.GET('/v1/veths/{name}', { params: { path: { name: ns } } })), `veths/${ns}`);
    await waitReady(
      async () => unwrap(await nk.GET('/v1/routes/{name}', { params: { path: { name: `${ns}-default` } } })),
      `routes/${ns}-default`,
    );
  }
  await waitReady(async () => unwrap(await nk.GET('/v1/bridges/{name}', { params: { path: { name: 'br0' } } })), 'bridges/br0');
  await execa('ip', ['netns', 'exec', 'blue', 'ping', '-c', '1', '-W', '2', '10.50.0.3']);
  console.log('ping blue → red (10.50.0.3) across br0: ok');
}

/** A DELETE's answer, where 404 (already gone) is fine: a half-finished down can be run again. */
function removed(r: { data?: unknown; error?: unknown; response: Response }): void {
  if (r.response.status !== 404) unwrap(r);
}

async function down(): Promise<void> {
  for (const ns of namespaces) {
    removed(await nk.DELETE('/v1/routes/{name}', { params: { path: { name: `${ns}-default` } } }));
    removed(await nk.DELETE('/v1/veths/{name}', { params: { path: { name: ns } } }));
  }
  removed(await nk.DELETE('/v1/bridges/{name}', { params: { path: { name: 'br0' } } }));
  for (const ns of namespaces) removed(await nk.DELETE('/v1/namespaces/{name}', { params: { path: { name: ns } } }));
  console.log('deleted everything');
}

const command = process.argv[2];
try {
  if (command === 'up') await up();
  else if (command === 'down') await down();
  else {
    console.error('usage: quickstart-client.ts up|down');
    process.exitCode = 2;
  }
} catch (err) {
  // The API's answer (NetkeepApiError) or a failed ping: a message, not a stack trace.
  console.error(`quickstart-client.ts ${command}: ${(err as Error).message}`);
  process.exitCode = 1;
} finally {
  await nk.close();
}
