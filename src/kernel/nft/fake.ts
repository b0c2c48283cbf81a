/**
 * FakeNftClient: an in-memory stand-in for nft, conntrack and sysctl, for
 * reconciler tests. It interprets the subset of nft syntax renderTable()
 * writes (declaration blocks, `flush`, `add rule`, `add`/`delete element`,
 * `delete`) into objects, atomically per script, and lists them as the
 * kernel would list what renderTable() wrote (listing.ts digests). Real
 * behaviour (packets, nft's own listing) is tested in the sandbox.
 */
import { elementsOfLine, objectDigest, objectKey } from './listing.js';
import { NFT_TABLE, NftError, SUMMARY_OBJECTS, type ConntrackFilter, type NftClient, type ObservedTable } from './types.js';

interface FakeObject {
  keyword: string;
  /** A chain's hook, a set's type, size, flags and timeout: what a flush keeps. */
  declaration: string[];
  rules: string[];
  elements: string[];
}

/** Object key (`chain <name>`, `set <name>`) → the object. */
type FakeTable = Map<string, FakeObject>;

const OP_RE = new RegExp(`^(flush|delete) (chain|set|map) ${NFT_TABLE} (\\S+)$`);
const ELEMENT_RE = new RegExp(`^(add|delete) element ${NFT_TABLE} (\\S+) (\\{.*\\})$`);
const RULE_RE = new RegExp(`^add rule ${NFT_TABLE} (\\S+) (.*)$`);

const copy = (t: FakeTable): FakeTable =>
  new Map([...t].map(([k, o]) => [k, { ...o, declaration: [...o.declaration], rules: [...o.rules], elements: [...o.elements] }]));

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

  async summarize(netns: string): Promise<Map<string, string> | undefined> {
    const listed = this.list(netns);
    if (!listed) return undefined;
    return new Map(SUMMARY_OBJECTS.flatMap((key) => (listed.has(key) ? [[key, listed.get(key)!] as const] : [])));
  }

  async observe(netns: string): Promise<ObservedTable | undefined> {
    this.listings.set(netns, (this.listings.get(netns) ?? 0) + 1);
    const objects = this.list(netns);
    return objects && { objects };
  }

  private list(netns: string): Map<string, string> | undefined {
    this.mustExist(netns);
    const t = this.tables.get(netns);
    if (!t) return undefined;
    return new Map([...t].map(([key, o]) => [key, objectDigest(o.keyword, [...o.declaration, ...o.rules], o.elements)]));
  }

  async apply(netns: string, script: string): Promise<void> {
    this.mustExist(netns);
    // Atomic, as nft: work on a copy, commit at the end.
    let table: FakeTable | undefined = this.tables.has(netns) ? copy(this.tables.get(netns)!) : undefined;
    let block: FakeObject | undefined;
    const fail = (message: string): never => {
      throw new NftError(netns, `Error: ${message}`);
    };
    const get = (key: string) => table?.get(key) ?? fail(`Could not process rule: No such file or directory: ${key}`);
    for (const line of script.split('\n')) {
      const open = /^\t(chain|set|map) (\S+) \{$/.exec(line);
      const op = OP_RE.exec(line);
      const element = ELEMENT_RE.exec(line);
      const rule = RULE_RE.exec(line);
      if (line === `table ${NFT_TABLE} {`) table ??= new Map();
      else if (line === `delete table ${NFT_TABLE}`) {
        if (!table) fail('No such file or directory; did you mean table ‘netkeep’ in family inet?');
        table = undefined;
      } else if (open && table) {
        const key = objectKey(open[1]!, open[2]!);
        // Declaring what exists changes nothing.
        block = table.has(key) ? undefined : { keyword: open[1]!, declaration: [], rules: [], elements: [] };
        if (block) table.set(key, block);
      } else if (line === '\t}') block = undefined;
      else if (block) block.declaration.push(line.trim());
      else if (op) {
        const key = objectKey(op[2]!, op[3]!);
        const o = get(key);
        if (op[1] === 'delete') table!.delete(key);
        else table!.set(key, { ...o, rules: [], elements: [] });
      } else if (element) {
        const o = get(objectKey('set', element[2]!));
        for (const item of elementsOfLine(element[3]!)) {
          if (element[1] === 'add') {
            if (!o.elements.includes(item)) o.elements.push(item);
            continue;
          }
          const at = o.elements.findIndex((e) => e.split(' : ')[0] === item);
          if (at < 0) fail(`Could not process rule: No such file or directory: element ${item} of ${element[2]}`);
          o.elements.splice(at, 1);
        }
      } else if (rule) get(objectKey('chain', rule[1]!)).rules.push(rule[2]!);
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
    for (const o of this.tables.get(netns)?.values() ?? []) if (o.keyword === 'chain') o.rules = [];
  }

  /** A hand-made change: `nft flush chain inet netkeep <chain>` (its rules gone, its hook kept). */
  flushChainByHand(netns: string, chain: string): void {
    const o = this.tables.get(netns)?.get(`chain ${chain}`);
    if (o) o.rules = [];
  }

  /** A hand-made change: `nft add rule inet netkeep <chain> <rule>`. */
  addRuleByHand(netns: string, chain: string, rule: string): void {
    this.tables.get(netns)?.get(`chain ${chain}`)?.rules.push(rule);
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
