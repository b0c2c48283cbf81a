/**
 * bench/loadbalancers: N load balancers (default 10,000), 10 backends each,
 * programmed into netkeep's `inet netkeep` table of one namespace. Prints:
 *
 * 1. Programming, through the reconciler's LoadBalancerSync with a real
 *    store and nft, as a pass of the daemon does it: the time of the first
 *    pass (render, one `nft -f -`, then the whole listing it learns the
 *    kernel's form from), with the script's size; the time of one backend
 *    change of one load balancer once all exist (the verdict-map digest, an
 *    incremental `nft -f -`, the digest again); the time of a pass with
 *    nothing changed; and of one with the periodic whole-table drift check
 *    (--nft-check-interval).
 * 2. Connection set-up: the median time of a TCP connect to the first and to
 *    the last VIP, DNATed by netkeep's nat-output chain (one verdict-map
 *    lookup), next to the same services written as one linear chain of plain
 *    DNAT rules (iptables style, one rule per service, first backend only),
 *    measured in the same run, with the ratios.
 *
 *   sudo npm run bench:lb [-- --count N]
 *   sudo npm run bench:lb -- --count 10000 --connects 200 --wait
 *
 * NftCliClient gives one nft process 300 s; a step that hits it is reported
 * as timed out, and what depends on it is skipped. With --wait, a timed-out
 * full program is applied again by plain `nft -f -` without a limit, so
 * that the connection set-up through netkeep's table can still be measured.
 *
 * Runs inside its own `unshare --net --mount` sandbox; the host is untouched.
 * No packet leaves the sandbox's namespace: `10.0.0.0/8` is made local on
 * `lo` (an AnyIP route), one TCP server listens on 0.0.0.0:8080, and the
 * client connects to VIP:80 from the same namespace, so the output hook
 * DNATs every SYN to a local backend. VIPs come from 10.96.0.0/12, backends
 * from 10.1.0.0/16 … 10.10.0.0/16. Not a test: it gates nothing.
 */
import { execa } from 'execa';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { LoadBalancer } from '../src/domain/types.js';
import { FULL_CHECK_INTERVAL_MS, LoadBalancerSync } from '../src/reconcile/loadbalancers.js';
import { openStore } from '../src/store/index.js';
import { createServer, connect, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ExecTimeoutError } from '../src/kernel/errors.js';
import { NftCliClient } from '../src/kernel/nft/client.js';
import { NFT_TABLE } from '../src/kernel/nft/types.js';
import { renderTable, type DesiredServicePort } from '../src/reconcile/nft.js';
import { inSandbox, prepareSandbox, reexecInSandbox } from '../scripts/unshare.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '10000' },
    connects: { type: 'string', default: '200' },
    wait: { type: 'boolean', default: false },
  },
});
const N = Number(values.count);
const CONNECTS = Number(values.connects);
const BACKENDS = 10;
const VIP_PORT = 80;
const BACKEND_PORT = 8080;
/** Backend i of a load balancer is 10.(1+i).x.y, so at most 2^16 - 2 load balancers (no .0.0). */
const MAX_COUNT = 65_534;

if (!Number.isInteger(N) || N < 2 || N > MAX_COUNT) {
  process.stderr.write(`--count must be an integer in 2..${MAX_COUNT}\n`);
  process.exit(2);
}
if (!Number.isInteger(CONNECTS) || CONNECTS < 1) {
  process.stderr.write('--connects must be a positive integer\n');
  process.exit(2);
}

/** The dotted quad of a 32-bit address. */
const quad = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

/** The VIP of load balancer i: 10.96.0.0/12, from 10.96.0.1 on. */
const vipOf = (i: number) => quad(((10 << 24) | (96 << 16)) + i + 1);

/** Backend b (0-based) of load balancer i: 10.(1+b).0.0/16, from .0.1 on, unique across load balancers. */
const backendOf = (i: number, b: number) => quad(((10 << 24) | ((1 + b) << 16)) + i + 1);

/** Zero-padded names keep renderTable's (lexical) order equal to index order. */
const nameOf = (i: number) => `lb${String(i).padStart(5, '0')}`;

/** The daemon's default --nft-check-interval, in ms. */
const FULL_CHECK_MS = FULL_CHECK_INTERVAL_MS;

/** The LoadBalancer resource a service port of this benchmark comes from (port 80 → each backend's 8080). */
function resourceOf(s: DesiredServicePort): LoadBalancer {
  const time = new Date(0).toISOString();
  return {
    kind: 'loadbalancers',
    name: s.name,
    labels: {},
    spec: {
      namespace: '',
      vip: s.vip,
      vipPool: '',
      ports: [{ name: '', protocol: 'TCP', port: VIP_PORT, targetPort: BACKEND_PORT }],
      backends: s.backends.map((b) => ({ address: b.address, port: 0, weight: 1 })),
      algorithm: 'RANDOM',
      sessionAffinity: {},
      sourceRanges: [],
    },
    generation: 1,
    etag: '',
    createTime: time,
    updateTime: time,
    status: { state: 'PENDING', message: '', observedGeneration: 0, lastReconcileTime: '', vip: '', backends: [] },
  };
}

function loadBalancer(i: number, backends: string[]): DesiredServicePort {
  const name = nameOf(i);
  return {
    owner: `loadbalancers/${name}`,
    name,
    family: 4,
    vip: vipOf(i),
    protocol: 'TCP',
    port: VIP_PORT,
    backends: backends.map((address) => ({ address, port: BACKEND_PORT, weight: 1 })),
    algorithm: 'RANDOM',
    affinitySeconds: 0,
    sourceRanges: [],
  };
}

const services = Array.from({ length: N }, (_, i) => loadBalancer(i, Array.from({ length: BACKENDS }, (_, b) => backendOf(i, b))));

/** The baseline: one rule per service in one chain, evaluated top to bottom. */
function renderLinear(): string {
  const rules = services.map((s) => `\t\tip daddr ${s.vip} tcp dport ${VIP_PORT} dnat to ${s.backends[0]!.address}:${BACKEND_PORT}`);
  return ['table ip linear {', '\tchain pre {', '\t\ttype nat hook output priority -100; policy accept;', ...rules, '\t}', '}', ''].join('\n');
}

async function nft(script: string): Promise<void> {
  await execa('nft', ['-f', '-'], { input: script });
}

async function time<T>(fn: () => T | Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const value = await fn();
  return [value, performance.now() - started];
}

/** Milliseconds from connect() to the handshake's completion; the socket is then reset (no TIME_WAIT). */
function connectOnce(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = connect({ host, port: VIP_PORT });
    socket.once('connect', () => {
      const ms = performance.now() - started;
      socket.resetAndDestroy();
      resolve(ms);
    });
    socket.once('error', (err) => reject(new Error(`connect ${host}:${VIP_PORT}: ${err.message}`)));
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** Median connect time to the first and the last VIP, interleaved so drift hits both alike. */
async function measureConnects(): Promise<{ first: number; last: number }> {
  const first: number[] = [];
  const last: number[] = [];
  const WARM_UP = 20;
  for (let i = -WARM_UP; i < CONNECTS; i++) {
    const toFirst = await connectOnce(vipOf(0));
    const toLast = await connectOnce(vipOf(N - 1));
    if (i < 0) continue;
    first.push(toFirst);
    last.push(toLast);
  }
  return { first: median(first), last: median(last) };
}

/** Every address of 10.0.0.0/8 local (AnyIP on lo), so each backend accepts on 0.0.0.0:8080. */
async function prepareAddresses(): Promise<Server> {
  await execa('ip', ['route', 'add', 'local', '10.0.0.0/8', 'dev', 'lo']);
  const server = createServer((socket) => {
    socket.on('error', () => {}); // the client resets every connection
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(BACKEND_PORT, '0.0.0.0', resolve));
  return server;
}

const us = (ms: number) => `${(ms * 1000).toFixed(0)} µs`;
const msf = (ms: number) => `${ms.toFixed(0)} ms`;
const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

/** What a step took, or why it did not finish. */
type Outcome = { ms: number } | { failed: string };

/** A pass that left a load balancer not READY (nft failed or timed out: LoadBalancerSync says which in the message). */
class PassFailed extends Error {}

/** Runs a step that may fail or hit NftCliClient's exec limit (300 s): that is a result here, not a crash. */
async function attempt(fn: () => Promise<unknown>): Promise<Outcome> {
  const started = performance.now();
  try {
    await fn();
    return { ms: performance.now() - started };
  } catch (err) {
    if (err instanceof ExecTimeoutError) return { failed: `timed out after ${err.timeoutMs / 1000} s (NftCliClient's exec limit)` };
    if (err instanceof PassFailed) return { failed: `failed: ${err.message.slice(0, 200)}` };
    throw err;
  }
}

const shown = (o: Outcome) => ('ms' in o ? msf(o.ms) : o.failed);

/** True when a connect to VIP:80 is DNATed to a backend (nothing listens on :80, so a miss is refused). */
async function dnats(vip: string): Promise<boolean> {
  return connectOnce(vip).then(
    () => true,
    () => false,
  );
}

if (!inSandbox()) {
  await reexecInSandbox(fileURLToPath(import.meta.url), 'bench/loadbalancers');
} else {
  await prepareSandbox();
  const server = await prepareAddresses();
  const client = new NftCliClient();
  const rows: Array<[string, string]> = [];
  const row = (label: string, value = '') => rows.push([label, value]);

  // 1. Program every load balancer at once, as the first pass of the daemon does.
  const stateDir = mkdtempSync(join(tmpdir(), 'netkeep-bench-'));
  const store = openStore(join(stateDir, 'netkeep.db'));
  let now = 0;
  const sync = new LoadBalancerSync(store, client, pino({ level: 'silent' }), { fullCheckMs: FULL_CHECK_MS, clock: () => now });
  const vips = new Map(services.map((s) => [s.name, s.vip]));
  const pass = async (lbs: LoadBalancer[]) => {
    const { outcomes } = await sync.sync(lbs, vips, () => true);
    const failed = [...outcomes.values()].find((o) => o.state !== 'READY');
    if (failed) throw new PassFailed(failed.message);
  };
  const script = renderTable(services);
  row(`programming ${N} load balancers × ${BACKENDS} backends`);
  row('  script size', `${mib(Buffer.byteLength(script))} (${script.split('\n').length - 1} lines)`);
  const [, renderMs] = await time(() => renderTable(services));
  row('  renderTable', msf(renderMs));
  const lbs = services.map(resourceOf);
  const program = await attempt(() => pass(lbs));
  row('  first pass (write + learn the listing)', shown(program));
  if (!('ms' in program) && values.wait) {
    // The same script by nft(8) without a time limit, so the data plane can still be measured.
    const [, untimedMs] = await time(() => nft(script));
    row('  nft -f - (same script, no time limit)', msf(untimedMs));
  }

  // …then change one backend of one load balancer.
  const changed = Math.floor(N / 2);
  row(`one backend change of ${nameOf(changed)}`);
  if ('ms' in program) {
    const backends = services[changed]!.backends.map((b) => b.address);
    backends[BACKENDS - 1] = quad(((10 << 24) | (11 << 16)) + changed + 1);
    const updated = lbs.map((lb, i) => (i === changed ? resourceOf(loadBalancer(i, backends)) : lb));
    const change = await attempt(() => pass(updated));
    row('  pass (digest, incremental nft -f, digest)', shown(change));
    if ('ms' in change) row('  change / first pass', `${(change.ms / program.ms).toFixed(3)}x`);
    const idle = await attempt(() => pass(updated));
    row('  pass with nothing changed', shown(idle));
    now += FULL_CHECK_MS;
    const check = await attempt(() => pass(updated));
    row(`  pass with the whole-table check (every ${FULL_CHECK_MS / 1000} s)`, shown(check));
  } else {
    row('  skipped', 'the first pass did not finish');
  }
  store.close();
  rmSync(stateDir, { recursive: true, force: true });

  // 2. Connection set-up through netkeep's verdict map (if the table made it into the kernel)…
  row(`connection set-up, median of ${CONNECTS} connects`);
  const netkeep = (await dnats(vipOf(0))) && (await dnats(vipOf(N - 1))) ? await measureConnects() : undefined;
  if (netkeep) {
    row('  netkeep (verdict map), first VIP', us(netkeep.first));
    row(`  netkeep (verdict map), VIP #${N}`, us(netkeep.last));
  } else {
    row('  netkeep (verdict map)', 'skipped: the table is not in the kernel');
  }

  // …and through a linear chain of DNAT rules, netkeep's table gone (`add` first: deleting a missing table fails).
  await nft(`add table ${NFT_TABLE}\ndelete table ${NFT_TABLE}\n`);
  const [, linearInstallMs] = await time(() => nft(renderLinear()));
  const linear = await measureConnects();
  await nft('delete table ip linear\n');
  server.close();
  row(`  linear chain (${N} rules, install ${msf(linearInstallMs)}), first VIP`, us(linear.first));
  row(`  linear chain, VIP #${N}`, us(linear.last));
  if (netkeep) row('  netkeep last / first', `${(netkeep.last / netkeep.first).toFixed(2)}x`);
  row('  linear last / first', `${(linear.last / linear.first).toFixed(2)}x`);
  if (netkeep) row(`  netkeep / linear at VIP #${N}`, `${(netkeep.last / linear.last).toFixed(2)}x`);

  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  console.log('bench/loadbalancers');
  for (const [k, v] of rows) console.log(v ? `${k.padEnd(width)}${v}` : k);
}
