/**
 * The netfilter side of the kernel (issue 4): the `inet netkeep` table of a
 * network namespace, conntrack entries, and IP forwarding. Behind one
 * interface with an in-memory fake (fake.ts) for reconciler tests.
 *
 * netkeep's rules live only in tables named `netkeep` of family `inet`, one
 * per namespace that has load balancers (DESIGN.md §3); nothing outside
 * them is ever read as ours or written.
 */

/** The family and name of netkeep's table in every namespace. */
export const NFT_TABLE = 'inet netkeep';

/** What `nft -j -s list table inet netkeep` shows, reduced to what a comparison needs. */
export interface ObservedTable {
  /**
   * The listing as canonical JSON, without handles and without the elements
   * of dynamic sets (client-IP affinity entries come and go on their own):
   * equal listings mean an unchanged table.
   */
  listing: string;
  /** Names of the table's chains. */
  chains: string[];
  /** Names of the table's sets and maps. */
  sets: string[];
}

/** One `conntrack -D` filter: entries of `protocol` to `vip`:`port` whose reply comes from `replySource`. */
export interface ConntrackFilter {
  family: 4 | 6;
  protocol: 'udp' | 'tcp' | 'sctp';
  vip: string;
  port: number;
  replySource: string;
}

export interface NftClient {
  /** The table in `netns` ("" = host), or undefined when it does not exist. Equivalent to `nft -j -s list table inet netkeep`. */
  observe(netns: string): Promise<ObservedTable | undefined>;
  /**
   * Runs `script` as one atomic transaction in `netns`. Equivalent to
   * `nft -f -` (`ip netns exec <netns> nft -f -`). Throws NftError with
   * nft's message when the kernel refuses it; then nothing changed.
   */
  apply(netns: string, script: string): Promise<void>;
  /** Deletes the conntrack entries each filter matches; none matching is fine. Equivalent to `conntrack -D …`. */
  deleteConntrack(netns: string, filters: readonly ConntrackFilter[]): Promise<void>;
  /**
   * Turns on forwarding (`net.ipv4.ip_forward`, `net.ipv6.conf.all.forwarding`)
   * for `families` in `netns`; returns the sysctls it changed (already on: none).
   */
  ensureForwarding(netns: string, families: readonly (4 | 6)[]): Promise<string[]>;
}

/** nft (or conntrack, sysctl) refused: `message` is the tool's stderr. */
export class NftError extends Error {
  constructor(
    readonly netns: string,
    message: string,
  ) {
    super(message);
    this.name = 'NftError';
  }
}
