/**
 * The NftClient that runs nft(8), conntrack(8) and sysctl(8) (nftables 1.0,
 * conntrack-tools 1.4), through the exec module, argv only.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { run } from '../exec.js';
import { NFT_TABLE, NftError, type ConntrackFilter, type NftClient, type ObservedTable } from './types.js';

/** argv prefix that runs a program in `netns` ("" = the daemon's own). */
function inNetns(netns: string, argv: string[]): [string, string[]] {
  return netns === '' ? [argv[0]!, argv.slice(1)] : ['ip', ['netns', 'exec', netns, ...argv]];
}

/** Milliseconds one `nft -f`, or one listing, may take. */
const NFT_APPLY_TIMEOUT_MS = 300_000;

const SYSCTLS: Record<4 | 6, string> = { 4: 'net.ipv4.ip_forward', 6: 'net.ipv6.conf.all.forwarding' };

/**
 * The comparable form of `nft -j` output: handles dropped, and the elements
 * of dynamic sets (affinity entries, with their expiry) dropped.
 */
export function normalizeListing(json: string): ObservedTable {
  const doc = JSON.parse(json) as { nftables: Record<string, Record<string, unknown>>[] };
  const chains: string[] = [];
  const sets: string[] = [];
  const kept = doc.nftables
    .filter((o) => !('metainfo' in o))
    .map((o) => {
      const [kind, body] = Object.entries(o)[0]!;
      const { handle: _h, ...rest } = body;
      if (kind === 'chain') chains.push(String(rest.name));
      if (kind === 'set' || kind === 'map') {
        sets.push(String(rest.name));
        const flags = rest.flags;
        if (Array.isArray(flags) ? flags.includes('dynamic') : flags === 'dynamic') delete rest.elem;
      }
      return { [kind]: rest };
    });
  return { listing: JSON.stringify(kept), chains, sets };
}

export class NftCliClient implements NftClient {
  async observe(netns: string): Promise<ObservedTable | undefined> {
    const [cmd, args] = inNetns(netns, ['nft', '-j', '-s', 'list', 'table', ...NFT_TABLE.split(' ')]);
    // nft 1.0.6 lists a large table slowly (about 6 s for 2,000 load balancers × 10 backends here).
    const r = await run(cmd, args, { timeoutMs: NFT_APPLY_TIMEOUT_MS });
    if (r.exitCode !== 0) {
      if (/No such file or directory/.test(r.stderr)) return undefined;
      throw new NftError(netns, r.stderr.trim() || `nft exited ${r.exitCode}`);
    }
    return normalizeListing(r.stdout);
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
      argv.push('--orig-dst', f.vip, '--orig-port-dst', String(f.port), '--reply-src', f.replySource);
      const [cmd, args] = inNetns(netns, argv);
      const r = await run(cmd, args);
      // conntrack exits 1 when nothing matched ("0 flow entries have been deleted"): that is success here.
      if (r.exitCode !== 0 && !/0 flow entries/.test(r.stderr)) throw new NftError(netns, r.stderr.trim());
    }
  }

  async ensureForwarding(netns: string, families: readonly (4 | 6)[]): Promise<string[]> {
    const changed: string[] = [];
    for (const family of families) {
      const key = SYSCTLS[family];
      if (netns === '') {
        // The daemon's own namespace: /proc/sys directly, no process.
        const path = `/proc/sys/${key.replaceAll('.', '/')}`;
        if ((await readFile(path, 'utf8')).trim() !== '1') {
          await writeFile(path, '1\n');
          changed.push(key);
        }
        continue;
      }
      const [cmd, args] = inNetns(netns, ['sysctl', '-n', key]);
      const r = await run(cmd, args);
      if (r.exitCode !== 0) throw new NftError(netns, r.stderr.trim());
      if (r.stdout.trim() === '1') continue;
      const [wcmd, wargs] = inNetns(netns, ['sysctl', '-q', '-w', `${key}=1`]);
      const w = await run(wcmd, wargs);
      if (w.exitCode !== 0) throw new NftError(netns, w.stderr.trim());
      changed.push(key);
    }
    return changed;
  }
}
