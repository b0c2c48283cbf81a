/**
 * netkeepd: wires every layer together. Start-up order: migrate → sweep
 * allocations whose owner is gone → listen (every API call answers
 * UNAVAILABLE) → first reconcile pass → ready. SIGTERM/SIGINT: stop serving,
 * finish the pass in flight, close the store, exit. Stopping never tears
 * down kernel state: the datapath outlives the daemon.
 */
import { mkdirSync } from 'node:fs';
import type { Server as HttpServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { pino, type Logger } from 'pino';
import { bindGrpc, createGrpcServer } from './api/grpc/server.js';
import { createRestApp, listenRest } from './api/rest/app.js';
import { ConfigError, USAGE, loadConfig, type Config } from './config.js';
import { IprouteClient } from './kernel/ip/client.js';
import type { IpClient } from './kernel/ip/types.js';
import { NftCliClient } from './kernel/nft/client.js';
import { FakeNftClient } from './kernel/nft/fake.js';
import type { NftClient } from './kernel/nft/types.js';
import { Reconciler } from './reconcile/reconciler.js';
import { Runner } from './reconcile/runner.js';
import { createServices, type Services } from './service/index.js';
import { DatabaseTooNewError, openStore, type Store } from './store/index.js';

export interface Daemon {
  services: Services;
  reconciler: Reconciler;
  runner: Runner;
  store: Store;
  /** Stops serving, waits for the pass in flight, closes the store. Idempotent. */
  stop(): Promise<void>;
}

export interface DaemonDeps {
  /** The iproute2 client; tests pass the in-memory fake. */
  ip?: IpClient;
  /**
   * The nft/conntrack/sysctl client. Default: the real one, unless `ip` is
   * given (a test's fake kernel), then the in-memory fake: a test that fakes
   * the kernel never touches the host's netfilter.
   */
  nft?: NftClient;
  logger?: Logger;
}

/** Starts netkeepd with `config`; resolves once it serves on both transports. */
export async function startDaemon(config: Config, deps: DaemonDeps = {}): Promise<Daemon> {
  const log = deps.logger ?? pino({ level: config.logLevel, base: { service: 'netkeepd' } });
  mkdirSync(config.stateDir, { recursive: true, mode: 0o750 });
  const store = openStore(config.dbPath);
  const ip = deps.ip ?? new IprouteClient(log);
  const nft = deps.nft ?? (deps.ip ? new FakeNftClient() : new NftCliClient());
  const reconciler = new Reconciler(store, ip, log, nft, { nftCheckMs: config.nftCheckIntervalSec * 1000 });
  const runner = new Runner(
    async () => ({ healthy: (await reconciler.pass()).notReady === 0 }),
    { resyncMs: config.resyncIntervalSec * 1000 },
    log,
  );
  let ready = false;
  const services = createServices(store, {
    onChange: () => runner.trigger(),
    ready: () => ready,
    foreignLink: (netns, ifname) => reconciler.foreignLink(netns, ifname),
    foreignNetns: (name) => reconciler.foreignNetns(name),
  });

  const swept = services.ipam.sweepOrphans();
  if (swept.length > 0) log.info({ owners: swept.slice(0, 20), count: swept.length }, 'released allocations whose owner no longer exists');

  // Listen before the first pass, so that clients get UNAVAILABLE (and
  // Retry-After) rather than a refused connection while it runs; no answer
  // comes from half-loaded state.
  const grpc = createGrpcServer(services, log);
  let rest: HttpServer | undefined;
  try {
    await bindGrpc(grpc.server, config.grpcListen);
    rest = await listenRest(createRestApp(services, log), config.restListen);
    await runner.start();
  } catch (err) {
    grpc.server.forceShutdown();
    rest?.close();
    await runner.stop();
    store.close();
    throw err;
  }
  ready = true;
  grpc.setServing(true);
  log.info({ grpc: config.grpcListen, rest: config.restListen, stateDir: config.stateDir }, 'netkeepd serving');

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      ready = false;
      grpc.setServing(false);
      log.info('netkeepd stopping: draining requests and the reconcile pass in flight');
      await Promise.all([
        new Promise<void>((done) => grpc.server.tryShutdown(() => done())),
        new Promise<void>((done) => {
          rest!.close(() => done());
          rest!.closeIdleConnections();
        }),
      ]);
      await runner.stop();
      store.close();
      log.info('netkeepd stopped; kernel state left in place');
    })());
  return { services, reconciler, runner, store, stop };
}

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.argv.slice(2));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`netkeepd: ${err.message}\n${USAGE}\n`);
      process.exit(2);
    }
    throw err;
  }
  if (config === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const log = pino({ level: config.logLevel, base: { service: 'netkeepd' } });
  // Listeners stay installed (not `once`): a second signal while draining
  // (Ctrl-C reaches every process of the terminal's group) must not fall
  // back to the default action and cut the drain short. They are installed
  // before start-up, so a signal during the first pass waits for it too.
  let daemon: Daemon | undefined;
  let stopping = false;
  const stop = (d: Daemon) =>
    d.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.fatal({ err }, 'netkeepd failed to stop cleanly');
        process.exit(1);
      },
    );
  const onSignal = (signal: NodeJS.Signals) => {
    log.info({ signal, alreadyStopping: stopping }, 'signal received');
    if (stopping) return;
    stopping = true;
    if (daemon) void stop(daemon);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    daemon = await startDaemon(config, { logger: log });
  } catch (err) {
    if (err instanceof DatabaseTooNewError) log.fatal({ db: config.dbPath }, err.message);
    else log.fatal({ err }, 'netkeepd failed to start');
    process.exit(1);
  }
  if (stopping) void stop(daemon);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  void main();
}
