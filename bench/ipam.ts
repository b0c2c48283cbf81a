/**
 * bench/ipam: what an IPAM allocation costs. Not a test: it gates nothing.
 *
 * 1. Throughput: N allocations (default 5000), each for a distinct owner,
 *    into a pool of its own (10.80-82.0.0/16) of one netkeepd, through REST
 *    (POST /v1/pools/{pool}/allocations over the unix socket), through gRPC
 *    (IpamService.Allocate, generated client), both with 16 requests in
 *    flight, and in-process (IpamService.allocate on the daemon's store, no
 *    transport, one at a time since it is synchronous).
 *
 * 2. Size against allocations: a /64 (fd00:90::/64) pre-filled with 100,000
 *    allocations, next to a /24 (10.90.0.0/24) pre-filled with 50, so that
 *    the 200 measured allocations still fit (250 of its 254 hosts). Each is
 *    filled through IpamService (an owner per allocation), in big
 *    transactions, straight into the store of a fresh state directory; then
 *    a daemon is started over it in a child process of its own (run with
 *    --expose-gc), so that its memory is that of a daemon holding just that
 *    pool and none of the filling's garbage. The child times 200 single REST
 *    allocations, one at a time, and reports their median and p99 and its
 *    memory (RSS and heap used, after a gc). A /64 should cost in proportion
 *    to its allocations, not its size: the ratios /64 : /24 should be near 1.
 *
 * Every path is warmed up with validateOnly allocations before it is timed.
 *
 *   npm run bench:ipam [-- --count 5000]
 *
 * Runs inside its own `unshare --net --mount` sandbox (the daemon's
 * reconciler lists the kernel's state); the host is untouched. `--measure
 * STATE_DIR --pool NAME` is the child's mode, internal to this file.
 */
import * as grpc from '@grpc/grpc-js';
import { execa } from 'execa';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pino, type Logger } from 'pino';
import { Agent, request } from 'undici';
import { inSandbox, prepareSandbox, reexecInSandbox } from '../scripts/unshare.js';
import { loadConfig } from '../src/config.js';
import { IpamServiceClient } from '../src/gen/netkeep/v1/ipam.js';
import { startDaemon } from '../src/main.js';
import { IpamService } from '../src/service/ipam.js';
import { openStore } from '../src/store/index.js';
import { call } from '../test/support/grpc.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '5000' },
    measure: { type: 'string' },
    pool: { type: 'string' },
  },
});
const N = Number(values.count);
if (!Number.isInteger(N) || N < 1 || N > 65_000) {
  process.stderr.write('bench/ipam: --count must be an integer from 1 to 65000 (the pools are /16s)\n');
  process.exit(2);
}

const CONCURRENCY = 16;
/** validateOnly allocations before each timed series: JIT, schema compilation, connections. */
const WARMUP = 50;
/** Single allocations timed per pool in part 2. */
const MEASURED = 200;
/** Allocations per transaction when pre-filling. */
const FILL_BATCH = 10_000;

/** Part 2's pools; the /64 is first in every ratio. */
const SIZED = [
  { pool: 'bench-64', cidr: 'fd00:90::/64', prefill: 100_000 },
  { pool: 'bench-24', cidr: '10.90.0.0/24', prefill: 50 },
] as const;

/** What the child reports for one pool. */
interface Figures {
  rssBytes: number;
  /** Undefined when the child had no gc to call, so heap used would be noise. */
  heapUsedBytes?: number;
  medianMs: number;
  p99Ms: number;
}

/** A netkeepd in this process, on the unix sockets of `stateDir`. */
async function startBenchDaemon(stateDir: string, logger: Logger = pino({ level: 'warn' })) {
  const config = loadConfig([], { NETKEEP_STATE_DIR: stateDir });
  if (config === 'help') throw new Error('unreachable');
  const daemon = await startDaemon(config, { logger });
  return { daemon, config, restSocket: config.restListen.slice('unix:'.length) };
}

/** JSON requests over a unix socket; throws on an error status. */
function restClient(socketPath: string, connections: number) {
  const dispatcher = new Agent({ connect: { socketPath }, connections });
  return {
    async send(method: 'GET' | 'POST', path: string, body?: unknown): Promise<Record<string, unknown>> {
      const res = await request(`http://netkeep${path}`, {
        method,
        dispatcher,
        headers: { 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const json = (await res.body.json()) as Record<string, unknown>;
      if (res.statusCode >= 400) throw new Error(`${method} ${path}: ${res.statusCode} ${JSON.stringify(json)}`);
      return json;
    },
    close: () => dispatcher.close(),
  };
}

/** Runs task(0) … task(n-1) with `concurrency` in flight; resolves with the elapsed milliseconds. */
async function timeConcurrent(n: number, concurrency: number, task: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const worker = async () => {
    while (next < n) await task(next++);
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  return performance.now() - started;
}

/** The nearest-rank percentile `p` (0-1] of `samples`. */
function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!;
}

// --- part 1: throughput ---------------------------------------------------------

interface Transport {
  name: string;
  pool: string;
  cidr: string;
  concurrency: number;
  allocate(pool: string, owner: string, validateOnly: boolean): Promise<unknown>;
}

/** Allocations per second of each transport, measured on one daemon. */
async function throughput(): Promise<{ transport: Transport; perSecond: number }[]> {
  const stateDir = mkdtempSync(join(tmpdir(), 'netkeep-bench-ipam-'));
  const { daemon, config, restSocket } = await startBenchDaemon(stateDir);
  const rest = restClient(restSocket, CONCURRENCY);
  const grpcClient = new IpamServiceClient(config.grpcListen, grpc.credentials.createInsecure());
  const ipam = daemon.services.ipam;
  const transports: Transport[] = [
    {
      name: 'REST',
      pool: 'bench-rest',
      cidr: '10.80.0.0/16',
      concurrency: CONCURRENCY,
      allocate: (pool, owner, validateOnly) =>
        rest.send('POST', `/v1/pools/${pool}/allocations${validateOnly ? '?validateOnly=true' : ''}`, { owner }),
    },
    {
      name: 'gRPC',
      pool: 'bench-grpc',
      cidr: '10.81.0.0/16',
      concurrency: CONCURRENCY,
      allocate: (pool, owner, validateOnly) =>
        call(grpcClient.allocate.bind(grpcClient), { pool, address: '', owner, labels: {}, validateOnly }),
    },
    {
      name: 'in-process',
      pool: 'bench-local',
      cidr: '10.82.0.0/16',
      concurrency: 1,
      allocate: async (pool, owner, validateOnly) => ipam.allocate(pool, { owner }, { validateOnly }),
    },
  ];
  try {
    const results = [];
    for (const t of transports) {
      ipam.createPool({ name: t.pool, cidr: t.cidr });
      await timeConcurrent(WARMUP, t.concurrency, (i) => t.allocate(t.pool, `bench/warmup/${i}`, true));
      const ms = await timeConcurrent(N, t.concurrency, (i) => t.allocate(t.pool, `bench/${t.name}/${i}`, false));
      results.push({ transport: t, perSecond: (N / ms) * 1000 });
    }
    return results;
  } finally {
    grpcClient.close();
    await rest.close();
    await daemon.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

// --- part 2: a /64 against a /24 -----------------------------------------------

/**
 * Creates the pool and `prefill` allocations in it, each for an owner of its
 * own (like a pool full of veth ends), FILL_BATCH per transaction, in the
 * store at `dbPath`.
 */
function prefill(dbPath: string, s: (typeof SIZED)[number]): void {
  const store = openStore(dbPath);
  try {
    const ipam = new IpamService(store);
    ipam.createPool({ name: s.pool, cidr: s.cidr });
    for (let from = 0; from < s.prefill; from += FILL_BATCH) {
      store.transaction(() => {
        for (let i = from; i < Math.min(from + FILL_BATCH, s.prefill); i++) ipam.allocate(s.pool, { owner: `bench/fill/${i}` });
      });
    }
  } finally {
    store.close();
  }
}

/** Fills a fresh state directory with `s`, then measures a daemon over it in a child process. */
async function sized(s: (typeof SIZED)[number]): Promise<Figures> {
  const stateDir = mkdtempSync(join(tmpdir(), 'netkeep-bench-ipam-'));
  try {
    const config = loadConfig([], { NETKEEP_STATE_DIR: stateDir });
    if (config === 'help') throw new Error('unreachable');
    prefill(config.dbPath, s);
    const self = fileURLToPath(import.meta.url);
    const { stdout } = await execa(
      process.execPath,
      ['--expose-gc', ...process.execArgv, self, '--measure', stateDir, '--pool', s.pool],
      { stderr: 'inherit' },
    );
    return JSON.parse(stdout.split('\n').at(-1)!) as Figures;
  } finally {
    rmSync(stateDir, { recursive: true, force: true });
  }
}

/** The child: a daemon over `stateDir`, MEASURED single REST allocations into `pool`, then its memory. */
async function measure(stateDir: string, pool: string): Promise<Figures> {
  // Logs go to stderr: stdout carries the figures.
  const { daemon, restSocket } = await startBenchDaemon(stateDir, pino({ level: 'warn' }, pino.destination(2)));
  const rest = restClient(restSocket, 1);
  const allocations = `/v1/pools/${pool}/allocations`;
  try {
    const before = Number(((await rest.send('GET', `/v1/pools/${pool}`)).status as { allocated: string }).allocated);
    for (let i = 0; i < WARMUP; i++) await rest.send('POST', `${allocations}?validateOnly=true`, { owner: `bench/warmup/${i}` });
    const samples: number[] = [];
    for (let i = 0; i < MEASURED; i++) {
      const started = performance.now();
      await rest.send('POST', allocations, { owner: `bench/measured/${i}` });
      samples.push(performance.now() - started);
    }
    const after = Number(((await rest.send('GET', `/v1/pools/${pool}`)).status as { allocated: string }).allocated);
    if (after !== before + MEASURED) throw new Error(`${pool}: ${before} allocations became ${after}, not ${before + MEASURED}`);

    globalThis.gc?.();
    const memory = process.memoryUsage();
    return {
      rssBytes: memory.rss,
      ...(globalThis.gc ? { heapUsedBytes: memory.heapUsed } : {}),
      medianMs: percentile(samples, 0.5),
      p99Ms: percentile(samples, 0.99),
    };
  } finally {
    await rest.close();
    await daemon.stop();
  }
}

// --- entry -----------------------------------------------------------------------

const mib = (bytes: number | undefined) => (bytes === undefined ? '-' : (bytes / 2 ** 20).toFixed(1));
const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? '-' : `${(a / b).toFixed(2)}x`);
const row = (cells: string[], widths: number[]) => ('  ' + cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')).trimEnd();

if (values.measure !== undefined) {
  process.stdout.write(JSON.stringify(await measure(values.measure, values.pool!)) + '\n');
} else if (!inSandbox()) {
  await reexecInSandbox(fileURLToPath(import.meta.url), 'bench/ipam');
} else {
  await prepareSandbox();
  const rates = await throughput();
  const [big, small] = [await sized(SIZED[0]), await sized(SIZED[1])];

  console.log(`bench/ipam: ${N} allocations per transport, each for a distinct owner`);
  const w1 = [12, 10, 14];
  console.log(row(['transport', 'in flight', 'allocations/s'], w1));
  for (const { transport, perSecond } of rates) {
    console.log(row([transport.name, String(transport.concurrency), perSecond.toFixed(0)], w1));
  }

  console.log('');
  console.log(`bench/ipam: a daemon holding one pool; ${MEASURED} more REST allocations, one at a time`);
  const w2 = [16, 12, 9, 10, 10, 8];
  console.log(row(['pool', 'allocations', 'RSS MiB', 'heap MiB', 'median ms', 'p99 ms'], w2));
  for (const [s, f] of [[SIZED[0], big], [SIZED[1], small]] as const) {
    const held = `${s.prefill}+${MEASURED}`;
    console.log(row([s.cidr, held, mib(f.rssBytes), mib(f.heapUsedBytes), f.medianMs.toFixed(2), f.p99Ms.toFixed(2)], w2));
  }
  const r = (k: keyof Figures) => ratio(big[k], small[k]);
  console.log(row(['ratio /64 : /24', '', r('rssBytes'), r('heapUsedBytes'), r('medianMs'), r('p99Ms')], w2));
}
