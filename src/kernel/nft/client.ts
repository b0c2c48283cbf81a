/**
 * The NftClient that runs nft(8), conntrack(8) and sysctl(8) (nftables 1.0,
 * conntrack-tools 1.4), through the exec module, argv only.
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { run } from '../exec.js';
import { NFT_TABLE, NftError, SUMMARY_CHAIN, type ConntrackFilter, type NftClient, type ObservedTable } from './types.js';

/** argv prefix that runs a program in `netns` ("" = the daemon's own). */
function inNetns(netns: string, argv: string[]): [string, string[]] {
  return netns === '' ? [argv[0]!, argv.slice(1)] : ['ip', ['netns', 'exec', netns, ...argv]];
}

/** Milliseconds one `nft -f`, or one listing, may take. */
const NFT_APPLY_TIMEOUT_MS = 300_000;

const SYSCTLS: Record<4 | 6, string> = { 4: 'net.ipv4.ip_forward', 6: 'net.ipv6.conf.all.forwarding' };

const digest = (text: string) => createHash('sha256').update(text).digest('hex');

/** The entries of an `elements = { a, b, … }` list, which nft wraps over lines; no entry of ours holds a comma. */
function elementsOf(body: string[]): string[] {
  const at = body.findIndex((l) => l.startsWith('elements = {'));
  if (at < 0) return [];
  const text = body.slice(at).join(' ');
  return text
    .slice(text.indexOf('{') + 1, text.lastIndexOf('}'))
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '');
}

/**
 * The objects of a text listing of one table (`nft -s list table inet
 * netkeep`, stateless: no counters; no handles without -a), one digest per
 * chain and per set or map. A set's elements are sorted, since a hash set
 * lists in bucket order, which a resize may change; a dynamic set's are
 * left out.
 */
export function parseListing(text: string): ObservedTable {
  const objects = new Map<string, string>();
  let key: string | undefined;
  let body: string[] = [];
  for (const line of text.split('\n')) {
    const open = /^\t(chain|set|map) (\S+) \{$/.exec(line);
    if (open) {
      key = `${open[1] === 'chain' ? 'chain' : 'set'} ${open[2]}`;
      body = [open[1]!];
    } else if (key !== undefined && line === '\t}') {
      if (body[0] !== 'chain') {
        const at = body.findIndex((l) => l.startsWith('elements = {'));
        const dynamic = body.some((l) => /^flags .*\bdynamic\b/.test(l));
        const elements = dynamic ? [] : elementsOf(body).sort();
        body = [...(at < 0 ? body : body.slice(0, at)), ...elements];
      }
      objects.set(key, digest(body.join('\n')));
      key = undefined;
    } else if (key !== undefined) body.push(line.trim());
  }
  return { objects };
}

/**
 * The fingerprint of netkeep's verdict maps in `nft -j list maps inet`
 * output (all inet tables), with elements sorted, and of the rules of
 * SUMMARY_CHAIN in `nft -j list chain inet netkeep nat-prerouting` output,
 * without handles; undefined without the maps.
 */
export function summarizeMaps(mapsJson: string, chainJson: string): string | undefined {
  type Doc = { nftables: Array<{ map?: { table: string; name: string; elem?: unknown[] }; rule?: { expr: unknown } }> };
  const [, table] = NFT_TABLE.split(' ');
  const maps = (JSON.parse(mapsJson) as Doc).nftables
    .flatMap((o) => (o.map && o.map.table === table ? [o.map] : []))
    .map((m) => [m.name, (m.elem ?? []).map((e) => JSON.stringify(e)).sort()] as const)
    .sort(([a], [b]) => (a < b ? -1 : 1));
  if (maps.length === 0) return undefined;
  const rules = (JSON.parse(chainJson) as Doc).nftables.flatMap((o) => (o.rule ? [o.rule.expr] : []));
  return digest(JSON.stringify({ maps, rules }));
}

export class NftCliClient implements NftClient {
  async summarize(netns: string): Promise<string | undefined> {
    // Two reads: nft 1.0.6 cannot list in a batch (`nft -f` with list commands misses its cache).
    const family = NFT_TABLE.split(' ')[0]!;
    const list = async (argv: string[]) => {
      const [cmd, args] = inNetns(netns, ['nft', '-j', 'list', ...argv]);
      const r = await run(cmd, args, { timeoutMs: NFT_APPLY_TIMEOUT_MS });
      if (r.exitCode === 0) return r.stdout;
      if (/No such file or directory/.test(r.stderr)) return undefined;
      throw new NftError(netns, r.stderr.trim() || `nft exited ${r.exitCode}`);
    };
    const [maps, chain] = await Promise.all([list(['maps', family]), list(['chain', ...NFT_TABLE.split(' '), SUMMARY_CHAIN])]);
    return maps === undefined || chain === undefined ? undefined : summarizeMaps(maps, chain);
  }

  async observe(netns: string): Promise<ObservedTable | undefined> {
    const [cmd, args] = inNetns(netns, ['nft', '-s', 'list', 'table', ...NFT_TABLE.split(' ')]);
    // nft 1.0.6 lists a large table slowly (seconds for thousands of load balancers): the reconciler does it rarely.
    const r = await run(cmd, args, { timeoutMs: NFT_APPLY_TIMEOUT_MS });
    if (r.exitCode !== 0) {
      if (/No such file or directory/.test(r.stderr)) return undefined;
      throw new NftError(netns, r.stderr.trim() || `nft exited ${r.exitCode}`);
    }
    return parseListing(r.stdout);
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
