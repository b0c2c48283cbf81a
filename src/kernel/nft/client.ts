/**
 * The NftClient that runs nft(8), conntrack(8) and sysctl(8) (nftables 1.0,
 * conntrack-tools 1.4), through the exec module, argv only.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { run } from '../exec.js';
import { parseListing } from './listing.js';
import { NFT_TABLE, NftError, SUMMARY_CHAIN, SUMMARY_OBJECTS, type ConntrackFilter, type NftClient, type ObservedTable } from './types.js';

/** argv prefix that runs a program in `netns` ("" = the daemon's own). */
function inNetns(netns: string, argv: string[]): [string, string[]] {
  return netns === '' ? [argv[0]!, argv.slice(1)] : ['ip', ['netns', 'exec', netns, ...argv]];
}

/** Milliseconds one `nft -f`, or one listing, may take. */
const NFT_APPLY_TIMEOUT_MS = 300_000;

const SYSCTLS: Record<4 | 6, string> = { 4: 'net.ipv4.ip_forward', 6: 'net.ipv6.conf.all.forwarding' };

export class NftCliClient implements NftClient {
  async summarize(netns: string): Promise<Map<string, string> | undefined> {
    // Two reads: nft 1.0.6 cannot list in a batch (`nft -f` with list commands misses its cache).
    const [family, table] = NFT_TABLE.split(' ') as [string, string];
    const [maps, chain] = await Promise.all([this.list(netns, ['maps', family]), this.list(netns, ['chain', family, table, SUMMARY_CHAIN])]);
    if (maps === undefined || chain === undefined) return undefined;
    const listed = new Map([...parseListing(maps), ...parseListing(chain)]);
    return new Map(SUMMARY_OBJECTS.flatMap((key) => (listed.has(key) ? [[key, listed.get(key)!] as const] : [])));
  }

  async observe(netns: string): Promise<ObservedTable | undefined> {
    // nft 1.0.6 lists a large table slowly (seconds for thousands of load balancers): the reconciler does it rarely.
    const text = await this.list(netns, ['table', ...NFT_TABLE.split(' ')]);
    return text === undefined ? undefined : { objects: parseListing(text) };
  }

  /** `nft -s list <what>` in `netns`; undefined when it does not exist. */
  private async list(netns: string, what: string[]): Promise<string | undefined> {
    const [cmd, args] = inNetns(netns, ['nft', '-s', 'list', ...what]);
    const r = await run(cmd, args, { timeoutMs: NFT_APPLY_TIMEOUT_MS });
    if (r.exitCode === 0) return r.stdout;
    if (/No such file or directory/.test(r.stderr)) return undefined;
    throw new NftError(netns, r.stderr.trim() || `nft exited ${r.exitCode}`);
  }

  async apply(netns: string, script: string): Promise<void> {
    const [cmd, args] = inNetns(netns, ['nft', '-f', '-']);
    // Programming thousands of load balancers at once takes the kernel a while.
    const r = await run(cmd, args, { input: script, timeoutMs: NFT_APPLY_TIMEOUT_MS });
    if (r.exitCode !== 0) throw new NftError(netns, r.stderr.trim() || `nft exited ${r.exitCode}`);
  }

  async deleteConntrack(netns: string, filters: readonly ConntrackFilter[]): Promise<void> {
    for (const f of filters) {
      const argv = ['conntrack', '-D', '-f', f.family === 6 ? 'ipv6' : 'ipv4', '-p', f.protocol];
      argv.push('--orig-dst', f.vip, '--orig-port-dst', String(f.port));
      if (f.replySource !== undefined) argv.push('--reply-src', f.replySource);
      const [cmd, args] = inNetns(netns, argv);
      const r = await run(cmd, args);
      // conntrack exits 1 when nothing matched ("0 flow entries have been deleted"): that is success here.
      if (r.exitCode !== 0 && !/0 flow entries/.test(r.stderr)) throw new NftError(netns, r.stderr.trim());
    }
  }

  async ensureForwarding(netns: string, families: readonly (4 | 6)[]): Promise<string[]> {
    const keys = families.map((f) => SYSCTLS[f]);
    const values = await this.readSysctls(netns, keys);
    const off = keys.filter((_, i) => values[i] !== '1');
    if (off.length === 0) return [];
    if (netns === '') {
      for (const key of off) await writeFile(procPath(key), '1\n');
    } else {
      const [cmd, args] = inNetns(netns, ['sysctl', '-q', '-w', ...off.map((k) => `${k}=1`)]);
      const w = await run(cmd, args);
      if (w.exitCode !== 0) throw new NftError(netns, w.stderr.trim());
    }
    return off;
  }

  /** The values of `keys` in `netns`: /proc/sys in the daemon's own, one `sysctl -n` elsewhere. */
  private async readSysctls(netns: string, keys: readonly string[]): Promise<string[]> {
    if (netns === '') return Promise.all(keys.map(async (k) => (await readFile(procPath(k), 'utf8')).trim()));
    const [cmd, args] = inNetns(netns, ['sysctl', '-n', ...keys]);
    const r = await run(cmd, args);
    if (r.exitCode !== 0) throw new NftError(netns, r.stderr.trim());
    return r.stdout.trim().split('\n');
  }
}

/** `/proc/sys/net/ipv4/ip_forward` for `net.ipv4.ip_forward`. */
function procPath(key: string): string {
  return `/proc/sys/${key.replaceAll('.', '/')}`;
}
