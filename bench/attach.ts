/**
 * bench/attach: N namespaces (default 200), each joined to one bridge by a
 * veth pair with an address, created through the REST API of a netkeepd
 * running in a sandbox; prints the time until every resource is READY, next
 * to the time of one hand-written `ip -batch` script (host batch, then one
 * `ip -n <ns> -batch` per namespace) that builds the same topology, measured
 * in the same run, as a ratio. Not a test: it gates nothing.
 *
 *   npm run bench:attach [-- --count 200]
 *
 * Runs inside its own `unshare --net --mount` sandbox; the host is untouched.
 */
import { execa } from 'execa';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { Agent, request } from 'undici';
import { loadConfig } from '../src/config.js';
import { startDaemon } from '../src/main.js';
import { inSandbox, prepareSandbox, reexecInSandbox } from '../scripts/unshare.js';

const { values } = parseArgs({ options: { count: { type: 'string', default: '200' } } });
const N = Number(values.count);

/** The address of namespace i on the 10.64.0.0/16 bench segment. */
const addressOf = (i: number) => `10.64.${Math.floor((i + 2) / 256)}.${(i + 2) % 256}/16`;

async function ipBatch(netns: string, lines: string[]): Promise<void> {
  await execa('ip', [...(netns ? ['-n', netns] : []), '-batch', '-'], { input: lines.join('\n') + '\n' });
}

/** The baseline: the same topology with hand-written ip -batch scripts. */
async function baseline(): Promise<number> {
  const started = performance.now();
  const host = ['link add brbench type bridge', 'link set brbench up', 'addr add 10.64.0.1/16 dev brbench'];
  for (let i = 0; i < N; i++) {
    host.push(`netns add bench${i}`, `link add vb${i} type veth peer name eth0 netns bench${i}`, `link set vb${i} master brbench up`);
  }
  await ipBatch('', host);
  for (let i = 0; i < N; i++) {
    await ipBatch(`bench${i}`, ['link set lo up', 'link set eth0 up', `addr add ${addressOf(i)} dev eth0`]);
  }
  const ms = performance.now() - started;
  // Tear down so netkeep starts from the same empty kernel.
  await ipBatch('', ['link del brbench', ...Array.from({ length: N }, (_, i) => `netns del bench${i}`)]);
  return ms;
}

async function viaNetkeep(): Promise<number> {
  const stateDir = mkdtempSync(join(tmpdir(), 'netkeep-bench-'));
  const config = loadConfig([], { NETKEEP_STATE_DIR: stateDir, NETKEEP_LOG_LEVEL: 'warn' });
  if (config === 'help') throw new Error('unreachable');
  const daemon = await startDaemon(config, { logger: pino({ level: 'warn' }) });
  const dispatcher = new Agent({ connect: { socketPath: config.restListen.slice('unix:'.length) }, connections: 16 });
  const call = async (method: 'POST' | 'GET', path: string, body?: unknown) => {
    const res = await request(`http://netkeep${path}`, {
      method,
      dispatcher,
      headers: { 'content-type': 'application/json' },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const json = (await res.body.json()) as Record<string, unknown>;
    if (res.statusCode >= 400) throw new Error(`${method} ${path}: ${res.statusCode} ${JSON.stringify(json)}`);
    return json;
  };
  try {
    const started = performance.now();
    await call('POST', '/v1/bridges', { name: 'brbench', addresses: ['10.64.0.1/16'] });
    const CONCURRENCY = 16;
    for (let i = 0; i < N; i += CONCURRENCY) {
      await Promise.all(
        Array.from({ length: Math.min(CONCURRENCY, N - i) }, async (_, k) => {
          const n = i + k;
          await call('POST', '/v1/namespaces', { name: `bench${n}` });
          await call('POST', '/v1/veths', {
            name: `bench${n}`,
            a: { ifname: `vb${n}`, bridge: 'brbench' },
            b: { ifname: 'eth0', namespace: `bench${n}`, addresses: [addressOf(n)] },
          });
        }),
      );
    }
    for (;;) {
      let pending = 0;
      for (const kind of ['namespaces', 'veths', 'bridges']) {
        let token = '';
        do {
          const page = await call('GET', `/v1/${kind}?pageSize=1000${token ? `&pageToken=${token}` : ''}`);
          for (const item of page.items as { status: { state: string; message: string } }[]) {
            if (item.status.state === 'FAILED') throw new Error(`FAILED: ${item.status.message}`);
            if (item.status.state !== 'READY') pending++;
          }
          token = page.nextPageToken as string;
        } while (token);
      }
      if (pending === 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    return performance.now() - started;
  } finally {
    await dispatcher.close();
    await daemon.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

if (!inSandbox()) {
  await reexecInSandbox(fileURLToPath(import.meta.url), 'bench/attach');
} else {
  await prepareSandbox();
  const base = await baseline();
  const ours = await viaNetkeep();
  console.log(`bench/attach: ${N} namespaces, each on one bridge by a veth with an address`);
  console.log(`  hand-written ip -batch:          ${base.toFixed(0)} ms`);
  console.log(`  netkeep (REST → all READY):      ${ours.toFixed(0)} ms`);
  console.log(`  ratio netkeep / ip -batch:       ${(ours / base).toFixed(2)}x`);
}
