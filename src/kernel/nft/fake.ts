/**
 * FakeNftClient: an in-memory stand-in for nft, conntrack and sysctl, for
 * reconciler tests. It does not interpret rules: it keeps, per namespace,
 * the scripts applied since the table was made, and the chain and set names
 * they declare and delete, which is what the reconciler compares and cleans
 * up. Real behaviour (packets, the listing format) is tested in the sandbox.
 */
import { createHash } from 'node:crypto';
import { NFT_TABLE, NftError, type ConntrackFilter, type NftClient, type ObservedTable } from './types.js';

interface FakeTable {
  scripts: string[];
  chains: Set<string>;
  sets: Set<string>;
}

export class FakeNftClient implements NftClient {
  private readonly tables = new Map<string, FakeTable>();
  /** Namespaces that exist; "" always does. Applying elsewhere fails like nft in a missing netns. */
  readonly netns = new Set<string>(['']);
  readonly forwarding = new Map<string, Set<4 | 6>>();
  readonly conntrackDeletes: Array<ConntrackFilter & { netns: string }> = [];
  /** Scripts applied, in order, with their namespace. */
  readonly applied: Array<{ netns: string; script: string }> = [];

  async observe(netns: string): Promise<ObservedTable | undefined> {
    this.mustExist(netns);
    const t = this.tables.get(netns);
    if (!t) return undefined;
    const listing = createHash('sha256').update(t.scripts.join('\n--\n')).digest('hex');
    return { listing, chains: [...t.chains].sort(), sets: [...t.sets].sort() };
  }

  async apply(netns: string, script: string): Promise<void> {
    this.mustExist(netns);
    this.applied.push({ netns, script });
    let t = this.tables.get(netns);
    for (const line of script.split('\n')) {
      const decl = /^\t(chain|set|map) (\S+) \{/.exec(line);
      const del = /^delete (chain|set|map) inet netkeep (\S+)$/.exec(line);
      if (line.startsWith(`table ${NFT_TABLE} {`)) t ??= { scripts: [], chains: new Set(), sets: new Set() };
      else if (line === `delete table ${NFT_TABLE}`) {
        if (!t) throw new NftError(netns, 'Error: No such file or directory; did you mean table ‘netkeep’ in family inet?');
        t = undefined;
      } else if (decl && t) (decl[1] === 'chain' ? t.chains : t.sets).add(decl[2]!);
      else if (del && t) (del[1] === 'chain' ? t.chains : t.sets).delete(del[2]!);
    }
    if (t) {
      t.scripts.push(script);
      this.tables.set(netns, t);
    } else this.tables.delete(netns);
  }

  async deleteConntrack(netns: string, filters: readonly ConntrackFilter[]): Promise<void> {
    this.mustExist(netns);
    for (const f of filters) this.conntrackDeletes.push({ ...f, netns });
  }

  async ensureForwarding(netns: string, families: readonly (4 | 6)[]): Promise<string[]> {
    this.mustExist(netns);
    const on = this.forwarding.get(netns) ?? new Set();
    const changed = families.filter((f) => !on.has(f)).map((f) => (f === 4 ? 'net.ipv4.ip_forward' : 'net.ipv6.conf.all.forwarding'));
    for (const f of families) on.add(f);
    this.forwarding.set(netns, on);
    return changed;
  }

  /** A hand-made change: `nft flush table inet netkeep` (the listing changes). */
  flushByHand(netns: string): void {
    const t = this.tables.get(netns);
    if (t) t.scripts.push('# flushed by hand');
  }

  /** A hand-made change: `nft delete table inet netkeep`. */
  deleteByHand(netns: string): void {
    this.tables.delete(netns);
  }

  hasTable(netns: string): boolean {
    return this.tables.has(netns);
  }

  private mustExist(netns: string): void {
    if (!this.netns.has(netns)) throw new NftError(netns, `Cannot open network namespace "${netns}": No such file or directory`);
  }
}
