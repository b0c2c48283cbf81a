/**
 * Configuration in stages: raw flags and environment → defaults applied →
 * validated, frozen Config (DESIGN.md §4). A flag wins over its variable.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

export interface Config {
  /** Absolute path of the state directory; holds netkeep.db and the default sockets. */
  readonly stateDir: string;
  readonly dbPath: string;
  /** `unix:<absolute path>` or `host:port`. */
  readonly grpcListen: string;
  readonly restListen: string;
  /** Seconds between full reconcile passes. */
  readonly resyncIntervalSec: number;
  /** Seconds between comparisons of a whole `inet netkeep` table with what netkeep wrote (0: every pass). */
  readonly nftCheckIntervalSec: number;
  /** pino level: fatal, error, warn, info, debug, trace. */
  readonly logLevel: string;
}

/** Thrown for a flag or variable with a bad value; the message names it. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export const USAGE = `usage: netkeepd [options]
  --state-dir DIR          state directory (NETKEEP_STATE_DIR, default ./var)
  --grpc-listen ADDR       unix:PATH or HOST:PORT (NETKEEP_GRPC_LISTEN, default unix:<state-dir>/grpc.sock)
  --rest-listen ADDR       unix:PATH or HOST:PORT (NETKEEP_REST_LISTEN, default unix:<state-dir>/rest.sock)
  --resync-interval SEC    seconds between full reconcile passes (NETKEEP_RESYNC_INTERVAL, default 30)
  --nft-check-interval SEC seconds between whole-table nft drift checks, 0 = every pass
                           (NETKEEP_NFT_CHECK_INTERVAL, default 600)
  --log-level LEVEL        fatal|error|warn|info|debug|trace|silent (NETKEEP_LOG_LEVEL, default info)
  -h, --help               print this help`;

/** Normalizes a listen address: `unix:` paths become absolute; `host:port` needs a port 1–65535. */
function listenAddress(flag: string, value: string): string {
  if (value.startsWith('unix:')) {
    const path = value.slice('unix:'.length);
    if (path === '') throw new ConfigError(`${flag}: unix: needs a socket path`);
    return `unix:${resolve(path)}`;
  }
  const m = /^(.*):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || m[1] === '' || port < 1 || port > 65535) {
    throw new ConfigError(`${flag}: "${value}" is neither unix:PATH nor HOST:PORT`);
  }
  return value;
}

/** Builds the Config from argv (without node and script) and the environment. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): Config | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        'state-dir': { type: 'string' },
        'grpc-listen': { type: 'string' },
        'rest-listen': { type: 'string' },
        'resync-interval': { type: 'string' },
        'nft-check-interval': { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  if (values.help) return 'help';
  const stateDir = resolve(values['state-dir'] ?? env.NETKEEP_STATE_DIR ?? './var');
  const resyncText = values['resync-interval'] ?? env.NETKEEP_RESYNC_INTERVAL ?? '30';
  const resyncIntervalSec = Number(resyncText);
  if (!/^\d+(\.\d+)?$/.test(resyncText) || resyncIntervalSec < 1 || resyncIntervalSec > 86400) {
    throw new ConfigError(`--resync-interval: "${resyncText}" is not a number of seconds between 1 and 86400`);
  }
  const nftCheckText = values['nft-check-interval'] ?? env.NETKEEP_NFT_CHECK_INTERVAL ?? '600';
  const nftCheckIntervalSec = Number(nftCheckText);
  if (!/^\d+(\.\d+)?$/.test(nftCheckText) || nftCheckIntervalSec > 86400) {
    throw new ConfigError(`--nft-check-interval: "${nftCheckText}" is not a number of seconds between 0 and 86400`);
  }
  const logLevel = values['log-level'] ?? env.NETKEEP_LOG_LEVEL ?? 'info';
  if (!LEVELS.includes(logLevel)) throw new ConfigError(`--log-level: "${logLevel}" is not one of ${LEVELS.join(', ')}`);
  return Object.freeze({
    stateDir,
    dbPath: `${stateDir}/netkeep.db`,
    grpcListen: listenAddress('--grpc-listen', values['grpc-listen'] ?? env.NETKEEP_GRPC_LISTEN ?? `unix:${stateDir}/grpc.sock`),
    restListen: listenAddress('--rest-listen', values['rest-listen'] ?? env.NETKEEP_REST_LISTEN ?? `unix:${stateDir}/rest.sock`),
    resyncIntervalSec,
    nftCheckIntervalSec,
    logLevel,
  });
}
