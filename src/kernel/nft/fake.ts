/**
 * FakeNftClient: an in-memory stand-in for nft, conntrack and sysctl, for
 * reconciler tests. It interprets the subset of nft syntax renderTable()
 * writes (declaration blocks, `flush`, `add rule`, `add element`, `delete`)
 * into objects holding their lines, and lists each object's digest, which
 * is what the reconciler compares. Real behaviour (packets, the kernel's
 * listing format) is tested in the sandbox.
 */
import { createHash } from 'node:crypto';
import { NFT_TABLE, NftError, SUMMARY_CHAIN, type ConntrackFilter, type NftClient, type ObservedTable } from './types.js';

/** Object key (`chain <name>`, `set <name>`) → its lines. */
type FakeTable = Map<string, string[]>;

const digest = (lines: readonly string[]) => createHash('sha256').update(lines.join('\n')).digest('hex');

/** What a flush leaves of an object: a chain's hook, a set's type, flags and timeout. */
const declaration = (lines: readonly string[]) => lines.filter((l) => /^(type|flags|timeout) /.test(l));

const OP_RE = new RegExp(`^(flush|delete) (chain|set|map) ${NFT_TABLE} (\\S+)$`);
const ADD_RE = new RegExp(`^add (rule|element) ${NFT_TABLE} (\\S+) (.*)$`);
const DELETE_ELEMENT_RE = new RegExp(`^delete element ${NFT_TABLE} (\\S+) \\{ (.*) \\}$`);

export class FakeNftClient implements NftClient {
  private readonly tables = new Map<string, FakeTable>();
  /** Namespaces that exist; "" always does. Applying elsewhere fails like nft in a missing netns. */
  readonly netns = new Set<string>(['']);
  readonly forwarding = new Map<string, Set<4 | 6>>();
  readonly conntrackDeletes: Array<ConntrackFilter & { netns: string }> = [];
  /** Scripts applied, in order, with their namespace. */
  readonly applied: Array<{ netns: string; script: string }> = [];
  /** Calls of observe() (whole listings), per namespace. */
  readonly listings = new Map<string, number>();

  async summarize(netns: string): Promise<string | undefined> {
    this.mustExist(netns);
    const t = this.tables.get(netns);
    if (!t) return undefined;
    const summarized = [...t].filter(([key]) => key.startsWith('set service-ips-') || key === `chain ${SUMMARY_CHAIN}`);
    return digest(summarized.map(([key, lines]) => `${key}:${[...lines].sort().join(',')}`));
  }

  async observe(netns: string): Promise<ObservedTable | undefined> {
    this.mustExist(netns);
    this.listings.set(netns, (this.listings.get(netns) ?? 0) + 1);
    const t = this.tables.get(netns);
    if (!t) return undefined;
    return { objects: new Map([...t].map(([key, lines]) => [key, digest(key.startsWith('set ') ? [...lines].sort() : lines)])) };
  }

  async apply(netns: string, script: string): Promise<void> {
    this.mustExist(netns);
    // Atomic, as nft: work on a copy, commit at the end.
    const t: FakeTable | undefined = this.tables.has(netns) ? new Map([...this.tables.get(netns)!].map(([k, v]) => [k, [...v]])) : undefined;
    let table = t;
    let block: string | undefined;
    const fail = (message: string) => {
      throw new NftError(netns, `Error: ${message}`);
    };
    for (const line of script.split('\n')) {
      const open = /^\t(chain|set|map) (\S+) \{$/.exec(line);
      const op = OP_RE.exec(line);
      const add = ADD_RE.exec(line);
      if (line === `table ${NFT_TABLE} {`) table ??= new Map();
      else if (line === `delete table ${NFT_TABLE}`) {
        if (!table) fail('No such file or directory; did you mean table ‘netkeep’ in family inet?');
        table = undefined;
      } else if (open && table) {
        block = `${open[1] === 'chain' ? 'chain' : 'set'} ${open[2]}`;
        if (!table.has(block)) table.set(block, []);
        else block = undefined; // declaring what exists changes nothing
      } else if (line === '\t}') block = undefined;
      else if (block !== undefined && table) table.get(block)!.push(line.trim());
      else if (op && table) {
        const key = `${op[2] === 'chain' ? 'chain' : 'set'} ${op[3]}`;
        if (!table.has(key)) fail(`No such file or directory: ${key}`);
        if (op[1] === 'delete') table.delete(key);
        else table.set(key, declaration(table.get(key)!));
      } else if (DELETE_ELEMENT_RE.test(line) && table) {
        const [, set, items] = DELETE_ELEMENT_RE.exec(line)!;
        const lines = table.get(`set ${set}`);
        if (!lines) fail(`No such file or directory: set ${set}`);
        for (const item of items!.split(', ')) {
          const at = lines!.findIndex((l) => l.split(' : ')[0] === item);
          if (at < 0) fail(`Could not process rule: No such file or directory: element ${item} of ${set}`);
          lines!.splice(at, 1);
        }
      } else if (add && table) {
        const key = `${add[1] === 'rule' ? 'chain' : 'set'} ${add[2]}`;
        if (!table.has(key)) fail(`No such file or directory: ${key}`);
        const lines = add[1] === 'element' ? add[3]!.replace(/^\{ | \}$/g, '').split(', ') : [add[3]!];
        table.get(key)!.push(...lines);
      }
    }
    this.applied.push({ netns, script });
    if (table) this.tables.set(netns, table);
    else this.tables.delete(netns);
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

  /** A hand-made change: `nft flush table inet netkeep` (every chain emptied; set elements stay, as with nft 1.0.6). */
  flushByHand(netns: string): void {
    const t = this.tables.get(netns);
    for (const [key, lines] of t ?? []) if (key.startsWith('chain ')) t!.set(key, declaration(lines));
  }

  /** A hand-made change: `nft flush chain inet netkeep <chain>` (its rules gone, its hook kept). */
  flushChainByHand(netns: string, chain: string): void {
    const t = this.tables.get(netns);
    const lines = t?.get(`chain ${chain}`);
    if (lines) t!.set(`chain ${chain}`, declaration(lines));
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
