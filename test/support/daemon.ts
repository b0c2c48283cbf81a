/**
 * Runs the real netkeepd (`src/main.ts`) as a child process for end-to-end
 * tests, on unix sockets in a given state directory. Inside a kernel test
 * sandbox the child inherits the sandbox's network and mount namespaces.
 */
import { execa, type ResultPromise } from 'execa';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';

const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url));

export interface RunningDaemon {
  restSocket: string;
  grpcSocket: string;
  /** Everything the daemon logged so far (pino JSON lines). */
  output(): string;
  /** SIGTERM, then waits for exit; resolves with the exit code, or the signal's name if one killed it. */
  stop(): Promise<number | string>;
  /** SIGKILL, then waits for exit. */
  kill(): Promise<void>;
}

/**
 * Starts netkeepd with `--state-dir stateDir` and waits (up to `timeoutMs`)
 * until `/readyz` answers 200. Throws with the daemon's output when it exits
 * early or does not get ready.
 */
export async function startNetkeepd(
  stateDir: string,
  opts: { resyncSeconds?: number; timeoutMs?: number; nftCheckSeconds?: number } = {},
): Promise<RunningDaemon> {
  const restSocket = join(stateDir, 'rest.sock');
  const grpcSocket = join(stateDir, 'grpc.sock');
  let log = '';
  const child: ResultPromise = execa(
    process.execPath,
    [
      ...['--import', 'tsx', MAIN, '--state-dir', stateDir, '--resync-interval', String(opts.resyncSeconds ?? 1)],
      ...(opts.nftCheckSeconds === undefined ? [] : ['--nft-check-interval', String(opts.nftCheckSeconds)]),
    ],
    { reject: false, all: true, env: { NETKEEP_LOG_LEVEL: 'info' } },
  );
  child.all!.on('data', (chunk: Buffer) => (log += chunk.toString()));
  let exited = false;
  void child.then(() => (exited = true));

  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  for (;;) {
    if (exited) throw new Error(`netkeepd exited during start-up:\n${log}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`netkeepd not ready in time:\n${log}`);
    }
    if (existsSync(restSocket) && (await readyz(restSocket))) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    restSocket,
    grpcSocket,
    output: () => log,
    async stop() {
      child.kill('SIGTERM');
      const result = await child;
      return result.exitCode ?? result.signal ?? 'unknown';
    },
    async kill() {
      child.kill('SIGKILL');
      await child;
    },
  };
}

async function readyz(socketPath: string): Promise<boolean> {
  const dispatcher = new Agent({ connect: { socketPath } });
  try {
    const res = await request('http://localhost/readyz', { dispatcher });
    await res.body.dump();
    return res.statusCode === 200;
  } catch {
    return false;
  } finally {
    await dispatcher.close();
  }
}

/** A JSON-over-REST client on a daemon's unix socket. */
export interface RestClient {
  /** One request; `body` is sent as JSON. Resolves with the status and the parsed body (undefined when empty). */
  call(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<{ status: number; body: any }>;
  close(): Promise<void>;
}

/** A RestClient on `socketPath`, with up to `connections` requests in flight. */
export function restClient(socketPath: string, connections = 32): RestClient {
  const dispatcher = new Agent({ connect: { socketPath }, connections });
  return {
    async call(method, path, body) {
      const res = await request(`http://netkeep${path}`, {
        method,
        dispatcher,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.body.text();
      return { status: res.statusCode, body: text === '' ? undefined : JSON.parse(text) };
    },
    close: () => dispatcher.close(),
  };
}

/** Every allocation of `pool` over REST, following pages, in address order. */
export async function allAllocations(rest: Pick<RestClient, 'call'>, pool: string): Promise<Array<{ address: string; owner: string }>> {
  const out: Array<{ address: string; owner: string }> = [];
  let token = '';
  do {
    const r = await rest.call('GET', `/v1/pools/${pool}/allocations?pageSize=500${token ? `&pageToken=${token}` : ''}`);
    if (r.status !== 200) throw new Error(`listing ${pool}: ${r.status} ${JSON.stringify(r.body)}`);
    out.push(...r.body.items.map((a: { address: string; owner: string }) => ({ address: a.address, owner: a.owner })));
    token = r.body.nextPageToken;
  } while (token !== '');
  return out;
}
